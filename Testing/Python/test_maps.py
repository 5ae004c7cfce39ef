"""Parametric maps: batched pixel fits against per-pixel curve_fit and against ground truth."""
import numpy as np
import pytest

from DCEUSResponseLib.ceus.layout import find_layout
from DCEUSResponseLib.ceus.linearize import choose_colour_mapping, linear_from_gray
from DCEUSResponseLib.ceus.maps import compute_parametric_maps
from DCEUSResponseLib.ceus.pixel_fits import STATUS_FITTED, STATUS_NAMES, STATUS_NO_ENHANCEMENT, STATUS_NOT_MAPPED, fit_curves
from DCEUSResponseLib.export.map_files import map_writers
from DCEUSResponseLib.kinetics.models import get_model
from DCEUSResponseLib.export.staging import write_staged
from DCEUSResponseLib.kinetics.parameters import PARAMETER_NAMES, bolus_parameter_arrays, bolus_parameters
from DCEUSResponseLib.synthetic.clips import PerfusionRegion, liver, make_clip, truth_parameters


def _rim_and_core_clip(seed=4, n_frames=480, **kwargs):
    """A metastasis with a perfused rim around a necrotic core, in liver."""
    rows, columns = 90, 110
    rim = {"O": 3e-4, "A": 0.36, "t0": 7.0, "mu": np.log(11.0), "sigma": 0.5}
    core = {"O": 3e-4, "A": 0.0, "t0": 0.0, "mu": 0.0, "sigma": 1.0}
    regions = [PerfusionRegion("liver", (70, 25), 14, liver(), is_background=True),
               PerfusionRegion("rim", (40, 65), 30, rim, inner_radius=13, roi_margin_px=3),
               PerfusionRegion("core", (40, 65), 13, core, roi_margin_px=2)]
    return make_clip(regions, panel_shape=(rows, columns), n_frames=n_frames, frame_interval_s=120.0 / n_frames,
                     seed=seed, **kwargs)


def _maps(clip, **kwargs):
    from DCEUSResponseLib.clip import Clip

    in_memory = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
    layout = find_layout(in_memory)
    mapping = choose_colour_mapping(in_memory, layout.contrast.slices)
    use = np.ones(clip.frames.shape[0], dtype=bool)
    return compute_parametric_maps(in_memory, layout, mapping, clip.dynamic_range_db,
                                   clip.frame_times_s - clip.injection_time_s, use, **kwargs), layout


@pytest.fixture(scope="module")
def rim_core():
    clip = _rim_and_core_clip()
    maps, layout = _maps(clip)
    return clip, maps, layout


def test_map_medians_match_the_truth_and_the_necrotic_core_shows(rim_core):
    clip, maps, layout = rim_core
    for name in ("rim", "liver"):
        inside = clip.roi_masks[name][layout.contrast.slices]
        truth = truth_parameters(clip.truth[name])
        assert np.mean(maps.status[inside] == STATUS_FITTED) > 0.97, name
        for parameter, tolerance in (("PE", 0.15), ("WiWoAUC", 0.15), ("mTTl", 0.15), ("TTP", 0.10)):
            median = np.nanmedian(maps.values[parameter][inside])
            assert abs(median / truth[parameter] - 1) < tolerance, (name, parameter, median, truth[parameter])
    core = clip.roi_masks["core"][layout.contrast.slices]
    assert np.mean(np.isnan(maps.values["PE"][core])) > 0.85
    assert np.mean(maps.status[core] == STATUS_NO_ENHANCEMENT) > 0.8
    # the rim is far brighter in the PE map than the parenchyma around it
    rim = clip.roi_masks["rim"][layout.contrast.slices]
    parenchyma = clip.roi_masks["liver"][layout.contrast.slices]
    assert np.nanmedian(maps.values["PE"][rim]) > 2 * np.nanmedian(maps.values["PE"][parenchyma])


def test_every_map_is_nan_exactly_where_the_pixel_is_not_fitted(rim_core):
    """... or where that pixel's parameter is extrapolated beyond the clip (counted in the summary)."""
    _, maps, _ = rim_core
    fitted = maps.status == STATUS_FITTED
    assert set(np.unique(maps.status)) <= set(STATUS_NAMES)
    summary = maps.summary()
    for name in PARAMETER_NAMES:
        values = maps.values[name]
        assert values.dtype == np.float32 and values.shape == maps.status.shape
        assert np.all(np.isnan(values[~fitted])), name
        if name in ("PE", "TTP", "WiWoAUC", "QOF", "AUC"):
            assert np.count_nonzero(np.isnan(values[fitted])) == summary["extrapolated_pixels"][name], name
    for name in ("PE", "TTP", "QOF"):  # the peak lies inside the clip in every fitted pixel
        assert np.all(np.isfinite(maps.values[name][fitted])), name
    assert sum(summary["pixels"].values()) == maps.status.size
    assert summary["fit_frame_bin_s"] > 0 and summary["binning"] == 1


