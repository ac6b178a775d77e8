"""Saving what a chapter computes: figures as PNG, tables as CSV, numbers as JSON.

Every chapter writes under ``results/<profile>/<chapter>/``. Run by the book runner, a
chapter writes into a fresh staging folder that replaces that folder only when the chapter
succeeds, and the runner adds ``meta.json`` (the injected parameters, git commit, package
versions, device, wall time); see :mod:`rankcore.book.runner`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .. import _io
from ..paths import results_root
from .verdicts import COUNTED, KINDS, NOT_MEANINGFUL, VERDICTS, reason as _reason


class Results:
    """A chapter's results folder.

    Args:
        chapter (str): chapter name, e.g. ``"01_rank_images"``.
        profile (str): the profile that produced these results, e.g. ``"quick"``.
        root (path, optional): base folder. Default: ``$RANKCORE_RESULTS`` or ``results/``.
            Under the book runner (no ``root``), the chapter's staging folder.
    """

    def __init__(self, chapter: str, profile: str, root: str | os.PathLike | None = None):
        for name, value in (("chapter", chapter), ("profile", profile)):
            if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
                raise ValueError(f"{name} must be a non-empty name without '/', got {value!r}")
        self.chapter, self.profile = chapter, profile
        staged = (os.environ.get("RANKCORE_STAGE_CHAPTER") == chapter
                  and os.environ.get("RANKCORE_STAGE_PROFILE") == profile
                  and os.environ.get("RANKCORE_STAGE_DIR"))
        if root is None and staged:
            self.dir = Path(staged)
        else:
            self.dir = Path(root or results_root()) / profile / chapter
        self.dir.mkdir(parents=True, exist_ok=True)

    def figure(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``<name>.png``; returns the path."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return _io.write_bytes(self.dir / f"{name}.png", buf.getvalue())

    def table(self, df, name: str) -> Path:
        """Save a pandas DataFrame as ``<name>.csv``; returns the path."""
        return _io.write_text(self.dir / f"{name}.csv", df.to_csv(index=False))

    def score(self, ref: str, item: str, paper: Any, ours: Any, verdict: str,
              note: str = "", unit: str = "", kind: str = COUNTED) -> None:
        """Record one comparison with the paper for the book's scorecard.

        Args:
            ref (str): the paper's figure or table, e.g. ``"fig6"``, ``"table2"``.
            item (str): what is compared, e.g. ``"CIFAR-10, trained on rank 5: top-1"``.
            paper, ours: the paper's value and ours (numbers or short strings).
            verdict (str): one of :data:`VERDICTS`; a
                :class:`~rankcore.book.verdicts.Verdict` brings its reason into the note
                ("not meaningful here" needs one, in the verdict or the note).
            note (str): why they agree or differ (profile, data, training length).
            unit (str): e.g. ``"%"``.
            kind (str): one of :data:`~rankcore.book.verdicts.KINDS`; only ``"paper
                claim"`` rows count as reproductions. Default: ``"paper claim"``.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict={verdict!r}; expected one of {VERDICTS}")
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
        why = _reason(verdict)
        if why and why not in note:
            note = f"{why}; {note}" if note else why
        if verdict == NOT_MEANINGFUL and not note:
            raise ValueError(f"verdict {NOT_MEANINGFUL!r} needs its reason in the note")
        self._scores = [s for s in getattr(self, "_scores", [])
                        if (s["ref"], s["item"]) != (ref, item)]
        self._scores.append({"ref": ref, "item": item, "paper": paper, "ours": ours,
                             "unit": unit, "verdict": str(verdict), "kind": kind, "note": note,
                             "chapter": self.chapter, "profile": self.profile})
        _io.write_json(self.dir / "scorecard.json", self._scores)

    def json(self, obj: Any, name: str) -> Path:
        """Save a JSON-serialisable object as ``<name>.json``; returns the path."""
        return _io.write_json(self.dir / f"{name}.json", obj)
