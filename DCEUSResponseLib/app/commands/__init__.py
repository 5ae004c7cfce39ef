"""One module per ``dceus`` subcommand, each with ``add_subparser(subparsers, summary)`` (which sets
``run`` as the subparser's default) and ``run(args) -> int``; :mod:`DCEUSResponseLib.app.cli`
lists them with their summaries in :data:`~DCEUSResponseLib.app.cli.COMMANDS` (as pydicom's
``pydicom.cli`` does) and imports only the one a command line runs."""
