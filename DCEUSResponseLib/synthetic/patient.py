"""The demo patient in 3D: an abdomen with known CT numbers (HU) and 68Ga-DOTATATE uptake (SUVbw).

The anatomy is analytic: every structure is an ellipsoid or a tube in patient LPS mm, painted in
order (later ones over earlier ones), so :meth:`PatientTruth.hu_at` and :meth:`PatientTruth.suv_at`
give the truth at any point and the voxels of the written series are exactly those functions at
the voxel centres (no partial-volume blur): the truth of SUVmax / SUVmean / SUVpeak over any region
is the same function on the same (or a finer) grid.

The CEUS plane of the demo clips lies in this patient at :data:`DEMO_CEUS_TO_PATIENT_LPS` (an
oblique subcostal view through the right liver lobe): :func:`patient_lesions_3d` puts each demo
lesion's 3D sphere at that pose applied to its 2D centre in CEUS frame mm, so the plane cuts
through every lesion's centre and its in-plane radius equals the 2D one.

Values (typical 68Ga-DOTATATE PET/CT, portal-venous contrast CT): fat -100 HU / SUV 0.4, soft tissue
40 HU / 1.0, liver 60 HU / 5.5, spleen 50 HU / 20, vessels 150 HU / 1.8 (blood pool), vertebra
400 HU / 1.5, lesion1 80 HU / 25 with a necrotic core 20 HU / 2, lesion2 70 HU / 15.
The DICOM writers are :mod:`DCEUSResponseLib.synthetic.dicom_ct_pet`.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from DCEUSResponseLib.clip import UltrasoundRegion

GA68_HALF_LIFE_S = 4062.6  # 67.71 min
AIR_HU = -1000.0

# name: (HU, SUVbw) of the demo's CEUS regions as 3D lesions; regions not named here are not painted
DEMO_LESION_VALUES = {"lesion1": (80.0, 25.0), "necrosis": (20.0, 2.0), "lesion2": (70.0, 15.0)}
LIVER_HU, LIVER_SUV = 60.0, 5.5


def _rotation(x_deg: float, y_deg: float, z_deg: float) -> np.ndarray:
    """R = Rz @ Ry @ Rx (degrees): rotate about x first, then y, then z (fixed axes)."""
    ax, ay, az = np.radians([x_deg, y_deg, z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _ceus_pose() -> np.ndarray:
    # An axial view with the probe anterior is the identity (frame x -> patient left, depth ->
    # posterior); tilted 25 deg cranially about x, 10 deg about y and turned -20 deg about z, it
    # is an oblique subcostal view. The B-mode panel's centre (frame mm (27.2, 24.8)) goes into
    # the right lobe at LPS (-70, -20, 15).
    rotation = _rotation(25.0, 10.0, -20.0)
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = np.array([-70.0, -20.0, 15.0]) - rotation @ np.array([27.2, 24.8, 0.0])
    return pose


DEMO_CEUS_TO_PATIENT_LPS = _ceus_pose()


@dataclass(frozen=True)
class Ellipsoid:
    """Points with ``|R^T (p - centre) / radii| <= 1`` (``rotation`` R, columns the axes in LPS)."""

    centre_lps: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    rotation: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def contains(self, points_lps: np.ndarray) -> np.ndarray:
        local = points_lps - np.asarray(self.centre_lps)
        rotation = np.asarray(self.rotation, dtype=float)
        if not np.array_equal(rotation, np.eye(3)):
            local = local @ rotation
        local /= np.asarray(self.radii_mm)
        np.square(local, out=local)
        return np.sum(local, axis=-1) <= 1.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box (low, high) in LPS mm holding the ellipsoid."""
        extent = np.abs(np.asarray(self.rotation, dtype=float)) @ np.asarray(self.radii_mm)
        return np.asarray(self.centre_lps) - extent, np.asarray(self.centre_lps) + extent


