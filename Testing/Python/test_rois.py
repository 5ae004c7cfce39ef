"""ROI masks: file formats, Slicer segmentations, dual-display mirroring and the TIC."""
import re

import numpy as np
import pytest

from DCEUSResponseLib.clip import UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.ceus.layout import DisplayLayout
from DCEUSResponseLib.clip import RoiMask
from DCEUSResponseLib.ceus.tic import place_on_contrast_panel, time_intensity_curve
from DCEUSResponseLib.io.masks import read_roi_masks

SHAPE = (40, 90)


def _disk(center, radius, shape=SHAPE):
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return np.hypot(rows - center[0], cols - center[1]) <= radius


def test_png_npy_nrrd_masks_read_alike(tmp_path):
    import nrrd
    from PIL import Image

    mask = _disk((20, 30), 6)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "a.png")
    rgba = np.zeros(SHAPE + (4,), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    np.save(tmp_path / "c.npy", mask.astype(np.uint8))
    nrrd.write(str(tmp_path / "d.nrrd"), mask.astype(np.uint8), index_order="C")
    rois = read_roi_masks([f"{n}={tmp_path / f}" for n, f in
                           [("a", "a.png"), ("b", "b.png"), ("c", "c.npy"), ("d", "d.nrrd")]], SHAPE)
    assert [r.name for r in rois] == ["a", "b", "c", "d"]
    for roi in rois:
        np.testing.assert_array_equal(roi.mask, mask)


def test_slicer_segmentation_gives_one_roi_per_segment_on_the_frame_grid(tmp_path):
    import slicerio

    spacing = (0.25, 0.2)  # (row, column) mm
    lesion, liver = _disk((12, 60), 5), _disk((28, 25), 7)
    ijk_to_lps = np.array([[spacing[1], 0, 0, 0], [0, spacing[0], 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    segmentation = slicerio.create_segmentation((SHAPE[1], SHAPE[0], 1), ijk_to_lps)
    slicerio.add_segment(segmentation, lesion.T[:, :, None], {"id": "lesion", "name": "lesion"})
    slicerio.add_segment(segmentation, liver.T[:, :, None], {"id": "liver", "name": "liver"})
    path = tmp_path / "rois.seg.nrrd"
    slicerio.write_segmentation(str(path), segmentation)
    rois = read_roi_masks([str(path)], SHAPE, spacing)
    assert {r.name: r.pixels for r in rois} == {"lesion": lesion.sum(), "liver": liver.sum()}
    np.testing.assert_array_equal(rois[0].mask, lesion)
    prefixed = read_roi_masks([f"exam1_={path}"], SHAPE, spacing)
    assert [r.name for r in prefixed] == ["exam1_lesion", "exam1_liver"]
    # a segmentation on another grid is refused, not silently misplaced
    with pytest.raises(InputError, match="pixel grid"):
        read_roi_masks([str(path)], SHAPE, (0.5, 0.5))


def test_bad_masks_are_one_line_errors_naming_the_file(tmp_path):
    np.save(tmp_path / "small.npy", np.ones((10, 10)))
    np.save(tmp_path / "empty.npy", np.zeros(SHAPE))
    np.save(tmp_path / "ok.npy", _disk((20, 20), 4))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    cases = {
        f"x={tmp_path / 'small.npy'}": "10 x 10",
        f"x={tmp_path / 'empty.npy'}": "empty",
        f"x={tmp_path / 'junk.png'}": "cannot read",
        f"x={tmp_path / 'missing.png'}": "not found",
    }
    for spec, message in cases.items():
        with pytest.raises(InputError, match=message) as error:
            read_roi_masks([spec], SHAPE)
        assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match="duplicate ROI name 'x'"):
        read_roi_masks([f"x={tmp_path / 'ok.npy'}", f"x={tmp_path / 'ok.npy'}"], SHAPE)
    # rois/a_b.png would hold the second mask only (fuse and the DICOM writers read it for both)
    for first, second in (("a/b", "a_b"), ("Lesion", "lesion"), ("x:1", "x?1"), ("le\u0301sion", "l\u00e9sion")):
        with pytest.raises(InputError, match=re.escape(f"ROI names '{first}' and '{second}' would share the file rois/")):
            read_roi_masks([f"{first}={tmp_path / 'ok.npy'}", f"{second}={tmp_path / 'ok.npy'}"], SHAPE)
    assert len(read_roi_masks([f"a={tmp_path / 'ok.npy'}", f"b={tmp_path / 'ok.npy'}"], SHAPE)) == 2
    assert len(read_roi_masks([f"Maß={tmp_path / 'ok.npy'}", f"MASS={tmp_path / 'ok.npy'}"], SHAPE)) == 2


def _dual_layout():
    bmode = UltrasoundRegion(2, 2, 41, 37, (0.2, 0.2))
    contrast = UltrasoundRegion(48, 2, 87, 37, (0.2, 0.2))
    return DisplayLayout("dual", contrast, bmode, [])


def test_roi_drawn_on_bmode_is_mirrored_onto_contrast():
    layout = _dual_layout()
    on_bmode = RoiMask("lesion", _disk((15, 20), 5), "lesion.png")
    on_contrast = RoiMask("liver", _disk((15, 66), 5), "liver.png")
    placed = {r.name: r for r in place_on_contrast_panel([on_bmode, on_contrast], layout)}
    expected = _disk((15, 20), 5)[layout.bmode.slices]
    np.testing.assert_array_equal(placed["lesion"].mask, expected)
    np.testing.assert_array_equal(placed["liver"].mask, _disk((15, 66), 5)[layout.contrast.slices])
    assert placed["lesion"].mask.shape == (layout.contrast.rows, layout.contrast.columns)


def test_roi_spanning_both_panels_or_leaving_them_is_refused():
    layout = _dual_layout()
    both = _disk((15, 20), 5) | _disk((15, 66), 5)
    with pytest.raises(InputError, match="spans both"):
        place_on_contrast_panel([RoiMask("x", both, "x.png")], layout)
    edge = _disk((37, 66), 4)  # runs off the bottom of the contrast panel
    with pytest.raises(InputError, match="outside"):
        place_on_contrast_panel([RoiMask("y", edge, "y.png")], layout)


def test_tic_is_the_mean_linear_intensity_inside_the_mask():
    linear = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = mask[3, 4] = True
    np.testing.assert_allclose(time_intensity_curve(linear, mask), (linear[:, 1, 2] + linear[:, 3, 4]) / 2)


def test_an_roi_of_few_pixels_is_analysed_with_a_warning():
    """A 9-pixel ROI inside a lesion: PE scatters by 11 % between speckle realisations (WiR 31 %), so
    its values come with a warning; the lesion's own ROI (hundreds of pixels) gets none."""
    from DCEUSResponseLib.ceus.pipeline import FEW_ROI_PIXELS, AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip
    from DCEUSResponseLib.synthetic.clips import make_clip

    synthetic = make_clip(injection_time_s=1.5, seed=0, n_frames=120)
    lesion = synthetic.roi_masks["lesion"]
    rows, columns = np.nonzero(lesion)
    centre = (int(np.median(rows)), int(np.median(columns)))
    small = np.zeros_like(lesion)
    small[centre[0] - 1:centre[0] + 2, centre[1] - 1:centre[1] + 2] = True
    clip = Clip("synthetic.dcm", synthetic.frames, synthetic.frame_times_s, regions=synthetic.regions)
    rois = [RoiMask("lesion", lesion, "synthetic"), RoiMask("spot", small, "synthetic")]
    analysis = analyze(clip, rois, AnalysisOptions(dynamic_range_db=synthetic.dynamic_range_db, injection_time_s=1.5))
    few = [w for w in analysis.warnings if "pixels (fewer than" in w]
    assert len(few) == 1 and few[0].startswith("ROI 'spot' has only 9 pixels") and f"{FEW_ROI_PIXELS}" in few[0]
    assert analysis.rois["spot"].pixels == 9 and analysis.rois["spot"].fit.ok
