"""The pose of the CEUS plane in the patient: a rigid fit to paired landmarks, its errors, rigidity checks.

Coordinates (``docs/fusion-and-follow-up-contract.md``): CEUS *frame* mm, where full-frame pixel (row r,
column c) lies at (c dx, r dy, 0), and patient LPS mm of the CT. The registration is the 4 x 4 matrix
``ceus_to_patient_lps``; Slicer's RAS form of it is ``F M F`` with ``F = diag(-1, -1, 1, 1)``.

Error estimates. ``fre_rms_mm`` is the RMS residual of the fitted pairs. ``tre_loo_rms_mm`` (the
contract's leave-one-out estimate) predicts each landmark from a fit to the others and compares it
with the *measured* landmark, so it contains that landmark's own localisation error: for a target
inside the landmark cloud (a lesion) it overestimates the true target error, by 2.5-3.5 x with 4-8
pairs and 1 mm noise (``Testing/Python/test_registration.py`` measures it). :func:`expected_tre_mm`
is the Fitzpatrick-West-Maurer (1998) prediction of the RMS target error at a point, which is within
a factor 2 of the true error at a lesion; read it beside the LOO figure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.spatial.frame import FrameGeometry

# Landmarks farther than this from the plane z = 0 are not on the CEUS frame (mm).
PLANE_TOLERANCE_MM = 0.5
# Below this ratio of the centred CEUS points' second to first singular value they are collinear.
COLLINEAR_RATIO = 0.05
# An RMS fiducial error above this is reported as a warning (mm).
FRE_WARNING_MM = 5.0
# Orthonormality tolerance of a given rotation (max |R^T R - I|) and of its last row.
RIGID_TOLERANCE = 1e-3
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # F: its own inverse


@dataclass(frozen=True)
class Landmarks:
    """Labelled points of one file: ``points`` is (N, 3) mm (LPS, or CEUS frame mm), or (N, 2)
    ``[row, column]`` full-frame pixels when ``unit == "pixel"`` (CEUS CSV files only)."""

    labels: tuple[str, ...]
    points: np.ndarray
    unit: str  # "mm" or "pixel"
    source: str


@dataclass(frozen=True)
class LandmarkPair:
    label: str
    ceus_mm: tuple[float, float, float]
    patient_mm: tuple[float, float, float]
    residual_mm: float


@dataclass
class Registration:
    """The CEUS plane's pose: ``ceus_to_patient_lps`` and, from landmarks, its pairs and errors (mm)."""

    ceus_to_patient_lps: np.ndarray
    method: str  # "landmarks" or "transform"
    landmarks: list[LandmarkPair] = field(default_factory=list)
    fre_rms_mm: float | None = None
    tre_loo_rms_mm: float | None = None
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    def to_patient_mm(self, frame_mm: np.ndarray) -> np.ndarray:
        """CEUS frame points (..., 3) mm mapped to patient LPS mm."""
        return apply(self.ceus_to_patient_lps, frame_mm)

    def expected_tre_mm(self, target_frame_mm: Sequence[float]) -> float | None:
        """Predicted RMS target error (mm) at a CEUS frame point; None for a given transform."""
        if not self.landmarks or self.fre_rms_mm is None:
            return None
        ceus = np.array([pair.ceus_mm for pair in self.landmarks])
        return expected_tre_mm(ceus, self.fre_rms_mm, np.asarray(target_frame_mm, dtype=float))


