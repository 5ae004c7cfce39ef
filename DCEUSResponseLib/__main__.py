"""``python -m DCEUSResponseLib`` runs the command line."""
import sys

from DCEUSResponseLib.app.cli import main

sys.exit(main())
