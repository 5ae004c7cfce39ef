"""``dceus demo``: generate the synthetic demo study, analyse it end to end and follow the patient's
course with ``study``."""
from __future__ import annotations

import argparse

from DCEUSResponseLib.app.demo import run_demo


def add_subparser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser("demo", help=summary,
                                   description="Generate the synthetic demo patient (baseline and follow-up CEUS "
                                   "clips as DICOM, CT and 68Ga-PET), analyse, fuse and compare them, run the "
                                   "patient's whole course through study, and print a summary.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(run_demo(args.out, command_main=args.cli_main))
    return 0
