"""Benchmark of motion estimation and of the motion resampling for maps, as ratios to a baseline.

Usage::

    python Testing/benchmarks/bench_motion.py                 # 320 x 240 pixels, 720 frames
    python Testing/benchmarks/bench_motion.py --large         # and 800 x 600 pixels, 1,500 frames
    python Testing/benchmarks/bench_motion.py --before REV    # also time the estimator of git revision REV

For each size a synthetic single-display clip is generated in memory (the regions of
``default_regions``, 120 s, still; the small one also with 6 px of breathing), and in this process:

1. the baseline: one pass of linearisation of the whole contrast panel (gray level to linear
   intensity, float32, in chunks, as the maps do) -- the unit every other figure is divided by;
2. ``estimate_motion`` on the contrast panel's gray levels, as ``analyze`` calls it by default;
3. the motion resampling of the maps: every frame of the panel moved back by a sub-pixel
   displacement, with ``sample_shifted`` (now) and with ``scipy.ndimage.map_coordinates`` over a full
   coordinate grid (before), both on the already linearised frames;

and prints seconds and ratios to the baseline, the motion found (significant or not, RMS, error
against the truth when the clip moves) and, with ``--before``, the old estimator's figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from DCEUSResponseLib.ceus.linearize import linear_from_gray  # noqa: E402
from DCEUSResponseLib.ceus.motion import estimate_motion  # noqa: E402
from DCEUSResponseLib.ceus.motion_sampling import sample_shifted  # noqa: E402
from DCEUSResponseLib.synthetic.clips import breathing_motion, default_regions, make_clip, make_frame_times  # noqa: E402

DYNAMIC_RANGE_DB = 50.0
CLIP_SECONDS = 120.0
FRAME_BORDER = (32, 32)
CHUNK_FRAMES = 64


def contrast_panel(rows: int, columns: int, n_frames: int, breathing_px: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray levels (frames x panel rows x panel columns, uint8) of the contrast panel, and the true motion."""
    panel = (rows - FRAME_BORDER[0], columns - FRAME_BORDER[1])
    interval = CLIP_SECONDS / n_frames
    times = make_frame_times(n_frames, interval)
    motion = breathing_motion(times, breathing_px, 4.3, (1.0, 0.4)) if breathing_px else None
    gray = np.empty((n_frames,) + panel, dtype=np.uint8)
    step = 120
    for start in range(0, n_frames, step):
        count = min(step, n_frames - start)
        part = make_clip(default_regions(panel), panel_shape=panel, n_frames=count, frame_interval_s=interval,
                         dynamic_range_db=DYNAMIC_RANGE_DB, injection_time_s=-times[start], seed=start,
                         motion_px=None if motion is None else motion[start:start + count])
        region = part.contrast_region
        gray[start:start + count] = part.frames[:, region.slices[0], region.slices[1]]
    return gray, motion


def linearisation_pass(gray: np.ndarray) -> float:
    """Seconds of one pass of gray -> linear intensity over the panel (the baseline)."""
    started = time.perf_counter()
    for start in range(0, gray.shape[0], CHUNK_FRAMES):
        linear_from_gray(gray[start:start + CHUNK_FRAMES], DYNAMIC_RANGE_DB)
    return time.perf_counter() - started


def resampling(gray: np.ndarray, displacement: np.ndarray, method: str) -> float:
    """Seconds to move every (linearised) frame back onto the reference grid, margin clamped."""
    from scipy.ndimage import map_coordinates

    n_frames, rows, columns = gray.shape
    grid = np.mgrid[0:rows, 0:columns].astype(np.float64) if method == "map_coordinates" else None
    elapsed = 0.0
    for start in range(0, n_frames, CHUNK_FRAMES):
        linear = linear_from_gray(gray[start:start + CHUNK_FRAMES], DYNAMIC_RANGE_DB)
        began = time.perf_counter()
        for j in range(linear.shape[0]):
            d = displacement[start + j]
            if method == "map_coordinates":
                map_coordinates(linear[j], [grid[0] + d[0], grid[1] + d[1]], order=1, mode="nearest")
            else:
                sample_shifted(linear[j], 0, 0, rows, columns, d)
        elapsed += time.perf_counter() - began
    return elapsed


