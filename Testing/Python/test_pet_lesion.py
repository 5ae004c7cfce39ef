"""Per-lesion PET / CT measures on spheres of known SUV cut by a known CEUS plane (analytic truth)."""
import numpy as np
import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.pet.lesion import (
    distance_to_segment_mm, footprint_mean, footprint_pet, roi_centroid_frame_mm, roi_centroid_patient_mm,
    segment_pet, tumour_to_liver_ratio)
from DCEUSResponseLib.spatial.registration import apply
from DCEUSResponseLib.spatial.resample import footprint, sphere_offsets

SPACING_PET_MM = 2.0
SHAPE = (50, 60, 70)  # slices, rows, columns of 2 mm: 100 x 120 x 140 mm
PET_IJK_TO_LPS = np.diag([SPACING_PET_MM, SPACING_PET_MM, SPACING_PET_MM, 1.0])
PET_IJK_TO_LPS[:3, 3] = [-70.0, -60.0, -50.0]
LESION_CENTRE_LPS = np.array([-70.0 + 2 * 35, -60.0 + 2 * 30, -50.0 + 2 * 25])  # a voxel centre: (0, 0, 0)
LESION_RADIUS_MM, LESION_SUV, LIVER_SUV = 10.0, 8.0, 1.5
FRAME_SPACING = (0.2, 0.2)
FRAME = (500, 600)


def voxel_centres_lps(shape=SHAPE, ijk_to_lps=PET_IJK_TO_LPS) -> np.ndarray:
    k, j, i = np.indices(shape)
    return apply(ijk_to_lps, np.stack([i, j, k], axis=-1).astype(float))


def pet_volume() -> tuple[np.ndarray, np.ndarray]:
    """Liver background SUV 1.5 and a 2 cm lesion of SUV 8 (voxel centres within 10 mm)."""
    inside = np.linalg.norm(voxel_centres_lps() - LESION_CENTRE_LPS, axis=-1) <= LESION_RADIUS_MM
    return np.where(inside, LESION_SUV, LIVER_SUV).astype(np.float32), inside


def oblique_pose(angles_deg=(40.0, -25.0, 15.0)) -> np.ndarray:
    """The CEUS plane through the lesion centre, frame pixel (250, 300) (frame mm (60, 50)) on it."""
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    matrix[:3, 3] = LESION_CENTRE_LPS - matrix[:3, :3] @ [60.0, 50.0, 0.0]
    return matrix