def test_region_and_binning(tmp_path):
    clip = _rim_and_core_clip(seed=5, n_frames=240)
    region = np.zeros((90, 110), dtype=bool)
    region[20:60, 40:90] = True
    maps, layout = _maps(clip, binning=2, region_mask=region)
    assert maps.status.shape == (45, 55)
    assert maps.spacing_mm == pytest.approx((0.4, 0.4))
    assert maps.origin_px == (layout.contrast.y0 + 0.5, layout.contrast.x0 + 0.5)
    inside = np.zeros((45, 55), dtype=bool)
    inside[10:30, 20:45] = True
    assert np.all(maps.status[~inside] == STATUS_NOT_MAPPED)
    assert np.all(maps.status[inside] != STATUS_NOT_MAPPED)
    paths = write_staged(str(tmp_path), map_writers(maps), last="maps/PE.nrrd")
    assert any(p.endswith("maps/status.nrrd") for p in paths) and any(p.endswith("png/PE.png") for p in paths)
    import nrrd

    data, header = nrrd.read(str(tmp_path / "maps" / "TTP.nrrd"), index_order="C")
    assert data.shape == (45, 55)
    np.testing.assert_allclose(np.diag(header["space directions"]), [0.4, 0.4])
    np.testing.assert_allclose(header["space origin"], [(layout.contrast.x0 + 0.5) * 0.2,
                                                        (layout.contrast.y0 + 0.5) * 0.2])
    np.testing.assert_array_equal(np.isnan(data), np.isnan(maps.values["TTP"]))
    assert header["DCEUS_unit"] == "s"


def test_batched_fit_agrees_with_per_pixel_curve_fit():
    from scipy.optimize import curve_fit

    clip = _rim_and_core_clip(seed=6, n_frames=480)
    panel = clip.contrast_region.slices
    linear = linear_from_gray(clip.frames[:, panel[0], panel[1]].astype(np.float32), clip.dynamic_range_db)
    times = clip.frame_times_s - clip.injection_time_s
    inside = clip.roi_masks["rim"][panel] | clip.roi_masks["liver"][panel]
    curves = linear[:, inside][:, ::7]
    fits = fit_curves(times, curves)
    model = get_model("lognormal")
    names = model.parameter_names
    ours = bolus_parameter_arrays(model, dict(zip(names, fits.params.T)), fits.qof)
    differences = {p: [] for p in ("PE", "TTP", "mTTl", "WiWoAUC")}
    for j in range(curves.shape[1]):
        y = curves[:, j].astype(np.float64)
        smooth = np.convolve(y, np.ones(9) / 9, "same")
        k = int(np.argmax(smooth))
        p0 = [max(np.median(y[:10]), 1e-7), smooth[k] * 15.0, max(times[k] - 8.0, times[0]), np.log(8.0) + 0.25, 0.5]
        try:
            fitted, _ = curve_fit(lambda t, *p: model.curve(t, p), times, y, p0=p0, maxfev=3000,
                                  bounds=([0, 0, times[0] - 120, np.log(0.05), 0.02], [np.inf, np.inf, times[-1], 8, 2.5]))
        except RuntimeError:
            continue
        reference = bolus_parameters(model, fitted, None)
        if fits.status[j] != STATUS_FITTED or reference["PE"] is None:
            continue
        for p in differences:
            differences[p].append(abs(ours[p][j] / reference[p] - 1))
    assert len(differences["PE"]) > 0.9 * curves.shape[1]
    for p, values in differences.items():
        assert np.median(values) < 0.01, (p, np.median(values))


