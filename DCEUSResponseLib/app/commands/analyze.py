"""``dceus analyze``: quantify the ROIs of one clip and write the contract's files into ``--out``."""
from __future__ import annotations

import argparse
import os
import sys

from DCEUSResponseLib.app.summary import format_summary
from DCEUSResponseLib.ceus.linearize import (
    DEFAULT_DYNAMIC_RANGE_DB,
    MAX_DYNAMIC_RANGE_DB,
    MIN_DYNAMIC_RANGE_DB,
    read_colour_table,
)
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.ceus.pipeline import analyze_files, check_options
from DCEUSResponseLib.kinetics.registry import MODEL_CHOICES
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.contract import write_analysis
from DCEUSResponseLib.export.staging import prepare_output_dir
from DCEUSResponseLib.scene.bundle import write_scene_bundle


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    """The options' ``dest`` are :class:`AnalysisOptions`' field names (one spelling each)."""
    parser = subparsers.add_parser("analyze", help="quantify the ROIs of one clip",
                                   description="Quantify the ROIs of one CEUS clip and write results.json, "
                                   "parameters.csv and tic.csv into --out.")
    parser.add_argument("clip", metavar="CLIP", help="Ultrasound Multi-frame DICOM file, or a folder of "
                        "single-frame DICOM files of one clip")
    parser.add_argument("--roi", action="append", required=True, metavar="NAME=MASK",
                        help="ROI mask (.png, .npy, .nrrd) on the reference frame; a Slicer .seg.nrrd gives "
                        "one ROI per segment (--roi FILE, or --roi PREFIX=FILE). Repeat for more ROIs.")
    parser.add_argument("--reference", metavar="NAME", help="ROI that relative values are computed against "
                        "(usually liver parenchyma)")
    parser.add_argument("--dynamic-range", dest="dynamic_range_db", type=float, default=None,
                        metavar="DB", help=f"display dynamic range in dB, {MIN_DYNAMIC_RANGE_DB:g} to "
                        f"{MAX_DYNAMIC_RANGE_DB:g} (set the scanner's value; without it "
                        f"{DEFAULT_DYNAMIC_RANGE_DB:g} is assumed, with a warning)")
    parser.add_argument("--injection-time", dest="injection_time_s", type=float, default=0.0, metavar="S",
                        help="clip time of the contrast injection in s (default 0, the first frame)")
    parser.add_argument("--reference-frame", type=int, default=0, metavar="K",
                        help="frame the ROIs were drawn on (default 0)")
    parser.add_argument("--model", default="lognormal", choices=MODEL_CHOICES,
                        help="bolus model (default lognormal), or replenishment for flash-replenishment studies")
    parser.add_argument("--no-motion-compensation", dest="motion_compensation", action="store_false",
                        help="do not compensate breathing motion (on by default)")
    parser.add_argument("--no-frame-qc", dest="frame_quality_control", action="store_false",
                        help="do not exclude dropout, out-of-plane, duplicate and flash frames automatically")
    parser.add_argument("--exclude-frames", default="", metavar="RANGES",
                        help="frames to keep out of the fits, 0-based, e.g. 3-5,10")
    parser.add_argument("--flash-frames", metavar="RANGES",
                        help="flash (destruction) frames of a replenishment study (default: the flashes found)")
    parser.add_argument("--frame-rate", dest="frame_rate_hz", type=float, metavar="HZ",
                        help="frame rate for clips that carry no frame timing (videos, some exports)")
    parser.add_argument("--pixel-spacing", dest="pixel_spacing_mm", type=float, metavar="MM",
                        help="pixel size in mm for clips without calibration (videos)")
    parser.add_argument("--colormap", metavar="TABLE",
                        help="display colour map of a colour clip that is not a tinted grey map: "
                        ".csv/.npy with 256 rows of R,G,B")
    parser.add_argument("--maps", action="store_true", help="also write parametric maps (maps/*.nrrd, maps/png)")
    parser.add_argument("--map-binning", type=int, default=1, metavar="N",
                        help="average N x N pixels before fitting the maps (default 1: full resolution)")
    parser.add_argument("--map-region", metavar="NAME",
                        help="map only inside this ROI (default: whole contrast panel)")
    parser.add_argument("--scene", metavar="FILE.mrb", help="also write a Slicer scene bundle, a path inside --out")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for option, value in (("--frame-rate", args.frame_rate_hz), ("--pixel-spacing", args.pixel_spacing_mm)):
        if value is not None and not value > 0:
            raise InputError(f"{option} must be positive, got {value}")
    if args.scene and not args.scene.lower().endswith(".mrb"):
        raise InputError(f"--scene must name a .mrb file, got {args.scene!r}")
    if not os.path.exists(args.clip):
        raise InputError("clip not found", args.clip)
    options = AnalysisOptions.from_namespace(
        args, colour_table=read_colour_table(args.colormap) if args.colormap else None)
    check_options(options)
    out_dir = prepare_output_dir(args.out)
    scene_path = None
    if args.scene:
        # The contract writes nothing outside DIR: the scene is a path inside it.
        scene_path = os.path.relpath(os.path.join(out_dir, args.scene), out_dir)
        if scene_path.startswith(os.pardir):
            raise InputError(f"--scene {args.scene!r} is outside --out {out_dir}; give a path inside it")
    analysis = analyze_files(args.clip, args.roi, options, frame_rate_hz=args.frame_rate_hz,
                             pixel_spacing_mm=args.pixel_spacing_mm)
    extra = []
    if scene_path:
        extra.append((scene_path, lambda path: write_scene_bundle(analysis, path, rois=analysis.roi_masks)))
    write_analysis(analysis, out_dir, extra_writers=extra)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_summary(analysis))
    print(f"results written to {out_dir}")
    return 0
