"""The reproduction scorecard: every figure and table of the paper beside what we measured.

Chapters record their comparisons with :meth:`rankcore.results.Results.score` into
``results/<profile>/<chapter>/scorecard.json``. This module gathers those records and sets
them against the list of the paper's figures and tables in ``rankcore/book/paper_values.yml``, so the
book's last page (``book/scorecard.ipynb``) shows at a glance what the companion confirms::

    df = rankcore.scorecard.scorecard("quick")   # one row per comparison, every ref present
    rankcore.scorecard.counts(df)                # how many rows per verdict
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from . import paper
from ..paths import results_root
from .results import VERDICTS

#: Verdict of a figure or table for which no chapter recorded a comparison.
MISSING = "not yet reproduced"
#: Every verdict a scorecard row can carry, from strongest to weakest agreement.
ALL_VERDICTS = VERDICTS + (MISSING,)
#: Profiles from the most to the least faithful to the paper's scale.
PROFILE_ORDER = ("paper", "quick", "smoke")
COLUMNS = ["ref", "what", "chapter", "item", "paper", "ours", "unit", "profile", "verdict",
           "note"]


def load_records(root: str | os.PathLike | None = None) -> dict[tuple[str, str], list[dict]]:
    """Read every ``<root>/<profile>/<chapter>/scorecard.json``.

    Args:
        root (path, optional): the results folder. Default: :func:`rankcore.paths.results_root`.

    Returns:
        dict mapping ``(profile, chapter)`` to that chapter's list of score records.
    """
    root = Path(root or results_root())
    records = {}
    for path in _published(root, "scorecard.json"):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); re-run chapter "
                             f"{path.parent.name!r} to rewrite it") from err
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of score records, got "
                             f"{type(data).__name__}")
        records[(path.parent.parent.name, path.parent.name)] = data
    return records


def chapters_run(root: str | os.PathLike | None = None) -> set[tuple[str, str]]:
    """``(profile, chapter)`` pairs that have run (they left a results folder: the runner
    publishes one only when its chapter succeeded)."""
    root = Path(root or results_root())
    return {(p.parent.name, p.name) for p in sorted(root.glob("*/*"))
            if p.is_dir() and not p.name.startswith(".") and not p.parent.name.startswith(".")}


def _published(root: Path, name: str) -> list[Path]:
    """``<profile>/<chapter>/<name>`` files, leaving out the runner's hidden staging folders."""
    return [p for p in sorted(root.glob(f"*/*/{name}"))
            if not p.parent.name.startswith(".") and not p.parent.parent.name.startswith(".")]


def _profile_preference(profile: str, fallback: Iterable[str]) -> list[str]:
    order = [profile] + [p for p in fallback if p != profile]
    return order


def _pick(records: dict[tuple[str, str], list[dict]], order: list[str]) -> list[dict]:
    # One profile per chapter: the first in `order` that recorded anything for it, so a
    # chapter's rows never mix profiles.
    chosen = []
    for chapter in sorted({c for _, c in records}):
        for profile in order:
            if (profile, chapter) in records:
                chosen += [dict(r, profile=r.get("profile", profile),
                                chapter=r.get("chapter", chapter))
                           for r in records[(profile, chapter)]]
                break
    return chosen


def _ref_key(ref: str) -> tuple:
    # fig2 < fig10 < fig12a: natural order, figures before tables before anything else.
    kind = {"fig": 0, "table": 1}.get(re.sub(r"[^a-z]+.*$", "", ref), 2)
    return (kind,) + tuple(int(t) if t.isdigit() else t for t in re.findall(r"\d+|\D+", ref))


