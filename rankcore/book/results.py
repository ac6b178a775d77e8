"""Saving what a chapter computes: figures as PNG, tables as CSV, numbers as JSON.

Every chapter writes under ``results/<profile>/<chapter>/`` together with ``meta.json``
(parameters, profile, library version, time), so runs can be compared later.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
from pathlib import Path
from typing import Any

from .. import __version__, _io
from ..paths import results_root


#: Verdicts for :meth:`Results.score`, from strongest to weakest agreement.
VERDICTS = ("reproduced", "same trend", "differs", "needs GPU or data")


class Results:
    """A chapter's results folder.

    Args:
        chapter (str): chapter name, e.g. ``"01_rank_images"``.
        profile (str): the profile that produced these results, e.g. ``"quick"``.
        params (dict, optional): the chapter's parameters, recorded in ``meta.json``.
        root (path, optional): base folder. Default: ``$RANKCORE_RESULTS`` or ``results/``.
    """

    def __init__(self, chapter: str, profile: str, params: dict[str, Any] | None = None,
                 root: str | os.PathLike | None = None):
        self.chapter, self.profile = chapter, profile
        self.dir = Path(root or results_root()) / profile / chapter
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"chapter": chapter, "profile": profile, "params": params or {},
                     "rankcore": __version__,
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        _io.write_json(self.dir / "meta.json", self.meta)

    def figure(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``<name>.png``; returns the path."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return _io.write_bytes(self.dir / f"{name}.png", buf.getvalue())

    def table(self, df, name: str) -> Path:
        """Save a pandas DataFrame as ``<name>.csv``; returns the path."""
        return _io.write_text(self.dir / f"{name}.csv", df.to_csv(index=False))

    def score(self, ref: str, item: str, paper: Any, ours: Any, verdict: str,
              note: str = "", unit: str = "") -> None:
        """Record one comparison with the paper for the book's scorecard.

        Args:
            ref (str): the paper's figure or table, e.g. ``"fig6"``, ``"table2"``.
            item (str): what is compared, e.g. ``"CIFAR-10, trained on rank 5: top-1"``.
            paper, ours: the paper's value and ours (numbers or short strings).
            verdict (str): one of :data:`VERDICTS`.
            note (str): why they agree or differ (profile, data, training length).
            unit (str): e.g. ``"%"``.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict={verdict!r}; expected one of {VERDICTS}")
        self._scores = [s for s in getattr(self, "_scores", [])
                        if (s["ref"], s["item"]) != (ref, item)]
        self._scores.append({"ref": ref, "item": item, "paper": paper, "ours": ours,
                             "unit": unit, "verdict": verdict, "note": note,
                             "chapter": self.chapter, "profile": self.profile})
        _io.write_json(self.dir / "scorecard.json", self._scores)

    def json(self, obj: Any, name: str) -> Path:
        """Save a JSON-serialisable object as ``<name>.json``; returns the path."""
        return _io.write_json(self.dir / f"{name}.json", obj)