@dataclass(frozen=True)
class Tube:
    """Points within ``radius_mm`` of the segment ``start_lps`` - ``end_lps`` (a capsule)."""

    start_lps: tuple[float, float, float]
    end_lps: tuple[float, float, float]
    radius_mm: float

    def distance(self, points_lps: np.ndarray) -> np.ndarray:
        start, end = np.asarray(self.start_lps), np.asarray(self.end_lps)
        axis = end - start
        t = np.clip(((points_lps - start) @ axis) / float(axis @ axis), 0.0, 1.0)
        return np.linalg.norm(points_lps - (start + t[..., None] * axis), axis=-1)

    def contains(self, points_lps: np.ndarray) -> np.ndarray:
        return self.distance(points_lps) <= self.radius_mm

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box (low, high) in LPS mm holding the tube."""
        ends = np.array([self.start_lps, self.end_lps], dtype=float)
        return ends.min(axis=0) - self.radius_mm, ends.max(axis=0) + self.radius_mm


@dataclass(frozen=True)
class Structure:
    """One painted structure: its shape, CT number (HU) and SUVbw."""

    name: str
    shape: Ellipsoid | Tube
    hu: float
    suv: float


@dataclass(frozen=True)
class Lesion3D:
    """A demo region as a sphere in the patient: centre (LPS mm), radius (mm), HU and SUVbw."""

    name: str
    centre_lps: tuple[float, float, float]
    radius_mm: float
    hu: float
    suv: float

    def structure(self) -> Structure:
        r = self.radius_mm
        return Structure(self.name, Ellipsoid(self.centre_lps, (r, r, r)), self.hu, self.suv)


@dataclass(frozen=True)
class PetAcquisition:
    """The PET's dose and times: the inputs of the SUVbw factor, as written into the series."""

    weight_kg: float = 72.5
    dose_bq: float = 150.0e6
    half_life_s: float = GA68_HALF_LIFE_S
    injection: _dt.datetime = _dt.datetime(2026, 1, 15, 10, 2, 30)
    scan_start: _dt.datetime = _dt.datetime(2026, 1, 15, 11, 0, 0)  # first bed's acquisition = Series Time
    bed_duration_s: float = 150.0

    @property
    def uptake_s(self) -> float:
        return (self.scan_start - self.injection).total_seconds()

    @property
    def suv_factor(self) -> float:
        """SUVbw per Bq/ml: weight [g] / (dose decayed to the scan start [Bq]) (Decay Correction START)."""
        return self.weight_kg * 1000.0 / (self.dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s))


