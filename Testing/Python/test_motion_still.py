"""Motion estimation on clips that do not move: the displacement must be exactly what it is, zero.

On a still contrast panel every frame's estimate carries its own apparent-position noise (fresh
bubble speckle in every frame, ~0.3-0.5 px per axis), the reference frame's included; before the
significance test that noise was reported as motion (RMS 0.5-1.4 px, following the enhancement
because the reference falls back to the first frame with structure), and it moved the ROIs: a
small necrotic core inside an enhancing lesion picked up the lesion's curve and was reported
``ok``. Real motion, including motion that is small but well measured (B-mode) and breathing
aliased by a low frame rate (not smooth in time), must still count.
"""
import json

import numpy as np
import pytest

from DCEUSResponseLib.ceus.motion import MIN_MOTION_TO_NOISE, estimate_motion
from DCEUSResponseLib.export.contract import results_json
from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
from DCEUSResponseLib.clip import Clip, RoiMask
from DCEUSResponseLib.synthetic.clips import PerfusionRegion, breathing_motion, liver, make_clip, make_frame_times

PANEL = (140, 180)
N_FRAMES, FRAME_INTERVAL_S = 200, 0.4
NO_ENHANCEMENT = {"O": 3e-4, "A": 0.0, "t0": 0.0, "mu": 0.0, "sigma": 1.0}


def patterns():
    """Enhancement patterns on a liver background, lognormal parameters (time 0 = injection)."""
    rows, columns = PANEL
    background = PerfusionRegion("liver", (rows * 0.7, columns * 0.3), rows * 0.15, liver(), is_background=True)
    fast = {"O": 3e-4, "A": 0.33, "t0": 8.0, "mu": np.log(6.0), "sigma": 0.4}
    slow = {"O": 3e-4, "A": 0.30, "t0": 14.0, "mu": np.log(30.0), "sigma": 0.7}
    rim = {"O": 3e-4, "A": 0.36, "t0": 7.0, "mu": np.log(11.0), "sigma": 0.5}
    centre = (rows * 0.45, columns * 0.6)
    return {
        "fast wash-in lesion": [background, PerfusionRegion("lesion", centre, rows * 0.16, fast, echogenicity=0.6)],
        "slow lesion": [background, PerfusionRegion("lesion", centre, rows * 0.16, slow, echogenicity=0.6)],
        "rim and necrotic core": [background,
                                  PerfusionRegion("rim", centre, rows * 0.25, rim, inner_radius=rows * 0.08),
                                  PerfusionRegion("core", centre, rows * 0.08, NO_ENHANCEMENT, roi_margin_px=2)],
        "whole-panel enhancement": [PerfusionRegion("liver", centre, rows * 0.3, fast, is_background=True)],
    }


def panel_of(clip, display):
    """The panel motion is estimated on by the analysis: B-mode of a dual display, else contrast."""
    region, kind = (clip.contrast_region, "contrast") if display == "single" else (clip.bmode_region, "bmode")
    return clip.frames[:, region.slices[0], region.slices[1]].astype(np.float32), kind


@pytest.mark.parametrize("display", ["single", "dual"])
@pytest.mark.parametrize("pattern", sorted(patterns()))
def test_still_clip_gives_zero_displacement(display, pattern):
    clip = make_clip(patterns()[pattern], panel_shape=PANEL, n_frames=N_FRAMES, frame_interval_s=FRAME_INTERVAL_S,
                     display=display, motion_px=None, seed=3)
    gray, kind = panel_of(clip, display)
    # Frame 0 (the default reference) precedes the bolus on a contrast panel: the hardest case.
    estimate = estimate_motion(gray, 0, kind=kind, spacing_mm=clip.spacing_mm)
    rms = estimate.rms_displacement_px
    print(f"\n{display} {pattern}: RMS displacement {rms:.4f} px, motion/noise {estimate.motion_to_noise}, "
          f"noise {estimate.noise_px} px")
    assert rms < 0.1
    assert np.abs(estimate.displacement_px).max() < 0.1
    assert estimate.significant is False
    record = json.loads(json.dumps(estimate.to_json()))
    assert record["compensated"] is True and record["significant"] is False
    assert record["rms_displacement_px"] < 0.1 and record["max_displacement_px"] < 0.1
    if estimate.motion_to_noise is not None:
        assert record["motion_to_noise"] < MIN_MOTION_TO_NOISE
        assert any("no significant motion" in warning for warning in estimate.warnings)


