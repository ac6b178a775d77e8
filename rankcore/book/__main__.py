"""``python -m rankcore.book run|build|list|check``: see :mod:`rankcore.book.runner`."""
import sys

from .cli import book_main as main

sys.exit(main())
