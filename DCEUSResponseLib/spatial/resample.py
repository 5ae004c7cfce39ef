"""CT / PET volumes on the CEUS plane: slab-mean resampling, ROI footprints, sphere means (SUVpeak).

Volumes are plain arrays plus their geometry, as :class:`DCEUSResponseLib.io.volumes.Volume` holds
them: ``values`` (slices, rows, columns) and ``ijk_to_lps`` (4 x 4) mapping voxel index (i = column,
j = row, k = slice) to the voxel centre in patient LPS mm, so ``values[k, j, i]`` lies at
``ijk_to_lps @ (i, j, k, 1)``. The CEUS plane is placed by ``ceus_to_patient_lps`` (CEUS frame mm ->
LPS mm; see :mod:`DCEUSResponseLib.spatial.registration`).

Cost: sampling touches only the part of the volume the slab crosses (cropped before any float32
copy) and costs ``grid pixels x samples across the slab`` trilinear look-ups
(``scipy.ndimage.map_coordinates``, order 1); footprints map the ROI's bounding box into the volume
and test only the voxels inside it, never the whole volume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from DCEUSResponseLib.spatial.registration import apply, pixel_to_frame_mm

SLAB_STEP_MM = 0.5  # the contract's sampling step across the slab
SUVPEAK_RADIUS_MM = 6.2  # a 1 cm^3 sphere (PERCIST)
_CHUNK_VOXELS = 1 << 21  # candidate voxels tested at once (bounds the footprint's memory)


@dataclass(frozen=True)
class PlaneGrid:
    """Pixels on the CEUS frame: grid pixel (i, j) is the full-frame position
    (row, column) = ``first_pixel`` + (i, j) x ``step_px``; ``frame_spacing_mm`` is the clip's (dy, dx).

    The contrast panel is ``PlaneGrid((y0, x0), 1, (rows, columns), spacing)``; a map binned N x N has
    ``first_pixel`` at its first bin's centre (``ParametricMaps.origin_px``) and ``step_px`` N.
    """

    first_pixel: tuple[float, float]
    step_px: float
    shape: tuple[int, int]
    frame_spacing_mm: tuple[float, float]

    def points_mm(self) -> np.ndarray:
        """(rows, columns, 3) CEUS frame mm of the grid's pixel centres."""
        rows = self.first_pixel[0] + self.step_px * np.arange(self.shape[0], dtype=float)
        columns = self.first_pixel[1] + self.step_px * np.arange(self.shape[1], dtype=float)
        return pixel_to_frame_mm(rows[:, None], columns[None, :], self.frame_spacing_mm)


@dataclass(frozen=True)
class Footprint:
    """Voxel indices ``(k, j, i)`` (K, 3) of an ROI's footprint; ``reason`` says why it is empty."""

    indices: np.ndarray
    reason: str | None = None

    @property
    def voxels(self) -> int:
        return int(len(self.indices))


def slab_offsets_mm(slab_mm: float) -> np.ndarray:
    """Offsets (mm) along the plane normal: every 0.5 mm from -slab/2 to +slab/2 (0 for no slab)."""
    if slab_mm < 0 or not np.isfinite(slab_mm):
        raise ValueError(f"slab thickness must be a finite number >= 0 mm, got {slab_mm}")
    count = int(round(slab_mm / SLAB_STEP_MM)) + 1
    return np.linspace(-slab_mm / 2.0, slab_mm / 2.0, count) if count > 1 else np.zeros(1)


