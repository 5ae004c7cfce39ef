"""Benchmark of ``study``: a 10-patient x 4-exam synthetic cohort (ROI analysis, no maps) on 1 and 2
local worker processes.

Usage::

    python Testing/benchmarks/bench_study.py                 # 10 x 4 clips, 128 x 160 pixels, 90 frames
    python Testing/benchmarks/bench_study.py --patients 4    # a smaller cohort

Builds the cohort (``DCEUSResponseLib.synthetic.cohort``; every patient's baseline injected twice
for the first two patients), then runs ``dceus study`` into a fresh folder per worker count and
prints, from each ``study.json``: the wall time of the clip phase (``executor.seconds``), the time per
clip (wall / clips, and the mean of the clips' own times), the time for the tables and reports,
and the speed-up of 2 workers over 1 (target >= 1.8x). The load average is printed beside the
figures: on a shared machine other processes take cores and the speed-up with them, so the
benchmark also prints the speed-up the cores allowed (from how much each clip slowed down) and
the executor's efficiency against it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")  # the workers import this copy

from DCEUSResponseLib.app.cli import main as dceus  # noqa: E402
from DCEUSResponseLib.synthetic.cohort import build_cohort  # noqa: E402


def _run(manifest: str, out: str, workers: int) -> dict:
    started = time.monotonic()
    status = dceus(["study", manifest, "--out", out, "--workers", str(workers)])
    total = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"study exited {status}")
    with open(os.path.join(out, "study.json"), encoding="utf-8") as stream:
        record = json.load(stream)
    clips = record["clips"]
    phase = record["executor"]["seconds"]
    return {"workers": workers, "clips": len(clips), "clip_phase_s": phase, "wall_per_clip_s": phase / len(clips),
            "mean_clip_s": sum(c["seconds"] for c in clips) / len(clips), "tables_and_reports_s": total - phase,
            "total_s": total, "load": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--exams", type=int, default=4)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--columns", type=int, default=160)
    parser.add_argument("--frames", type=int, default=90)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-study-") as folder:
        started = time.monotonic()
        manifest, clips = build_cohort(os.path.join(folder, "cohort"), n_patients=args.patients, n_exams=args.exams,
                                       repeated=(), panel_shape=(args.rows, args.columns), n_frames=args.frames)
        print(f"cohort: {args.patients} patients x {args.exams} exams = {len(clips)} clips of "
              f"{args.rows} x {args.columns} pixels x {args.frames} frames, "
              f"built in {time.monotonic() - started:.1f} s")
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
        results = {}
        for workers in (1, 2):
            result = _run(manifest, os.path.join(folder, f"out{workers}"), workers)
            results[workers] = result
            print(f"{workers} worker(s): clip phase {result['clip_phase_s']:.1f} s, {result['wall_per_clip_s']:.2f} s "
                  f"per clip (wall), each clip {result['mean_clip_s']:.2f} s on its worker; tables and reports "
                  f"{result['tables_and_reports_s']:.1f} s; load average after "
                  f"{' '.join(f'{v:.2f}' for v in result['load'])}")
        speedup = results[1]["clip_phase_s"] / results[2]["clip_phase_s"]
        print(f"speed-up of 2 workers over 1 (clip phase): {speedup:.2f}x (target >= 1.8x)")
        # On a shared machine each clip slows down when both workers run; the speed-up the cores
        # allowed is 2 x (clip time alone / clip time with 2 workers). Their ratio is what the executor
        # itself keeps (1.0 = no overhead of its own).
        allowed = 2 * results[1]["mean_clip_s"] / results[2]["mean_clip_s"]
        print(f"clips took {results[2]['mean_clip_s'] / results[1]['mean_clip_s']:.2f}x longer each with 2 workers: "
              f"the cores allowed {allowed:.2f}x; executor efficiency {speedup / allowed:.2f}")


if __name__ == "__main__":
    main()
