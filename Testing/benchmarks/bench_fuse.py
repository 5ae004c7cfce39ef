"""Benchmark of ``fuse`` on a 512 x 512 x 300 CT and a 200 x 200 x 250 PET (the synthetic patient's
BENCHMARK grids), against reading the two series once.

Usage::

    python Testing/benchmarks/bench_fuse.py [--runs 2] [--cache build/bench_fuse]

The series take about 75 s to write, so they are cached under ``--cache`` (kept between runs). A short
demo clip is analysed there once too. Each measurement runs in a child process of its own, so peak
memory (``ru_maxrss``) is that of one command: (a) reading the CT and the PET once
(``read_volume``); (b) ``fuse`` as the command runs it (``--landmarks``, 5 mm slab, all files
written, no scene). Printed: wall times, peak memory, and their ratios b / a.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
start = time.perf_counter()
if {mode!r} == "read":
    from DCEUSResponseLib.io.volumes import read_volume
    read_volume({ct!r}, "CT"); read_volume({pet!r}, "PT")
    code = 0
else:
    from DCEUSResponseLib.app.cli import main
    code = main({argv!r})
elapsed = time.perf_counter() - start
print(json.dumps({{"seconds": elapsed, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "code": code}}))
"""


def prepare(cache: str) -> dict:
    """The cached benchmark series, analysis and landmark files (written when missing)."""
    from DCEUSResponseLib.app.demo import PANEL_SHAPE, demo_landmarks, demo_regions, write_landmark_files
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze_files
    from DCEUSResponseLib.export.contract import write_analysis
    from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks
    from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
    from DCEUSResponseLib.synthetic.patient import BENCHMARK_CT_GRID, BENCHMARK_PET_GRID, make_patient

    os.makedirs(cache, exist_ok=True)
    done = os.path.join(cache, "patient", "complete")
    if not os.path.isfile(done):
        start = time.perf_counter()
        write_patient(os.path.join(cache, "patient"), make_patient(demo_regions("baseline")),
                      ct_grid=BENCHMARK_CT_GRID, pet_grid=BENCHMARK_PET_GRID)
        open(done, "w").close()
        print(f"wrote the benchmark CT and PET in {time.perf_counter() - start:.0f} s")
    analysis = os.path.join(cache, "analysis")
    if not os.path.isfile(os.path.join(analysis, "results.json")):
        clip = make_clip(demo_regions("baseline"), panel_shape=PANEL_SHAPE, n_frames=40, frame_interval_s=1.0,
                         display="dual", colour="gold", injection_time_s=2.0, dynamic_range_db=50.0)
        write_clip(clip, os.path.join(cache, "clip.dcm"), timing="vector")
        masks = write_roi_masks(clip, os.path.join(cache, "rois"))
        result = analyze_files(os.path.join(cache, "clip.dcm"), [masks["__segmentation__"]],
                               AnalysisOptions(dynamic_range_db=50.0, injection_time_s=2.0, reference="liver",
                                               maps=True, map_binning=8, motion_compensation=False))
        write_analysis(result, analysis)
    landmarks = write_landmark_files(cache, *demo_landmarks(noise_mm=1.0, seed=0))
    return {"ct": os.path.join(cache, "patient", "ct"), "pet": os.path.join(cache, "patient", "pet"),
            "analysis": analysis, "landmarks": "=".join(landmarks)}


def measure(mode: str, inputs: dict, out: str) -> dict:
    argv = ["fuse", inputs["analysis"], "--ct", inputs["ct"], "--pet", inputs["pet"], "--landmarks",
            inputs["landmarks"], "--out", out]
    code = _CHILD.format(repo=REPO, mode=mode, ct=inputs["ct"], pet=inputs["pet"], argv=argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(REPO, "build", "bench_fuse"))
    args = parser.parse_args()
    inputs = prepare(args.cache)
    for run in range(args.runs):
        read = measure("read", inputs, "")
        fused = measure("fuse", inputs, os.path.join(args.cache, f"out{run}"))
        assert fused["code"] == 0
        print(f"run {run + 1}: read CT + PET {read['seconds']:.1f} s, {read['peak_mib']:.0f} MiB; "
              f"fuse {fused['seconds']:.1f} s, {fused['peak_mib']:.0f} MiB; ratios time "
              f"{fused['seconds'] / read['seconds']:.2f}, memory {fused['peak_mib'] / read['peak_mib']:.2f} "
              "(targets: fuse < 10 s, < 3 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
