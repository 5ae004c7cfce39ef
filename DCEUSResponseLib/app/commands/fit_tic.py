"""``dceus fit-tic``: fit a time-intensity curve given as a table and write the contract's files.

Users of other tools arrive with a TIC as a table (time and intensity columns); this fits it with
the same models, injection time, parameters and extrapolation flags as ``analyze`` gives an ROI.
"""
from __future__ import annotations

import argparse
import sys

from DCEUSResponseLib.ceus.linearize import MAX_DYNAMIC_RANGE_DB, MIN_DYNAMIC_RANGE_DB, check_dynamic_range
from DCEUSResponseLib.ceus.table_fit import TableFitOptions, fit_tic_table
from DCEUSResponseLib.export.contract import commit_analysis, table_fit_writers
from DCEUSResponseLib.export.staging import StagedFiles, prepare_output_dir
from DCEUSResponseLib.io.tic_table import read_tic_table
from DCEUSResponseLib.kinetics.bolus import MIN_USABLE_FRAMES
from DCEUSResponseLib.kinetics.registry import MODEL_CHOICES, get_family

#: Rows a table needs: the bolus fit's minimum of usable frames (checked before anything is written).
MIN_TABLE_ROWS = MIN_USABLE_FRAMES


def add_subparser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser("fit-tic", help=summary,
                                   description="Fit a time-intensity curve given as a table (time and intensity "
                                   "columns) and write results.json, parameters.csv and tic.csv into --out.")
    parser.add_argument("table", metavar="TABLE.csv", help="CSV (or tab, semicolon or space separated) table, one row per "
                        "frame; a header names the columns (optional for exactly two columns)")
    parser.add_argument("--time-column", metavar="NAME|N", help="time column (s; ms when its name says so), by "
                        "header name or 1-based number (default: recognised from the header)")
    parser.add_argument("--intensity-column", metavar="NAME|N", help="intensity column, by header name or "
                        "1-based number (default: recognised from the header)")
    parser.add_argument("--dynamic-range", dest="dynamic_range_db", type=float, metavar="DB",
                        help=f"the intensities are display gray levels 0..255 under this dynamic range "
                        f"({MIN_DYNAMIC_RANGE_DB:g} to {MAX_DYNAMIC_RANGE_DB:g} dB), linearised as analyze does; "
                        "without it they are linear intensity")
    parser.add_argument("--injection-time", dest="injection_time_s", type=float, default=0.0, metavar="S",
                        help="table time of the contrast injection in s (default 0)")
    parser.add_argument("--model", default="lognormal", choices=MODEL_CHOICES, help="bolus model (default "
                        "lognormal), or replenishment with --flash-frames")
    parser.add_argument("--exclude-frames", default="", metavar="RANGES",
                        help="data rows to keep out of the fit, 0-based (the first data row is 0), e.g. 3-5,10")
    parser.add_argument("--flash-frames", metavar="RANGES", help="data rows of destruction flashes, 0-based")
    parser.add_argument("--name", metavar="NAME", help="the ROI's name in the outputs (default: the intensity "
                        "column's name)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dynamic_range_db is not None:
        check_dynamic_range(args.dynamic_range_db)
    get_family(args.model)
    table = read_tic_table(args.table, args.time_column, args.intensity_column, min_rows=MIN_TABLE_ROWS)
    options = TableFitOptions(model=args.model, injection_time_s=args.injection_time_s,
                              dynamic_range_db=args.dynamic_range_db, exclude_frames=args.exclude_frames,
                              flash_frames=args.flash_frames, name=args.name)
    result = fit_tic_table(table, options)
    out_dir = prepare_output_dir(args.out)
    with StagedFiles(out_dir) as staged:
        staged.isolate_process_caches()  # matplotlib's config and font cache stay inside DIR
        staged.write(table_fit_writers(result))
        commit_analysis(staged)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    roi = result.roi
    shown = ", ".join(f"{name} {roi.parameters[name]:.4g}" for name in result.parameter_names
                      if roi.parameters.get(name) is not None and name not in roi.extrapolated)
    print(f"{roi.name}: {roi.fit.status} ({roi.fit.model}, {roi.fit.n_frames_used} rows fitted)"
          + (f": {shown}" if shown else f": {roi.fit.reason}"))
    print(f"results written to {out_dir}")
    return 0
