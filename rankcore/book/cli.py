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

from . import runner

__all__ = ["COMMANDS", "main", "book_main", "register_train"]


def register_train(subparsers) -> None:
    """Add ``train`` to a ``rankcore`` parser. Defined here, not in :mod:`rankcore.book.runs`,
    because building the parser must import nothing heavy (``rankcore --version``); ``run``
    imports the runs module (torch) when the command runs."""
    p = subparsers.add_parser(
        "train", help="train named runs of the book (cached)",
        description="Train the book's named runs at a profile's scale, e.g. "
                    "`rankcore train natural low_rank:5 --profile quick`. Trained models "
                    "are cached; a second call loads them.")
    p.add_argument("names", nargs="*", help="natural, adv, adv_l2, low_rank:K, high_rank:K")
    p.add_argument("--profile", default="quick", help="smoke, quick, gpu or paper")
    p.add_argument("--family", default=None,
                   help="network family, airbench or resnet (default: the profile's first)")
    p.add_argument("--all", action="store_true", help="every run the profile lists")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override TrainConfig fields (values parsed as YAML)")
    p.add_argument("--dry-run", action="store_true", help="validate and print, train nothing")
    p.add_argument("--no-progress", action="store_true")
    cli.add_device_argument(p)

    def run(args) -> int:
        from .runs import train_command

        train_command(args.names, args.profile, args.family, args.set, args.device,
                      args.dry_run, args.all, not args.no_progress)
        return 0

    p.set_defaults(run=run)


#: The book's commands, each a ``register(subparsers)`` that adds its parser and ``run``.
COMMANDS = (runner.register_cli, register_train)


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