def test_necrotic_core_inside_an_enhancing_lesion_stays_no_enhancement():
    """A 52-pixel core 1 px inside a fast-enhancing lesion, still single-display clip, defaults:
    spurious displacements of ~1.1 px RMS made it `ok` (PE 2-5 % of the lesion's) before."""
    rows, columns = 208, 288
    lesion = {"O": 3e-4, "A": 0.33, "t0": 8.0, "mu": np.log(10.0), "sigma": 0.5}
    centre = (rows * 0.38, columns * 0.62)
    regions = [PerfusionRegion("liver", (rows * 0.7, columns * 0.3), rows * 0.18, liver(), is_background=True),
               PerfusionRegion("lesion", centre, rows * 0.2, lesion, inner_radius=5, echogenicity=0.6),
               PerfusionRegion("core", centre, 5, NO_ENHANCEMENT, roi_margin_px=1.0, echogenicity=0.35)]
    clip = make_clip(regions, panel_shape=(rows, columns), n_frames=360, frame_interval_s=1 / 3,
                     dynamic_range_db=50.0, motion_px=None, seed=0)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    analysis = analyze(Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions), rois,
                       AnalysisOptions(dynamic_range_db=50.0))
    results = results_json(analysis)
    motion = results["clip"]["motion"]
    assert motion["compensated"] is True and motion["significant"] is False
    assert motion["rms_displacement_px"] == 0.0
    assert results["rois"]["core"]["status"] == "no_enhancement", results["rois"]["core"]
    assert results["rois"]["lesion"]["status"] == "ok"


def test_small_but_well_measured_motion_counts():
    """0.5 px of breathing on a B-mode panel (noise ~0.001 px) is real motion and is kept."""
    times = make_frame_times(120, 0.25)
    truth = breathing_motion(times, amplitude_px=0.5, period_s=4.0, direction=(1.0, 0.6))
    clip = make_clip(patterns()["fast wash-in lesion"], panel_shape=PANEL, n_frames=120, frame_interval_s=0.25,
                     display="dual", motion_px=truth, seed=5)
    gray, kind = panel_of(clip, "dual")
    estimate = estimate_motion(gray, 0, kind=kind)
    error = np.sqrt(np.mean(np.sum((estimate.displacement_px - clip.motion_px) ** 2, axis=1)))
    print(f"\nB-mode 0.5 px breathing: motion/noise {estimate.motion_to_noise:.3g}, RMS error {error:.3f} px")
    assert estimate.significant is True
    assert error < 0.05


def test_breathing_aliased_by_a_low_frame_rate_counts():
    """At a quarter of the breathing period per frame the displacement looks white in time; the
    test is on its size against the noise, so 6 px of breathing on a contrast panel is kept."""
    period_s = 4.0
    times = make_frame_times(140, period_s / 4 + 0.03)
    truth = breathing_motion(times, amplitude_px=6.0, period_s=period_s, direction=(1.0, 0.6))
    regions = patterns()["rim and necrotic core"]
    clip = make_clip(regions, panel_shape=PANEL, n_frames=140, frame_interval_s=period_s / 4 + 0.03,
                     motion_px=truth, reference_frame=40, seed=6)
    gray, kind = panel_of(clip, "single")
    estimate = estimate_motion(gray, 40, kind=kind)
    reliable = estimate.reliable
    error = np.sqrt(np.mean(np.sum((estimate.displacement_px - clip.motion_px)[reliable] ** 2, axis=1)))
    lag_one = np.corrcoef(clip.motion_px[1:, 0], clip.motion_px[:-1, 0])[0, 1]
    print(f"\naliased breathing: lag-1 autocorrelation {lag_one:.2f}, motion/noise "
          f"{estimate.motion_to_noise:.3g}, RMS error {error:.3f} px over {reliable.sum()} reliable frames")
    assert abs(lag_one) < 0.2  # the truth really is not smooth at this frame rate
    assert estimate.significant is True
    assert error < 1.0


