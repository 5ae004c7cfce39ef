"""Command line: ``python -m DCEUSResponseLib {analyze,fit-tic,compare,demo}`` (also ``dceus``).

This module only assembles the subcommands (one module each in :mod:`DCEUSResponseLib.app.commands`;
a new subcommand is a new module there, listed in :data:`COMMANDS` with its one-line summary) and turns
errors into exit codes. A command line imports only the module of its own subcommand: the others pull in
what they need (``study`` scipy.stats and the longitudinal engine, ``fuse`` the PET/CT readers, ``demo``
the synthetic patient), about half a second of imports that ``analyze`` has no use for.

Exit status: 0 success, 1 bad input (one line on stderr naming the file and the problem),
2 usage error, 3 internal error (rerun with ``--debug`` for the traceback), 130 interrupted (SIGINT,
Ctrl-C), 143 terminated (SIGTERM); both clean up their staging folder and print one line.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

from DCEUSResponseLib import __version__
from DCEUSResponseLib.errors import InputError
from DCEUSResponseLib.export.staging import Interrupted, handle_termination_signals, restore_signals

EXIT_INPUT_ERROR = 1
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: The subcommands, in the order ``--help`` lists them, with the summary it shows; the module of
#: ``fit-tic`` is :mod:`DCEUSResponseLib.app.commands.fit_tic`.
COMMANDS = (
    ("analyze", "quantify the ROIs of one clip"),
    ("fit-tic", "fit a TIC given as a table (CSV)"),
    ("compare", "treatment response between two exams"),
    ("fuse", "place the CEUS plane in the patient's CT / PET and measure SUV per ROI"),
    ("study", "analyse every clip of a trial and follow each lesion over the exams"),
    ("demo", "generate the synthetic demo study and analyse it end to end"),
)


def command_module(name: str):
    """The module of subcommand ``name`` (its ``add_subparser`` and ``run``)."""
    return importlib.import_module(f"DCEUSResponseLib.app.commands.{name.replace('-', '_')}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or with ``command`` only that one's options (the others listed)."""
    parser = argparse.ArgumentParser(prog="dceus", description="Quantitative dynamic contrast-enhanced "
                                     "ultrasound (DCE-US): time-intensity curves, bolus-model fits and "
                                     "perfusion parameters from CEUS DICOM clips.")
    parser.add_argument("--version", action="version", version=f"DCEUSResponse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS:
        if command is None or name == command:
            command_module(name).add_subparser(subparsers, summary)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand of a command line (the first word that is not an option), if it is one."""
    names = {name for name, _ in COMMANDS}
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in names else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = _chosen_command(argv)
    args = (build_parser(chosen) if chosen else build_parser()).parse_args(argv)
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