def test_vectorised_parameters_equal_the_scalar_definitions():
    rng = np.random.default_rng(0)
    cases = {"lognormal": ("mu", "sigma", rng.uniform(1, 3.5, 40), rng.uniform(0.2, 1.5, 40)),
             "gamma": ("alpha", "beta", rng.uniform(1.5, 20, 40), rng.uniform(0.3, 5, 40)),
             "ldrw": ("mu", "lambda", rng.uniform(3, 20, 6), rng.uniform(0.5, 20, 6))}
    for model, (n1, n2, p1, p2) in cases.items():
        n = len(p1)
        params = {"O": rng.uniform(0, 1e-3, n), "A": rng.uniform(0.1, 1, n), "t0": rng.uniform(-2, 10, n), n1: p1, n2: p2}
        arrays = bolus_parameter_arrays(model, params)
        for i in range(n):
            single = bolus_parameters(model, {k: v[i] for k, v in params.items()}, None)
            for name in PARAMETER_NAMES[:-1]:
                assert arrays[name][i] == pytest.approx(single[name], rel=1e-9, abs=1e-12), (model, name)


def test_maps_follow_the_breathing_anatomy():
    """With 6 px breathing, motion-compensated maps keep the rim and the core where they are."""
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip
    from DCEUSResponseLib.clip import RoiMask
    from DCEUSResponseLib.synthetic.clips import breathing_motion, make_frame_times

    times = make_frame_times(360, 120.0 / 360)
    clip = _rim_and_core_clip(seed=7, n_frames=360, display="dual",
                              motion_px=breathing_motion(times, 6.0, 4.5, (1.0, 0.3)))
    in_memory = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    results = {}
    for compensate in (True, False):
        options = AnalysisOptions(dynamic_range_db=clip.dynamic_range_db, maps=True, motion_compensation=compensate)
        results[compensate] = analyze(in_memory, rois, options)
    maps = results[True].maps
    assert maps.summary()["motion_compensated"] is True
    rim = clip.roi_masks["rim"][results[True].layout.bmode.slices]
    core = clip.roi_masks["core"][results[True].layout.bmode.slices]
    truth = truth_parameters(clip.truth["rim"])
    for parameter, tolerance in (("PE", 0.15), ("WiWoAUC", 0.15), ("TTP", 0.10)):
        assert abs(np.nanmedian(maps.values[parameter][rim]) / truth[parameter] - 1) < tolerance, parameter
    assert np.mean(np.isnan(maps.values["PE"][core])) > 0.8
    # without compensation the core's edge is smeared by the rim moving across it
    smeared = results[False].maps.values["PE"][core]
    assert np.mean(np.isnan(smeared)) < np.mean(np.isnan(maps.values["PE"][core]))


def test_constant_curves_are_no_enhancement_with_no_qof():
    """A curve that never changes (any level, zero included) has nothing to fit: no_enhancement with
    no QOF (NaN). Before it was fit_failed, as if the fit had broken down, and its QOF the float
    rounding of a zero variance whenever that came out positive. A bolus beside them is still fitted."""
    rng = np.random.default_rng(5)
    times = np.arange(240) * 0.5
    model = get_model("lognormal")
    bolus = model.curve(times, [1e-3, 0.5, 5.0, np.log(12.0), 0.5]) * rng.exponential(1.0, times.size)
    levels = np.concatenate([[0.0, 1e-3, 0.0371, 1.0, 7.3], rng.uniform(1e-4, 10.0, 200)])
    curves = np.column_stack([np.full(times.size, level) for level in levels] + [bolus]).astype(np.float32)
    fits = fit_curves(times, curves)
    constant = slice(0, levels.size)
    assert np.all(fits.status[constant] == STATUS_NO_ENHANCEMENT), np.unique(fits.status[constant])
    assert np.all(np.isnan(fits.qof[constant]))
    assert fits.status[-1] == STATUS_FITTED and 0 < fits.qof[-1] < 100


def test_maps_of_a_slow_frame_rate_keep_the_enhancing_tissue():
    """At 0.5 Hz the spike rule (a rise shorter than two frame intervals, 4 s) called 74 % of the
    lesion's pixels (true RT 5.3 s) and 66 % of the liver's no_enhancement, drawn like necrosis. The
    rule is now the ROI fits' (the bolus rising and falling within 2 frame intervals or 3 s): two
    thirds of the enhancing pixels are mapped (the rest fail the F test on 60 frames) and the necrosis
    stays unmapped."""
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip, RoiMask

    clip = make_clip(injection_time_s=1.5, seed=0, n_frames=60, frame_interval_s=2.0)
    in_memory = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    analysis = analyze(in_memory, rois, AnalysisOptions(dynamic_range_db=clip.dynamic_range_db, injection_time_s=1.5,
                                                        maps=True, motion_compensation=False))
    status = analysis.maps.status
    panel = analysis.layout.contrast.slices
    fitted = {name: float(np.mean(status[mask[panel]] == STATUS_FITTED)) for name, mask in clip.roi_masks.items()}
    assert fitted["lesion"] > 0.55 and fitted["liver"] > 0.55, fitted
    assert fitted["necrosis"] < 0.02, fitted


