"""Command line: ``python -m DCEUSResponseLib {analyze,compare,demo,study}`` (also ``dceus``).

Exit status: 0 success, 1 bad input (one line on stderr naming the file and the problem),
2 usage error, 3 internal error (rerun with ``--debug`` for the traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from DCEUSResponseLib import __version__
from DCEUSResponseLib.app.summary import format_response, format_summary
from DCEUSResponseLib.errors import InputError

EXIT_INPUT_ERROR = 1
EXIT_INTERNAL_ERROR = 3


def build_parser() -> argparse.ArgumentParser:
    from DCEUSResponseLib.ceus.linearize import DEFAULT_DYNAMIC_RANGE_DB
    from DCEUSResponseLib.longitudinal.response import DEFAULT_RULE, RULE_ALIASES

    parser = argparse.ArgumentParser(prog="dceus", description="Quantitative dynamic contrast-enhanced "
                                     "ultrasound (DCE-US): time-intensity curves, bolus-model fits and "
                                     "perfusion parameters from CEUS DICOM clips.")
    parser.add_argument("--version", action="version", version=f"DCEUSResponse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="quantify the ROIs of one clip",
                                  description="Quantify the ROIs of one CEUS clip and write results.json, "
                                  "parameters.csv and tic.csv into --out.")
    analyze.add_argument("clip", metavar="CLIP", help="Ultrasound Multi-frame DICOM file, or a folder of "
                         "single-frame DICOM files of one clip")
    analyze.add_argument("--roi", action="append", required=True, metavar="NAME=MASK",
                         help="ROI mask (.png, .npy, .nrrd) on the reference frame; a Slicer .seg.nrrd gives "
                         "one ROI per segment (--roi FILE, or --roi PREFIX=FILE). Repeat for more ROIs.")
    analyze.add_argument("--reference", metavar="NAME", help="ROI that relative values are computed against "
                         "(usually liver parenchyma)")
    analyze.add_argument("--dynamic-range", type=float, default=DEFAULT_DYNAMIC_RANGE_DB, metavar="DB",
                         help=f"display dynamic range in dB (default {DEFAULT_DYNAMIC_RANGE_DB:g}; set the "
                         "scanner's value)")
    analyze.add_argument("--injection-time", type=float, default=0.0, metavar="S",
                         help="clip time of the contrast injection in s (default 0, the first frame)")
    analyze.add_argument("--reference-frame", type=int, default=0, metavar="K",
                         help="frame the ROIs were drawn on (default 0)")
    from DCEUSResponseLib.ceus.pipeline import MODEL_CHOICES
    analyze.add_argument("--model", default="lognormal", choices=MODEL_CHOICES,
                         help="bolus model (default lognormal), or replenishment for flash-replenishment studies")
    analyze.add_argument("--no-motion-compensation", dest="motion_compensation", action="store_false",
                         help="do not compensate breathing motion (on by default)")
    analyze.add_argument("--no-frame-qc", dest="frame_quality_control", action="store_false",
                         help="do not exclude dropout, out-of-plane, duplicate and flash frames automatically")
    analyze.add_argument("--exclude-frames", default="", metavar="RANGES",
                         help="frames to keep out of the fits, 0-based, e.g. 3-5,10")
    analyze.add_argument("--flash-frames", metavar="RANGES",
                         help="flash (destruction) frames of a replenishment study (default: the flashes found)")
    analyze.add_argument("--frame-rate", type=float, metavar="HZ",
                         help="frame rate for clips that carry no frame timing (videos, some exports)")
    analyze.add_argument("--pixel-spacing", type=float, metavar="MM",
                         help="pixel size in mm for clips without calibration (videos)")
    analyze.add_argument("--colormap", metavar="TABLE",
                         help="display colour map of a colour clip that is not a tinted grey map: "
                         ".csv/.npy with 256 rows of R,G,B")
    analyze.add_argument("--maps", action="store_true", help="also write parametric maps (maps/*.nrrd, maps/png)")
    analyze.add_argument("--map-binning", type=int, default=1, metavar="N",
                         help="average N x N pixels before fitting the maps (default 1: full resolution)")
    analyze.add_argument("--map-region", metavar="NAME", help="map only inside this ROI (default: whole contrast panel)")
    analyze.add_argument("--scene", metavar="FILE.mrb", help="also write a Slicer scene bundle, a path inside --out")
    analyze.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")

    compare = commands.add_parser("compare", help="treatment response between two exams",
                                  description="Compare two analyze output folders of one patient and write "
                                  "response.json into --out.")
    compare.add_argument("baseline", metavar="BASELINE_DIR")
    compare.add_argument("followup", metavar="FOLLOWUP_DIR")
    compare.add_argument("--rule", default=DEFAULT_RULE, metavar="RULE",
                         help=f"response rule: {', '.join(f'{k} ({v})' for k, v in RULE_ALIASES.items())} "
                         "or [absolute|relative]:PARAM:PERCENT (default %(default)s)")
    compare.add_argument("--out", required=True, metavar="DIR")

    demo = commands.add_parser("demo", help="generate the synthetic demo study and analyse it end to end")
    demo.add_argument("--out", required=True, metavar="DIR")

    from DCEUSResponseLib.app.study_command import add_study_subparser
    add_study_subparser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "study":
            from DCEUSResponseLib.app.study_command import run_study
            return run_study(args, main)
        return _demo(args)
    except InputError as error:
        print(f"dceus {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"dceus {args.command}: interrupted; no results were written", file=sys.stderr)
        return 130
    except Exception as error:  # one line for users; the traceback with --debug
        if args.debug:
            raise
        message = " ".join(str(error).split())
        print(f"dceus {args.command}: internal error: {type(error).__name__}: {message} (rerun with --debug "
              "and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _analyze(args) -> int:
    from DCEUSResponseLib.ceus.linearize import read_colour_table
    from DCEUSResponseLib.ceus.pipeline import (
        AnalysisOptions,
        analyze_files,
        check_options,
    )
    from DCEUSResponseLib.export.contract import write_analysis
    from DCEUSResponseLib.export.staging import prepare_output_dir

    for option, value in (("--frame-rate", args.frame_rate), ("--pixel-spacing", args.pixel_spacing)):
        if value is not None and not value > 0:
            raise InputError(f"{option} must be positive, got {value}")
    if args.scene and not args.scene.lower().endswith(".mrb"):
        raise InputError(f"--scene must name a .mrb file, got {args.scene!r}")
    if not os.path.exists(args.clip):
        raise InputError("clip not found", args.clip)
    options = AnalysisOptions(dynamic_range_db=args.dynamic_range, injection_time_s=args.injection_time,
                              reference_frame=args.reference_frame, model=args.model, reference=args.reference,
                              colour_table=read_colour_table(args.colormap) if args.colormap else None,
                              motion_compensation=args.motion_compensation,
                              frame_quality_control=args.frame_quality_control, exclude_frames=args.exclude_frames,
                              flash_frames=args.flash_frames, maps=args.maps, map_binning=args.map_binning,
                              map_region=args.map_region)
    check_options(options)
    out_dir = prepare_output_dir(args.out)
    scene_path = None
    if args.scene:
        # The contract writes nothing outside DIR: the scene is a path inside it.
        scene_path = os.path.relpath(os.path.join(out_dir, args.scene), out_dir)
        if scene_path.startswith(os.pardir):
            raise InputError(f"--scene {args.scene!r} is outside --out {out_dir}; give a path inside it")
    analysis = analyze_files(args.clip, args.roi, options, frame_rate_hz=args.frame_rate,
                             pixel_spacing_mm=args.pixel_spacing)
    extra = []
    if args.scene:
        from DCEUSResponseLib.scene.bundle import write_scene_bundle

        extra.append((scene_path, lambda path: write_scene_bundle(analysis, path, rois=analysis.roi_masks)))
    write_analysis(analysis, out_dir, extra_writers=extra)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_summary(analysis))
    print(f"results written to {out_dir}")
    return 0


def _compare(args) -> int:
    from DCEUSResponseLib.export.staging import (
        json_text,
        prepare_output_dir,
        write_staged,
    )
    from DCEUSResponseLib.longitudinal.response import compare_folders

    prepare_output_dir(args.out)
    response = compare_folders(args.baseline, args.followup, args.rule)
    text = json_text(response)

    def write(path):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)

    write_staged(args.out, [("response.json", write)], last="response.json")
    print(format_response(response))
    print(f"response written to {os.path.join(os.path.abspath(args.out), 'response.json')}")
    return 0


def _demo(args) -> int:
    from DCEUSResponseLib.app.demo import run_demo

    summary = run_demo(args.out)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
