"""CT / PET on the CEUS plane, ROI footprints and sphere neighbourhoods, against analytic volumes."""
import numpy as np
import pytest

from DCEUSResponseLib.spatial.registration import apply
from DCEUSResponseLib.spatial.resample import (
    PlaneGrid, footprint, sample_on_plane, slab_offsets_mm, sphere_means, sphere_offsets)


def rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def affine(linear, translation) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = translation
    return matrix


# An oblique acquisition (rotated slices, anisotropic voxels) and an oblique CEUS plane through it.
SHAPE = (60, 90, 80)  # slices, rows, columns
IJK_TO_LPS = affine(rotation((5, -8, 12)) @ np.diag([0.9, 1.1, 2.5]), [-40.0, -60.0, -70.0])
GRID = PlaneGrid(first_pixel=(10.0, 20.0), step_px=2.0, shape=(120, 150), frame_spacing_mm=(0.4, 0.3))


def plane_through(ijk, frame_mm, angles_deg=(70, 20, -35)) -> np.ndarray:
    """A CEUS pose putting frame point ``frame_mm`` at voxel index ``ijk`` (i, j, k) of the test volume."""
    linear = rotation(angles_deg)
    return affine(linear, apply(IJK_TO_LPS, np.asarray(ijk, float)) - linear @ np.asarray(frame_mm, float))


# The grid's centre at the volume's centre: the far corners of the grid fall outside the volume.
CEUS_TO_LPS = plane_through((40, 45, 30), (51.0, 52.0, 0.0))
GRADIENT = np.array([0.7, -1.3, 2.1])  # per mm of LPS


def ramp_volume() -> np.ndarray:
    k, j, i = np.indices(SHAPE)
    lps = apply(IJK_TO_LPS, np.stack([i, j, k], axis=-1).astype(float))
    return (lps @ GRADIENT + 25.0).astype(np.float32)


def test_plane_grid_points_follow_the_frame_geometry():
    points = GRID.points_mm()
    assert points.shape == (120, 150, 3)
    assert np.allclose(points[0, 0], [20.0 * 0.3, 10.0 * 0.4, 0.0])
    assert np.allclose(points[3, 7], [(20 + 14) * 0.3, (10 + 6) * 0.4, 0.0])


def test_slab_offsets_are_every_half_millimetre_across_the_slab():
    assert np.allclose(slab_offsets_mm(5.0), np.arange(-2.5, 2.51, 0.5))
    assert np.array_equal(slab_offsets_mm(0.0), [0.0])
    with pytest.raises(ValueError):
        slab_offsets_mm(-1.0)


@pytest.mark.parametrize("slab_mm", [0.0, 5.0])
def test_a_ramp_on_an_oblique_plane_equals_the_analytic_section(slab_mm):
    sampled = sample_on_plane(ramp_volume(), IJK_TO_LPS, CEUS_TO_LPS, GRID, slab_mm)
    expected = apply(CEUS_TO_LPS, GRID.points_mm()) @ GRADIENT + 25.0
    inside = np.isfinite(sampled)
    assert sampled.dtype == np.float32 and 0.3 < inside.mean() < 1  # the plane crosses the volume's edge
    assert np.max(np.abs(sampled[inside] - expected[inside])) < 1e-4  # float32 rounding of values up to ~170


def test_slab_mean_of_a_ramp_along_the_normal_is_the_centre_value_and_averages_the_slab():
    # Voxels 0.5 mm thick along the plane normal: each slab sample falls on a voxel centre exactly.
    ijk_to_lps = affine(np.diag([1.0, 1.0, 0.5]), [0.0, 0.0, 0.0])
    ceus_to_lps = affine(np.eye(3), [2.0, 3.0, 10.0])  # the plane at slice 20
    k = np.arange(41, dtype=np.float32)
    grid = PlaneGrid((0.0, 0.0), 1.0, (4, 5), (1.0, 1.0))
    ramp = np.broadcast_to((3.0 * k)[:, None, None], (41, 12, 12)).copy()
    assert np.allclose(sample_on_plane(ramp, ijk_to_lps, ceus_to_lps, grid, 5.0), 60.0)
    profile = np.random.default_rng(0).normal(0, 10, 41).astype(np.float32)
    volume = np.broadcast_to(profile[:, None, None], (41, 12, 12)).copy()
    slab = sample_on_plane(volume, ijk_to_lps, ceus_to_lps, grid, 5.0)
    assert np.allclose(slab, profile[15:26].astype(np.float64).mean(), atol=1e-5)  # slices 15..25: +-2.5 mm
    assert not np.allclose(slab, profile[20])


def test_pixels_whose_slab_leaves_the_volume_are_nan():
    ijk_to_lps = affine(np.eye(3), [0.0, 0.0, 0.0])
    volume = np.ones((20, 10, 10), dtype=np.float32)
    grid = PlaneGrid((0.0, 0.0), 1.0, (12, 14), (1.0, 1.0))
    sampled = sample_on_plane(volume, ijk_to_lps, affine(np.eye(3), [0.0, 0.0, 10.0]), grid, 5.0)
    assert np.all(sampled[:10, :10] == 1.0) and np.all(np.isnan(sampled[10:])) and np.all(np.isnan(sampled[:, 10:]))
    near_edge = sample_on_plane(volume, ijk_to_lps, affine(np.eye(3), [0.0, 0.0, 18.0]), grid, 5.0)
    assert np.all(np.isnan(near_edge))  # the slab reaches z = 20.5 beyond the last slice at 19
    assert np.all(sample_on_plane(volume, ijk_to_lps, affine(np.eye(3), [0.0, 0.0, 18.0]), grid, 2.0)[:10, :10] == 1)
    away = sample_on_plane(volume, ijk_to_lps, affine(np.eye(3), [500.0, 0.0, 10.0]), grid, 5.0)
    assert np.all(np.isnan(away))


