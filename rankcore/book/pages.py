"""How a chapter page shows itself to a reader: one hiding rule for every notebook, the
verdict box that opens a page and sits under the figure it judges, and tables without an
index or cut cells.

The hiding rule: the parameters cell (and papermill's injected cell, tagged by the runner,
:func:`rankcore.book.runner.finish_page`) is removed from the page (``remove-cell``); every
other code cell shows its output only (``remove-input``). The notebooks keep their code;
the page ends with a "Re-run this chapter" block instead.
"""
from __future__ import annotations

from typing import Any, Iterable

#: The tag of every code cell but the parameters cell: the page shows its output only.
HIDE_CODE = "remove-input"
#: The tag of the parameters cells (the notebook's defaults, papermill's injected values).
REMOVE = "remove-cell"
PARAMETER_TAGS = ("parameters", "injected-parameters")
#: Tags that would show or half-show code, or hide an output; no chapter uses them.
FORBIDDEN = ("hide-input", "hide-cell", "hide-output", "remove-output")


def page_rule_problems(nb: Any, name: str = "notebook") -> list[str]:
    """What in notebook ``nb`` (an ``nbformat`` node or its JSON) breaks the hiding rule ([] when none)."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        tags = list(cell["metadata"].get("tags", []))
        source = "".join(cell["source"]).strip()
        where = f"{name} cell {i} ({source.splitlines()[0][:40] if source else 'empty'!r})"
        if any(t in tags for t in PARAMETER_TAGS):
            if REMOVE not in tags:
                out.append(f"{where}: a parameters cell without {REMOVE!r}")
        elif HIDE_CODE not in tags:
            out.append(f"{where}: a code cell without {HIDE_CODE!r}")
        bad = [t for t in tags if t in FORBIDDEN]
        if bad:
            out.append(f"{where}: tags {bad}; the rule is {HIDE_CODE!r} for every code cell")
    return out


def apply_page_rule(nb: Any) -> Any:
    """Tag the code cells of ``nb`` (an ``nbformat`` node or the notebook's JSON as a dict)
    by the hiding rule, in place; returns ``nb``."""
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = [t for t in cell["metadata"].get("tags", []) if t not in FORBIDDEN]
        want = REMOVE if any(t in tags for t in PARAMETER_TAGS) else HIDE_CODE
        if want not in tags:
            tags.append(want)
        cell["metadata"]["tags"] = tags
    return nb


# ---------------------------------------------------------------------------- tables

def table(df, index: bool = False, precision: int = 3, footnote_over: int = 80,
          columns: Iterable[str] | None = None):
    """A pandas ``Styler`` for a page: no index column, numbers at ``precision`` digits,
    and no cell cut short. A text cell longer than ``footnote_over`` characters moves to a
    numbered footnote under the table (the cell keeps its number, ``[1]``), so that the
    table fits the 700 px column without sideways scrolling.

    Args:
        df (DataFrame): the table, any columns.
        index (bool): show the index. Default: ``False``.
        precision (int): digits after the point for floats. Default: 3.
        footnote_over (int): longest text kept in a cell. Default: 80.
        columns (iterable of str, optional): only these columns may move to footnotes.
            Default: every text column.
    """
    import pandas as pd
    if footnote_over < 10:
        raise ValueError(f"footnote_over={footnote_over!r}; expected at least 10 characters")
    df = df.copy()
    notes: list[str] = []
    for col in (columns if columns is not None else df.columns):
        if col not in df.columns:
            raise KeyError(f"columns: {col!r} is not a column; columns: {list(df.columns)}")
        if df[col].dtype != object and not pd.api.types.is_string_dtype(df[col]):
            continue
        values = []
        for v in df[col]:
            if isinstance(v, str) and len(v) > footnote_over:
                notes.append(v)
                v = f"[{len(notes)}]"
            values.append(v)
        df[col] = pd.Series(values, index=df.index, dtype=object)
    styler = df.style.format(precision=precision, na_rep="")
    if not index:
        styler = styler.hide(axis="index")
    if notes:
        styler = styler.set_caption("<br>".join(f"[{i}] {n}" for i, n in enumerate(notes, 1)))
        styler = styler.set_table_styles([{"selector": "caption",
                                           "props": "caption-side: bottom; text-align: left;"
                                                    " font-size: 0.85em;"}], overwrite=False)
    return styler
