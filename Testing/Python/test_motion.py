"""Breathing-motion estimation and motion-compensated TICs, against clips with known motion.

The clips breathe sinusoidally (8 px amplitude, 4.3 s period) in both panels. The estimate must
follow the true displacement within 1 px RMS (B-mode panel of a dual display, and the contrast
panel of a single display through the wash-in), and the compensated lesion TIC must give the
parameters of the same clip without motion, while the uncompensated one visibly does not.
"""
import json
import time

import numpy as np
import pytest
from scipy import ndimage

from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.kinetics.bolus import fit_bolus
from DCEUSResponseLib.ceus.linearize import ColourMapping, gray_levels, linear_from_gray
from DCEUSResponseLib.ceus.motion import MotionEstimate, estimate_motion
from DCEUSResponseLib.ceus.motion_sampling import motion_compensated_tic, sample_shifted, shift_mask
from DCEUSResponseLib.kinetics.parameters import bolus_parameters
from DCEUSResponseLib.ceus.tic import time_intensity_curve
from DCEUSResponseLib.synthetic.clips import (GOLD_TINT, PerfusionRegion, breathing_motion, liver, make_clip, make_frame_times)

PANEL = (112, 140)
N_FRAMES, FRAME_INTERVAL_S, INJECTION_S, DYNAMIC_RANGE_DB = 160, 0.5, 1.5, 50.0
LESION_ARRIVAL_S = INJECTION_S + 8.0  # clip time of the lesion's t0
CHECKED = ("PE", "TTP", "mTTl", "WiWoAUC")


def regions():
    """Liver with a 14 px hypervascular lesion whose ROI (2 px margin) leaves it when 8 px of
    breathing is not followed, and a necrosis (a dark hole that stays visible on the contrast panel)."""
    return [
        PerfusionRegion("liver", (80.0, 40.0), 30.0, liver(), is_background=True),
        PerfusionRegion("lesion", (50.0, 80.0), 14.0, {"O": 3e-4, "A": 0.33, "t0": 8.0, "mu": np.log(10.0),
                                                       "sigma": 0.5}, echogenicity=0.6, roi_margin_px=2.0),
        PerfusionRegion("necrosis", (82.0, 110.0), 10.0, {"O": 3e-4, "A": 0.0, "t0": 10.0, "mu": np.log(10.0),
                                                          "sigma": 0.5}, echogenicity=0.35),
    ]


def panel_gray(clip, region):
    """Gray levels of one panel as the analysis computes them (tinted contrast panel of a gold clip)."""
    pixels = clip.frames[:, region.slices[0], region.slices[1]]
    if pixels.ndim == 3:
        return pixels.astype(np.float32)
    tint = GOLD_TINT if region is clip.contrast_region else (1.0, 1.0, 1.0)
    return gray_levels(pixels, None, ColourMapping("tint", tint=tint))


def lesion_parameters(clip, displacement=None):
    linear = linear_from_gray(panel_gray(clip, clip.contrast_region), DYNAMIC_RANGE_DB)
    rows, columns = clip.contrast_region.slices
    mask = clip.roi_masks["lesion"][rows, columns]
    tic = time_intensity_curve(linear, mask) if displacement is None else \
        motion_compensated_tic(linear, mask, displacement)
    fit = fit_bolus(clip.frame_times_s - INJECTION_S, tic, "lognormal")
    assert fit.status == "ok", fit.reason
    return bolus_parameters("lognormal", fit.params, fit.qof)