def brute_force_footprint(mask, spacing, ceus_to_lps, shape, ijk_to_lps, slab_mm):
    k, j, i = np.indices(shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float)
    frame = apply(np.linalg.inv(ceus_to_lps) @ ijk_to_lps, ijk)
    row = np.floor(frame[:, 1] / spacing[0] + 0.5).astype(int)
    column = np.floor(frame[:, 0] / spacing[1] + 0.5).astype(int)
    ok = (np.abs(frame[:, 2]) <= slab_mm / 2) & (row >= 0) & (row < mask.shape[0]) & (column >= 0) & \
        (column < mask.shape[1])
    ok[ok] = mask[row[ok], column[ok]]
    return {tuple(v) for v in np.stack([k.ravel(), j.ravel(), i.ravel()], axis=1)[ok]}


def test_footprint_of_an_axial_plane_is_the_roi_times_the_slab_voxels():
    ijk_to_lps = affine(np.eye(3), [0.0, 0.0, 0.0])
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[5:15, 10:30] = 1  # 10 x 20 pixels of 1 mm
    selected = footprint(mask, (1.0, 1.0), affine(np.eye(3), [3.0, 4.0, 20.0]), (40, 50, 60), ijk_to_lps, 5.0)
    assert selected.voxels == 10 * 20 * 5 and selected.reason is None  # slices 18..22 (|dz| <= 2.5)
    assert set(np.unique(selected.indices[:, 0])) == {18, 19, 20, 21, 22}
    assert selected.indices[:, 1].min() == 9 and selected.indices[:, 2].min() == 13


def test_oblique_footprint_equals_a_scan_of_the_whole_volume():
    mask = np.zeros((200, 200), dtype=bool)
    rows, columns = np.indices(mask.shape)
    mask[(rows - 90) ** 2 + (columns - 110) ** 2 < 45 ** 2] = True  # a disc of radius 45 pixels = 13.5 mm
    spacing = (0.3, 0.3)
    ceus_to_lps = plane_through((35, 50, 25), (110 * 0.3, 90 * 0.3, 0.0), (10, -50, 80))
    selected = footprint(mask, spacing, ceus_to_lps, SHAPE, IJK_TO_LPS, 5.0)
    assert {tuple(v) for v in selected.indices} == brute_force_footprint(mask, spacing, ceus_to_lps, SHAPE,
                                                                         IJK_TO_LPS, 5.0)
    expected = mask.sum() * 0.09 * 5.0 / abs(np.linalg.det(IJK_TO_LPS[:3, :3]))  # area x slab / voxel volume
    assert selected.voxels == pytest.approx(expected, rel=0.1)


def test_a_footprint_outside_the_volume_is_empty_with_a_reason():
    mask = np.ones((10, 10), dtype=bool)
    selected = footprint(mask, (1.0, 1.0), affine(np.eye(3), [0.0, 0.0, 500.0]), SHAPE, IJK_TO_LPS, 5.0)
    assert selected.voxels == 0 and "does not cross the volume" in selected.reason
    assert "no pixels" in footprint(np.zeros((4, 4)), (1.0, 1.0), CEUS_TO_LPS, SHAPE, IJK_TO_LPS).reason


def test_sphere_of_6_2_mm_holds_the_voxels_within_its_radius():
    ijk_to_lps = affine(np.diag([1.0, 1.0, 2.0]), [0.0, 0.0, 0.0])
    offsets = sphere_offsets(ijk_to_lps, 6.2)
    dk, dj, di = np.mgrid[-10:11, -10:11, -10:11]
    brute = np.sqrt(di ** 2 + dj ** 2 + (2.0 * dk) ** 2) <= 6.2
    assert len(offsets) == brute.sum()
    assert {tuple(v) for v in offsets} == {tuple(v) for v in np.argwhere(brute) - 10}
    iso = sphere_offsets(affine(np.eye(3) * 0.5, [0, 0, 0]), 6.2)
    assert len(iso) * 0.125 == pytest.approx(4 / 3 * np.pi * 6.2 ** 3, rel=0.01)  # 1 cm^3


def test_sphere_means_of_a_point_source_and_at_the_volume_edge():
    ijk_to_lps = affine(np.eye(3), [0.0, 0.0, 0.0])
    volume = np.zeros((30, 30, 30), dtype=np.float32)
    volume[15, 15, 15] = 100.0
    count = len(sphere_offsets(ijk_to_lps, 6.2))
    means = sphere_means(volume, ijk_to_lps, np.array([[15, 15, 15], [15, 15, 21], [15, 15, 22], [0, 0, 0]]))
    assert np.allclose(means, [100.0 / count, 100.0 / count, 0.0, 0.0])
    ones = np.ones((30, 30, 30), dtype=np.float32)
    assert sphere_means(ones, ijk_to_lps, np.array([[0, 0, 0]]))[0] == 1.0  # only voxels inside the volume count
    ramp = np.broadcast_to(np.arange(30, dtype=np.float32)[None, None, :], (30, 30, 30))
    corner = sphere_means(ramp, ijk_to_lps, np.array([[10, 10, 0]]))[0]
    inside = [o for o in sphere_offsets(ijk_to_lps, 6.2) if o[2] >= 0]
    assert corner == pytest.approx(np.mean([o[2] for o in inside]))
