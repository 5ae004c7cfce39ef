"""The synthetic patient (synthetic/patient.py, synthetic/dicom_ct_pet.py): anatomy, CEUS pose, truth,
and DICOM files that dciodvfy accepts."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from DCEUSResponseLib.app.demo import PANEL_SHAPE, demo_regions
from DCEUSResponseLib.synthetic.clips import make_clip
from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
from DCEUSResponseLib.synthetic.patient import (
    BENCHMARK_CT_GRID,
    BENCHMARK_PET_GRID,
    CI_CT_GRID,
    CI_PET_GRID,
    DEMO_CEUS_TO_PATIENT_LPS,
    GA68_HALF_LIFE_S,
    Tube,
    demo_roi_panel,
    make_patient,
)

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def demo_clip():
    """A still clip of the demo's regions with the demo's layout (dual display, ROIs on B-mode)."""
    return make_clip(demo_regions("baseline"), panel_shape=PANEL_SHAPE, n_frames=3, display="dual",
                     colour="gold", injection_time_s=2.0)


@pytest.fixture(scope="module")
def truth():
    return make_patient(demo_regions("baseline"))


def test_the_roi_panel_is_the_demo_clips_bmode_panel(demo_clip):
    panel = demo_roi_panel()
    actual = demo_clip.bmode_region
    assert (panel.x0, panel.y0, panel.x1, panel.y1) == (actual.x0, actual.y0, actual.x1, actual.y1)
    assert panel.spacing_mm == pytest.approx(demo_clip.spacing_mm)


def test_the_ceus_pose_is_rigid_and_oblique():
    rotation = DEMO_CEUS_TO_PATIENT_LPS[:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    assert np.all(np.abs(rotation) < 0.95)  # no frame axis along a patient axis: truly oblique
    np.testing.assert_array_equal(DEMO_CEUS_TO_PATIENT_LPS[3], [0, 0, 0, 1])


def test_lesion_centres_are_the_pose_of_the_2d_centres(truth):
    # lesion1 at panel (row 80, column 148.8) -> frame px (104, 164.8) -> frame mm (32.96, 20.8, 0)
    expected = DEMO_CEUS_TO_PATIENT_LPS @ [32.96, 20.8, 0.0, 1.0]
    np.testing.assert_allclose(truth.lesions["lesion1"].centre_lps, expected[:3], atol=1e-9)
    assert truth.lesions["lesion1"].radius_mm == pytest.approx(8.8)
    assert truth.lesions["necrosis"].radius_mm == pytest.approx(3.6)
    assert truth.lesions["lesion2"].radius_mm == pytest.approx(4.4)
    assert truth.reference == "liver"
    normal, origin = DEMO_CEUS_TO_PATIENT_LPS[:3, 2], DEMO_CEUS_TO_PATIENT_LPS[:3, 3]
    for lesion in truth.lesions.values():  # the plane cuts through every centre
        assert abs((np.asarray(lesion.centre_lps) - origin) @ normal) < 1e-9


def test_the_demo_roi_masks_lie_in_their_3d_lesions(truth, demo_clip):
    """Every ROI pixel of the real demo masks, put in the patient by the pose, falls in its sphere."""
    dy, dx = demo_clip.spacing_mm
    margins_mm = {region.name: region.roi_margin_px * dx for region in demo_regions("baseline")}
    for name in ("lesion1", "lesion2", "necrosis"):
        rows, columns = np.nonzero(demo_clip.roi_masks[name])
        frame_mm = np.stack([columns * dx, rows * dy, np.zeros(rows.size), np.ones(rows.size)])
        points = (DEMO_CEUS_TO_PATIENT_LPS @ frame_mm)[:3].T
        lesion = truth.lesions[name]
        distance = np.linalg.norm(points - np.asarray(lesion.centre_lps), axis=1)
        assert distance.max() <= lesion.radius_mm + 1e-9, name
        # and the ROI reaches the rim, less the margin the demo draws its ROIs inside a region
        assert distance.max() >= lesion.radius_mm - margins_mm[name] - 2 * dx, name


def test_lesions_lie_inside_the_liver_away_from_vessels(truth):
    liver = truth.structure("liver").shape
    directions = np.random.default_rng(0).normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    for lesion in truth.lesions.values():
        surface = np.asarray(lesion.centre_lps) + lesion.radius_mm * directions
        assert liver.contains(surface).all(), lesion.name
        for structure in truth.structures:
            if isinstance(structure.shape, Tube):
                gap = structure.shape.distance(surface).min() - structure.shape.radius_mm
                assert gap > 5.0, (lesion.name, structure.name)


def test_truth_values_at_known_points(truth):
    lesion1 = np.asarray(truth.lesions["lesion1"].centre_lps)
    in_plane = DEMO_CEUS_TO_PATIENT_LPS[:3, 0]
    assert truth.suv_at(lesion1) == 2.0 and truth.hu_at(lesion1) == 20.0  # necrotic core
    assert truth.suv_at(lesion1 + 6.0 * in_plane) == 25.0 and truth.hu_at(lesion1 + 6.0 * in_plane) == 80.0
    assert truth.suv_at(lesion1 + 9.5 * in_plane) == 5.5  # liver beyond the rim
    assert truth.suv_at(truth.lesions["lesion2"].centre_lps) == 15.0
    assert truth.suv_at(truth.lesions["liver"].centre_lps) == 5.5  # the reference region is liver
    assert truth.suv_at([85.0, 35.0, 30.0]) == 20.0  # spleen
    assert truth.hu_at([15.0, 45.0, 0.0]) == 150.0  # aorta
    assert truth.hu_at([0.0, -105.0, 0.0]) == -100.0  # subcutaneous fat
    assert truth.hu_at([0.0, -120.0, 0.0]) == -1000.0 and truth.suv_at([0.0, -120.0, 0.0]) == 0.0


def test_the_suv_factor_of_the_truth():
    pet = make_patient().pet
    assert pet.half_life_s == GA68_HALF_LIFE_S == 4062.6
    assert pet.uptake_s == 3450.0  # 10:02:30 -> 11:00:00
    assert pet.suv_factor == pytest.approx(72.5 * 1000 / (150e6 * 2 ** (-3450 / 4062.6)), rel=1e-12)


@pytest.mark.parametrize("grid", [CI_CT_GRID, CI_PET_GRID, BENCHMARK_CT_GRID, BENCHMARK_PET_GRID])
def test_every_grid_covers_the_body_and_the_lesions(grid, truth):
    slices, rows, columns = grid.shape
    corners = grid.ijk_to_lps @ np.array([[0, 0, 0, 1], [columns - 1, rows - 1, slices - 1, 1]]).T
    low, high = corners[:3].min(axis=1), corners[:3].max(axis=1)
    assert low[0] < -150 and high[0] > 150 and low[1] < -110 and high[1] > 110  # body ellipse in plane
    for lesion in truth.lesions.values():
        assert low[2] + 10 < lesion.centre_lps[2] < high[2] - 10


def test_benchmark_sizes_are_the_contracts():
    assert BENCHMARK_CT_GRID.shape == (300, 512, 512) and BENCHMARK_PET_GRID.shape == (250, 200, 200)


def test_written_pet_holds_every_suv_attribute(tmp_path, truth):
    files = write_patient(tmp_path, truth)
    names = sorted(os.listdir(files.pet_dir))
    assert len(names) == CI_PET_GRID.shape[0] and len(os.listdir(files.ct_dir)) == CI_CT_GRID.shape[0]
    ds = pydicom.dcmread(os.path.join(files.pet_dir, names[0]))
    item = ds.RadiopharmaceuticalInformationSequence[0]
    assert (ds.Units, ds.DecayCorrection, float(ds.PatientWeight)) == ("BQML", "START", 72.5)
    assert {"ATTN", "DECY"} <= set(ds.CorrectedImage)
    assert float(item.RadionuclideHalfLife) == 4062.6 and float(item.RadionuclideTotalDose) == 150e6
    assert item.RadionuclideCodeSequence[0].CodeMeaning == "^68^Gallium"
    assert item.RadiopharmaceuticalStartDateTime.startswith("20260115100230")
    ct = pydicom.dcmread(os.path.join(files.ct_dir, sorted(os.listdir(files.ct_dir))[0]))
    assert ct.FrameOfReferenceUID == ds.FrameOfReferenceUID == truth.frame_of_reference_uid
    assert ct.StudyInstanceUID == ds.StudyInstanceUID
    # stored x slope, read with pydicom alone, is the activity the truth gives at the voxel centres
    k = int(ds.InstanceNumber) - 1
    activity = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = truth.activity_at(CI_PET_GRID.slice_points(k))
    assert np.max(np.abs(activity - expected)) <= 0.5 * float(ds.RescaleSlope) * (1 + 1e-6)


def _dciodvfy(path: str) -> list[str]:
    result = subprocess.run([DCIODVFY, path], capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).splitlines()


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
def test_every_file_passes_dciodvfy_without_errors_or_warnings(tmp_path, truth, oblique):
    files = write_patient(tmp_path, truth, oblique=oblique)
    checked = 0
    for folder, iod in ((files.ct_dir, "CTImage"), (files.pet_dir, "PETImage")):
        for name in sorted(os.listdir(folder)):
            lines = _dciodvfy(os.path.join(folder, name))
            assert any(line.strip() == iod for line in lines), (name, lines[:3])  # the right IOD
            problems = [line for line in lines if line.startswith(("Error", "Warning"))]
            assert problems == [], (folder, name, problems)
            checked += 1
    assert checked == CI_CT_GRID.shape[0] + CI_PET_GRID.shape[0]