def test_a_chance_cluster_around_the_reference_does_not_stand_for_the_clip():
    """Frames 0-2 (no structure, linked by chance matches) and frames 3-39 (linked, moving by a
    known ramp): the solution must follow the large group, not hold 37 frames as unmatched."""
    from DCEUSResponseLib.ceus.motion_links import solve_links as _solve_links
    from DCEUSResponseLib.ceus.motion_matching import Links

    truth = np.c_[np.linspace(0, 6, 40), np.linspace(0, -3, 40)]
    pairs = [(0, 1), (1, 2), (0, 2)] + [(k - o, k) for k in range(4, 40) for o in (1, 2) if k - o >= 3]
    earlier, later = (np.array(side) for side in zip(*pairs))
    shift = truth[later] - truth[earlier]
    shift[:3] = [[3.0, -7.0], [-5.0, 2.0], [-2.0, -5.0]]  # chance matches, consistent with each other
    links = Links(earlier, later, shift, np.full(len(pairs), 0.6), np.full((len(pairs), 2), 0.01))
    displacement, reliable, note = _solve_links(links, 40, 0, 1)
    assert reliable[3:].all()
    assert "the reference frame 0 and the 2 frames matched with it" in note and "relative to frame 3" in note
    step = displacement[4:] - displacement[3:-1]
    np.testing.assert_allclose(step, np.diff(truth[3:], axis=0), atol=1e-6)


def test_a_still_clip_whose_pre_arrival_frames_match_by_chance_stays_still():
    """A large panel's pre-arrival frames (faint structure, fresh speckle) give a few significant
    matches by chance. Where such a link was the only connection between two stretches of frames (a
    bridge of the link graph) nothing could check it: on this still 768 x 568 x 150 clip the frames
    beyond moved by up to the search range, looked reliable, and the clip was "moving" (variance
    ratio 103, RMS 7.7 px). Bridges are now left out of the solution."""
    from DCEUSResponseLib.synthetic.clips import default_regions

    panel = (768, 568)
    clip = make_clip(default_regions(panel), panel_shape=panel, n_frames=150, frame_interval_s=0.08,
                     dynamic_range_db=50.0, seed=0)
    gray = clip.frames[(slice(None),) + clip.contrast_region.slices]
    estimate = estimate_motion(gray, 0, kind="contrast")
    assert estimate.motion_to_noise < 2.0
    assert estimate.significant is False
    assert not np.any(estimate.displacement_px)


def test_a_chance_chain_hanging_by_one_link_is_not_motion():
    """Frames 0-39 still and densely linked (reference 0); frames 40-59 structureless, linked to each
    other by small chance shifts and to the rest only through one chance link of (15, -9) px. That
    link is a bridge: nothing checks it, so the chain's frames must be unreliable and interpolated,
    not carried 17 px away as reliable frames (which made the clip's spread 'significant')."""
    from DCEUSResponseLib.ceus.motion import _motion_to_noise
    from DCEUSResponseLib.ceus.motion_links import link_bridges, solve_links
    from DCEUSResponseLib.ceus.motion_matching import Links

    rng = np.random.default_rng(3)
    dense = [(k - o, k) for k in range(1, 40) for o in (1, 2, 4) if k - o >= 0] + [(0, k) for k in range(2, 40)]
    chain = [(k - 1, k) for k in range(41, 60)] + [(k - 2, k) for k in range(42, 60)]
    pairs = dense + [(39, 40)] + chain
    earlier, later = (np.array(side) for side in zip(*pairs))
    shift = rng.normal(0.0, 0.3, (len(pairs), 2))
    shift[len(dense)] = [15.0, -9.0]
    links = Links(earlier, later, shift, np.full(len(pairs), 0.5), np.full((len(pairs), 2), 0.05))
    bridges = link_bridges(60, earlier, later)
    assert np.flatnonzero(bridges).tolist() == [len(dense)]
    displacement, reliable, note = solve_links(links, 60, 0, 1)
    assert note is None
    assert reliable[:40].all() and not reliable[40:].any()
    assert np.abs(displacement).max() < 1.5
    _, ratio = _motion_to_noise(displacement, reliable, links, 1)
    assert ratio < MIN_MOTION_TO_NOISE


