"""Frame quality control: injected dropouts, duplicates, flashes and out-of-plane frames are found,
with the right reason, and clean clips (wash-in, dark baselines, bright peaks, speckle, breathing)
give no exclusions at all."""
import numpy as np
import pytest

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.ceus.linearize import ColourMapping, gray_levels
from DCEUSResponseLib.ceus.motion import estimate_motion
from DCEUSResponseLib.ceus.quality import (FLASH_MIN_SATURATED_FRACTION, FLASH_SATURATED_GRAY, ExcludedFrame, detect_bad_frames, frames_to_use, parse_frame_ranges)
from DCEUSResponseLib.synthetic.clips import (GOLD_TINT, PerfusionRegion, breathing_motion, default_regions, liver, make_clip, make_frame_times)

PANEL = (64, 80)
N_FRAMES, FRAME_INTERVAL_S, INJECTION_S = 120, 0.5, 1.5
TIMES = make_frame_times(N_FRAMES, FRAME_INTERVAL_S)
BREATHING = breathing_motion(TIMES, amplitude_px=6.0, period_s=4.0, direction=(1.0, 0.5))
# Frame 5 is before the bolus arrives; 40-42 a three-frame dropout in the wash-in; 60-61 two repeats;
# 85-86 a two-frame flash.
DROPOUTS, DUPLICATES, FLASHES = [5, 40, 41, 42], [12, 60, 61], [85, 86]


def panel_gray(clip, region):
    pixels = clip.frames[:, region.slices[0], region.slices[1]]
    if pixels.ndim == 3:
        return pixels.astype(np.float32)
    tint = GOLD_TINT if region is clip.contrast_region else (1.0, 1.0, 1.0)
    return gray_levels(pixels, None, ColourMapping("tint", tint=tint))


def run_quality(clip, reference_frame=30, with_motion=True):
    contrast = panel_gray(clip, clip.contrast_region)
    bmode = None if clip.bmode_region is None else panel_gray(clip, clip.bmode_region)
    motion = None
    if with_motion:
        motion = estimate_motion(bmode if bmode is not None else contrast, reference_frame,
                                 kind="bmode" if bmode is not None else "contrast")
    return detect_bad_frames(contrast, clip.frame_times_s, bmode_gray=bmode, motion=motion)


def as_dict(excluded):
    return {entry.frame: entry.reason for entry in excluded}


@pytest.mark.parametrize("display,colour,dynamic_range_db,seed", [
    ("single", "gold", 40.0, 1), ("single", "gray", 60.0, 2), ("dual", "gray", 60.0, 3), ("dual", "gold", 40.0, 4)])
def test_injected_bad_frames_are_found(display, colour, dynamic_range_db, seed):
    clip = make_clip(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S, display=display,
                     colour=colour, dynamic_range_db=dynamic_range_db, injection_time_s=INJECTION_S, seed=seed,
                     motion_px=BREATHING, reference_frame=30, dropout_frames=DROPOUTS,
                     duplicate_frames=DUPLICATES, flash_frames=FLASHES)
    assert clip.dropout_frames == DROPOUTS and clip.duplicate_frames == DUPLICATES and clip.flash_frames == FLASHES
    assert np.array_equal(clip.frames[61], clip.frames[59])  # a run of repeats copies its first frame
    assert np.array_equal(clip.motion_px[61], clip.motion_px[59])  # and the truth knows it
    excluded = run_quality(clip)
    expected = {**{k: "dropout" for k in DROPOUTS}, **{k: "duplicate" for k in DUPLICATES},
                **{k: "flash" for k in FLASHES}}
    assert as_dict(excluded) == expected, excluded
    assert [entry.frame for entry in excluded] == sorted(expected)
    assert all(entry.detail and "\n" not in entry.detail for entry in excluded)
    by_frame = {entry.frame: entry for entry in excluded}
    assert "repeat of frame 59" in by_frame[60].detail and "repeat of frame 60" in by_frame[61].detail
    assert "saturated" in by_frame[85].detail
    if display == "dual":
        assert "B-mode" in by_frame[40].detail and "contrast" in by_frame[40].detail


