"""The ``rankcore`` console script with the book's commands, and ``python -m rankcore.book train``.

The library's command line (:mod:`rankcore.cli`: ``spectrum``, ``models``, ``data``) knows
nothing of the book. This module builds on its parser and adds the book's two commands, so
the console script ``rankcore`` (``pyproject.toml`` points it here; ``python -m
rankcore.book.cli`` without installing) offers all five::

    rankcore train natural --profile smoke       # = python -m rankcore.book train natural --profile smoke
    rankcore book list --profile quick           # = python -m rankcore.book list --profile quick

No entry-point group and no lookup by name: the book imports the library, never the other
way round.
"""
from __future__ import annotations

import sys

from rankcore import cli

from . import runner, runs

__all__ = ["COMMANDS", "main", "book_main"]

#: The book's commands, each a ``register(subparsers)`` that adds its parser and ``run``.
COMMANDS = (runner.register_cli, runs.register_cli)


def main(argv: list[str] | None = None) -> int:
    """``rankcore <command> ...``: the library's commands and the book's ``book``, ``train``."""
    return cli.main(argv, commands=COMMANDS)


def book_main(argv: list[str] | None = None) -> int:
    """``python -m rankcore.book run|build|list|check|train ...``: ``train`` is ``rankcore
    train``; the rest is the runner's own command line (:func:`rankcore.book.runner.main`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        return main(argv)
    return runner.main(argv)


if __name__ == "__main__":  # ``python -m rankcore.book.cli ...`` = the ``rankcore`` script
    sys.exit(main())