def test_link_bridges_are_the_links_whose_removal_disconnects_their_frames():
    """Against the definition, on random multigraphs (parallel links, links of a frame to itself,
    isolated frames): a link is a bridge exactly when the graph without it has its two frames in
    different connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from DCEUSResponseLib.ceus.motion_links import link_bridges

    rng = np.random.default_rng(11)
    found = 0
    for _ in range(300):
        n_frames = int(rng.integers(1, 30))
        n_links = int(rng.integers(0, 45))
        earlier, later = rng.integers(0, n_frames, n_links), rng.integers(0, n_frames, n_links)
        expected = np.zeros(n_links, dtype=bool)
        for index in range(n_links):
            others = np.arange(n_links) != index
            graph = coo_matrix((np.ones(others.sum()), (earlier[others], later[others])), shape=(n_frames, n_frames))
            _, component = connected_components(graph, directed=False)
            expected[index] = component[earlier[index]] != component[later[index]]
        np.testing.assert_array_equal(link_bridges(n_frames, earlier, later), expected)
        found += int(expected.sum())
    assert found > 100  # the random graphs do have bridges


def test_two_frames_are_matched_by_their_one_link():
    """Two frames have one link and nothing to check it by: it is used (the reliability rule asks
    one agreeing link there), not dropped as a bridge or as the reference frame's lone link (which
    said "no two frames could be matched"). B-mode texture moved by (3, -2) px."""
    from scipy.ndimage import gaussian_filter, shift

    texture = gaussian_filter(np.random.default_rng(5).random((140, 180)), 2.0)
    texture = 128.0 + 40.0 * (texture - texture.mean()) / texture.std()
    frames = np.stack([texture, shift(texture, (3.0, -2.0), order=1, mode="nearest")]).astype(np.float32)
    estimate = estimate_motion(frames, 0, kind="bmode")
    assert estimate.significant is True and not estimate.warnings
    np.testing.assert_allclose(estimate.displacement_px[1], [3.0, -2.0], atol=0.1)


def test_frames_joined_only_by_unconfirmed_matches_are_said_so():
    """A dense group around the reference (frames 0-39) joined to a larger dense group (81-199) only by
    a stretch matched frame to frame (40-80, each link a bridge): the larger group holds the solution
    and the note names the reference's group as joined by no confirmed match (not "no structure").
    A clip matched only frame to frame says that no match was confirmed (not "no two frames could be
    matched", which is for a clip without any match)."""
    from DCEUSResponseLib.ceus.motion_links import solve_links
    from DCEUSResponseLib.ceus.motion_matching import Links

    def links_of(pairs):
        earlier, later = (np.array(side) for side in zip(*pairs))
        count = len(pairs)
        return Links(earlier, later, np.zeros((count, 2)), np.full(count, 0.6), np.full((count, 2), 0.01))

    first = [(0, k) for k in range(1, 40)] + [(k - o, k) for k in range(2, 40) for o in (1, 2) if k - o >= 1]
    stretch = [(k - 1, k) for k in range(40, 81)]
    last = [(k - o, k) for k in range(82, 200) for o in (1, 2) if k - o >= 81]
    _, reliable, note = solve_links(links_of(first + stretch + last), 200, 0, 1)
    assert reliable[81:].all() and not reliable[:81].any()
    assert note.startswith("motion: the reference frame 0 and the 39 frames matched with it are joined to the "
                           "119 frames around frame 81 by no match that another confirms")
    _, reliable, note = solve_links(links_of([(k - 1, k) for k in range(1, 50)]), 50, 0, 1)
    assert reliable.tolist() == [True] + [False] * 49
    assert note.startswith("motion: no match between two frames was confirmed by another")
