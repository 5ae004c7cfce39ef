"""Benchmark of parametric maps: ``analyze --maps`` against a per-pixel ``scipy.optimize.curve_fit`` loop.

Usage::

    python Testing/benchmarks/bench_maps.py            # 320 x 240 pixels, 720 frames
    python Testing/benchmarks/bench_maps.py --large    # 800 x 600 pixels, 1,500 frames
    python Testing/benchmarks/bench_maps.py --runs 3   # each command 3 times; the targets use medians

Generates a synthetic single-display clip (lognormal perfusion per region, speckle, log
compression) as DICOM with its ROIs, then, in this process:

1. times ``analyze --maps`` as a whole (reading, linearising, fitting, writing every output), once
   with the defaults (motion compensation and frame quality control on) and once with both off;
2. times ``curve_fit`` of the same model on a random sample of the same pixels' TICs (the baseline),
   and extrapolates it to every pixel of the map;
3. prints the speed ratio, the agreement of the two fits where both converge, the maps' medians
   inside the regions against the truth.

Every command (reading the clip alone, ROI-only ``analyze``, ``analyze --maps`` with the defaults
and with motion compensation and frame QC off) runs in a child process of its own
(:mod:`measure`), which reports its time after imports, its whole-process time and its own peak
memory; each is printed as a ratio to the baseline, reading and decoding the same clip.

Then the floor of ROI-only ``analyze`` with the defaults, each part in a child of its own: the
imports ``analyze`` needs (scipy.optimize for the ROI fits, pydicom, the engine) and reading the clip
plus estimating its motion, which the defaults require. Their sum, before frame QC, the ROI fits or
any output, is printed against the same baseline: what no faster fit or writer can go below.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import READ_CLIP, cli_command, ratio_line, read_baseline, run_child  # noqa: E402

from DCEUSResponseLib.synthetic.dicom_us import write_ultrasound_multiframe# noqa: E402
from DCEUSResponseLib.ceus.linearize import linear_from_gray# noqa: E402
from DCEUSResponseLib.kinetics.models import get_model# noqa: E402
from DCEUSResponseLib.kinetics.parameters import bolus_parameters# noqa: E402
from DCEUSResponseLib.synthetic.clips import (default_regions, make_clip, make_frame_times, truth_parameters,  # noqa: E402
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


#: The imports ``analyze`` pays for after the command line's own (the command module and what it imports).
ANALYZE_IMPORTS = ("from DCEUSResponseLib.app.cli import main", "import DCEUSResponseLib.app.commands.analyze")
#: Reading the clip and estimating its motion as ``analyze`` does by default (contrast panel of a single display).
READ_AND_MOTION = (READ_CLIP[0] + "\nfrom DCEUSResponseLib.ceus.motion import estimate_motion",
                   READ_CLIP[1] + "\npanel = clip.frames[(slice(None),) + clip.regions[0].slices]\n"
                   "estimate_motion(panel, 0, kind='contrast', spacing_mm=clip.regions[0].spacing_mm)")


def roi_only_floor(clip_path: str, baseline: dict, roi_only: dict, runs: int) -> None:
    """Print what ROI-only ``analyze`` cannot go below with the defaults, as ratios to ``baseline``."""
    imports = _median_figures([run_child(*ANALYZE_IMPORTS) for _ in range(runs)])
    read_and_motion = _median_figures([run_child(READ_AND_MOTION[0], READ_AND_MOTION[1].format(path=clip_path))
                                       for _ in range(runs)])
    floor = imports["seconds"] + read_and_motion["seconds"]
    print("\nfloor of ROI-only analyze with the defaults (after the command line's imports, as its time is measured):")
    print(ratio_line("  imports of analyze (scipy.optimize, pydicom, ...)", imports, baseline))
    print(ratio_line("  read + decode + motion estimation", read_and_motion, baseline))
    print(f"  sum {floor:.2f} s = {floor / baseline['seconds']:.1f}x read, of ROI-only analyze's "
          f"{roi_only['seconds']:.2f} s ({roi_only['seconds'] / baseline['seconds']:.1f}x; target 3x): the rest is "
          "frame QC, the ROI fits and the outputs")


def _median_figures(runs: list[dict]) -> dict:
    """The median of each time over runs of one command, and the largest peak memory."""
    return {key: (max(run[key] for run in runs) if key == "peak_mib" else float(np.median([run[key] for run in runs])))
            for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="800 x 600 pixels, 1,500 frames")
    parser.add_argument("--sample", type=int, default=200, help="pixels fitted with curve_fit (default 200)")
    parser.add_argument("--keep", metavar="DIR", help="keep the clip and outputs in DIR")
    parser.add_argument("--size", metavar="COLUMNSxROWSxFRAMES", help="another clip size, e.g. 1000x800x3000")
    parser.add_argument("--no-curve-fit", action="store_true", help="skip the curve_fit baseline and the accuracy")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure the commands this many times, interleaved (a shared machine's timings vary "
                             "by tens of per cent); each run is printed and the targets use the medians")
    args = parser.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        measure_and_report(args, args.keep)
    else:  # the clip and every output are removed afterwards
        with tempfile.TemporaryDirectory(prefix="dceus-bench-") as folder:
            measure_and_report(args, folder)


def measure_and_report(args: argparse.Namespace, folder: str) -> None:
    rows, columns, n_frames = (600, 800, 1500) if args.large else (240, 320, 720)
    if args.size:
        columns, rows, n_frames = (int(v) for v in args.size.lower().split("x"))
    print(f"clip: {columns} x {rows} pixels, {n_frames} frames ({n_frames * rows * columns / 2**20:.0f} MiB as 8-bit)")
    started = time.perf_counter()
    clip_path, masks, clip = generate(rows, columns, n_frames, folder)
    print(f"generated in {time.perf_counter() - started:.1f} s: {clip_path}")

    common = ["analyze", clip_path, "--roi", masks["__segmentation__"], "--reference", "liver",
              "--dynamic-range", str(DYNAMIC_RANGE_DB)]
    commands = {
        "read + decode (baseline)": None,
        "analyze, ROI only, defaults": common + ["--out", os.path.join(folder, "roi-only")],
        "analyze --maps, defaults (motion, frame QC)": common + ["--maps", "--out", os.path.join(folder, "default")],
        "analyze --maps, motion and frame QC off": common + ["--maps", "--no-motion-compensation", "--no-frame-qc",
                                                            "--out", os.path.join(folder, "maps-only")],
    }
    runs = []
    for run in range(max(1, args.runs)):
        print(f"\nrun {run + 1}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"on {len(os.sched_getaffinity(0))} cores")
        figures = {name: read_baseline(clip_path) if argv is None else run_child(*cli_command(argv))
                   for name, argv in commands.items()}
        for name, measured in figures.items():
            print(ratio_line(name, measured, figures["read + decode (baseline)"]))
        runs.append(figures)
    if len(runs) > 1:
        figures = {name: _median_figures([run[name] for run in runs]) for name in commands}
        print(f"\nmedians of {len(runs)} runs (peak memory: the largest)")
        for name, measured in figures.items():
            print(ratio_line(name, measured, figures["read + decode (baseline)"]))
    baseline = figures["read + decode (baseline)"]
    memory_target = 4096.0
    peak = max(measured["peak_mib"] for measured in figures.values())
    print(f"largest peak memory {peak:.0f} MiB (target < {memory_target:.0f} MiB: "
          f"{'PASS' if peak < memory_target else 'FAIL'})")
    seconds_full = figures["analyze --maps, defaults (motion, frame QC)"]["process_s"]
    seconds_maps_only = figures["analyze --maps, motion and frame QC off"]["process_s"]
    roi_ratio = figures["analyze, ROI only, defaults"]["seconds"] / baseline["seconds"]
    print(f"ROI-only analyze / read + decode (after imports): {roi_ratio:.1f}x (target <= 3x: "
          f"{'PASS' if roi_ratio <= 3 else 'FAIL'})")
    roi_only_floor(clip_path, baseline, figures["analyze, ROI only, defaults"], max(1, args.runs))
    target_seconds = 60.0 if args.large else 5.0
    print(f"analyze --maps with the defaults, whole process: {seconds_full:.2f} s (target < {target_seconds:g} s: "
          f"{'PASS' if seconds_full < target_seconds else 'FAIL'})")
    if args.no_curve_fit:
        print(f"outputs in {folder}" if args.keep else "")
        return

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
        if fit is None or not np.isfinite(maps["PE"][j]):
            continue
        for p in COMPARED:
            # A map leaves a pixel's extrapolated parameter out (NaN): compared where both have it.
            if fit[p] is not None and np.isfinite(maps[p][j]):
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

    print(f"map pixels: {n_pixels} ({panel.rows} x {panel.columns}), fitted: {results['maps']['pixels']['fitted']}")
    print(f"per-pixel curve_fit: {1000 * seconds_per_pixel:.2f} ms per pixel on {len(sample)} pixels, "
          f"extrapolated to all pixels: {loop_seconds:.0f} s")
    ratio = loop_seconds / seconds_full
    print(f"speed ratio (curve_fit loop / analyze --maps with the defaults, whole process): {ratio:.0f}x "
          f"(target >= 100x: {'PASS' if ratio >= 100 else 'FAIL'}); motion and QC off: "
          f"{loop_seconds / seconds_maps_only:.0f}x")
    print(f"agreement with curve_fit where both converge ({both} of {len(sample)} pixels), median |relative difference|:")
    for p in COMPARED:
        median = 100 * float(np.median(differences[p])) if differences[p] else float("nan")
        print(f"  {p:8s} {median:6.3f} %  (target < 1 %: {'PASS' if median < 1 else 'FAIL'})")
    print("median map value inside each region against the truth:")
    for name, p, median, truth, error, tolerance in truth_rows:
        print(f"  {name:8s} {p:8s} {median:10.4g} vs {truth:10.4g}  {100 * error:5.1f} % "
              f"(target < {100 * tolerance:g} %: {'PASS' if error < tolerance else 'FAIL'})")
    memory_target = 4096.0
    print(f"outputs in {folder}" if args.keep else "")


if __name__ == "__main__":
    main()
