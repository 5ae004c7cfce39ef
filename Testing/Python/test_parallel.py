"""The engine's own threads and the BLAS library's: one BLAS thread inside the engine's parallel work.

The motion matches and the map fit run numpy products beside (or on) the engine's worker threads;
:func:`DCEUSResponseLib.parallel.single_threaded_blas` keeps BLAS to one thread there, which removes
the oversubscription (NOTES "BLAS threads inside the engine's threads") and makes the numbers the
same whatever the machine's BLAS thread count.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from DCEUSResponseLib.ceus import motion, pixel_fits
from DCEUSResponseLib.parallel import single_threaded_blas
from DCEUSResponseLib.synthetic.clips import breathing_motion, default_regions, make_clip, make_frame_times

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads() -> set[int]:
    return {info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"}


def test_single_threaded_blas_limits_the_block_and_restores_the_count_after():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert _blas_threads() == {2}
        with single_threaded_blas():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


def test_without_threadpoolctl_the_block_runs_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails as if not installed
    ran = []
    with single_threaded_blas():
        ran.append(True)
    assert ran == [True]


@pytest.fixture(scope="module")
def moving_clip():
    """The contrast panel (150 x 200 px, 200 frames at 4 Hz) of a clip breathing by 4 px, and its frame times."""
    n_frames, interval = 200, 0.25
    times = make_frame_times(n_frames, interval)
    clip = make_clip(default_regions((150, 200)), panel_shape=(150, 200), n_frames=n_frames,
                     frame_interval_s=interval, dynamic_range_db=50.0, injection_time_s=0.0, seed=3,
                     motion_px=breathing_motion(times, 4.0, 4.3, (1.0, 0.4)))
    return clip.frames[(slice(None),) + clip.regions[0].slices], times


def test_the_map_fit_gives_the_same_numbers_whatever_the_blas_thread_count(moving_clip):
    """Bit for bit with 1 and 2 BLAS threads; without the limit a pixel's parameters differ by about 1
    (the dictionary's product rounds differently with two threads and its fit ends in another minimum)."""
    frames, times = moving_clip
    curves = np.exp(frames.reshape(len(frames), -1)[:, ::5].astype(np.float32) / np.float32(40.0))
    fits = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            fits.append(pixel_fits.fit_curves(times, curves))
    np.testing.assert_array_equal(fits[0].params, fits[1].params)
    np.testing.assert_array_equal(fits[0].qof, fits[1].qof)


def test_motion_matching_runs_its_products_on_one_blas_thread(moving_clip, monkeypatch):
    """The matches' matrix products run beside the feature threads: one BLAS thread while they run,
    the caller's count again afterwards."""
    seen = []
    original = motion.collect_links

    def recording(*args, **kwargs):
        seen.append(_blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(motion, "collect_links", recording)
    frames, _ = moving_clip
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        estimate = motion.estimate_motion(frames, 100, kind="contrast")  # a frame with contrast
        assert _blas_threads() == {2}
    assert seen == [{1}]
    assert estimate.significant  # the clip moves by 4 px: the matches did their work


def test_analyze_gives_the_same_numbers_whatever_the_blas_thread_count():
    """The whole analysis (motion, QC, ROI fits, maps), bit for bit with the caller's BLAS at 1 and at 2
    threads, as ``study``'s single-threaded workers compute it (the ROI fits' products are too small
    for OpenBLAS to thread; the motion matches and the map fit limit it themselves)."""
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze
    from DCEUSResponseLib.clip import Clip, RoiMask
    n_frames, interval = 240, 0.5
    times = make_frame_times(n_frames, interval)
    clip = make_clip(default_regions((120, 160)), panel_shape=(120, 160), n_frames=n_frames, frame_interval_s=interval,
                     dynamic_range_db=50.0, injection_time_s=0.0, seed=5,
                     motion_px=breathing_motion(times, 3.0, 4.3, (1.0, 0.4)))
    in_memory = Clip("synthetic", clip.frames, clip.frame_times_s, regions=clip.regions)
    rois = [RoiMask(name, mask, "synthetic") for name, mask in clip.roi_masks.items()]
    options = AnalysisOptions(dynamic_range_db=50.0, maps=True, reference="liver")
    runs = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            runs.append(analyze(in_memory, rois, options))
    one, two = runs
    np.testing.assert_array_equal(one.motion.displacement_px, two.motion.displacement_px)
    assert one.motion.significant  # the matches, the solve and the resampling all ran
    for name, roi in one.rois.items():
        assert roi.parameters == two.rois[name].parameters, name
        assert roi.relative == two.rois[name].relative, name
    for name in one.maps.values:
        np.testing.assert_array_equal(one.maps.values[name], two.maps.values[name])
    np.testing.assert_array_equal(one.maps.status, two.maps.status)


def test_blocks_on_several_threads_keep_one_blas_thread_until_the_last_one_ends():
    """A Dask worker analyses several clips on threads at once: the first block to end must not give
    the others their BLAS threads back (threadpoolctl's limit is process-wide)."""
    import threading

    main_inside, other_inside, main_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def other():
        main_inside.wait(10)
        with single_threaded_blas():
            other_inside.set()
            main_left.wait(10)
            seen["after the main thread's block ended"] = _blas_threads()

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        thread = threading.Thread(target=other)
        thread.start()
        with single_threaded_blas():
            main_inside.set()
            other_inside.wait(10)
        main_left.set()
        thread.join(20)
        assert _blas_threads() == {2}  # the other thread, last out, restored the count (it was stuck at 1)
    assert seen == {"after the main thread's block ended": {1}}


def test_nested_blocks_restore_the_count_only_at_the_outer_end():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with single_threaded_blas():
            with single_threaded_blas():
                pass
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


def test_a_later_block_on_another_long_lived_thread_still_limits_blas():
    """Dask's worker threads live on: after a block on one of them ended, a block on another must still
    get one BLAS thread (threadpoolctl 3.8 lets only the last thread that changed OpenBLAS change it)."""
    import threading

    if max(_blas_threads()) < 2:
        pytest.skip("BLAS runs on one thread here already")
    if hasattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread"):
        threadpoolctl.OpenBLASController.clear_controlling_thread(force=True)  # no earlier test's thread
    before = _blas_threads()
    seen, first_done, finish = {}, threading.Event(), threading.Event()

    def block(name: str) -> None:
        with single_threaded_blas():
            seen[name] = _blas_threads()

    def first() -> None:
        block("first")
        first_done.set()
        finish.wait(10)  # stays alive, as a worker thread does

    first_thread = threading.Thread(target=first)
    first_thread.start()
    first_done.wait(10)
    second_thread = threading.Thread(target=block, args=("second",))
    second_thread.start()
    second_thread.join(10)
    finish.set()
    first_thread.join(10)
    assert seen == {"first": {1}, "second": {1}}
    assert _blas_threads() == before