def test_display_values_through_a_lookup_fit_as_their_linear_intensities():
    """fit_curves(values, lookup=table) linearises chunk by chunk on its threads (the map of a still
    grey clip no longer holds a float copy of the panel): the fits are those of table[values], bit for
    bit, over a full chunk and a partial one."""
    from DCEUSResponseLib.ceus import pixel_fits

    clip = _rim_and_core_clip(seed=6, n_frames=240)
    panel = clip.contrast_region.slices
    values = clip.frames[:, panel[0], panel[1]].reshape(len(clip.frames), -1)
    table = linear_from_gray(np.arange(256, dtype=np.float32), clip.dynamic_range_db)
    times = clip.frame_times_s - clip.injection_time_s
    assert values.shape[1] > pixel_fits.CHUNK_PIXELS and values.shape[1] % pixel_fits.CHUNK_PIXELS
    direct = fit_curves(times, table[values])
    looked_up = fit_curves(times, values, lookup=table)
    for name in ("params", "qof", "f_ratio", "status"):
        np.testing.assert_array_equal(getattr(looked_up, name), getattr(direct, name))
    with pytest.raises(ValueError, match="every value"):
        fit_curves(times, values, lookup=table[:200])


def test_reused_model_buffers_give_the_values_of_fresh_arrays():
    """The LM evaluates the lognormal into one chunk's buffers, reused as the active pixels shrink
    (views of their first elements, holding the last iteration's values): each evaluation equals
    one into fresh arrays, bit for bit, for the whole chunk and for fewer curves after it."""
    from DCEUSResponseLib.ceus import pixel_fits

    rng = np.random.default_rng(12)
    times = np.linspace(0.25, 119.75, 240)
    n_curves = 1000
    x = np.column_stack([rng.uniform(0, 0.2, n_curves), rng.uniform(0.5, 20, n_curves),
                         rng.uniform(-5, 40, n_curves), rng.uniform(1.0, 3.5, n_curves),
                         rng.uniform(0.1, 1.5, n_curves)])
    x[:3, 2] = times[-1] + 1.0  # bolus after the last bin: the curve and Jacobian vanish
    y = rng.gamma(2.0, 0.5, (len(times), n_curves)).astype(np.float32)
    root_w = rng.uniform(0.5, 2.0, len(times)).astype(np.float32)[:, None]
    model = get_model("lognormal")
    scratch = pixel_fits._Scratch(pixel_fits._LOGNORMAL_ARRAYS, y.size)
    for subset in (slice(None), slice(0, 617), slice(0, 1)):
        curve, columns = pixel_fits._lognormal_and_jacobian(times, x[subset], True)
        reused, reused_columns = pixel_fits._lognormal_and_jacobian(times, x[subset], True, scratch)
        np.testing.assert_array_equal(reused, curve)
        for column, reused_column in zip(columns, reused_columns):
            np.testing.assert_array_equal(reused_column, column)
        fresh = pixel_fits._normal_equations(model, times, y[:, subset], x[subset], root_w)
        shared = pixel_fits._normal_equations(model, times, y[:, subset], x[subset], root_w, scratch)
        for array, reused_array in zip(fresh, shared):
            np.testing.assert_array_equal(reused_array, array)
    assert np.all(np.isfinite(shared[0])) and np.any(fresh[0] != 0.0)


def test_no_curves_give_no_fits():
    """Zero curves (a region without pixels) give empty fits of the right shapes, not numpy's
    "max_workers must be greater than 0" from a thread pool of no threads."""
    times = np.linspace(0.0, 60.0, 120)
    fits = fit_curves(times, np.empty((120, 0), dtype=np.float32))
    assert fits.params.shape == (0, 5) and fits.qof.shape == fits.f_ratio.shape == fits.status.shape == (0,)
    lookup = np.linspace(0.0, 1.0, 256, dtype=np.float32)
    assert fit_curves(times, np.empty((120, 0), dtype=np.uint8), lookup=lookup).params.shape == (0, 5)