@dataclass(frozen=True)
class VolumeGrid:
    """A voxel grid: ``shape`` (slices, rows, columns), ``spacing_mm`` (column, row, slice), centred
    at ``centre_lps`` with ``rotation`` columns = the row, column and slice-normal directions."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    centre_lps: tuple[float, float, float] = (0.0, 0.0, 15.0)
    rotation: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    @property
    def ijk_to_lps(self) -> np.ndarray:
        """(column i, row j, slice k, 1) -> LPS mm."""
        rotation = np.asarray(self.rotation, dtype=float)
        slices, rows, columns = self.shape
        steps = rotation * np.asarray(self.spacing_mm)[None, :]
        half = (np.array([columns, rows, slices]) - 1) / 2.0
        matrix = np.eye(4)
        matrix[:3, :3] = steps
        matrix[:3, 3] = np.asarray(self.centre_lps) - steps @ half
        return matrix

    def slice_points(self, k: int) -> np.ndarray:
        """LPS mm of the voxel centres of slice ``k``, shape (rows, columns, 3)."""
        _, rows, columns = self.shape
        j, i = np.mgrid[0:rows, 0:columns].astype(np.float64)
        matrix = self.ijk_to_lps
        return (matrix[:3, 0] * i[..., None] + matrix[:3, 1] * j[..., None]
                + matrix[:3, 2] * float(k) + matrix[:3, 3])

    def oblique(self, x_deg: float = 15.0, z_deg: float = 10.0) -> VolumeGrid:
        """The same grid turned about x then z (an oblique acquisition: a tilted gantry, a tilted patient)."""
        rotation = _rotation(x_deg, 0.0, z_deg) @ np.asarray(self.rotation)
        return VolumeGrid(self.shape, self.spacing_mm, self.centre_lps, tuple(map(tuple, rotation)))


# small for CI; the benchmark's sizes (contract: fuse on a 512 x 512 x 300 CT and 200 x 200 x 250 PET)
CI_CT_GRID = VolumeGrid((60, 128, 128), (3.0, 3.0, 3.0))
CI_PET_GRID = VolumeGrid((45, 80, 80), (4.0, 4.0, 4.0))
BENCHMARK_CT_GRID = VolumeGrid((300, 512, 512), (0.75, 0.75, 0.6))
BENCHMARK_PET_GRID = VolumeGrid((250, 200, 200), (1.6, 1.6, 0.72))


def anatomy() -> list[Structure]:
    """The abdomen without lesions, in painting order (LPS: +x left, +y posterior, +z superior)."""
    tall = 1.0e6  # along z the trunk outlasts any field of view
    return [
        Structure("fat", Ellipsoid((0.0, 0.0, 0.0), (150.0, 110.0, tall)), -100.0, 0.4),
        Structure("soft_tissue", Ellipsoid((0.0, 0.0, 0.0), (135.0, 95.0, tall)), 40.0, 1.0),
        Structure("vertebra", Ellipsoid((0.0, 72.0, 0.0), (20.0, 17.0, tall)), 400.0, 1.5),
        Structure("liver", Ellipsoid((-60.0, -5.0, 10.0), (65.0, 65.0, 75.0)), LIVER_HU, LIVER_SUV),
        Structure("spleen", Ellipsoid((85.0, 35.0, 30.0), (28.0, 40.0, 45.0)), 50.0, 20.0),
        Structure("aorta", Tube((15.0, 45.0, -200.0), (15.0, 45.0, 200.0), 12.0), 150.0, 1.8),
        Structure("inferior_vena_cava", Tube((-25.0, 40.0, -200.0), (-25.0, 40.0, 200.0), 11.0), 150.0, 1.8),
        Structure("portal_vein", Tube((-10.0, 25.0, -15.0), (-70.0, 20.0, 35.0), 7.0), 150.0, 1.8),
    ]


def patient_lesions_3d(regions: Sequence, roi_panel: UltrasoundRegion,
                       ceus_to_patient_lps: np.ndarray = DEMO_CEUS_TO_PATIENT_LPS,
                       values: dict[str, tuple[float, float]] | None = None) -> dict[str, Lesion3D]:
    """Every CEUS region (``PerfusionRegion``s, e.g. ``app.demo.demo_regions(exam)``) as a 3D sphere.

    A region's centre (row, column) px on ``roi_panel`` (the panel the ROIs are drawn on, e.g. the
    clip's ``bmode_region``) is at frame mm ``((x0 + column) dx, (y0 + row) dy, 0)``; its 3D centre
    is ``ceus_to_patient_lps`` applied to that point, its radius the 2D radius in mm. ``values``
    gives (HU, SUVbw) by region name (default :data:`DEMO_LESION_VALUES`); a background region
    (the liver reference) gets the liver's values and is not painted (see :func:`make_patient`).
    """
    values = DEMO_LESION_VALUES if values is None else values
    if roi_panel.spacing_mm is None:
        raise ValueError("roi_panel must be calibrated (spacing_mm)")
    row_mm, column_mm = roi_panel.spacing_mm
    lesions = {}
    for region in regions:
        row, column = region.center
        frame_mm = np.array([(roi_panel.x0 + column) * column_mm, (roi_panel.y0 + row) * row_mm, 0.0, 1.0])
        centre = tuple(float(v) for v in (np.asarray(ceus_to_patient_lps) @ frame_mm)[:3])
        hu, suv = (LIVER_HU, LIVER_SUV) if region.is_background else values.get(region.name, (None, None))
        if hu is None:
            continue
        lesions[region.name] = Lesion3D(region.name, centre, float(region.radius) * column_mm, hu, suv)
    return lesions


@dataclass
class PatientTruth:
    """What the synthetic patient is: structures, lesions, the CEUS pose and the PET's SUV inputs."""

    structures: list[Structure]
    lesions: dict[str, Lesion3D]
    reference: str | None
    ceus_to_patient_lps: np.ndarray
    pet: PetAcquisition = field(default_factory=PetAcquisition)
    frame_of_reference_uid: str = "1.2.826.0.1.3680043.8.498.20260115.1"
    study_instance_uid: str = "1.2.826.0.1.3680043.8.498.20260115.2"
    patient_id: str = "DEMO-001"
    patient_name: str = "Demo^Patient"

    @property
    def suv_factor(self) -> float:
        """SUVbw per Bq/ml of the written PET (activity -> SUV)."""
        return self.pet.suv_factor

    def _paint(self, points_lps: np.ndarray, attribute: str, outside: float) -> np.ndarray:
        points = np.asarray(points_lps, dtype=float)
        result = np.full(points.shape[:-1], outside, dtype=np.float64)
        flat = points.reshape(-1, 3)
        low, high = flat.min(axis=0), flat.max(axis=0)
        for structure in self.structures:
            shape_low, shape_high = structure.shape.bounds()
            if np.any(shape_low > high) or np.any(shape_high < low):
                continue  # nowhere near these points (most slices miss the small structures)
            result[structure.shape.contains(points)] = getattr(structure, attribute)
        return result

    def hu_at(self, points_lps: np.ndarray) -> np.ndarray:
        """CT number (HU) at LPS points of shape (..., 3); air outside the body."""
        return self._paint(points_lps, "hu", AIR_HU)

    def suv_at(self, points_lps: np.ndarray) -> np.ndarray:
        """SUVbw at LPS points of shape (..., 3); 0 outside the body."""
        return self._paint(points_lps, "suv", 0.0)

    def activity_at(self, points_lps: np.ndarray) -> np.ndarray:
        """Activity concentration (Bq/ml, decay-corrected to the scan start) at LPS points."""
        return self.suv_at(points_lps) / self.suv_factor

    def structure(self, name: str) -> Structure:
        return next(s for s in self.structures if s.name == name)