def test_synthetic_flash_destroys_and_replenishes():
    """The injected flash follows its documented physics: enhancement restarts from the baseline
    and refills as 1 - exp(-beta t) (beta = 0.5 /s), while frames before the flash are untouched."""
    from DCEUSResponseLib.ceus.linearize import linear_from_gray
    from DCEUSResponseLib.ceus.tic import time_intensity_curve

    common = dict(panel_shape=(96, 120), n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                  injection_time_s=INJECTION_S, seed=3, dynamic_range_db=50.0)
    flashed = make_clip(flash_frames=[50], **common)
    clean = make_clip(**common)
    assert np.array_equal(flashed.frames[:50], clean.frames[:50])
    rows, columns = flashed.contrast_region.slices
    mask = flashed.roi_masks["liver"][rows, columns]
    baseline = flashed.truth["liver"]["O"]
    enhancement = {name: time_intensity_curve(linear_from_gray(clip.frames[:, rows, columns], 50.0), mask) - baseline
                   for name, clip in (("flashed", flashed), ("clean", clean))}
    refill = enhancement["flashed"] / enhancement["clean"]
    assert refill[51] == pytest.approx(1 - np.exp(-0.5 * 0.5), abs=0.03)
    assert refill[54] == pytest.approx(1 - np.exp(-0.5 * 2.0), abs=0.03)
    assert refill[70] == pytest.approx(1.0, abs=0.03)


CLEAN = [dict(display=d, colour=c, seed=s, dynamic_range_db=r)
         for d, c, s, r in (("single", "gray", 1, 50.0), ("single", "gold", 2, 40.0), ("single", "gray", 3, 60.0),
                            ("dual", "gray", 1, 40.0), ("dual", "gold", 2, 60.0), ("dual", "gray", 3, 50.0))]