def disc(radius_px: float, centre=(250, 300)) -> np.ndarray:
    rows, columns = np.indices(FRAME)
    return (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius_px ** 2


def test_a_roi_inside_the_lesion_measures_its_suv_exactly():
    suv, _ = pet_volume()
    pose = oblique_pose()
    selected = footprint(disc(20), FRAME_SPACING, pose, SHAPE, PET_IJK_TO_LPS, 5.0)  # 4 mm radius
    measures = footprint_pet(suv, PET_IJK_TO_LPS, selected)
    assert measures.voxels == selected.voxels > 0 and measures.reason is None
    assert measures.SUVmax == LESION_SUV and measures.SUVmean == LESION_SUV
    # every voxel within 6.2 mm of the centre voxel lies in the 10 mm lesion: the peak is the lesion's SUV
    assert measures.SUVpeak == pytest.approx(LESION_SUV, abs=1e-12)


def test_a_roi_larger_than_the_lesion_mixes_lesion_and_liver_as_its_voxels_say():
    suv, inside = pet_volume()
    pose = oblique_pose()
    selected = footprint(disc(100), FRAME_SPACING, pose, SHAPE, PET_IJK_TO_LPS, 5.0)  # 20 mm radius
    frame = apply(np.linalg.inv(pose), voxel_centres_lps())  # every voxel centre in CEUS frame mm
    offset = np.hypot(frame[..., 0] - 60.0, frame[..., 1] - 50.0)
    near = (np.abs(frame[..., 2]) <= 2.5) & (offset <= 20.0 - 0.1)  # the disc, clear of pixel round-off
    lesion = np.count_nonzero(near & inside)
    assert selected.voxels == pytest.approx(np.count_nonzero(near), rel=0.02)
    measures = footprint_pet(suv, PET_IJK_TO_LPS, selected)
    n_lesion = np.count_nonzero(inside[tuple(selected.indices.T)])
    assert n_lesion == pytest.approx(lesion, abs=2)
    assert measures.SUVmax == LESION_SUV
    assert measures.SUVmean == pytest.approx((n_lesion * LESION_SUV + (selected.voxels - n_lesion) * LIVER_SUV)
                                             / selected.voxels, rel=1e-12)
    assert measures.SUVpeak == pytest.approx(LESION_SUV, abs=1e-12)


def test_suvpeak_of_a_hot_voxel_is_its_share_of_the_sphere():
    suv = np.zeros(SHAPE, dtype=np.float32)
    suv[25, 30, 35] = 1000.0
    selected = footprint(disc(100), FRAME_SPACING, oblique_pose(), SHAPE, PET_IJK_TO_LPS, 5.0)
    measures = footprint_pet(suv, PET_IJK_TO_LPS, selected)
    count = len(sphere_offsets(PET_IJK_TO_LPS, 6.2))  # 123 voxels of 8 mm^3 = 0.98 cm^3
    assert count == 123
    assert measures.SUVmax == 1000.0 and measures.SUVpeak == pytest.approx(1000.0 / count)


def test_tlr_and_hu_mean_and_the_reference():
    suv, _ = pet_volume()
    pose = oblique_pose()
    lesion = footprint_pet(suv, PET_IJK_TO_LPS, footprint(disc(20), FRAME_SPACING, pose, SHAPE, PET_IJK_TO_LPS))
    liver_roi = disc(40, centre=(250, 50))  # 50 mm from the lesion, liver only
    liver = footprint_pet(suv, PET_IJK_TO_LPS, footprint(liver_roi, FRAME_SPACING, pose, SHAPE, PET_IJK_TO_LPS))
    assert liver.SUVmean == LIVER_SUV
    assert tumour_to_liver_ratio(lesion.SUVmax, liver.SUVmean) == pytest.approx(LESION_SUV / LIVER_SUV)
    assert tumour_to_liver_ratio(lesion.SUVmax, None) is None and tumour_to_liver_ratio(None, 1.0) is None
    # CT: 1 mm voxels, a 60 HU liver and a 20 HU lesion of the same size
    ct_ijk = np.diag([1.0, 1.0, 1.0, 1.0])
    ct_ijk[:3, 3] = [-70.0, -60.0, -50.0]
    ct_shape = (100, 120, 140)
    inside = np.linalg.norm(voxel_centres_lps(ct_shape, ct_ijk) - LESION_CENTRE_LPS, axis=-1) <= LESION_RADIUS_MM
    ct = np.where(inside, 20.0, 60.0).astype(np.float32)
    assert footprint_mean(ct, footprint(disc(20), FRAME_SPACING, pose, ct_shape, ct_ijk)) == 20.0
    assert footprint_mean(ct, footprint(liver_roi, FRAME_SPACING, pose, ct_shape, ct_ijk)) == 60.0


def test_a_footprint_outside_the_pet_gives_null_measures_with_a_reason():
    suv, _ = pet_volume()
    far = oblique_pose()
    far[:3, 3] += [0.0, 0.0, 400.0]
    measures = footprint_pet(suv, PET_IJK_TO_LPS, footprint(disc(20), FRAME_SPACING, far, SHAPE, PET_IJK_TO_LPS))
    assert (measures.SUVmax, measures.SUVmean, measures.SUVpeak, measures.voxels) == (None, None, None, 0)
    assert "does not cross the volume" in measures.reason
    assert footprint_mean(suv, footprint(disc(20), FRAME_SPACING, far, SHAPE, PET_IJK_TO_LPS)) is None


def test_the_roi_centroid_maps_to_the_patient():
    pose = oblique_pose()
    assert np.allclose(roi_centroid_frame_mm(disc(30), FRAME_SPACING), [60.0, 50.0, 0.0])
    assert np.allclose(roi_centroid_patient_mm(disc(30), FRAME_SPACING, pose), LESION_CENTRE_LPS)
    square = np.zeros(FRAME, dtype=bool)
    square[10:21, 100:131] = True  # rows 10..20, columns 100..130: centroid (15, 115)
    assert np.allclose(roi_centroid_frame_mm(square, (0.5, 0.25)), [115 * 0.25, 15 * 0.5, 0.0])


def test_segment_measures_of_the_lesion():
    suv, inside = pet_volume()
    measures = segment_pet(suv, PET_IJK_TO_LPS, inside, LESION_CENTRE_LPS, "seg.nrrd")
    assert measures.SUVmax == LESION_SUV and measures.SUVmean == LESION_SUV
    assert measures.SUVpeak == pytest.approx(LESION_SUV, abs=1e-12)
    assert measures.volume_ml == pytest.approx(np.count_nonzero(inside) * 0.008)
    assert measures.volume_ml == pytest.approx(4 / 3 * np.pi * 1.0 ** 3, rel=0.05)  # a 2 cm sphere
    assert measures.TLU == pytest.approx(LESION_SUV * measures.volume_ml)
    assert measures.distance_mm == 0.0


def test_distance_to_the_segment_outside():
    _, inside = pet_volume()
    indices = np.argwhere(inside)
    # along +x from the centre, the last segment voxel centre is at 10 mm (a multiple of the 2 mm spacing)
    for distance in (13.0, 25.0, 40.0):
        point = LESION_CENTRE_LPS + [distance, 0.0, 0.0]
        assert distance_to_segment_mm(inside, PET_IJK_TO_LPS, indices, point) == pytest.approx(distance - 10.0)
    oblique = LESION_CENTRE_LPS + 30.0 * np.array([1.0, 2.0, 2.0]) / 3.0
    assert distance_to_segment_mm(inside, PET_IJK_TO_LPS, indices, oblique) == pytest.approx(20.0, abs=np.sqrt(3))
    inside_point = LESION_CENTRE_LPS + [5.0, -3.0, 2.0]
    assert distance_to_segment_mm(inside, PET_IJK_TO_LPS, indices, inside_point) == 0.0


def test_a_segment_on_another_grid_is_an_error_and_an_empty_segment_is_null():
    suv, inside = pet_volume()
    with pytest.raises(InputError, match=r"seg.nrrd: segmentation grid \[70, 60, 49\]"):
        segment_pet(suv, PET_IJK_TO_LPS, inside[:-1], LESION_CENTRE_LPS, "seg.nrrd")
    empty = segment_pet(suv, PET_IJK_TO_LPS, np.zeros_like(inside), LESION_CENTRE_LPS, "seg.nrrd")
    assert empty.SUVmax is None and empty.volume_ml == 0.0 and empty.reason == "the segment is empty"
