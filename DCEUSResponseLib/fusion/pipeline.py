"""``fuse``: the CEUS plane of one analysis placed in the patient's CT / SSTR-PET, and the PET/CT measures
of each CEUS ROI there (``docs/fusion-and-follow-up-contract.md``).

Panels. ``ceus_to_patient_lps`` maps the full-frame coordinates of one panel, the *registration
panel*: the panel the CEUS landmarks lie on (all on one panel), or with ``--transform`` the panel
``transform_panel`` names (default: the B-mode panel of a dual display, where landmarks and ROIs are
usually placed). Points of the other panel (ROIs drawn there, the contrast panel's grid of the
``*_on_ceus.nrrd`` files and of the maps) are the same anatomy shifted by the panel offset
(:func:`DCEUSResponseLib.ceus.layout.mirror_offset`): they are mapped with
``ceus_to_patient_lps @ T(shift)``, :meth:`Fusion.panel_matrix`.

:func:`fuse` reads and computes; it writes nothing (:mod:`DCEUSResponseLib.export.fusion_files` does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.fusion.inputs import (
    PANEL_BMODE,
    PANEL_CONTRAST,
    AnalysisInputs,
    read_analysis,
    read_pet_segmentation,
)
from DCEUSResponseLib.io.volumes import Volume, read_volume
from DCEUSResponseLib.pet.lesion import (
    FootprintPet,
    SegmentPet,
    footprint_mean,
    footprint_pet,
    roi_centroid_frame_mm,
    segment_pet,
    tumour_to_liver_ratio,
)
from DCEUSResponseLib.pet.suv import SuvFactor, suv_factor_of
from DCEUSResponseLib.spatial.registration import (
    Registration,
    apply,
    check_rigid,
    register_landmarks,
)
from DCEUSResponseLib.spatial.resample import PlaneGrid, footprint, sample_on_plane

DEFAULT_SLAB_MM = 5.0
MAX_SLAB_MM = 50.0  # beyond any elevational beam width: a typo, not a slab


@dataclass(frozen=True)
class RoiFusion:
    """One CEUS ROI in the patient: ``pet.*`` (SUVbw), ``ct.HU_mean`` (HU), ``pet3d.*``, the centroid
    (LPS mm), the TLR, the FWM expected target error at the centroid (mm) and the reason for nulls."""

    name: str
    panel: str
    pet: FootprintPet | None
    ct_hu_mean: float | None
    ct_voxels: int
    tlr: float | None
    pet3d: SegmentPet | None
    centroid_patient_mm: tuple[float, float, float]
    expected_tre_mm: float | None
    reason: str | None = None


@dataclass
class Fusion:
    """Everything ``fuse`` found; ``export/fusion_files.py`` and ``scene/fusion_nodes.py`` are its views.

    ``suv`` is the PET in SUVbw (g/ml) on the PET grid; ``pet_ijk_to_lps`` that grid in the CT's
    patient LPS (``pet_to_ct @ pet.ijk_to_lps``). ``ct_on_ceus`` / ``suv_on_ceus`` are float32 on
    ``contrast_grid`` (the contrast panel's pixels), NaN where the slab leaves the volume.
    """

    analysis: AnalysisInputs
    ct: Volume
    pet: Volume | None
    suv: np.ndarray | None
    suv_factor: SuvFactor | None
    pet_ijk_to_lps: np.ndarray | None
    pet_to_ct_lps: np.ndarray | None
    registration: Registration
    registration_panel: str
    slab_mm: float
    contrast_grid: PlaneGrid
    ct_on_ceus: np.ndarray
    suv_on_ceus: np.ndarray | None
    rois: dict[str, RoiFusion]
    pet_segmentation: str | None = None
    warnings: list[str] = field(default_factory=list)

    def panel_shift_px(self, panel: str) -> tuple[int, int]:
        """(drow, dcol) taking a point of ``panel`` to the same anatomy on the registration panel."""
        return panel_shift_px(self.analysis, panel, self.registration_panel)

    def panel_matrix(self, panel: str) -> np.ndarray:
        """CEUS frame mm of a point on ``panel`` -> patient LPS mm."""
        return panel_matrix(self.registration.ceus_to_patient_lps, self.panel_shift_px(panel),
                            self.analysis.spacing_mm)


def panel_shift_px(analysis: AnalysisInputs, panel: str, registration_panel: str) -> tuple[int, int]:
    """(drow, dcol) from ``panel`` to ``registration_panel`` (0 when they are the same panel)."""
    if panel == registration_panel:
        return 0, 0
    drow, dcol = analysis.panel_offset_px()  # B-mode -> contrast
    return (-drow, -dcol) if panel == PANEL_CONTRAST else (drow, dcol)


def panel_matrix(ceus_to_patient_lps: np.ndarray, shift_px: tuple[int, int],
                 spacing_mm: tuple[float, float]) -> np.ndarray:
    """``ceus_to_patient_lps`` composed with the panel shift (pixels, converted with (dy, dx) mm)."""
    shift = np.eye(4)
    shift[0, 3], shift[1, 3] = shift_px[1] * spacing_mm[1], shift_px[0] * spacing_mm[0]
    return np.asarray(ceus_to_patient_lps, dtype=float) @ shift


def split_landmarks_spec(spec: str) -> tuple[str, str]:
    """``CEUS_POINTS=CT_POINTS`` -> the two paths (the ``=`` whose sides both exist, else the first)."""
    positions = [i for i, char in enumerate(spec) if char == "="]
    if not positions:
        raise InputError(f"--landmarks {spec!r} must be CEUS_POINTS=CT_POINTS")
    for position in positions:
        if os.path.isfile(spec[:position]) and os.path.isfile(spec[position + 1:]):
            return spec[:position], spec[position + 1:]
    return spec[:positions[0]], spec[positions[0] + 1:]


def fuse(analysis_dir: str, ct: str, pet: str | None = None, *, landmarks: str | None = None,
         transform: str | None = None, pet_segmentation: str | None = None, slab_mm: float = DEFAULT_SLAB_MM,
         pet_to_ct: str | None = None, transform_panel: str | None = None) -> Fusion:
    """Register the CEUS plane of ``analysis_dir`` in the CT's patient space and measure each ROI.

    ``landmarks`` is ``CEUS_POINTS=CT_POINTS``; or ``transform`` a Slicer/ITK/JSON file (exactly one
    of the two). ``slab_mm`` (mm) is the slab across the plane; ``pet_to_ct`` a rigid transform file
    (to-parent PET -> CT, as Slicer saves a transform with the PET under it) for a PET in another
    Frame of Reference. Every bad input is a one-line :class:`InputError`; bad data (an ROI outside
    the volumes) gives null measures with a reason.
    """
    if (landmarks is None) == (transform is None):
        raise InputError("give exactly one of --landmarks CEUS_POINTS=CT_POINTS and --transform FILE")
    # A slab of 0 holds no voxel centre: every ROI's PET and CT measures would be empty.
    if not (np.isfinite(slab_mm) and 0.0 < slab_mm <= MAX_SLAB_MM):
        raise InputError(f"--slab-mm must be more than 0 and at most {MAX_SLAB_MM:g} mm, got {slab_mm:g}")
    if transform_panel not in (None, PANEL_BMODE, PANEL_CONTRAST):
        raise InputError(f"--transform-panel must be {PANEL_BMODE} or {PANEL_CONTRAST}, got {transform_panel!r}")
    analysis = read_analysis(analysis_dir)
    registration, panel = _registration(analysis, landmarks, transform, transform_panel)
    ct_volume = read_volume(ct, "CT")
    warnings = list(registration.warnings)
    pet_volume = suv = factor = pet_grid = pet_to_ct_lps = None
    if pet is not None:
        pet_volume = read_volume(pet, "PT")
        factor = suv_factor_of(pet_volume)
        pet_to_ct_lps = _pet_to_ct(pet_volume, ct_volume, pet_to_ct)
        pet_grid = pet_to_ct_lps @ pet_volume.ijk_to_lps
        suv = np.multiply(pet_volume.values, np.float32(factor.factor), dtype=np.float32)
    elif pet_to_ct is not None:
        raise InputError("--pet-to-ct needs --pet", pet_to_ct)
    segments = None
    if pet_segmentation is not None:
        if suv is None:
            raise InputError("--pet-segmentation needs --pet", pet_segmentation)
        segments = read_pet_segmentation(pet_segmentation, suv.shape, pet_volume.ijk_to_lps)
        unmatched = sorted(set(segments) - {roi.name for roi in analysis.rois})
        if unmatched:
            warnings.append(f"segments {unmatched} are named like no CEUS ROI and are not measured")
    contrast = analysis.layout.contrast
    grid = PlaneGrid((float(contrast.y0), float(contrast.x0)), 1.0, (contrast.rows, contrast.columns),
                     analysis.spacing_mm)
    contrast_matrix = panel_matrix(registration.ceus_to_patient_lps,
                                   panel_shift_px(analysis, PANEL_CONTRAST, panel), analysis.spacing_mm)
    ct_on_ceus = sample_on_plane(ct_volume.values, ct_volume.ijk_to_lps, contrast_matrix, grid, slab_mm)
    suv_on_ceus = None if suv is None else sample_on_plane(suv, pet_grid, contrast_matrix, grid, slab_mm)
    fusion = Fusion(analysis, ct_volume, pet_volume, suv, factor, pet_grid, pet_to_ct_lps, registration, panel,
                    float(slab_mm), grid, ct_on_ceus, suv_on_ceus, {}, pet_segmentation, warnings)
    fusion.rois = _measure_rois(fusion, segments)
    if np.all(np.isnan(ct_on_ceus)):
        warnings.append("the CEUS plane (with its slab) lies outside the CT everywhere: check the registration")
    return fusion


def _registration(analysis: AnalysisInputs, landmarks: str | None, transform: str | None,
                  transform_panel: str | None) -> tuple[Registration, str]:
    from DCEUSResponseLib.io.landmarks import read_landmarks
    from DCEUSResponseLib.io.transforms import read_transform

    dual = analysis.layout.bmode is not None
    if transform is not None:
        registration = read_transform(transform)
        panel = transform_panel or (PANEL_BMODE if dual else PANEL_CONTRAST)
        if panel == PANEL_BMODE and not dual:
            raise InputError("--transform-panel bmode: the clip has a single display (no B-mode panel)", transform)
        return registration, panel
    if transform_panel is not None:
        raise InputError("--transform-panel is for --transform; with --landmarks the panel is the one the CEUS "
                         "landmarks lie on")
    ceus_path, ct_path = split_landmarks_spec(landmarks)
    ceus_points = read_landmarks(ceus_path, allow_pixels=True)
    ct_points = read_landmarks(ct_path)
    registration = register_landmarks(ceus_points, ct_points, analysis.frame_shape, analysis.spacing_mm)
    dy, dx = analysis.spacing_mm
    ceus_mm = np.array([pair.ceus_mm for pair in registration.landmarks])
    panel = analysis.panel_of(ceus_mm[:, 1] / dy, ceus_mm[:, 0] / dx)
    if panel is None:
        raise InputError("the CEUS landmarks are not all on one panel of the dual display (B-mode "
                         f"{_box(analysis.layout.bmode)}, contrast {_box(analysis.layout.contrast)}): place them "
                         "on one panel", ceus_path)
    return registration, panel


def _box(region) -> str:
    return f"rows {region.y0}-{region.y1} x columns {region.x0}-{region.x1}"


def _pet_to_ct(pet: Volume, ct: Volume, pet_to_ct: str | None) -> np.ndarray:
    if pet_to_ct is None:
        if pet.frame_of_reference_uid != ct.frame_of_reference_uid:
            raise InputError(f"the PET's Frame of Reference {pet.frame_of_reference_uid} is not the CT's "
                             f"{ct.frame_of_reference_uid} (not one PET/CT acquisition): give --pet-to-ct FILE",
                             pet.source)
        return np.eye(4)
    if pet_to_ct.lower().endswith(".json"):
        import json

        try:
            with open(pet_to_ct, encoding="utf-8") as stream:
                matrix = np.array(json.load(stream)["pet_to_ct_lps"], dtype=float)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f'expected {{"pet_to_ct_lps": 4 x 4 matrix}} ({type(error).__name__})',
                             pet_to_ct) from None
        return check_rigid(matrix, pet_to_ct)
    from DCEUSResponseLib.io.transforms import read_transform

    return read_transform(pet_to_ct).ceus_to_patient_lps  # the file's to-parent matrix: PET -> CT


def _measure_rois(fusion: Fusion, segments: dict[str, np.ndarray] | None) -> dict[str, RoiFusion]:
    analysis = fusion.analysis
    measured = {}
    for roi in analysis.rois:
        panel = analysis.roi_panel(roi)
        matrix = fusion.panel_matrix(panel)
        measured[roi.name] = _measure_roi(fusion, roi, panel, matrix, segments)
    reference = measured.get(analysis.reference) if analysis.reference else None
    reference_mean = reference.pet.SUVmean if reference is not None and reference.pet is not None else None
    for name, result in measured.items():
        if result.pet is None:
            continue
        tlr = tumour_to_liver_ratio(result.pet.SUVmax, reference_mean)
        measured[name] = replace(result, tlr=tlr)
    return measured


def _measure_roi(fusion: Fusion, roi: RoiMask, panel: str, matrix: np.ndarray,
                 segments: dict[str, np.ndarray] | None) -> RoiFusion:
    spacing = fusion.analysis.spacing_mm
    ct = fusion.ct
    ct_footprint = footprint(roi.mask, spacing, matrix, ct.values.shape, ct.ijk_to_lps, fusion.slab_mm)
    hu_mean = footprint_mean(ct.values, ct_footprint)
    centroid_frame = roi_centroid_frame_mm(roi.mask, spacing)
    centroid = tuple(float(v) for v in apply(matrix, centroid_frame))
    shift_row, shift_column = fusion.panel_shift_px(panel)
    on_registration_panel = centroid_frame + [shift_column * spacing[1], shift_row * spacing[0], 0.0]
    reasons = [f"CT: {ct_footprint.reason}"] if ct_footprint.reason else []
    pet = pet3d = None
    if fusion.suv is not None:
        pet_footprint = footprint(roi.mask, spacing, matrix, fusion.suv.shape, fusion.pet_ijk_to_lps, fusion.slab_mm)
        pet = footprint_pet(fusion.suv, fusion.pet_ijk_to_lps, pet_footprint)
        if pet.reason:
            reasons.append(f"PET: {pet.reason}")
        if segments is not None and roi.name in segments:
            pet3d = segment_pet(fusion.suv, fusion.pet_ijk_to_lps, segments[roi.name], np.asarray(centroid),
                                fusion.pet_segmentation or "")
    return RoiFusion(roi.name, panel, pet, hu_mean, ct_footprint.voxels, None, pet3d, centroid,
                     fusion.registration.expected_tre_mm(on_registration_panel), "; ".join(reasons) or None)
