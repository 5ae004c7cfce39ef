"""Linearisation: the contract's gray-to-power law, colour-map recovery and clipping counts."""
import numpy as np
import pytest

from DCEUSResponseLib.clip import Clip
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.ceus.linearize import (ColourMapping, choose_colour_mapping, count_clipping, gray_from_linear, gray_levels, linear_from_gray)


def test_contract_end_points_and_decibel_steps():
    gray = np.array([0.0, 127.5, 255.0])
    linear = linear_from_gray(gray, 60.0)
    np.testing.assert_allclose(linear, [1e-6, 1e-3, 1.0], rtol=1e-5)
    # every 255/DR gray levels is one dB
    ratio = linear_from_gray(np.array([100.0 + 255.0 / 40.0]), 40.0) / linear_from_gray(np.array([100.0]), 40.0)
    np.testing.assert_allclose(ratio, 10 ** 0.1, rtol=1e-5)
    np.testing.assert_allclose(gray_from_linear(linear, 60.0), gray, atol=1e-3)


@pytest.mark.parametrize("bad", [0.0, -10.0, float("nan")])
def test_dynamic_range_must_be_positive(bad):
    with pytest.raises(InputError, match="dynamic range"):
        linear_from_gray(np.zeros(3), bad)


def _clip(frames, **kwargs):
    return Clip("test.dcm", frames, np.arange(frames.shape[0], dtype=float), **kwargs)


def test_tinted_colour_map_gives_the_gray_level_not_the_channel_mean():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, size=(4, 30, 40)).astype(np.float64)
    tint = np.array([1.0, 0.78, 0.42])
    frames = np.round(gray[..., None] * tint).astype(np.uint8)
    clip = _clip(frames)
    panel = (slice(None), slice(None))
    mapping = choose_colour_mapping(clip, panel)
    assert mapping.kind == "tint"
    np.testing.assert_allclose(mapping.tint, tint, atol=0.01)
    recovered = gray_levels(frames, clip, mapping)
    assert np.max(np.abs(recovered - gray)) < 1.0
    # the naive channel mean would be 27 % low: the reason for the colour-map recovery
    assert np.mean(frames.mean(axis=-1)) < 0.8 * np.mean(gray)


def test_grey_rgb_and_sixteen_bit_monochrome():
    gray = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(2, axis=0)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    clip = _clip(rgb)
    mapping = choose_colour_mapping(clip, (slice(None), slice(None)))
    assert mapping.kind == "gray"
    np.testing.assert_allclose(gray_levels(rgb, clip, mapping), gray)
    wide = (gray.astype(np.uint16) * 257)
    clip16 = _clip(wide, bits_stored=16)
    np.testing.assert_allclose(gray_levels(wide, clip16, choose_colour_mapping(clip16, (slice(None),) * 2)),
                               gray, atol=1e-3)


def test_palette_position_along_the_lut():
    palette = np.stack([np.linspace(0, 255, 256), np.linspace(0, 200, 256), np.zeros(256)], axis=1)
    indices = np.array([[[0, 51, 255]]], dtype=np.uint8).repeat(2, axis=0)
    clip = _clip(indices, palette=palette, photometric="PALETTE COLOR")
    mapping = choose_colour_mapping(clip, (slice(None), slice(None)))
    np.testing.assert_allclose(gray_levels(indices, clip, mapping)[0, 0], [0, 51, 255])


def test_colour_table_lookup_and_curved_maps_are_recovered():
    # a "hot"-like map: not a line through black, so no tint explains it; it is recovered from the
    # colours instead (test_colour_maps.py), and a given table is looked up by nearest colour
    g = np.arange(256.0)
    table = np.stack([np.clip(3 * g, 0, 255), np.clip(3 * g - 255, 0, 255), np.clip(3 * g - 510, 0, 255)], axis=1)
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, size=(3, 20, 20))
    frames = table[gray].round().astype(np.uint8)
    clip = _clip(frames)
    recovered = choose_colour_mapping(clip, (slice(None), slice(None)))
    assert recovered.kind == "recovered" and recovered.source == "clip_colours"
    assert np.median(np.abs(gray_levels(frames, clip, recovered) - gray)) < 1.0
    mapping = ColourMapping("table", table=table)
    recovered = gray_levels(frames, clip, mapping)
    # flat stretches of the map are ambiguous; where the map moves, the position is exact
    moving = (gray % 85 != 0)
    assert np.mean(np.abs(recovered - gray)[moving] <= 1.0) > 0.95


def test_clipping_fractions():
    gray = np.zeros((10, 4, 4), dtype=np.float32) + 100
    gray[:2] = 0
    gray[9, :2, :2] = 255
    mask = np.ones((4, 4), bool)
    counts = count_clipping(gray, mask)
    assert counts.floor_fraction == pytest.approx(0.2)
    assert counts.saturated_fraction == pytest.approx(4 / 160)
    assert counts.peak_saturated_fraction == pytest.approx(4 / 16)  # frame 9


