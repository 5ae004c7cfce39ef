"""Per-lesion PET / CT measures: on an ROI's footprint under the CEUS plane, and in 3D from a segment.

Inputs are plain arrays and geometry, as :class:`DCEUSResponseLib.io.volumes.Volume` holds them
(``values`` (slices, rows, columns), ``ijk_to_lps`` 4 x 4; see :mod:`DCEUSResponseLib.spatial.resample`);
SUV volumes are SUVbw (g/mL), CT volumes Hounsfield units. Measures the data cannot give (an empty
footprint, a missing reference) are ``None`` with a reason, never a made-up number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.spatial.registration import apply, pixel_to_frame_mm
from DCEUSResponseLib.spatial.resample import SUVPEAK_RADIUS_MM, Footprint, sphere_means


@dataclass(frozen=True)
class FootprintPet:
    """``pet.*`` of the contract for one ROI: SUVbw (g/mL) over its footprint voxels."""

    SUVmax: float | None
    SUVmean: float | None
    SUVpeak: float | None
    voxels: int
    reason: str | None = None


@dataclass(frozen=True)
class SegmentPet:
    """``pet3d.*`` of the contract: SUVbw (g/mL) over a 3D segment, its volume (mL), TLU (g), and the
    distance (mm) from the CEUS ROI's centroid to the segment (0 inside)."""

    SUVmax: float | None
    SUVmean: float | None
    SUVpeak: float | None
    volume_ml: float
    TLU: float | None
    distance_mm: float | None
    reason: str | None = None


def _finite_values(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    picked = values[indices[:, 0], indices[:, 1], indices[:, 2]].astype(np.float64)
    return picked[np.isfinite(picked)]


def footprint_pet(suv: np.ndarray, ijk_to_lps: np.ndarray, selected: Footprint,
                  radius_mm: float = SUVPEAK_RADIUS_MM) -> FootprintPet:
    """SUVmax, SUVmean, voxel count and SUVpeak (the highest 1 cm^3 sphere mean centred on a
    footprint voxel, on the PET grid) of one ROI's footprint."""
    if selected.voxels == 0:
        return FootprintPet(None, None, None, 0, selected.reason or "empty footprint")
    picked = _finite_values(suv, selected.indices)
    if picked.size == 0:
        return FootprintPet(None, None, None, selected.voxels, "the PET has no finite value in the footprint")
    peaks = sphere_means(suv, ijk_to_lps, selected.indices, radius_mm)
    peak = float(np.nanmax(peaks)) if np.isfinite(peaks).any() else None
    return FootprintPet(float(picked.max()), float(picked.mean()), peak, selected.voxels)


def footprint_mean(values: np.ndarray, selected: Footprint) -> float | None:
    """Mean over the footprint voxels (``ct.HU_mean`` on a CT); None when empty."""
    picked = _finite_values(values, selected.indices) if selected.voxels else np.zeros(0)
    return float(picked.mean()) if picked.size else None


def tumour_to_liver_ratio(roi_suvmax: float | None, reference_suvmean: float | None) -> float | None:
    """``pet.TLR``: the ROI's SUVmax over the reference ROI's SUVmean; None when either is missing."""
    if roi_suvmax is None or reference_suvmean is None or not reference_suvmean > 0:
        return None
    return float(roi_suvmax / reference_suvmean)


def roi_centroid_frame_mm(mask: np.ndarray, frame_spacing_mm: tuple[float, float]) -> np.ndarray:
    """The ROI's pixel centroid in CEUS frame mm (3,)."""
    rows, columns = np.nonzero(np.asarray(mask) != 0)
    if rows.size == 0:
        raise ValueError("the ROI has no pixels")
    return pixel_to_frame_mm(rows.mean(), columns.mean(), frame_spacing_mm)


def roi_centroid_patient_mm(mask: np.ndarray, frame_spacing_mm: tuple[float, float],
                            ceus_to_patient_lps: np.ndarray) -> tuple[float, float, float]:
    """``centroid_patient_mm``: the ROI's centroid mapped to patient LPS mm."""
    return tuple(float(v) for v in apply(ceus_to_patient_lps, roi_centroid_frame_mm(mask, frame_spacing_mm)))


def segment_pet(suv: np.ndarray, ijk_to_lps: np.ndarray, segment: np.ndarray, centroid_lps: np.ndarray,
                source: str = "", radius_mm: float = SUVPEAK_RADIUS_MM) -> SegmentPet:
    """``pet3d.*`` of one segment on the PET grid (``segment`` the same shape as ``suv``, non-zero inside).

    SUVpeak is the highest sphere mean centred on a segment voxel. ``distance_mm`` is 0 when the
    centroid lies in a segment voxel (nearest voxel centre), else the distance to the nearest
    segment voxel centre. A segment on another grid is an :class:`InputError` naming ``source``.
    """
    segment = np.asarray(segment)
    if segment.shape != suv.shape:
        raise InputError(f"segmentation grid {list(segment.shape)[::-1]} (columns, rows, slices) is not the PET "
                         f"grid {list(suv.shape)[::-1]}", source)
    indices = np.argwhere(segment != 0)
    voxel_ml = abs(float(np.linalg.det(np.asarray(ijk_to_lps, dtype=float)[:3, :3]))) / 1000.0
    if len(indices) == 0:
        return SegmentPet(None, None, None, 0.0, None, None, "the segment is empty")
    volume_ml = len(indices) * voxel_ml
    picked = _finite_values(suv, indices)
    peaks = sphere_means(suv, ijk_to_lps, indices, radius_mm)
    suv_mean = float(picked.mean()) if picked.size else None
    return SegmentPet(float(picked.max()) if picked.size else None, suv_mean,
                      float(np.nanmax(peaks)) if np.isfinite(peaks).any() else None, volume_ml,
                      suv_mean * volume_ml if suv_mean is not None else None,
                      distance_to_segment_mm(segment, ijk_to_lps, indices, centroid_lps))


def distance_to_segment_mm(segment: np.ndarray, ijk_to_lps: np.ndarray, indices: np.ndarray,
                           point_lps: np.ndarray) -> float:
    """0 when ``point_lps`` falls in a segment voxel, else the distance (mm) to the nearest segment voxel centre."""
    index = apply(np.linalg.inv(ijk_to_lps), np.asarray(point_lps, dtype=float))  # (i, j, k)
    nearest = np.floor(index[::-1] + 0.5).astype(int)
    if np.all(nearest >= 0) and np.all(nearest < segment.shape) and segment[tuple(nearest)]:
        return 0.0
    centres = apply(ijk_to_lps, indices[:, ::-1].astype(float))
    return float(np.min(np.linalg.norm(centres - np.asarray(point_lps, dtype=float), axis=1)))
