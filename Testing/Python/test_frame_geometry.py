"""The one frame geometry (DCEUSResponseLib.spatial.frame): pixel (r, c) at LPS (c dx, r dy, 0) mm."""
import numpy as np
import pytest

from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.spatial.frame import FrameGeometry

GEOMETRY = FrameGeometry((0.3, 0.25))  # dy, dx


def test_pixels_to_mm_and_back():
    points = GEOMETRY.pixel_to_frame_mm([0, 10, 2.5], [0, 4, 7])
    np.testing.assert_array_equal(points, [[0.0, 0.0, 0.0], [1.0, 3.0, 0.0], [1.75, 0.75, 0.0]])
    rows, columns = GEOMETRY.frame_mm_to_pixel(points)
    np.testing.assert_allclose(rows, [0, 10, 2.5], atol=1e-12)
    np.testing.assert_allclose(columns, [0, 4, 7], atol=1e-12)


def test_the_clip_geometry_falls_back_to_the_pixel_spacing_then_to_1_mm():
    frames = np.zeros((2, 4, 6), dtype=np.uint8)
    times = np.array([0.0, 0.1])
    calibrated = Clip("c", frames, times, pixel_spacing_mm=(0.5, 0.5),
                      regions=[UltrasoundRegion(0, 0, 2, 3), UltrasoundRegion(3, 0, 5, 3, (0.2, 0.1))])
    assert calibrated.frame_geometry == FrameGeometry((0.2, 0.1)) and calibrated.frame_spacing_mm == (0.2, 0.1)
    assert Clip("c", frames, times, pixel_spacing_mm=(0.5, 0.4)).frame_spacing_mm == (0.5, 0.4)
    assert Clip("c", frames, times).frame_geometry == FrameGeometry((1.0, 1.0)) == FrameGeometry.from_spacing(None)


def test_panel_and_map_grids_place_their_first_pixel_on_the_frame():
    panel = GEOMETRY.panel_ijk_to_ras(x0=8, y0=5)
    # IJK (i = column, j = row) of the panel -> frame pixel (5 + j, 8 + i) -> RAS (-(8 + i) dx, -(5 + j) dy, 0)
    np.testing.assert_allclose(panel @ [2, 3, 0, 1], [-(8 + 2) * 0.25, -(5 + 3) * 0.3, 0, 1])
    assert GEOMETRY.panel_origin_px(panel, "panel", "test") == (8, 5)
    binned = GEOMETRY.map_ijk_to_ras((5.5, 8.5), 2)  # 2 x 2 bins: the first centred between pixels
    np.testing.assert_allclose(binned @ [1, 1, 0, 1], [-(8.5 + 2) * 0.25, -(5.5 + 2) * 0.3, 0, 1])
    lps = GEOMETRY.map_ijk_to_lps((5.5, 8.5), 2)
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ lps, binned)
    np.testing.assert_allclose(GEOMETRY.lps_to_pixel_matrix() @ lps @ [1, 1, 0, 1], [8.5 + 2, 5.5 + 2, 0, 1])
    # a map grid's frame geometry when only the map is at hand
    assert FrameGeometry.of_map_grid((0.6, 0.5), 2) == GEOMETRY and FrameGeometry.of_map_grid(None, 3) == FrameGeometry()


def test_a_grid_off_the_pixel_grid_is_refused():
    with pytest.raises(InputError, match="not on the clip's pixel grid"):
        GEOMETRY.panel_origin_px(FrameGeometry((0.3, 0.3)).panel_ijk_to_ras(0, 0), "volume", "test")
    shifted = GEOMETRY.panel_ijk_to_ras(3, 4)
    shifted[0, 3] -= 0.1  # 0.4 px
    with pytest.raises(InputError, match="first voxel is at frame pixel"):
        GEOMETRY.panel_origin_px(shifted, "volume", "test")
