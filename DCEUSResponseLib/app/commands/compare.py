"""``dceus compare``: the treatment response between two ``analyze`` output folders."""
from __future__ import annotations

import argparse
import os
import sys

from DCEUSResponseLib.app.summary import format_response
from DCEUSResponseLib.export.staging import check_output_dir, json_text, write_staged
from DCEUSResponseLib.longitudinal.response import DEFAULT_RULE, RULE_ALIASES, compare_folders


def add_subparser(subparsers: argparse._SubParsersAction, summary: str) -> None:
    parser = subparsers.add_parser("compare", help=summary,
                                   description="Compare two analyze output folders of one patient and write "
                                   "response.json into --out.")
    parser.add_argument("baseline", metavar="BASELINE_DIR", help="analyze output folder of the baseline exam")
    parser.add_argument("followup", metavar="FOLLOWUP_DIR", help="analyze output folder of the follow-up exam")
    parser.add_argument("--rule", default=DEFAULT_RULE, metavar="RULE",
                        help=f"response rule: {', '.join(f'{k} ({v})' for k, v in RULE_ALIASES.items())} "
                        "or [absolute|relative]:PARAM:PERCENT (default %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for response.json (created if "
                        "missing)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)
    response = compare_folders(args.baseline, args.followup, args.rule)
    text = json_text(response)

    def write(path):
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)

    write_staged(args.out, [("response.json", write)], last="response.json")
    for warning in response.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(format_response(response))
    print(f"response written to {os.path.join(os.path.abspath(args.out), 'response.json')}")
    return 0
