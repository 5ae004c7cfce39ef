"""``dceus analyze``: quantify the ROIs of one clip and write the contract's files into ``--out``."""
from __future__ import annotations

import argparse
import os
import sys

from DCEUSResponseLib.app.extras import require_extra
from DCEUSResponseLib.app.summary import format_summary
from DCEUSResponseLib.ceus.linearize import (
    DEFAULT_DYNAMIC_RANGE_DB,
    MAX_DYNAMIC_RANGE_DB,
    MIN_DYNAMIC_RANGE_DB,
    read_colour_table,
)
from DCEUSResponseLib.ceus.options import AnalysisOptions
from DCEUSResponseLib.ceus.pipeline import analyze_files, check_options
from DCEUSResponseLib.io.video import VIDEO_EXTENSIONS
from DCEUSResponseLib.kinetics.registry import MODEL_CHOICES
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.contract import analysis_writers, commit_analysis
from DCEUSResponseLib.export.staging import StagedFiles, check_output_dir, recover_output_dir, scene_path_inside
from DCEUSResponseLib.scene.bundle import write_scene_bundle


def add_subparser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    """The options' ``dest`` are :class:`AnalysisOptions`' field names (one spelling each)."""
    parser = subparsers.add_parser("analyze", help=summary,
                                   description="Quantify the ROIs of one CEUS clip and write results.json, "
                                   "parameters.csv and tic.csv into --out.")
    parser.add_argument("clip", metavar="CLIP", help="Ultrasound Multi-frame DICOM file, a folder of "
                        "single-frame DICOM files of one clip, or a video export ("
                        f"{' '.join(VIDEO_EXTENSIONS[:6])}; needs the 'video' extra, with --frame-rate and "
                        "--pixel-spacing where the file lacks them)")
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
                        help="frame rate for clips that carry no frame timing (videos, some exports) or only a "
                        "display rate (it then replaces that estimate); ignored, with a warning, when the DICOM "
                        "file has Frame Time Vector or Frame Time")
    parser.add_argument("--pixel-spacing", dest="pixel_spacing_mm", type=float, metavar="MM",
                        help="pixel size in mm for clips without calibration (videos)")
    parser.add_argument("--colormap", metavar="TABLE",
                        help="display colour map of a colour clip, overriding the map recovered from the clip: "
                        ".csv/.txt/.npy with N rows of R,G,B (0..255 or 0..1), the first row gray 0; colour_map.csv of "
                        "an earlier run is such a table")
    parser.add_argument("--contrast-region", dest="contrast_region", type=_pixel_box, metavar="x0,y0,x1,y1",
                        help="the contrast panel in pixels (inclusive bounds) when the ultrasound regions do not "
                        "show it (overlapping or unequal regions)")
    parser.add_argument("--maps", action="store_true", help="also write parametric maps (maps/*.nrrd, maps/png)")
    parser.add_argument("--map-binning", type=int, default=1, metavar="N",
                        help="average N x N pixels before fitting the maps (default 1: full resolution)")
    parser.add_argument("--map-region", metavar="NAME",
                        help="map only inside this ROI (default: whole contrast panel)")
    parser.add_argument("--dicom", action="store_true", help="also write DICOM objects into dicom/: a Parametric "
                        "Map per map (with --maps), a SEG of the ROIs, a TID 1500 measurement report (needs highdicom)")
    parser.add_argument("--scene", metavar="FILE.mrb", help="also write a Slicer scene bundle (needs the 'slicer' "
                        "extra), a path inside --out: relative to --out, or relative to the current folder "
                        "if it already lies inside --out")
    parser.add_argument("--keep-identifiers", action="store_true",
                        help="also write the patient's identifiers (PatientID, PatientName, birth date, study "
                        "date) into results.json and the scene; by default only the Study, Series, SOP "
                        "Instance and Frame of Reference UIDs are written")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing, only when "
                        "results are written)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except InputError as error:
        if error.path is None:  # an option or a property of the clip: the clip is the file in question
            raise InputError(error.problem, args.clip) from None
        raise


def _run(args: argparse.Namespace) -> int:
    for option, value in (("--frame-rate", args.frame_rate_hz), ("--pixel-spacing", args.pixel_spacing_mm)):
        if value is not None and not value > 0:
            raise InputError(f"{option} must be positive, got {value}", args.clip)
    if not os.path.exists(args.clip):
        raise InputError("clip not found", args.clip)
    options = AnalysisOptions.from_namespace(
        args, colour_table=read_colour_table(args.colormap) if args.colormap else None)
    check_options(options)
    out_dir = check_output_dir(args.out)
    scene_path = scene_path_inside(args.scene, out_dir) if args.scene else None
    if scene_path:
        require_extra("slicer", "slicer", "--scene (a Slicer scene bundle)", args.scene)
    if args.dicom:  # the DICOM writers (and the fusion code they share) load only for --dicom
        from DCEUSResponseLib.export.dicom_outputs import analysis_dicom_outputs, dicom_writers, require_highdicom

        require_highdicom()  # before the work, not after it
    recover_output_dir(out_dir)  # earlier runs stopped by a signal, before anything else
    analysis = analyze_files(args.clip, args.roi, options, frame_rate_hz=args.frame_rate_hz,
                             pixel_spacing_mm=args.pixel_spacing_mm)
    # DIR is created only now, with the staging folder; a failure from here on removes both.
    with StagedFiles(out_dir) as staged:
        staged.isolate_process_caches()
        extra = []
        if scene_path:
            cache = staged.scratch("slicer")
            extra.append((scene_path, lambda path: write_scene_bundle(analysis, path, rois=analysis.roi_masks,
                                                                      cache_dir=cache)))
        if args.dicom:  # built before anything is written; staged with the rest, results.json last
            extra += dicom_writers(analysis_dicom_outputs(analysis, time_point=os.path.basename(out_dir)))
        staged.write(analysis_writers(analysis, extra))
        commit_analysis(staged)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_summary(analysis))
    print(f"results written to {out_dir}")
    return 0


def _pixel_box(text: str) -> tuple[int, int, int, int]:
    """``x0,y0,x1,y1`` as four non-negative integers (argparse type of ``--contrast-region``)."""
    try:
        box = tuple(int(part) for part in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or min(box) < 0 or box[2] < box[0] or box[3] < box[1]:
        raise argparse.ArgumentTypeError(f"expected x0,y0,x1,y1 with x0 <= x1 and y0 <= y1 (pixels), got {text!r}")
    return box