CASES = {
    "dual-gray-bmode": dict(display="dual", colour="gray", reference_frame=0, seed=1),
    # ROIs are drawn at the lesion's peak (frame 35), with the anatomy 3.4 px off its rest position.
    "single-gold-contrast": dict(display="single", colour="gold", reference_frame=35, seed=2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def breathing_case(request):
    case = CASES[request.param]
    times = make_frame_times(N_FRAMES, FRAME_INTERVAL_S)
    motion = breathing_motion(times, amplitude_px=8.0, period_s=4.3, direction=(1.0, 0.7))
    common = dict(panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                  injection_time_s=INJECTION_S, dynamic_range_db=DYNAMIC_RANGE_DB, rois_on_contrast=True, **case)
    moving = make_clip(regions(), motion_px=motion, **common)
    still = make_clip(regions(), motion_px=np.zeros((N_FRAMES, 2)), **common)
    dual = case["display"] == "dual"
    estimate = estimate_motion(panel_gray(moving, moving.bmode_region if dual else moving.contrast_region),
                               case["reference_frame"], kind="bmode" if dual else "contrast",
                               spacing_mm=moving.spacing_mm)
    return request.param, moving, still, estimate


def test_displacement_follows_the_breathing_within_a_pixel(breathing_case):
    name, moving, _, estimate = breathing_case
    truth = moving.motion_px
    assert np.hypot(*truth.T).max() > 7.9  # the anatomy swings by the 8 px the test claims
    error = np.hypot(*(estimate.displacement_px - truth).T)
    reliable = estimate.reliable
    rms_reliable = float(np.sqrt(np.mean(error[reliable] ** 2)))
    after_arrival = moving.frame_times_s > LESION_ARRIVAL_S + 2.0
    rms_after_arrival = float(np.sqrt(np.mean(error[after_arrival] ** 2)))
    print(f"\n{name}: RMS displacement error {rms_reliable:.3f} px over {reliable.sum()} reliable frames, "
          f"{rms_after_arrival:.3f} px over all frames from 2 s after the lesion's arrival; "
          f"max {error[reliable].max():.2f} px; unreliable frames {np.flatnonzero(~reliable).tolist()}")
    assert estimate.kind == ("bmode" if name.startswith("dual") else "contrast")
    assert estimate.reference_frame == moving.reference_frame
    assert np.all(estimate.displacement_px[moving.reference_frame] == 0.0)
    assert estimate.score[moving.reference_frame] == 1.0
    assert np.all((estimate.score >= -1.0) & (estimate.score <= 1.0))
    if estimate.kind == "bmode":
        # The B-mode tissue speckle moves with the anatomy: a much tighter bound than asked.
        assert reliable.all()
        assert rms_reliable < 0.25
        assert np.median(estimate.score) > 0.9
    else:
        # Before the bolus arrives the contrast panel is uniform speckle: nothing to match, and the
        # estimate must say so instead of inventing displacements.
        assert not reliable[moving.frame_times_s < INJECTION_S + 6.0].any()
        assert reliable[after_arrival].all()
        assert rms_reliable < 1.0
        assert rms_after_arrival < 1.0
    np.testing.assert_allclose(estimate.displacement_mm, estimate.displacement_px * 0.2)


def test_compensated_tic_matches_the_still_clip_and_uncompensated_does_not(breathing_case):
    name, moving, still, estimate = breathing_case
    reference = lesion_parameters(still)
    compensated = lesion_parameters(moving, estimate.displacement_px)
    uncompensated = lesion_parameters(moving)
    compensated_error = {p: abs(compensated[p] / reference[p] - 1) for p in CHECKED}
    uncompensated_error = {p: abs(uncompensated[p] / reference[p] - 1) for p in CHECKED}
    print(f"\n{name}: error vs the still clip, compensated "
          + ", ".join(f"{p} {100 * e:.1f} %" for p, e in compensated_error.items())
          + "; uncompensated " + ", ".join(f"{p} {100 * e:.1f} %" for p, e in uncompensated_error.items()))
    assert all(error < 0.10 for error in compensated_error.values()), compensated_error
    assert uncompensated_error["PE"] > 0.10
    assert uncompensated_error["PE"] > 2.0 * compensated_error["PE"]
    assert uncompensated_error["mTTl"] > 2.0 * compensated_error["mTTl"]


def test_reference_frame_without_structure_is_reported_and_replaced():
    """Frame 0 of a single display precedes the bolus: displacements fall back to the nearest
    frame with structure, with a warning, and stay right up to that frame's own offset."""
    times = make_frame_times(90, FRAME_INTERVAL_S)
    motion = breathing_motion(times, 6.0, 4.3, direction=(1.0, 0.7))
    clip = make_clip(regions(), panel_shape=(96, 120), n_frames=90, frame_interval_s=FRAME_INTERVAL_S,
                     injection_time_s=INJECTION_S, motion_px=motion, seed=3)
    estimate = estimate_motion(panel_gray(clip, clip.contrast_region), 0, kind="contrast", spacing_mm=None)
    assert any("reference frame 0 has no structure" in warning for warning in estimate.warnings)
    assert not estimate.reliable[0] and estimate.displacement_mm is None
    assert np.all(estimate.displacement_px[0] == 0.0)
    reliable = estimate.reliable
    offset = np.median(estimate.displacement_px[reliable] - clip.motion_px[reliable], axis=0)
    residual = np.hypot(*(estimate.displacement_px[reliable] - clip.motion_px[reliable] - offset).T)
    assert np.sqrt(np.mean(residual ** 2)) < 1.0
    assert json.loads(json.dumps(estimate.to_json()))["interpolated_frames"][0] == 0


# ----------------------------------------------------------------------------------------------
# Exact geometry on textures with known shifts


def textured_frames(shape, shifts, seed=0, sigma=1.5):
    """Frames of one smooth random texture (gray 40..215) moved by exact Fourier shifts (row, column)."""
    rng = np.random.default_rng(seed)
    canvas = (shape[0] + 64, shape[1] + 64)
    texture = ndimage.gaussian_filter(rng.standard_normal(canvas), sigma, mode="wrap")
    texture = 127.5 + 45.0 * texture / texture.std()
    spectrum = np.fft.fft2(texture)
    rows = np.fft.fftfreq(canvas[0])[:, None]
    columns = np.fft.fftfreq(canvas[1])[None, :]
    frames = [np.fft.ifft2(spectrum * np.exp(-2j * np.pi * (rows * dr + columns * dc))).real
              [32:32 + shape[0], 32:32 + shape[1]] for dr, dc in shifts]
    return np.clip(np.stack(frames), 0, 255).astype(np.float32)


SHIFTS = np.array([[0.0, 0.0], [2.3, -1.7], [-5.6, 4.25], [0.5, 0.5], [7.9, -7.1], [-3.33, -6.66], [1.0, 0.0],
                   [-0.2, 3.7]])


def test_sign_convention_and_sub_pixel_accuracy():
    """Content at reference pixel p is found at p + d: a texture moved by d is estimated as d."""
    frames = textured_frames((80, 96), SHIFTS)
    estimate = estimate_motion(frames, 0, kind="bmode", spacing_mm=(0.25, 0.2))
    error = np.abs(estimate.displacement_px - SHIFTS)
    print(f"\nknown shifts: largest error {error.max():.3f} px")
    assert error.max() < 0.08
    assert estimate.reliable.all() and estimate.score.min() > 0.95
    np.testing.assert_allclose(estimate.displacement_mm, estimate.displacement_px * [0.25, 0.2])
    # Another reference frame: everything is relative to it.
    relative = estimate_motion(frames, 2, kind="bmode")
    assert np.abs(relative.displacement_px - (SHIFTS - SHIFTS[2])).max() < 0.08


def test_large_panel_inside_a_black_sector():
    """Block averaging of a large panel, and a static black border (a sector image's surround)
    that must not hold the estimate at zero."""
    shifts = np.array([[0.0, 0.0], [6.5, -3.2], [-4.1, 9.7], [11.3, 2.2], [-9.0, -8.4], [3.3, 3.3]])
    frames = textured_frames((300, 400), shifts, seed=4, sigma=2.5)
    rows, columns = np.mgrid[0:300, 0:400]
    sector = ((rows - 20) / 280.0) ** 2 + ((columns - 200) / 190.0) ** 2 <= 1.0
    frames[:, ~sector] = 0.0
    estimate = estimate_motion(frames, 0, kind="bmode")
    assert "block averaging" in estimate.method
    error = np.abs(estimate.displacement_px - shifts)
    print(f"\nlarge sector panel: largest error {error.max():.3f} px")
    assert error.max() < 0.3
    contrast = estimate_motion(frames[:, ::2, ::2], 0, kind="contrast")
    assert np.abs(contrast.displacement_px - shifts / 2).max() < 0.3


def test_to_json_is_the_results_record():
    frames = textured_frames((64, 64), SHIFTS[:4])
    estimate = estimate_motion(frames, 1, kind="bmode", spacing_mm=(0.3, 0.3))
    record = json.loads(json.dumps(estimate.to_json()))
    assert record["compensated"] is True and record["estimated_on"] == "bmode"
    assert record["reference_frame"] == 1 and "ZNCC" in record["method"]
    assert len(record["displacement_px"]) == 4 and record["displacement_px"][1] == [0.0, 0.0]
    np.testing.assert_allclose(record["displacement_px"], SHIFTS[:4] - SHIFTS[1], atol=0.08)
    np.testing.assert_allclose(record["displacement_mm"], np.asarray(record["displacement_px"]) * 0.3, atol=1e-3)
    expected_rms = np.sqrt(np.mean(np.sum((SHIFTS[:4] - SHIFTS[1]) ** 2, axis=1)))
    assert record["rms_displacement_px"] == pytest.approx(expected_rms, abs=0.05)
    assert record["rms_displacement_mm"] == pytest.approx(0.3 * record["rms_displacement_px"], abs=1e-3)
    assert record["interpolated_frames"] == [] and len(record["score"]) == 4


# ----------------------------------------------------------------------------------------------
# Moving the ROI


def ramp_frames(n_frames, shape=(40, 50)):
    """Frames whose intensity is a plane a + b r + c c: its mean over any bilinearly moved region is
    the plane at the region's moved centroid, exactly."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return np.stack([1.0 + k + 0.25 * rows + 0.5 * columns for k in range(n_frames)])


def test_compensated_tic_samples_the_moved_roi_exactly():
    frames = ramp_frames(5)
    mask = np.zeros((40, 50), dtype=bool)
    mask[15:25, 20:32] = True
    centre = np.argwhere(mask).mean(axis=0)
    shifts = np.array([[0.0, 0.0], [2.0, -3.0], [0.3, 0.7], [-4.6, 5.25], [9.99, -0.01]])
    tic = motion_compensated_tic(frames, mask, shifts)
    expected = [1.0 + k + 0.25 * (centre[0] + dr) + 0.5 * (centre[1] + dc) for k, (dr, dc) in enumerate(shifts)]
    np.testing.assert_allclose(tic, expected, rtol=1e-12)
    for k, shift in enumerate(shifts):
        weights = shift_mask(mask, shift)
        assert weights.sum() == pytest.approx(mask.sum())
        assert weights.max() <= 1.0 + 1e-12
        assert tic[k] == pytest.approx(float((weights * frames[k]).sum() / weights.sum()), rel=1e-12)
    # Whole-pixel shifts are plain masks moved by whole pixels.
    moved = np.roll(np.roll(mask, 2, axis=0), -3, axis=1)
    assert tic[1] == pytest.approx(frames[1][moved].mean(), rel=1e-12)


def test_compensated_tic_without_motion_is_the_plain_tic():
    rng = np.random.default_rng(1)
    frames = rng.random((30, 40, 50), dtype=np.float32)
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:30, 10:20] = True
    mask[12, 30:35] = True
    plain = time_intensity_curve(frames, mask)
    np.testing.assert_allclose(motion_compensated_tic(frames, mask, np.zeros((30, 2))), plain, rtol=1e-12)


def test_roi_leaving_the_panel():
    frames = ramp_frames(4)
    mask = np.zeros((40, 50), dtype=bool)
    mask[30:40, 0:10] = True  # 100 px in the bottom-left corner
    shifts = np.array([[0.0, 0.0], [4.0, 0.0], [5.5, 0.0], [0.0, -8.0]])
    tic = motion_compensated_tic(frames, mask, shifts)
    # 4 rows down: 60 of 100 pixels stay inside, the mean is over them only.
    assert tic[1] == pytest.approx(frames[1][34:40, 0:10].mean(), rel=1e-12)
    assert np.isnan(tic[2])  # 45 % left inside
    assert np.isnan(tic[3])  # 20 % left inside
    assert shift_mask(mask, (4.0, 0.0)).sum() == pytest.approx(60.0)


def test_compensated_tic_is_fast():
    """1,500 frames and a 5,000-pixel ROI in well under a second."""
    rng = np.random.default_rng(2)
    frames = rng.random((1500, 160, 200), dtype=np.float32)
    rows, columns = np.mgrid[0:160, 0:200]
    mask = np.hypot(rows - 80, columns - 100) <= 40
    assert 4900 < mask.sum() < 5100
    k = np.arange(1500)
    shifts = np.c_[8 * np.sin(0.3 * k) + 0.37, 5 * np.cos(0.3 * k) - 0.21]
    started = time.perf_counter()
    tic = motion_compensated_tic(frames, mask, shifts)
    elapsed = time.perf_counter() - started
    print(f"\nmotion_compensated_tic: 1500 frames, {mask.sum()} px ROI in {elapsed:.3f} s")
    assert np.all(np.isfinite(tic))
    assert elapsed < 1.0


def test_sample_shifted_is_bilinear_resampling_of_a_translated_grid():
    """The maps' per-frame shift equals map_coordinates (order 1, edge clamped) on the shifted grid,
    for sub-pixel, negative, whole-pixel and beyond-the-edge displacements."""
    rng = np.random.default_rng(3)
    image = rng.random((60, 70)).astype(np.float32)
    top, left, rows, columns = 5, 8, 40, 50
    grid_rows, grid_columns = np.mgrid[top:top + rows, left:left + columns].astype(np.float64)
    for shift in [(0.0, 0.0), (0.37, -1.81), (-4.5, 2.25), (3.0, -2.0), (12.6, -9.3), (-30.2, 40.7)]:
        expected = ndimage.map_coordinates(image, [grid_rows + shift[0], grid_columns + shift[1]], order=1,
                                           mode="nearest")
        np.testing.assert_allclose(sample_shifted(image, top, left, rows, columns, shift), expected,
                                   rtol=1e-5, atol=1e-6, err_msg=str(shift))
    with pytest.raises(InputError, match="shift"):
        sample_shifted(image, 0, 0, 4, 4, (np.nan, 0.0))


# ----------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_an_input_error():
    frames = textured_frames((32, 32), SHIFTS[:3])
    with pytest.raises(InputError, match="frames, rows, columns"):
        estimate_motion(frames[0], 0, kind="bmode")
    with pytest.raises(InputError, match="kind"):
        estimate_motion(frames, 0, kind="doppler")
    with pytest.raises(InputError, match=r"0\.\.2"):
        estimate_motion(frames, 3, kind="bmode")
    with pytest.raises(InputError, match="spacing"):
        estimate_motion(frames, 0, kind="bmode", spacing_mm=(0.2, -1.0))
    with pytest.raises(InputError, match="search range"):
        estimate_motion(frames, 0, kind="bmode", max_shift_px=0.0)
    nan_frames = frames.copy()
    nan_frames[1, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        estimate_motion(nan_frames, 0, kind="bmode")
    mask = np.ones((32, 32), dtype=bool)
    with pytest.raises(InputError, match="ROI mask"):
        motion_compensated_tic(frames, mask[:10], np.zeros((3, 2)))
    with pytest.raises(InputError, match="displacement"):
        motion_compensated_tic(frames, mask, np.zeros((2, 2)))
    with pytest.raises(InputError, match="empty") as raised:
        motion_compensated_tic(frames, ~mask, np.zeros((3, 2)))
    assert "\n" not in str(raised.value)


def test_motion_estimate_without_spacing_has_no_mm():
    estimate = MotionEstimate(np.zeros((3, 2)), np.ones(3), "m", "bmode", 0)
    record = estimate.to_json()
    assert record["displacement_mm"] is None and record["rms_displacement_mm"] is None
    assert record["rms_displacement_px"] == 0.0


@pytest.mark.parametrize("shape", [(5, 300, 700), (4, 1100, 900), (3, 257, 513), (2, 4500, 300)])
def test_working_images_of_8bit_frames_equal_the_float_block_means(shape):
    """The integer block sums of 8-bit panels (factors 3, 5, 3 and 18: uint32 sums) equal the float
    block means value for value, on a strided panel view as the pipeline passes it; bright frames, so
    that 18 x 18 sums (up to 82,620) would overflow uint16."""
    from DCEUSResponseLib.ceus.motion_matching import MatchingGrid

    rng = np.random.default_rng(1)
    frames = rng.integers(200, 256, (shape[0], shape[1] + 4, shape[2] + 6), dtype=np.uint8)[:, 2:-2, 3:-3]
    grid = MatchingGrid(frames, "contrast", 16)
    np.testing.assert_array_equal(grid.working_images(frames), grid.working_images(frames.astype(np.float32)))


def _rolled_texture_clip(n_frames: int, flat: tuple = ()) -> np.ndarray:
    """A B-mode texture rolled by (k mod 5, (k // 5) mod 3) px in frame k; frames in ``flat`` uniform gray."""
    rng = np.random.default_rng(3)
    texture = ndimage.gaussian_filter(rng.random((96, 96)) * 255.0, 1.0)
    frames = np.stack([np.roll(texture, (k % 5, (k // 5) % 3), axis=(0, 1)) for k in range(n_frames)])
    frames = np.clip(np.round(frames), 0, 255).astype(np.uint8)
    for k in flat:
        frames[k] = 128
    return frames


def test_every_link_of_a_textured_clip_is_matched_once_in_the_single_pass():
    """On a clip with structure in every frame, the single pass matches every pair the method names,
    once, with its shift: every frame with the reference frame, and with the frames LINK_OFFSETS
    before it, across batches and ring wrap-arounds (300 frames, batches of 64, a ring of 129)."""
    from DCEUSResponseLib.ceus.motion_matching import LINK_OFFSETS, MatchingGrid, collect_links

    n_frames, reference = 300, 100
    frames = _rolled_texture_clip(n_frames)
    grid = MatchingGrid(frames, "bmode", 8.0)
    assert grid.batch == 64
    links, _ = collect_links(frames, grid, reference)
    pairs = list(zip(links.earlier.tolist(), links.later.tolist()))
    expected = {(reference, k) for k in range(n_frames) if k != reference}
    expected |= {(k - offset, k) for offset in LINK_OFFSETS for k in range(offset, n_frames)
                 if reference not in (k, k - offset)}
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == expected
    # Each link measures the displacement difference of its two frames (the rolls, in px).
    truth = np.array([[k % 5, (k // 5) % 3] for k in range(n_frames)], dtype=float)
    np.testing.assert_allclose(links.shift, truth[links.later] - truth[links.earlier], atol=0.05)


@pytest.mark.parametrize("n_frames, batch, reference, flat", [
    (150, 64, 0, range(20, 120)),  # frames 52..87 are more than 32 frames from structure: 51 and 88 are not
    (150, 7, 149, range(20, 120)),
    (200, 64, 80, range(40, 127)),  # frame 127 ends a batch and is matched only by its link to frame 128
    (150, 64, 70, [k for k in range(20, 120) if k != 70]),  # a textured reference alone in a flat stretch
    (100, 1, 40, range(10, 90)),
    (150, 33, 100, range(30, 64)),
    (20, 64, 5, ()), (1, 64, 0, ()), (2, 1, 1, ())])
def test_long_links_are_tried_exactly_between_frames_with_structure(monkeypatch, n_frames, batch, reference, flat):
    """The long links the single pass tries are exactly those the method names, computed here from
    the first links' outcome by brute force: pairs (k - offset, k) of LINK_OFFSETS[1:] whose two
    frames both lie within 32 frames of a frame (the reference frame aside) with a significant first
    link, neither being the reference frame; each tried once. Uniform stretches (no structure, no
    significant match) put frames exactly 32 and 33 frames from structure, at batch edges, for
    several batch sizes and reference frames (at the start, the end, in a flat stretch, alone in
    one). A window one frame short, a frame settled one batch-edge frame too early, the earlier
    frame of a first link left unmarked and the reference frame counted as structure each fail."""
    from DCEUSResponseLib.ceus import motion_matching

    flat = list(flat)
    frames = _rolled_texture_clip(n_frames, flat)
    grid = motion_matching.MatchingGrid(frames, "bmode", 8.0)
    grid.batch = batch
    tried = []
    add = motion_matching._LinkList.add

    def recording_add(self, earlier, later, matches, keep):
        tried.extend(zip(np.broadcast_to(np.asarray(earlier), keep.shape).tolist(),
                         np.broadcast_to(np.asarray(later), keep.shape).tolist(), keep.tolist()))
        add(self, earlier, later, matches, keep)

    monkeypatch.setattr(motion_matching._LinkList, "add", recording_add)
    motion_matching.collect_links(frames, grid, reference)

    first = [(e, l_, ok) for e, l_, ok in tried if reference in (e, l_) or l_ - e == 1]
    long = [(e, l_) for e, l_, _ in tried if reference not in (e, l_) and l_ - e != 1]
    # Every frame is tried with the reference frame (itself too, never kept) and with the previous frame.
    assert sorted((e, l_) for e, l_, _ in first) == sorted(
        [(reference, k) for k in range(n_frames)] + [(k - 1, k) for k in range(1, n_frames)])
    matched = np.zeros(n_frames, dtype=bool)
    for e, l_, ok in first:
        if ok:
            matched[l_] = True
            if e != reference:
                matched[e] = True
    assert not matched[flat].any() and (n_frames < 30 or matched.any())
    reach = max(motion_matching.LINK_OFFSETS)
    structured = [bool(matched[max(k - reach, 0):k + reach + 1].any()) for k in range(n_frames)]
    expected = [(k - offset, k) for offset in motion_matching.LINK_OFFSETS[1:] for k in range(offset, n_frames)
                if structured[k] and structured[k - offset] and reference not in (k, k - offset)]
    assert len(long) == len(set(long))
    assert sorted(long) == sorted(expected)


def test_tic_through_a_lookup_table_equals_the_tic_of_the_linearised_panel():
    """Stored 8-bit values with the linear lookup table give the TIC of the linearised panel value
    for value (sub-pixel shifts, frames whose moved ROI leaves the panel, a strided view); the
    clipping counts of the stored values equal those of the gray levels."""
    from DCEUSResponseLib.ceus.linearize import count_clipping, linear_from_gray, stored_clipping

    rng = np.random.default_rng(7)
    stored = rng.integers(0, 256, (40, 70, 90), dtype=np.uint8)[:, 3:63, 5:85]
    table = np.linspace(0.0, 255.0, 256, dtype=np.float32)
    lookup = linear_from_gray(table, 50.0)
    mask = np.zeros(stored.shape[1:], dtype=bool)
    mask[10:40, 20:60] = True
    shifts = rng.uniform(-4.0, 4.0, (40, 2))
    shifts[5] = (-25.0, 0.3)  # most of the moved ROI outside: NaN in both
    linear = lookup[stored]
    np.testing.assert_array_equal(motion_compensated_tic(stored, mask, shifts, lookup=lookup),
                                  motion_compensated_tic(linear, mask, shifts))
    np.testing.assert_array_equal(motion_compensated_tic(stored, mask, np.zeros((40, 2)), lookup=lookup),
                                  time_intensity_curve(linear, mask))
    use = np.ones(40, dtype=bool)
    use[::3] = False
    assert stored_clipping(stored, table, mask, use) == count_clipping(table[stored], mask, use)
    with pytest.raises(ValueError, match="the mask is"):  # a flat gather would count other pixels
        stored_clipping(stored, table, mask[:, :-1], use)


@pytest.mark.parametrize("display", ["single", "dual"])
def test_an_estimate_resting_on_few_matched_frames_says_it_may_be_wrong(display):
    """12 px breathing at 4 Hz on a single display: 123 of 200 frames find no significant match and
    their interpolated displacements are 9 px RMS off (7 px overall, of 8.5): the warning says the
    estimate may be wrong and what to check. The dual display's B-mode matches every frame (0.01 px)."""
    from DCEUSResponseLib.ceus.layout import find_layout
    from DCEUSResponseLib.ceus.motion import MOSTLY_INTERPOLATED_FRACTION
    from DCEUSResponseLib.clip import Clip

    lesion = {"O": 3e-4, "A": 0.33, "t0": 8.0, "mu": np.log(10.0), "sigma": 0.5}
    regions = [PerfusionRegion("liver", (115, 55), 28, liver(), is_background=True),
               PerfusionRegion("lesion", (70, 120), 8, lesion, echogenicity=0.5, roi_margin_px=2)]
    times = np.arange(200) * 0.25
    clip = make_clip(regions, panel_shape=(160, 200), n_frames=200, frame_interval_s=0.25, injection_time_s=1.5,
                     seed=0, motion_px=breathing_motion(times, 12.0, 4.0, direction=(1.0, 0.4)), display=display,
                     reference_frame=80)
    layout = find_layout(Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions))
    panel = layout.bmode if display == "dual" else layout.contrast
    estimate = estimate_motion(clip.frames[(slice(None),) + panel.slices], 80,
                               kind="bmode" if display == "dual" else "contrast")
    error = np.sqrt(np.mean(np.sum((estimate.displacement_px - clip.motion_px) ** 2, axis=1)))
    doubtful = [w for w in estimate.warnings if "may be wrong by several pixels" in w]
    if display == "single":
        assert np.mean(~estimate.reliable) > MOSTLY_INTERPOLATED_FRACTION and error > 3.0
        assert len(doubtful) == 1 and "--no-motion-compensation" in doubtful[0]
    else:
        assert estimate.reliable.all() and error < 0.1 and doubtful == []