def _index_box(index_points: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive-exclusive (k, j, i) index box around (..., 3) (i, j, k) points, clipped; None if empty."""
    flat = index_points.reshape(-1, 3)[:, ::-1]
    low = np.maximum(np.floor(flat.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(flat.max(axis=0)).astype(int) + 1, np.asarray(shape))
    return None if np.any(high <= low) else (low, high)


def sample_on_plane(values: np.ndarray, ijk_to_lps: np.ndarray, ceus_to_patient_lps: np.ndarray,
                    grid: PlaneGrid, slab_mm: float = 5.0) -> np.ndarray:
    """The volume on the CEUS grid: float32 (rows, columns), each pixel the mean of trilinear samples
    every 0.5 mm along the plane normal from -slab/2 to +slab/2 (mm).

    A pixel is NaN unless all its samples lie inside the volume (within the hull of voxel centres):
    a partial slab would be a biased mean.
    """
    frame_to_index = np.linalg.inv(ijk_to_lps) @ ceus_to_patient_lps
    centres = apply(frame_to_index, grid.points_mm())  # (rows, columns, 3) as (i, j, k)
    normal = frame_to_index[:3, 2]  # frame z in index units per mm
    offsets = slab_offsets_mm(slab_mm)
    result = np.full(grid.shape, np.nan, dtype=np.float32)
    ends = np.stack([centres + offsets[0] * normal, centres + offsets[-1] * normal])
    box = _index_box(ends, values.shape)
    if box is None:
        return result
    low, high = box
    crop = np.ascontiguousarray(values[low[0]:high[0], low[1]:high[1], low[2]:high[2]], dtype=np.float32)
    local = (centres[..., ::-1] - low).reshape(-1, 3).T  # (3, pixels) as (k, j, i) in the crop
    step = normal[::-1][:, None]
    total = np.zeros(local.shape[1], dtype=np.float64)
    for offset in offsets:
        total += ndimage.map_coordinates(crop, local + offset * step, order=1, mode="constant",
                                         cval=np.nan, prefilter=False)
    result[...] = (total / len(offsets)).reshape(grid.shape)
    return result


def footprint(mask: np.ndarray, frame_spacing_mm: tuple[float, float], ceus_to_patient_lps: np.ndarray,
              shape: tuple[int, int, int], ijk_to_lps: np.ndarray, slab_mm: float = 5.0) -> Footprint:
    """Voxels whose centres lie within ``slab_mm / 2`` of the CEUS plane and project into the ROI.

    ``mask`` is the ROI on the full frame (rows, columns), non-zero inside; a voxel centre projects
    onto the frame at (x, y) mm and falls in pixel (round(y / dy), round(x / dx)).
    """
    mask = np.asarray(mask) != 0
    rows, columns = np.nonzero(mask)
    if rows.size == 0:
        return Footprint(np.zeros((0, 3), dtype=int), "the ROI has no pixels")
    half = slab_mm / 2.0
    corners_px = np.array([[r, c] for r in (rows.min() - 0.5, rows.max() + 0.5)
                           for c in (columns.min() - 0.5, columns.max() + 0.5)])
    corners = pixel_to_frame_mm(corners_px[:, 0], corners_px[:, 1], frame_spacing_mm)
    corners = np.concatenate([corners + [0.0, 0.0, -half], corners + [0.0, 0.0, half]])
    frame_to_index = np.linalg.inv(ijk_to_lps) @ ceus_to_patient_lps
    box = _index_box(apply(frame_to_index, corners), shape)
    if box is None:
        return Footprint(np.zeros((0, 3), dtype=int), "the CEUS plane does not cross the volume at this ROI")
    index_to_frame = np.linalg.inv(frame_to_index)
    dy, dx = frame_spacing_mm
    low, high = box
    chunk_slices = max(1, _CHUNK_VOXELS // int(np.prod(high[1:] - low[1:])))
    found = []
    for k_start in range(low[0], high[0], chunk_slices):
        k, j, i = np.mgrid[k_start:min(k_start + chunk_slices, high[0]), low[1]:high[1], low[2]:high[2]]
        candidates = np.stack([k.ravel(), j.ravel(), i.ravel()], axis=1)
        frame = apply(index_to_frame, candidates[:, ::-1].astype(float))
        row = np.floor(frame[:, 1] / dy + 0.5).astype(np.int64)
        column = np.floor(frame[:, 0] / dx + 0.5).astype(np.int64)
        keep = (np.abs(frame[:, 2]) <= half) & (row >= 0) & (row < mask.shape[0]) & \
            (column >= 0) & (column < mask.shape[1])
        keep[keep] = mask[row[keep], column[keep]]
        found.append(candidates[keep])
    indices = np.concatenate(found) if found else np.zeros((0, 3), dtype=int)
    reason = None if len(indices) else ("no voxel centre of the volume lies within slab/2 of the CEUS plane "
                                        "inside the ROI (plane outside the volume, or ROI smaller than a voxel)")
    return Footprint(indices, reason)


def sphere_offsets(ijk_to_lps: np.ndarray, radius_mm: float = SUVPEAK_RADIUS_MM) -> np.ndarray:
    """Index offsets (S, 3) as (k, j, i) of the voxels whose centres lie within ``radius_mm`` of a voxel's centre."""
    linear = np.asarray(ijk_to_lps, dtype=float)[:3, :3]
    reach = np.ceil(radius_mm * np.linalg.norm(np.linalg.inv(linear), axis=1)).astype(int)  # along i, j, k
    di, dj, dk = np.mgrid[-reach[0]:reach[0] + 1, -reach[1]:reach[1] + 1, -reach[2]:reach[2] + 1]
    offsets = np.stack([di.ravel(), dj.ravel(), dk.ravel()], axis=1)
    inside = np.linalg.norm(offsets @ linear.T, axis=1) <= radius_mm * (1.0 + 1e-9)
    return offsets[inside][:, ::-1]


def sphere_means(values: np.ndarray, ijk_to_lps: np.ndarray, indices: np.ndarray,
                 radius_mm: float = SUVPEAK_RADIUS_MM) -> np.ndarray:
    """Mean of the voxels inside the volume whose centres lie within ``radius_mm`` of each voxel in
    ``indices`` (K, 3) as (k, j, i); the sphere may reach beyond ``indices``, not beyond the volume."""
    offsets = sphere_offsets(ijk_to_lps, radius_mm)
    shape = np.asarray(values.shape)
    means = np.empty(len(indices), dtype=np.float64)
    block = max(1, _CHUNK_VOXELS // len(offsets))
    for start in range(0, len(indices), block):
        around = indices[start:start + block, None, :] + offsets[None, :, :]
        inside = np.all((around >= 0) & (around < shape), axis=2)
        clipped = np.clip(around, 0, shape - 1)
        samples = values[clipped[..., 0], clipped[..., 1], clipped[..., 2]].astype(np.float64)
        means[start:start + block] = np.where(inside, samples, 0.0).sum(axis=1) / inside.sum(axis=1)
    return means
