"""Benchmark of parametric maps: ``analyze --maps`` against a per-pixel ``scipy.optimize.curve_fit`` loop.

Usage::

    python Testing/benchmarks/bench_maps.py            # 320 x 240 pixels, 720 frames
    python Testing/benchmarks/bench_maps.py --large    # 800 x 600 pixels, 1,500 frames

Generates a synthetic single-display clip (lognormal perfusion per region, speckle, log
compression) as DICOM with its ROIs, then, in this process:

1. times ``analyze --maps`` as a whole (reading, linearising, fitting, writing every output), once
   with the defaults (motion compensation and frame quality control on) and once with both off;
2. times ``curve_fit`` of the same model on a random sample of the same pixels' TICs (the baseline),
   and extrapolates it to every pixel of the map;
3. prints the speed ratio, the agreement of the two fits where both converge, the maps' medians
   inside the regions against the truth, and the peak memory of the whole command (measured in a
   child process running the same command line).
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

from DCEUSResponseLib.app.cli import main as dceus# noqa: E402
from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe# noqa: E402
from DCEUSResponseLib.ceus.linearize import linear_from_gray# noqa: E402
from DCEUSResponseLib.kinetics.models import get_model# noqa: E402
from DCEUSResponseLib.kinetics.parameters import bolus_parameters# noqa: E402
from DCEUSResponseLib.synthetic import (default_regions, make_clip, make_frame_times, truth_parameters,  # noqa: E402
                                        write_roi_masks)

COMPARED = ("PE", "TTP", "mTTl", "WiWoAUC")
FRAME_BORDER = (32, 32)  # rows, columns of the scanner border around the panel (synthetic layout)
DYNAMIC_RANGE_DB = 50.0
CLIP_SECONDS = 120.0


def generate(rows: int, columns: int, n_frames: int, folder: str, frames_per_step: int = 120):
    """Write the clip as DICOM in steps of frames (memory stays bounded for the large case)."""
    panel = (rows - FRAME_BORDER[0], columns - FRAME_BORDER[1])
    interval = CLIP_SECONDS / n_frames
    regions = default_regions(panel)
    times = make_frame_times(n_frames, interval)
    frames = None
    first = None
    for start in range(0, n_frames, frames_per_step):
        count = min(frames_per_step, n_frames - start)
        part = make_clip(regions, panel_shape=panel, n_frames=count, frame_interval_s=interval,
                         dynamic_range_db=DYNAMIC_RANGE_DB, injection_time_s=-times[start], seed=start)
        if frames is None:
            frames = np.empty((n_frames,) + part.frames.shape[1:], dtype=np.uint8)
            first = part
        frames[start:start + count] = part.frames
    path = os.path.join(folder, "clip.dcm")
    write_ultrasound_multiframe(path, frames, times, regions=first.regions)
    first.frames = frames
    first.frame_times_s = times
    masks = write_roi_masks(first, os.path.join(folder, "rois"))
    return path, masks, first


def time_analyze(argv: list[str]) -> float:
    start = time.perf_counter()
    with open(os.devnull, "w") as sink:
        stdout = sys.stdout
        sys.stdout = sink
        try:
            code = dceus(argv)
        finally:
            sys.stdout = stdout
    if code != 0:
        raise SystemExit(f"analyze failed with exit status {code}")
    return time.perf_counter() - start


def peak_memory_mib(argv: list[str]) -> float:
    """Peak resident memory of the same command run alone in a child process (MiB)."""
    wrapper = ("import resource, sys; from DCEUSResponseLib.cli import main; code = main(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", wrapper, *argv], cwd=REPO, check=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return int(result.stderr.strip().splitlines()[-1]) / 1024.0


def curve_fit_sample(clip, sample_pixels: np.ndarray, times_s: np.ndarray):
    """Per-pixel curve_fit on the sampled pixels: (parameters per pixel or None, seconds per pixel)."""
    from scipy.optimize import curve_fit

    model = get_model("lognormal")
    panel = clip.contrast_region
    rows, columns = np.unravel_index(sample_pixels, (panel.rows, panel.columns))
    gray = clip.frames[:, panel.y0 + rows, panel.x0 + columns].astype(np.float32)
    curves = linear_from_gray(gray, DYNAMIC_RANGE_DB).astype(np.float64)
    span = times_s[-1] - times_s[0]
    lower = [0.0, 0.0, times_s[0] - span, np.log(0.05), 0.02]
    upper = [np.inf, np.inf, times_s[-1], np.log(20 * span + 10), 2.5]
    results = []
    start = time.perf_counter()
    for j in range(curves.shape[1]):
        y = curves[:, j]
        smooth = np.convolve(y, np.ones(15) / 15, "same")
        k = int(np.argmax(smooth))
        p0 = [max(float(np.median(y[:20])), 1e-7), max(smooth[k] - np.median(y[:20]), 1e-7) * 15.0,
              max(times_s[k] - 8.0, times_s[0]), np.log(8.0) + 0.25, 0.5]
        try:
            fitted, _ = curve_fit(lambda t, *p: model.curve(t, p), times_s, y, p0=p0, bounds=(lower, upper),
                                  maxfev=4000)
            results.append(bolus_parameters(model, fitted, None))
        except (RuntimeError, ValueError):
            results.append(None)
    return results, (time.perf_counter() - start) / curves.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="800 x 600 pixels, 1,500 frames")
    parser.add_argument("--sample", type=int, default=200, help="pixels fitted with curve_fit (default 200)")
    parser.add_argument("--keep", metavar="DIR", help="keep the clip and outputs in DIR")
    args = parser.parse_args()
    rows, columns, n_frames = (600, 800, 1500) if args.large else (240, 320, 720)
    folder = args.keep or tempfile.mkdtemp(prefix="dceus-bench-")
    os.makedirs(folder, exist_ok=True)
    print(f"clip: {columns} x {rows} pixels, {n_frames} frames ({n_frames * rows * columns / 2**20:.0f} MiB as 8-bit)")
    started = time.perf_counter()
    clip_path, masks, clip = generate(rows, columns, n_frames, folder)
    print(f"generated in {time.perf_counter() - started:.1f} s: {clip_path}")

    common = ["analyze", clip_path, "--roi", masks["__segmentation__"], "--reference", "liver",
              "--dynamic-range", str(DYNAMIC_RANGE_DB), "--maps"]
    maps_only = common + ["--no-motion-compensation", "--no-frame-qc", "--out", os.path.join(folder, "maps-only")]
    full = common + ["--out", os.path.join(folder, "default")]
    seconds_maps_only = time_analyze(maps_only)
    seconds_full = time_analyze(full)

    panel = clip.contrast_region
    n_pixels = panel.rows * panel.columns
    rng = np.random.default_rng(0)
    sample = rng.choice(n_pixels, size=min(args.sample, n_pixels), replace=False)
    times_s = clip.frame_times_s - clip.injection_time_s
    reference, seconds_per_pixel = curve_fit_sample(clip, sample, times_s)
    loop_seconds = seconds_per_pixel * n_pixels

    import nrrd

    maps = {p: nrrd.read(os.path.join(folder, "maps-only", "maps", f"{p}.nrrd"), index_order="C")[0].ravel()
            for p in COMPARED}
    differences = {p: [] for p in COMPARED}
    for j, fit in zip(sample, reference):
        if fit is None or any(fit[p] is None for p in COMPARED) or not np.isfinite(maps["PE"][j]):
            continue
        for p in COMPARED:
            differences[p].append(abs(maps[p][j] / fit[p] - 1.0))
    both = len(differences["PE"])

    results = json.load(open(os.path.join(folder, "maps-only", "results.json")))
    truth_rows = []
    for name, params in clip.truth.items():
        if params["A"] <= 0:
            continue
        truth = truth_parameters(params)
        inside = clip.roi_masks[name][panel.slices].ravel()
        for p, tolerance in (("PE", 0.15), ("WiWoAUC", 0.15), ("mTTl", 0.15), ("TTP", 0.10)):
            values = nrrd.read(os.path.join(folder, "maps-only", "maps", f"{p}.nrrd"), index_order="C")[0].ravel()
            median = float(np.nanmedian(values[inside]))
            truth_rows.append((name, p, median, truth[p], abs(median / truth[p] - 1), tolerance))

    memory = peak_memory_mib(maps_only)
    memory_full = peak_memory_mib(full)

    target_seconds = 60.0 if args.large else 5.0
    print()
    print(f"map pixels: {n_pixels} ({panel.rows} x {panel.columns}), fitted: {results['maps']['pixels']['fitted']}")
    print(f"analyze --maps, motion compensation and frame QC off: {seconds_maps_only:7.2f} s "
          f"(target < {target_seconds:g} s: {'PASS' if seconds_maps_only < target_seconds else 'FAIL'})")
    print(f"analyze --maps, defaults (motion compensation, frame QC): {seconds_full:7.2f} s")
    print(f"per-pixel curve_fit: {1000 * seconds_per_pixel:.2f} ms per pixel on {len(sample)} pixels, "
          f"extrapolated to all pixels: {loop_seconds:.0f} s")
    ratio = loop_seconds / seconds_maps_only
    print(f"speed ratio (curve_fit loop / analyze --maps, whole process): {ratio:.0f}x "
          f"(target >= 100x: {'PASS' if ratio >= 100 else 'FAIL'}); with motion and QC: "
          f"{loop_seconds / seconds_full:.0f}x")
    print(f"agreement with curve_fit where both converge ({both} of {len(sample)} pixels), median |relative difference|:")
    for p in COMPARED:
        median = 100 * float(np.median(differences[p])) if differences[p] else float("nan")
        print(f"  {p:8s} {median:6.3f} %  (target < 1 %: {'PASS' if median < 1 else 'FAIL'})")
    print("median map value inside each region against the truth:")
    for name, p, median, truth, error, tolerance in truth_rows:
        print(f"  {name:8s} {p:8s} {median:10.4g} vs {truth:10.4g}  {100 * error:5.1f} % "
              f"(target < {100 * tolerance:g} %: {'PASS' if error < tolerance else 'FAIL'})")
    memory_target = 4096.0
    print(f"peak memory of the whole command: {memory:.0f} MiB maps only, {memory_full:.0f} MiB with defaults "
          f"(target < {memory_target:.0f} MiB: {'PASS' if max(memory, memory_full) < memory_target else 'FAIL'})")
    print(f"outputs in {folder}" if args.keep else "")


if __name__ == "__main__":
    main()
