"""One module per ``dceus`` subcommand, each with ``add_subparser(subparsers)`` (which sets
``run`` as the subparser's default) and ``run(args) -> int``; :mod:`DCEUSResponseLib.app.cli`
lists them in :data:`~DCEUSResponseLib.app.cli.COMMANDS` (as pydicom's ``pydicom.cli`` does)."""