_BEFORE_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, {package!r})
from DCEUSResponseLib.ceus.motion import estimate_motion
gray = np.load({gray!r})
started, cpu = time.perf_counter(), time.process_time()
estimate = estimate_motion(gray, 0, kind="contrast")
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
np.savez({out!r}, displacement=estimate.displacement_px, reliable=estimate.reliable)
print(json.dumps({{"seconds": seconds, "cpu": cpu, "significant": getattr(estimate, "significant", None)}}))
"""


class _EstimateBefore:
    """What :func:`describe` reads of an estimate made by another revision's engine."""

    def __init__(self, displacement_px: np.ndarray, reliable: np.ndarray, significant):
        self.displacement_px, self.reliable, self.significant = displacement_px, reliable, significant
        self.rms_displacement_px = float(np.sqrt(np.mean(np.sum(displacement_px ** 2, axis=1))))


def load_estimator(revision: str, folder: str):
    """``estimate_motion`` of the whole engine at a git revision (``git archive`` into ``folder``), run in a
    child process: the revision's motion code is several modules, which cannot share this process's package."""
    import io
    import tarfile

    archive = subprocess.run(["git", "archive", revision, "DCEUSResponseLib"], cwd=REPO, check=True,
                             capture_output=True).stdout
    package = os.path.join(folder, "package")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(package, filter="data")

    def estimator(gray: np.ndarray, reference_frame: int, kind: str):
        gray_path, out = os.path.join(folder, "gray.npy"), os.path.join(folder, "estimate.npz")
        np.save(gray_path, gray)
        code = _BEFORE_CHILD.format(package=package, gray=gray_path, out=out)
        result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": package})
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        with np.load(out) as arrays:
            estimate = _EstimateBefore(arrays["displacement"], arrays["reliable"], figures["significant"])
        return estimate, figures["seconds"], figures["cpu"]

    return estimator


def timed_estimate(estimator, gray: np.ndarray):
    started = time.perf_counter()
    cpu = time.process_time()
    estimate = estimator(gray, 0, kind="contrast")
    return estimate, time.perf_counter() - started, time.process_time() - cpu


def describe(estimate, truth) -> str:
    significant = getattr(estimate, "significant", None)
    text = (f"significant {significant}, RMS {estimate.rms_displacement_px:.3f} px, "
            f"{int(np.count_nonzero(~estimate.reliable))} frames without a match")
    if truth is not None:
        # Frame 0 precedes the bolus: the estimate is relative to the first frame with structure.
        matched = estimate.reliable
        difference = (estimate.displacement_px - truth)[matched]
        error = np.sqrt(np.mean(np.sum((difference - np.median(difference, axis=0)) ** 2, axis=1)))
        text += f", RMS error {error:.3f} px over the matched frames (common offset removed)"
    return text


def run_case(label: str, rows: int, columns: int, n_frames: int, breathing_px: float, before) -> None:
    started = time.perf_counter()
    gray, motion = contrast_panel(rows, columns, n_frames, breathing_px)
    print(f"\n{label}: {columns} x {rows} frame, contrast panel {gray.shape[2]} x {gray.shape[1]}, "
          f"{n_frames} frames, breathing {breathing_px:g} px (generated in {time.perf_counter() - started:.0f} s)")
    baseline = min(linearisation_pass(gray) for _ in range(2))
    print(f"  baseline, one linearisation pass of the panel: {baseline:7.2f} s")
    truth = None if motion is None else motion - motion[0]
    estimate, seconds, cpu = timed_estimate(estimate_motion, gray)
    print(f"  motion estimation (now):    {seconds:7.2f} s = {seconds / baseline:5.1f} x baseline "
          f"(CPU {cpu:.2f} s); {describe(estimate, truth)}")
    if before is not None:
        old, old_seconds, old_cpu = before(gray, 0, kind="contrast")
        print(f"  motion estimation (before): {old_seconds:7.2f} s = {old_seconds / baseline:5.1f} x baseline "
              f"(CPU {old_cpu:.2f} s); {describe(old, truth)}")
    # A sub-pixel breathing displacement for the resampling, whatever the estimate found.
    times = np.arange(n_frames) * CLIP_SECONDS / n_frames
    shifts = breathing_motion(times, 6.0, 4.3, (1.0, 0.4)) + 0.37
    for method, name in (("sample_shifted", "now"), ("map_coordinates", "before")):
        seconds = resampling(gray, shifts, method)
        print(f"  motion resampling for maps ({name}, {method}): {seconds:7.2f} s = "
              f"{seconds / baseline:5.2f} x baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 800 x 600 pixels, 1,500 frames")
    parser.add_argument("--before", metavar="REV", help="also time the motion estimator of this git revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dceus-bench-motion-") as folder:
        before = load_estimator(args.before, folder) if args.before else None
        run_case("small, still", 240, 320, 720, 0.0, before)
        run_case("small, breathing", 240, 320, 720, 6.0, before)
        if args.large:
            run_case("large, still", 600, 800, 1500, 0.0, before)


if __name__ == "__main__":
    main()