def pixel_to_frame_mm(rows: np.ndarray, columns: np.ndarray, spacing_mm: tuple[float, float]) -> np.ndarray:
    """Full-frame pixel positions (row r, column c) -> CEUS frame mm (c dx, r dy, 0), shape (..., 3).

    The frame geometry of :class:`DCEUSResponseLib.spatial.frame.FrameGeometry` with the clip's
    ``(dy, dx)``; fractional pixel positions (map pixel centres of a binned grid) are allowed.
    """
    return FrameGeometry(tuple(map(float, spacing_mm))).pixel_to_frame_mm(rows, columns)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A 4 x 4 affine matrix applied to points (..., 3)."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def rigid_fit(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The 4 x 4 rigid matrix (proper rotation, det +1, no scale) minimising sum |M p - q|^2.

    Kabsch / Horn through the SVD of the cross-covariance; the sign correction keeps a rotation
    when the points are coplanar (as CEUS points are), where the unconstrained optimum may be a
    reflection.
    """
    moving = np.asarray(moving, dtype=float)
    fixed = np.asarray(fixed, dtype=float)
    moving_centre, fixed_centre = moving.mean(axis=0), fixed.mean(axis=0)
    covariance = (moving - moving_centre).T @ (fixed - fixed_centre)
    u, _, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rotation = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = fixed_centre - rotation @ moving_centre
    return matrix


def is_collinear(points: np.ndarray) -> bool:
    """True when the second singular value of the centred points is below 5 % of the first."""
    centred = np.asarray(points, dtype=float) - np.mean(points, axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return bool(singular[0] == 0.0 or singular[1] < COLLINEAR_RATIO * singular[0])


def expected_tre_mm(ceus_mm: np.ndarray, fre_rms_mm: float, target_mm: np.ndarray) -> float | None:
    """Fitzpatrick-West-Maurer RMS target error (mm) at ``target_mm`` of a fit to ``ceus_mm``.

    TRE^2 = FLE^2 / N (1 + 1/3 sum_k d_k^2 / f_k^2), d_k the target's and f_k the landmarks' RMS
    distance to the k-th principal axis of the landmarks, FLE^2 = N / (N - 2) FRE^2. None with 3
    pairs (FLE cannot be estimated from an exact fit).
    """
    count = len(ceus_mm)
    if count <= 3:
        return None
    centred = ceus_mm - ceus_mm.mean(axis=0)
    offset = np.asarray(target_mm, dtype=float) - ceus_mm.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)
    ratio = 0.0
    for axis in axes.T:
        landmark_d2 = np.mean(np.sum(centred ** 2, axis=1) - (centred @ axis) ** 2)
        ratio += (offset @ offset - (offset @ axis) ** 2) / landmark_d2
    fle2 = fre_rms_mm ** 2 * count / (count - 2)
    return float(np.sqrt(fle2 / count * (1.0 + ratio / 3.0)))


def ceus_points_mm(landmarks: Landmarks, frame_shape: tuple[int, int], spacing_mm: tuple[float, float]) -> np.ndarray:
    """CEUS landmarks as frame mm (N, 3), checked on the frame: |z| < 0.5 mm and inside its pixels."""
    if landmarks.unit == "pixel":
        rows, columns = landmarks.points[:, 0], landmarks.points[:, 1]
        points = pixel_to_frame_mm(rows, columns, spacing_mm)
    else:
        points = np.asarray(landmarks.points, dtype=float)
        rows, columns = points[:, 1] / spacing_mm[0], points[:, 0] / spacing_mm[1]
        off_plane = np.abs(points[:, 2]) >= PLANE_TOLERANCE_MM
        if off_plane.any():
            index = int(np.argmax(off_plane))
            raise InputError(f"CEUS landmark {landmarks.labels[index]!r} is {points[index, 2]:.3g} mm off the CEUS "
                             f"frame (z must be within +-{PLANE_TOLERANCE_MM} mm)", landmarks.source)
    n_rows, n_columns = frame_shape
    outside = (rows < -0.5) | (rows > n_rows - 0.5) | (columns < -0.5) | (columns > n_columns - 0.5)
    if outside.any():
        index = int(np.argmax(outside))
        raise InputError(f"CEUS landmark {landmarks.labels[index]!r} at pixel (row {rows[index]:.1f}, column "
                         f"{columns[index]:.1f}) is outside the {n_rows} x {n_columns} frame", landmarks.source)
    return points


def _paired(ceus: Landmarks, patient: Landmarks) -> tuple[list[str], list[int], list[int]]:
    for points in (ceus, patient):
        seen: set[str] = set()
        for label in points.labels:
            if label in seen:
                raise InputError(f"landmark label {label!r} appears twice", points.source)
            seen.add(label)
    missing = [label for label in ceus.labels if label not in patient.labels]
    extra = [label for label in patient.labels if label not in ceus.labels]
    if missing or extra:
        where, labels = (patient.source, missing) if missing else (ceus.source, extra)
        raise InputError(f"landmark labels {labels} have no partner (the other file is "
                         f"{ceus.source if missing else patient.source})", where)
    labels = list(ceus.labels)
    return labels, list(range(len(labels))), [patient.labels.index(label) for label in labels]


def register_landmarks(ceus: Landmarks, patient: Landmarks, frame_shape: tuple[int, int],
                       spacing_mm: tuple[float, float]) -> Registration:
    """Rigid least-squares registration of CEUS landmarks onto patient (CT) LPS landmarks.

    ``frame_shape`` is the clip's full frame (rows, columns) and ``spacing_mm`` its ``(dy, dx)``.
    Raises :class:`InputError` for fewer than 3 pairs, collinear CEUS points, duplicate or unpaired
    labels and CEUS points off the frame; warns when ``fre_rms_mm`` exceeds 5 mm.
    """
    labels, ceus_index, patient_index = _paired(ceus, patient)
    if len(labels) < 3:
        raise InputError(f"{len(labels)} landmark pairs: at least 3 are needed for a rigid registration", ceus.source)
    if patient.unit != "mm":
        raise InputError("patient landmarks must be LPS mm (label,x,y,z), not pixels", patient.source)
    ceus_mm = ceus_points_mm(ceus, frame_shape, spacing_mm)[ceus_index]
    patient_mm = np.asarray(patient.points, dtype=float)[patient_index]
    if is_collinear(ceus_mm):
        raise InputError("the CEUS landmarks are collinear (second singular value of the centred points below "
                         f"{COLLINEAR_RATIO:.0%} of the first): the plane's rotation about their line is undetermined",
                         ceus.source)
    matrix = rigid_fit(ceus_mm, patient_mm)
    residuals = np.linalg.norm(apply(matrix, ceus_mm) - patient_mm, axis=1)
    fre = float(np.sqrt(np.mean(residuals ** 2)))
    warnings = []
    if fre > FRE_WARNING_MM:
        warnings.append(f"fiducial registration error {fre:.2f} mm exceeds {FRE_WARNING_MM:g} mm: check the "
                        "landmark pairs (labels swapped, points on another structure)")
    tre, loo_warning = _leave_one_out_rms(ceus_mm, patient_mm)
    warnings.extend(loo_warning)
    pairs = [LandmarkPair(label, tuple(map(float, c)), tuple(map(float, p)), float(r))
             for label, c, p, r in zip(labels, ceus_mm, patient_mm, residuals)]
    return Registration(matrix, "landmarks", pairs, fre, tre, warnings, f"{ceus.source}={patient.source}")


def _leave_one_out_rms(ceus_mm: np.ndarray, patient_mm: np.ndarray) -> tuple[float | None, list[str]]:
    count = len(ceus_mm)
    if count <= 3:
        return None, []
    errors = []
    for left_out in range(count):
        keep = np.arange(count) != left_out
        if is_collinear(ceus_mm[keep]):
            return None, ["leave-one-out TRE not computed: without one of the landmarks the others are collinear"]
        predicted = apply(rigid_fit(ceus_mm[keep], patient_mm[keep]), ceus_mm[left_out])
        errors.append(float(np.sum((predicted - patient_mm[left_out]) ** 2)))
    return float(np.sqrt(np.mean(errors))), []


def check_rigid(matrix: np.ndarray, source: str, tolerance: float = RIGID_TOLERANCE) -> np.ndarray:
    """``matrix`` as a float 4 x 4 array if it is rigid (orthonormal proper rotation within
    ``tolerance``, last row 0 0 0 1); otherwise one-line :class:`InputError` naming ``source``."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InputError(f"the transform must be a finite 4 x 4 matrix, got shape {matrix.shape}", source)
    rotation = matrix[:3, :3]
    deviation = float(np.max(np.abs(rotation.T @ rotation - np.eye(3))))
    if deviation > tolerance:
        scales = np.linalg.svd(rotation, compute_uv=False)
        raise InputError(f"the transform is not rigid (scale or shear: singular values {np.round(scales, 4).tolist()}, "
                         f"|R^T R - I| = {deviation:.2g} > {tolerance:g})", source)
    if np.linalg.det(rotation) < 0:
        raise InputError("the transform is a reflection (determinant -1), not a rigid motion", source)
    if np.max(np.abs(matrix[3] - [0.0, 0.0, 0.0, 1.0])) > tolerance:
        raise InputError(f"the transform's last row is {matrix[3].tolist()}, not 0 0 0 1", source)
    return matrix


def ras_to_lps_matrix(matrix_ras: np.ndarray) -> np.ndarray:
    """A transform between RAS spaces as the same transform between LPS spaces: F M F."""
    return LPS_FROM_RAS @ np.asarray(matrix_ras, dtype=float) @ LPS_FROM_RAS


def rotation_angle_deg(matrix_a: np.ndarray, matrix_b: np.ndarray) -> float:
    """Angle (degrees) of the rotation between two rigid matrices' rotation parts."""
    relative = matrix_a[:3, :3].T @ matrix_b[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))))