@pytest.mark.parametrize("gain, warned", [(4.0, False), (8.0, True), (25.0, True)])
def test_a_peak_saturated_for_a_few_seconds_is_warned_and_the_bias_is_as_large_as_the_warning_says(gain, warned):
    """Over a 2-minute clip a saturated peak is a small share of all samples (1.7 % at gain 25, below
    the 2 % that was the warning's threshold, while PE came out 24 % low): the warning looks at the
    most saturated frame, whose fraction is about PE's shortfall (exponential speckle clipped at the top)."""
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip, RoiMask
    from DCEUSResponseLib.synthetic.clips import make_clip, truth_parameters

    synthetic = make_clip(injection_time_s=1.5, seed=0, gain=gain, n_frames=160)
    clip = Clip("synthetic.dcm", synthetic.frames, synthetic.frame_times_s, regions=synthetic.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in synthetic.roi_masks.items() if name in ("liver", "lesion")]
    analysis = analyze(clip, rois, AnalysisOptions(dynamic_range_db=synthetic.dynamic_range_db, injection_time_s=1.5))
    lesion = analysis.rois["lesion"]
    shortfall = 1.0 - lesion.parameters["PE"] / truth_parameters(synthetic.truth["lesion"])["PE"]
    lesion_warnings = [w for w in analysis.warnings if w.startswith("ROI 'lesion'") and "saturated" in w]
    assert bool(lesion_warnings) == warned
    if gain == 25.0:
        assert lesion.clipping.saturated_fraction < 0.02 < lesion.clipping.peak_saturated_fraction
        assert "up to 30" in lesion_warnings[0] and "underestimated" in lesion_warnings[0]
        assert "relative to this reference ROI are overestimated" not in lesion_warnings[0]
        # a saturated reference ROI: every value relative to it is overestimated, and the warning says so
        as_reference = analyze(clip, rois, AnalysisOptions(dynamic_range_db=synthetic.dynamic_range_db,
                                                           injection_time_s=1.5, reference="lesion"))
        warning = next(w for w in as_reference.warnings if w.startswith("ROI 'lesion'") and "saturated" in w)
        assert "relative to this reference ROI are overestimated" in warning
    if warned:
        assert 0.5 < shortfall / lesion.clipping.peak_saturated_fraction < 1.5
    else:
        assert abs(shortfall) < 0.02


@pytest.mark.parametrize("seed", [11, 13])
def test_gold_tint_survives_jpeg_chroma_quantisation(tmp_path, seed):
    """Small gold JPEG clips scatter 2 x 2 block colours by up to ~10 levels: still one tint."""
    from DCEUSResponseLib.io.dicom_us import read_clip
    from DCEUSResponseLib.ceus.layout import find_layout
    from DCEUSResponseLib.synthetic.clips import GOLD_TINT, make_clip, write_clip

    clip = make_clip(panel_shape=(80, 100), n_frames=80, frame_interval_s=0.6, colour="gold", seed=seed)
    write_clip(clip, str(tmp_path / "c.dcm"), transfer_syntax="jpeg-baseline")
    read = read_clip(str(tmp_path / "c.dcm"))
    mapping = choose_colour_mapping(read, find_layout(read).contrast.slices)
    assert mapping.kind == "tint"
    np.testing.assert_allclose(mapping.tint, GOLD_TINT, atol=0.02)


def test_lookup_table_path_equals_the_formula():
    from DCEUSResponseLib.ceus.linearize import linear_intensity

    rng = np.random.default_rng(3)
    for frames, bits in ((rng.integers(0, 256, (3, 8, 9), dtype=np.uint8), 8),
                         (rng.integers(0, 4096, (3, 8, 9), dtype=np.uint16), 12)):
        clip = _clip(frames, bits_stored=bits)
        mapping = choose_colour_mapping(clip, (slice(None), slice(None)))
        with np.errstate(over="raise"):  # a 12-bit table's unused entries overflowed exp (a numpy warning)
            looked_up = linear_intensity(frames, clip, mapping, 45.0)
        np.testing.assert_allclose(looked_up, linear_from_gray(gray_levels(frames, clip, mapping), 45.0), rtol=1e-6)