@pytest.mark.parametrize("case", CLEAN, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_clean_clips_have_no_bad_frames(case):
    clip = make_clip(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                     injection_time_s=INJECTION_S, motion_px=BREATHING, reference_frame=30, jitter=0.3, **case)
    assert run_quality(clip) == []


def test_bright_peaks_and_black_baselines_are_not_flashes_or_dropouts():
    """A gain so high that the bolus peak saturates like a flash (but rises and falls over seconds),
    and a contrast panel that is black until the bolus arrives (the usual look of a real single
    display), give no exclusions."""
    bright = make_clip(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                       injection_time_s=INJECTION_S, gain=80.0, dynamic_range_db=40.0, seed=5)
    gray = panel_gray(bright, bright.contrast_region)
    saturated = (gray >= FLASH_SATURATED_GRAY).mean(axis=(1, 2))
    assert saturated.max() > FLASH_MIN_SATURATED_FRACTION  # the peak alone would pass for a flash
    assert run_quality(bright, with_motion=False) == []
    dark_regions = [PerfusionRegion(r.name, r.center, r.radius, {**r.params, "O": r.params["O"] / 30},
                                    echogenicity=r.echogenicity, is_background=r.is_background)
                    for r in default_regions(PANEL)]
    for display in ("single", "dual"):
        dark = make_clip(dark_regions, panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                         injection_time_s=INJECTION_S, dynamic_range_db=40.0, display=display, seed=6)
        baseline = panel_gray(dark, dark.contrast_region)[:10].mean()
        assert baseline < 1.0  # black before arrival
        assert run_quality(dark, with_motion=False) == []


def test_out_of_plane_frames_are_found():
    """Frames from another plane (other speckle on the B-mode panel; other anatomy on a single
    contrast display) no longer match the reference although their neighbours do."""
    common = dict(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                  injection_time_s=INJECTION_S, motion_px=BREATHING, reference_frame=30)
    dual = make_clip(display="dual", seed=7, **common)
    other_plane = make_clip(display="dual", seed=8, **common)
    rows, columns = dual.bmode_region.slices
    for k in (50, 95):
        dual.frames[k, rows, columns] = other_plane.frames[k, rows, columns]
    assert as_dict(run_quality(dual)) == {50: "out_of_plane", 95: "out_of_plane"}

    single = make_clip(display="single", seed=9, **common)
    elsewhere = [PerfusionRegion("liver", (40.0, 20.0), 20.0, liver(), is_background=True),
                 PerfusionRegion("cyst", (20.0, 25.0), 12.0,
                                 {"O": 3e-4, "A": 0.0, "t0": 10.0, "mu": 2.3, "sigma": 0.5}),
                 PerfusionRegion("vessel", (45.0, 60.0), 9.0,
                                 {"O": 3e-4, "A": 0.6, "t0": 6.0, "mu": 2.0, "sigma": 0.4})]
    other_anatomy = make_clip(elsewhere, display="single", seed=10, **common)
    rows, columns = single.contrast_region.slices
    single.frames[70, rows, columns] = other_anatomy.frames[70, rows, columns]
    excluded = run_quality(single)
    assert as_dict(excluded) == {70: "out_of_plane"}, excluded
    assert "match score" in excluded[0].detail


@pytest.mark.parametrize("display,colour", [("dual", "gray"), ("single", "gold")])
def test_jpeg_dicom_clip_through_the_reader(tmp_path, display, colour):
    """Repeats stay repeats through JPEG compression, the reader and its colour handling."""
    from DCEUSResponseLib.io.dicom_us import read_clip
    from DCEUSResponseLib.ceus.layout import find_layout
    from DCEUSResponseLib.ceus.linearize import choose_colour_mapping
    from DCEUSResponseLib.synthetic.clips import write_clip

    clip = make_clip(panel_shape=(80, 100), n_frames=80, frame_interval_s=0.6, display=display, colour=colour,
                     injection_time_s=INJECTION_S, seed=12, dropout_frames=[30], duplicate_frames=[45],
                     flash_frames=[62])
    path = str(tmp_path / "clip.dcm")
    write_clip(clip, path, transfer_syntax="jpeg-baseline")
    read = read_clip(path)
    layout = find_layout(read)
    mapping = choose_colour_mapping(read, layout.contrast.slices)
    contrast = gray_levels(read.frames[:, layout.contrast.slices[0], layout.contrast.slices[1]], read, mapping)
    bmode = None
    if layout.bmode is not None:
        bmode = gray_levels(read.frames[:, layout.bmode.slices[0], layout.bmode.slices[1]], read, ColourMapping("gray"))
    excluded = detect_bad_frames(contrast, read.frame_times_s, bmode_gray=bmode)
    assert as_dict(excluded) == {30: "dropout", 45: "duplicate", 62: "flash"}


# ----------------------------------------------------------------------------------------------
# Frames given by the user


def test_parse_frame_ranges():
    assert parse_frame_ranges("3-5,10,20-22", 30) == [3, 4, 5, 10, 20, 21, 22]
    assert parse_frame_ranges(" 7 , 2-2, 0-1,7 ", 8) == [0, 1, 2, 7]
    assert parse_frame_ranges("29", 30) == [29]
    assert parse_frame_ranges("", 30) == [] and parse_frame_ranges("  ", 30) == []


@pytest.mark.parametrize("text,problem", [
    ("3-5,30", "outside the clip"), ("28-31", "outside the clip"), ("5-3", "reversed"), ("abc", "not a frame"),
    ("3-", "not a frame"), ("-2", "not a frame"), ("1.5", "not a frame"), ("3,,5", "not a frame"),
    ("3;5", "not a frame")])
def test_parse_frame_ranges_errors(text, problem):
    with pytest.raises(InputError) as raised:
        parse_frame_ranges(text, 30, option="--exclude-frames")
    message = str(raised.value)
    assert problem in message and "--exclude-frames" in message and "0..29" in message
    assert "\n" not in message


def test_frames_to_use():
    excluded = [ExcludedFrame(2, "dropout", "x"), ExcludedFrame(5, "flash", "y")]
    np.testing.assert_array_equal(frames_to_use(7, excluded), [True, True, False, True, True, False, True])
    np.testing.assert_array_equal(frames_to_use(4, [0, 3, 3]), [False, True, True, False])
    assert frames_to_use(3, []).all() and frames_to_use(3, []).dtype == bool
    with pytest.raises(InputError, match=r"0\.\.3"):
        frames_to_use(4, [4])
    with pytest.raises(InputError, match="outside"):
        frames_to_use(4, [ExcludedFrame(-1, "user", "")])
    assert ExcludedFrame(3, "flash", "d").to_json() == {"frame": 3, "reason": "flash", "detail": "d"}


def test_bad_input_is_an_input_error():
    frames = np.zeros((10, 16, 16), dtype=np.float32)
    with pytest.raises(InputError, match="frame times"):
        detect_bad_frames(frames, np.arange(9.0))
    with pytest.raises(InputError, match="rows, columns"):
        detect_bad_frames(frames[0], np.arange(10.0))
    with pytest.raises(InputError, match="B-mode"):
        detect_bad_frames(frames, np.arange(10.0), bmode_gray=frames[:5])
    assert detect_bad_frames(frames, np.arange(10.0)) == []  # a blank clip has nothing to judge


def test_8bit_frame_statistics_equal_the_float_computation():
    """The histogram path of 8-bit panels gives the statistics of the float64 path (to rounding),
    saturated pixels and the frame-to-frame difference included, on a strided panel view."""
    from DCEUSResponseLib.ceus import quality

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (12, 70, 90), dtype=np.uint8)
    frames[4, :20] = 255  # a partly saturated frame
    panel = frames[:, 5:65, 10:80]  # a panel inside the frame, as the pipeline passes it
    fast = quality._panel_stats(panel)
    exact = quality._panel_stats(panel.astype(np.float32))
    for name in ("mean", "std", "difference", "saturated"):
        np.testing.assert_allclose(getattr(fast, name), getattr(exact, name), rtol=1e-12, atol=1e-12, err_msg=name)
    assert np.isnan(fast.difference[0]) and fast.saturated[4] > 0.2


