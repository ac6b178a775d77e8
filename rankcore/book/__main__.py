"""``python -m rankcore.book run|build|list|check``: see :mod:`rankcore.book.runner`."""
import sys

from .runner import main

sys.exit(main())
