"""``python -m rankcore.book run|build|list|check``: see :mod:`rankcore.book.runner`.

As ``rankcore book`` does, a mistake or a refusal of the file system (a read-only results
folder, a full disk, a folder in use by another runner) prints one line and exits with
status 2, and Ctrl-C exits with status 130 without a traceback; ``--debug`` shows them.
"""
import sys

from .cli import book_main as main


def _main() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        if "--debug" in sys.argv:
            raise
        print("python -m rankcore.book: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        if "--debug" in sys.argv:
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


sys.exit(_main())