@pytest.mark.parametrize("shape", [(0, 4), (7,), (3, 5, 6), (300, 2000), (2, 1 << 20)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_table_lookup_equals_fancy_indexing_for_any_layout(shape, dtype):
    """The gather a few rows at a time (strided column chunks of a map's frames x pixels array, as
    the map fit takes them, and rows longer than one gather) is the plain gather, value for value."""
    from DCEUSResponseLib.ceus.linearize import table_lookup

    rng = np.random.default_rng(5)
    table = rng.random(1 << (8 * np.dtype(dtype).itemsize)).astype(np.float32)
    values = rng.integers(0, table.size, shape, dtype=dtype)
    views = [values]
    if values.ndim == 2 and values.shape[1] > 3:
        views += [values[:, 1:-2], values[::-1, ::3], values.T]
    for view in views:
        looked_up = table_lookup(table, view)
        assert looked_up.dtype == np.float32 and looked_up.shape == view.shape
        np.testing.assert_array_equal(looked_up, table[view])


def test_colormap_of_a_monochrome_clip_is_applied_and_of_a_palette_clip_is_warned_about():
    """A clip stored through a grey display curve (gamma 0.5) as MONOCHROME, given that curve with
    --colormap: each stored value is read back as the table row showing it (the option was ignored
    before: PE +330 % in the audit). A palette clip keeps its palette, with a warning."""
    from DCEUSResponseLib.ceus.linearize import linear_intensity

    g = np.arange(256.0)
    shown = np.round(255.0 * np.sqrt(g / 255.0))
    table = np.repeat(shown[:, None], 3, axis=1)
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, size=(3, 16, 16))
    stored = shown[gray].astype(np.uint8)
    clip = _clip(stored)
    mapping = choose_colour_mapping(clip, (slice(None), slice(None)), table)
    assert mapping.kind == "table"
    read = gray_levels(stored, clip, mapping)
    # the curve is steep near black (several levels share a shown grey); elsewhere one level per grey
    assert np.median(np.abs(read - gray)) <= 1.0 and np.mean(np.abs(read - gray) <= 2.0) > 0.95
    # the lookup-table path of linear_intensity agrees with the per-pixel lookup
    np.testing.assert_allclose(linear_intensity(stored, clip, mapping, 50.0), linear_from_gray(read, 50.0), rtol=1e-6)
    assert np.mean(np.abs(gray_levels(stored, clip, choose_colour_mapping(clip, (slice(None),) * 2)) - gray)) > 20

    with pytest.raises(InputError, match="12 bits"):
        choose_colour_mapping(_clip(stored.astype(np.uint16), bits_stored=12), (slice(None),) * 2, table)

    palette = np.stack([np.linspace(0, 255, 256)] * 3, axis=1)
    warnings = []
    indices = np.array([[[0, 51, 255]]], dtype=np.uint8).repeat(2, axis=0)
    palette_clip = _clip(indices, palette=palette, photometric="PALETTE COLOR")
    assert choose_colour_mapping(palette_clip, (slice(None),) * 2, table, warnings).kind == "palette"
    assert len(warnings) == 1 and "--colormap is ignored" in warnings[0]


@pytest.mark.parametrize("colour", ["gray", "gold"])
def test_saturation_of_a_jpeg_clip_is_counted_as_of_the_uncompressed_one(tmp_path, colour):
    """JPEG moves pixels at the top of the scale a few levels below it: the lesion's saturated share in
    its peak frame read 0.19 (grey) / 0.16 (gold) for 0.30 uncompressed, so the warning understated
    PE's shortfall. A lossy clip's saturation is counted from 2.5 levels lower."""
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import RoiMask
    from DCEUSResponseLib.io.dicom_us import read_clip
    from DCEUSResponseLib.synthetic.clips import make_clip, write_clip

    synthetic = make_clip(colour=colour, injection_time_s=1.5, seed=0, gain=25.0, n_frames=160)
    counted = {}
    for transfer_syntax in ("explicit", "jpeg-baseline"):
        path = tmp_path / f"{transfer_syntax}.dcm"
        write_clip(synthetic, str(path), transfer_syntax=transfer_syntax)
        clip = read_clip(str(path))
        assert clip.lossy == (transfer_syntax == "jpeg-baseline")
        rois = [RoiMask(n, m, "synthetic") for n, m in synthetic.roi_masks.items() if n in ("liver", "lesion")]
        analysis = analyze(clip, rois, AnalysisOptions(dynamic_range_db=synthetic.dynamic_range_db,
                                                       injection_time_s=1.5, motion_compensation=False))
        counted[transfer_syntax] = analysis.rois["lesion"].clipping.peak_saturated_fraction
    assert counted["explicit"] == pytest.approx(0.30, abs=0.01)
    assert counted["jpeg-baseline"] == pytest.approx(counted["explicit"], abs=0.03)


def test_lossy_compression_is_known_from_the_transfer_syntax_or_the_header(tmp_path):
    import pydicom

    from DCEUSResponseLib.io.dicom_dataset import is_lossy

    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    assert not is_lossy(ds)
    ds.LossyImageCompression = "01"  # an uncompressed copy of a JPEG image
    assert is_lossy(ds)
    del ds.LossyImageCompression
    for uid, lossy in ((pydicom.uid.JPEGBaseline8Bit, True), (pydicom.uid.JPEG2000, True),
                       (pydicom.uid.JPEG2000Lossless, False), (pydicom.uid.RLELossless, False),
                       (pydicom.uid.MPEG4HP41, True)):
        ds.file_meta.TransferSyntaxUID = uid
        assert is_lossy(ds) == lossy, uid.name