def test_8bit_frame_statistics_are_exact_on_nearly_constant_frames_and_across_threads():
    """The 8-bit path sums integers per frame on worker threads (frame ranges): every frame's numbers
    equal the float64 path's, at the range boundaries too, and a frame with one pixel off a constant
    keeps its tiny standard deviation (E[x^2] - E[x]^2 in floats would cancel it to 0 or noise)."""
    from DCEUSResponseLib.ceus import quality

    rng = np.random.default_rng(8)
    frames = rng.integers(0, 256, (41, 50, 60), dtype=np.uint8)
    frames[20] = 200
    frames[20, 10, 10] = 201  # inside the panel
    fast = quality._panel_stats(frames[:, 3:47, 2:58])
    exact = quality._panel_stats(frames[:, 3:47, 2:58].astype(np.float64))
    for name in ("mean", "std", "difference", "saturated"):
        np.testing.assert_allclose(getattr(fast, name), getattr(exact, name), rtol=1e-12, atol=0, err_msg=name)
    assert fast.std[20] == pytest.approx(np.sqrt(1 / (44 * 56) * (1 - 1 / (44 * 56))), rel=1e-12)


def _notes(clip, **options):
    notes = []
    contrast = panel_gray(clip, clip.contrast_region)
    bmode = None if clip.bmode_region is None else panel_gray(clip, clip.bmode_region)
    detect_bad_frames(contrast, clip.frame_times_s, bmode_gray=bmode, notes=notes, **options)
    return notes


@pytest.mark.parametrize("display", ["single", "dual"])
def test_a_dimmed_stretch_of_frames_is_warned_about(display):
    """A 6 dB dimming of the contrast panel for 10 s at the peak (a gain change, the probe's pressure)
    went unnoticed on a single display (PE 46 % low, `ok`): too long for the dropout test, and not
    dark. A step down and back up between two frames is warned about, naming the frames."""
    clip = make_clip(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                     injection_time_s=INJECTION_S, display=display, seed=4, dynamic_range_db=50.0)
    assert _notes(clip) == []
    rows, columns = clip.contrast_region.slices
    dimmed = clip.frames.copy()
    six_db = round(6.0 / 50.0 * 255)  # gray levels of 6 dB at a 50 dB dynamic range
    panel = dimmed[30:50, rows, columns].astype(np.int16) - six_db
    dimmed[30:50, rows, columns] = np.clip(panel, 0, 255).astype(np.uint8)
    clip.frames = dimmed
    notes = _notes(clip)
    assert len(notes) == 1, notes
    assert notes[0].startswith("frames 30-49 (") and "--exclude-frames 30-49" in notes[0]
    if display == "single":  # and analyze says so, among its warnings (the frames are still fitted)
        from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
        from DCEUSResponseLib.clip import Clip, RoiMask

        engine_clip = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
        analysis = analyze(engine_clip, [RoiMask("liver", clip.roi_masks["liver"], "synthetic")],
                           AnalysisOptions(dynamic_range_db=50.0, injection_time_s=INJECTION_S,
                                           motion_compensation=False))
        assert [w for w in analysis.warnings if w.startswith("frame QC: frames 30-49")], analysis.warnings
        assert not set(analysis.excluded_frames) & set(range(30, 50))


@pytest.mark.parametrize("interval_s", [0.5, 2.0])
def test_wash_in_flash_and_replenishment_are_no_dimming(interval_s):
    """Perfusion never steps down and back up: a steep wash-in at 0.5 Hz, a destruction flash and
    its replenishment, and a breathing clip give no dimming warning."""
    n_frames = int(N_FRAMES * FRAME_INTERVAL_S / interval_s)
    for options in (dict(), dict(flash_frames=[n_frames // 2]), dict(motion_px=breathing_motion(
            make_frame_times(n_frames, interval_s), amplitude_px=6.0, period_s=4.0, direction=(1.0, 0.5)))):
        clip = make_clip(panel_shape=PANEL, n_frames=n_frames, frame_interval_s=interval_s,
                         injection_time_s=INJECTION_S, seed=5, **options)
        assert _notes(clip) == [], options
