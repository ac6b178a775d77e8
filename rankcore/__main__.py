"""``python -m rankcore <command>``: see :mod:`rankcore.cli`."""
import sys

from .cli import main

sys.exit(main())
