"""Benchmark of ``fuse`` on a 512 x 512 x 300 CT and a 200 x 200 x 250 PET (the synthetic patient's
BENCHMARK grids), against reading the two series once.

Usage::

    python Testing/benchmarks/bench_fuse.py [--runs 2] [--cache build/bench_fuse]

The series take about 75 s to write, so they are cached under ``--cache`` (kept between runs). A short
demo clip is analysed there once too. Each measurement runs in a child process of its own
(:mod:`measure`: time after imports, whole-process time, the child's own peak memory): (a) the
baseline, reading the CT and the PET once (``read_volume``); (b) ``fuse`` as the command runs it
(``--landmarks``, 5 mm slab, all files written, no scene). Printed per run: the machine's load
average, both lines with the ratios b / a of the same run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import cli_command, ratio_line, run_child

READ_SERIES = ("from DCEUSResponseLib.io.volumes import read_volume",
               "read_volume({ct!r}, 'CT'); read_volume({pet!r}, 'PT')")


def prepare(cache: str) -> dict:
    """The cached benchmark series, analysis and landmark files (written when missing)."""
    from DCEUSResponseLib.app.demo import (
        PANEL_SHAPE,
        demo_landmarks,
        demo_regions,
        write_landmark_files,
    )
    from DCEUSResponseLib.ceus.pipeline import AnalysisOptions, analyze_files
    from DCEUSResponseLib.export.contract import write_analysis
    from DCEUSResponseLib.synthetic.clips import make_clip, write_clip, write_roi_masks
    from DCEUSResponseLib.synthetic.dicom_ct_pet import write_patient
    from DCEUSResponseLib.synthetic.patient import (
        BENCHMARK_CT_GRID,
        BENCHMARK_PET_GRID,
        make_patient,
    )

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(REPO, "build", "bench_fuse"))
    args = parser.parse_args()
    inputs = prepare(args.cache)
    argv = ["fuse", inputs["analysis"], "--ct", inputs["ct"], "--pet", inputs["pet"], "--landmarks",
            inputs["landmarks"]]
    imports, body = READ_SERIES
    for run in range(args.runs):
        print(f"run {run + 1}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"on {len(os.sched_getaffinity(0))} cores (targets: fuse < 10 s, < 3 GB)")
        read = run_child(imports, body.format(ct=inputs["ct"], pet=inputs["pet"]))
        fused = run_child(*cli_command(argv + ["--out", os.path.join(args.cache, f"out{run}")]))
        print(ratio_line("read CT + PET (baseline)", read, read))
        print(ratio_line("fuse (--landmarks, 5 mm slab, no scene)", fused, read))
        print(f"{'':52s} imports: read {read['import_s']:.2f} s, fuse {fused['import_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