def make_patient(regions: Sequence | None = None, roi_panel: UltrasoundRegion | None = None,
                 ceus_to_patient_lps: np.ndarray = DEMO_CEUS_TO_PATIENT_LPS,
                 pet: PetAcquisition | None = None) -> PatientTruth:
    """The demo patient with the CEUS ``regions`` as lesions (none when ``regions`` is None).

    ``roi_panel`` defaults to the demo clip's B-mode panel (where its ROIs are drawn):
    :func:`demo_roi_panel`.
    """
    lesions: dict[str, Lesion3D] = {}
    reference = None
    if regions is not None:
        lesions = patient_lesions_3d(regions, roi_panel or demo_roi_panel(), ceus_to_patient_lps)
        reference = next((r.name for r in regions if r.is_background and r.name in lesions), None)
    painted = [lesion.structure() for name, lesion in lesions.items() if name != reference]
    return PatientTruth(anatomy() + painted, lesions, reference, np.array(ceus_to_patient_lps, dtype=float),
                        pet or PetAcquisition())


def demo_roi_panel() -> UltrasoundRegion:
    """The B-mode panel of the demo's dual-display clip (200 x 240 px at 0.2 mm, at column 16, row 24)."""
    # Fixed by synthetic.clips' frame layout; Testing/Python/test_synthetic_patient.py checks it
    # against a real demo clip so the two cannot drift apart.
    return UltrasoundRegion(16, 24, 16 + 240 - 1, 24 + 200 - 1, (0.2, 0.2), 1, 1)
