"""Display layout decided by the pixels (issue 9 items 6 and 10): irregular regions, --contrast-region,
regions of a resized export, and the sector background of the maps (item 5)."""
import json

import numpy as np
import pytest

from DCEUSResponseLib.app.cli import main
from DCEUSResponseLib.ceus.layout import find_layout
from DCEUSResponseLib.clip import Clip, UltrasoundRegion
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.synthetic.clips import make_clip, sector_mask, write_clip, write_roi_masks


def _dual(seed=41):
    return make_clip(panel_shape=(80, 100), n_frames=60, frame_interval_s=0.75, display="dual", seed=seed,
                     dynamic_range_db=50.0)


def _as_clip(synthetic, regions):
    return Clip("dual.dcm", synthetic.frames, synthetic.frame_times_s, regions=regions)


def test_overlapping_regions_quantify_the_panel_that_enhances():
    clip = _dual()
    contrast, bmode = clip.contrast_region, clip.bmode_region
    # the B-mode box reaches 6 pixels into the contrast panel: no clean pair, and it is the larger
    wide_bmode = UltrasoundRegion(bmode.x0, bmode.y0, contrast.x0 + 5, bmode.y1, spacing_mm=(0.2, 0.2))
    layout = find_layout(_as_clip(clip, [wide_bmode, contrast]))
    assert layout.contrast == contrast and layout.display == "single"
    assert len(layout.warnings) == 1 and "changes most" in layout.warnings[0] and "--contrast-region" in layout.warnings[0]
    # a box enclosing both panels does not borrow the contrast panel's change
    enclosing = UltrasoundRegion(0, 0, clip.frames.shape[2] - 1, clip.frames.shape[1] - 1)
    assert find_layout(_as_clip(clip, [enclosing, contrast])).contrast == contrast


def test_irregular_regions_without_enhancement_stop_and_ask_for_the_contrast_region():
    clip = _dual()
    still = np.repeat(clip.frames[:1], clip.frames.shape[0], axis=0)  # nothing changes in either panel
    contrast, bmode = clip.contrast_region, clip.bmode_region
    unequal = UltrasoundRegion(bmode.x0, bmode.y0, bmode.x1 - 20, bmode.y1)
    with pytest.raises(InputError, match="--contrast-region") as error:
        find_layout(Clip("still.dcm", still, clip.frame_times_s, regions=[unequal, contrast]))
    assert "still.dcm" in str(error.value) and "\n" not in str(error.value)


def test_contrast_region_option_end_to_end(tmp_path, capsys):
    clip = _dual()
    contrast = clip.contrast_region
    write_clip(clip, str(tmp_path / "clip.dcm"))
    masks = write_roi_masks(clip, str(tmp_path / "rois"), names=["liver", "lesion"])
    box = f"{contrast.x0},{contrast.y0},{contrast.x1},{contrast.y1}"
    code = main(["analyze", str(tmp_path / "clip.dcm"), "--roi", masks["__segmentation__"], "--dynamic-range", "50",
                 "--contrast-region", box, "--no-motion-compensation", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["clip"]["contrast_region"] == {"x0": contrast.x0, "y0": contrast.y0, "x1": contrast.x1,
                                                  "y1": contrast.y1}
    assert results["clip"]["display"] == "dual"  # the same-size B-mode region is found as its partner
    assert results["rois"]["lesion"]["status"] == "ok"
    for bad in ("1,2,3", "5,5,2,9"):  # refused by the option parser (usage line + error line, exit 2)
        with pytest.raises(SystemExit) as stop:
            main(["analyze", str(tmp_path / "clip.dcm"), "--roi", masks["__segmentation__"],
                  "--contrast-region", bad, "--out", str(tmp_path / "bad")])
        assert stop.value.code == 2 and "--contrast-region" in capsys.readouterr().err
    code = main(["analyze", str(tmp_path / "clip.dcm"), "--roi", masks["__segmentation__"],
                 "--contrast-region", f"0,0,{clip.frames.shape[2]},10", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "--contrast-region" in err and len(err.splitlines()) == 1, err


def test_region_of_a_resized_export_is_rescaled_to_the_live_image():
    clip = make_clip(panel_shape=(80, 100), n_frames=30, frame_interval_s=0.75, seed=42)
    panel = clip.contrast_region
    # the file's box and spacing are those of frames twice as large
    declared = (2 * panel.x0, 2 * panel.y0, 2 * panel.x1 + 1, 2 * panel.y1 + 1)
    clipped = UltrasoundRegion(declared[0], declared[1], clip.frames.shape[2] - 1, clip.frames.shape[1] - 1,
                               spacing_mm=(0.1, 0.1), declared_bounds=declared)
    layout = find_layout(Clip("resized.dcm", clip.frames, clip.frame_times_s, regions=[clipped]))
    assert (layout.contrast.x0, layout.contrast.y0, layout.contrast.x1, layout.contrast.y1) == \
        (panel.x0, panel.y0, panel.x1, panel.y1)
    assert layout.contrast.spacing_mm == pytest.approx((0.2, 0.2))
    assert len(layout.warnings) == 1 and "1/2 scale" in layout.warnings[0]


def test_sector_background_is_outside_image_not_fit_failed():
    from DCEUSResponseLib.ceus.linearize import choose_colour_mapping
    from DCEUSResponseLib.ceus.maps import compute_parametric_maps
    from DCEUSResponseLib.ceus.pixel_fits import STATUS_NAMES, STATUS_OUTSIDE_IMAGE

    clip = make_clip(panel_shape=(60, 80), n_frames=60, frame_interval_s=0.75, seed=43, sector=True,
                     dynamic_range_db=50.0)
    read = Clip("sector.dcm", clip.frames, clip.frame_times_s, regions=clip.regions)
    layout = find_layout(read)
    mapping = choose_colour_mapping(read, layout.contrast.slices)
    maps = compute_parametric_maps(read, layout, mapping, 50.0, clip.frame_times_s, np.ones(60, bool), binning=2)
    fraction = sector_mask((60, 80)).reshape(30, 2, 40, 2).mean(axis=(1, 3))
    outside = maps.status == STATUS_OUTSIDE_IMAGE
    # every 2 x 2 map pixel mostly outside the sector, and none mostly inside, is outside_image
    assert np.all(outside[fraction < 0.5]) and not np.any(outside[fraction > 0.5])
    assert np.all(np.isnan(maps.values["PE"][outside]))
    assert maps.summary()["pixels"]["outside_image"] == int(np.count_nonzero(outside)) >= np.count_nonzero(fraction < 0.5) > 100
    assert STATUS_NAMES[STATUS_OUTSIDE_IMAGE] == "outside_image"
