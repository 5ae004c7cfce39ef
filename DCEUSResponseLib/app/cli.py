"""Command line: ``python -m DCEUSResponseLib {analyze,fit-tic,compare,demo}`` (also ``dceus``).

This module only assembles the subcommands (one module each in :mod:`DCEUSResponseLib.app.commands`;
a new subcommand is a new module there, listed in :data:`COMMANDS`) and turns errors into exit codes.

Exit status: 0 success, 1 bad input (one line on stderr naming the file and the problem),
2 usage error, 3 internal error (rerun with ``--debug`` for the traceback), 130 interrupted (SIGINT,
Ctrl-C), 143 terminated (SIGTERM); both clean up their staging folder and print one line.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from DCEUSResponseLib import __version__
from DCEUSResponseLib.app.commands import analyze, compare, demo, fit_tic, fuse, study
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.staging import Interrupted, handle_termination_signals, restore_signals

EXIT_INPUT_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (analyze, fit_tic, compare, fuse, study, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dceus", description="Quantitative dynamic contrast-enhanced "
                                     "ultrasound (DCE-US): time-intensity curves, bolus-model fits and "
                                     "perfusion parameters from CEUS DICOM clips.")
    parser.add_argument("--version", action="version", version=f"DCEUSResponse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_subparser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Commands that run other commands (study runs analyze and fuse per clip) get this main to call.
    args.cli_main = main
    try:
        previous_handlers = handle_termination_signals()
    except ValueError:  # not the main thread (main() called from a script's thread): Python's defaults
        previous_handlers = {}
    try:
        return _run(args)
    finally:
        restore_signals(previous_handlers)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except InputError as error:
        print(f"dceus {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        written = isinstance(error, Interrupted) and error.results_written
        what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        print(f"dceus {args.command}: {what}; " + ("the results were written before it stopped" if written else
                                                    "no results were written"), file=sys.stderr)
        return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED
    except Exception as error:  # one line for users; the traceback with --debug
        if args.debug:
            raise
        message = " ".join(str(error).split())
        print(f"dceus {args.command}: internal error: {type(error).__name__}: {message} (rerun with --debug "
              "and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