def scorecard(profile: str = "quick", root: str | os.PathLike | None = None,
              fallback: Iterable[str] = PROFILE_ORDER, values: dict[str, Any] | None = None):
    """One row per comparison with the paper, and a row for every figure or table not compared.

    Args:
        profile (str, optional): the profile whose results come first. Default: ``"quick"``.
        root (path, optional): the results folder. Default: ``results/``.
        fallback (iterable of str, optional): profiles to use, in this order, for a chapter
            that has no scorecard under ``profile``; pass ``()`` to show only ``profile``.
            Default: ``("paper", "quick", "smoke")``.
        values (dict, optional): the paper's values (for tests). Default: ``rankcore/book/paper_values.yml``.

    Returns:
        pandas.DataFrame with columns :data:`COLUMNS`, figures first (in the paper's
        numbering), then tables, then other references (e.g. ``"sec9.1"``). A figure or table
        that no chapter compared has verdict :data:`MISSING` and a note saying whether its
        chapter ran.
    """
    import pandas as pd

    if not isinstance(profile, str) or not profile:
        raise ValueError(f"profile={profile!r}; expected a profile name such as 'quick'")
    values = values if values is not None else paper.values()
    listed = {**values.get("figures", {}), **values.get("tables", {})}
    if not listed:
        raise ValueError("the paper values list no figures or tables; expected "
                         "'figures' and 'tables' sections in rankcore/book/paper_values.yml")
    order = _profile_preference(profile, fallback)
    records = _pick(load_records(root), order)
    ran = chapters_run(root)

    by_ref: dict[str, list[dict]] = {}
    for r in records:
        by_ref.setdefault(str(r.get("ref", "")), []).append(r)
    rows = []
    for ref in sorted(set(listed) | set(by_ref), key=_ref_key):
        entry = listed.get(ref, {})
        for r in by_ref.get(ref, []):
            rows.append({**{c: r.get(c, "") for c in COLUMNS}, "ref": ref,
                         "what": entry.get("what", r.get("what", ""))})
        if ref not in by_ref:
            chapter = entry.get("chapter", "")
            done = [p for p in order if (p, chapter) in ran]
            note = (f"{chapter} ran ({done[0]} profile) but recorded no comparison" if done
                    else f"{chapter} has not run")
            rows.append({"ref": ref, "what": entry.get("what", ""), "chapter": chapter,
                         "item": "", "paper": "", "ours": "", "unit": "", "profile": "",
                         "verdict": MISSING, "note": note})
    return pd.DataFrame(rows, columns=COLUMNS)


def counts(df) -> "pandas.Series":  # noqa: F821 (pandas imported lazily)
    """Number of rows per verdict, in :data:`ALL_VERDICTS` order (zeros included)."""
    unknown = set(df["verdict"]) - set(ALL_VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; expected {ALL_VERDICTS}")
    return df["verdict"].value_counts().reindex(list(ALL_VERDICTS), fill_value=0)


def per_ref(df) -> "pandas.DataFrame":  # noqa: F821
    """One row per figure/table with its weakest verdict, for a compact overview."""
    rank = {v: i for i, v in enumerate(ALL_VERDICTS)}
    worst = (df.assign(_r=df["verdict"].map(rank)).sort_values("_r")
             .groupby("ref", sort=False).tail(1).drop(columns="_r"))
    keep = ["ref", "what", "chapter", "profile", "verdict"]
    return worst.set_index("ref").loc[list(dict.fromkeys(df["ref"]))].reset_index()[keep]


#: Background colours for the verdict column (colour-blind-safe, light).
COLOURS = {"reproduced": "#c7e9c0", "same trend": "#deebf7", "differs": "#fdd0a2",
           "needs GPU or data": "#e0e0e0", MISSING: "#f0f0f0"}


def _fmt(value: Any, unit: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        value = f"{value:.4g}"
    return f"{value}{' ' + unit if unit and unit != '%' else unit}"


def styled(df):
    """A scorecard (or :func:`per_ref` overview) as a pandas ``Styler``: verdicts coloured,
    values joined with their units where the frame has a ``unit`` column."""
    shown = df.copy()
    if "unit" in shown:
        for col in ("paper", "ours"):
            shown[col] = [_fmt(v, u) for v, u in zip(df[col], df["unit"])]
        shown = shown.drop(columns="unit")
    return (shown.style.hide(axis="index")
            .map(lambda v: f"background-color: {COLOURS.get(v, 'white')}", subset=["verdict"]))


def plot_counts(df):
    """A horizontal bar of how many comparisons got each verdict; returns the figure."""
    import matplotlib.pyplot as plt

    c = counts(df)
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.barh(list(c.index), c.to_numpy(), color=[COLOURS[v] for v in c.index], edgecolor="0.4")
    for y, v in enumerate(c.to_numpy()):
        ax.text(v, y, f" {v}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("comparisons with the paper")
    profiles = sorted({p for p in df["profile"] if p})
    ax.set_title(f"Reproduction scorecard (profiles: {', '.join(profiles) or 'none'})", fontsize=10)
    fig.tight_layout()
    return fig
