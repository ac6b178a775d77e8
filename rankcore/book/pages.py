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
        if cell["cell_type"] == "markdown":
            out += [f"{name} cell {i}: a code line of {len(line)} characters scrolls sideways "
                    f"(at most {CODE_COLUMNS}): {line[:40]!r}..."
                    for line in _fenced_lines("".join(cell["source"])) if len(line) > CODE_COLUMNS]
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


#: The widest line of a fenced code block in a Markdown cell that the 700 px column shows
#: whole (the theme's code font at 1280 px; the re-run block wraps to 72).
CODE_COLUMNS = 76


def _fenced_lines(markdown: str) -> list[str]:
    """The lines inside the ``` (or ~~~) code fences of ``markdown``; MyST directives
    (```{name}) are markup, not code."""
    lines, block = [], None  # None, "code" or "directive": the fence we are inside
    for line in markdown.splitlines():
        fence = line.lstrip()
        if fence.startswith(("```", "~~~")):
            block = None if block else ("directive" if fence[3:].startswith("{") else "code")
            continue
        if block == "code":
            lines.append(line)
    return lines


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


# ---------------------------------------------------------------------------- verdicts

#: Glue keys of a page's opening: its headline figure and the verdict box under it.
HEADLINE_FIGURE = "headline-figure"
HEADLINE_VERDICT = "headline-verdict"
#: The admonition class of each verdict (sphinx-book-theme colours: green, blue, orange, grey).
BOX_CLASS = {"reproduced": "tip", "same trend": "note", "differs": "warning",
             "not meaningful here": "attention", "needs GPU or data": "seealso"}


def opening_markdown(caption: str) -> str:
    """The MyST that opens a chapter page under its title: the headline figure and its
    verdict box, both glued later in the notebook (:func:`headline`, :func:`show_verdict`)."""
    return (f"```{{glue:figure}} {HEADLINE_FIGURE}\n\n{caption}\n```\n\n"
            f"```{{glue:md}} {HEADLINE_VERDICT}\n:format: myst\n```\n")


def recorded(res, ref: str, match: str = "") -> list[dict]:
    """The comparisons chapter ``res`` (a :class:`~rankcore.book.results.Results`) has
    recorded for ``ref`` (its ``scorecard.json``), those whose item contains ``match``."""
    import json
    path = res.dir / "scorecard.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    return [r for r in rows if r["ref"] == ref and match in r["item"]]


def _value(value: Any, unit: str) -> str:
    from .scorecard import format_value  # one formatter for a value and its unit: the scorecard's
    text = format_value(value, unit) if value not in (None, "") else "none"
    return text.replace("*", "\\*").replace("<", "&lt;")


def verdict_markdown(row: dict) -> str:
    """One comparison as a two-line verdict box (a MyST admonition): what the paper says,
    what this run measured (with its interval where the rule has one), and the verdict."""
    word = row["verdict"]
    kind = "" if row.get("kind", "paper claim") == "paper claim" else f" ({row['kind']})"
    return (f"```{{admonition}} {row['ref']}: {word}{kind}\n:class: {BOX_CLASS.get(word, 'note')}\n\n"
            f"**The paper:** {_value(row['paper'], row.get('unit', ''))}. *{row['item']}*\\\n"
            f"**This run:** {_value(row['ours'], row.get('unit', ''))}: **{word}**.\n```\n")


def verdict_key(ref: str) -> str:
    """The glue key of the verdict boxes of ``ref``, e.g. ``"verdict-fig7c"``."""
    return f"verdict-{ref}"


def under_figure_markdown(*refs: str) -> str:
    """The MyST of a Markdown cell placed under a figure: the verdict boxes of ``refs``,
    glued at the end of the notebook by :func:`glue_verdicts`."""
    return "\n".join(f"```{{glue:md}} {verdict_key(r)}\n:format: myst\n```\n" for r in refs)


def boxes_markdown(rows: list[dict], ref: str, limit: int = 3) -> str:
    """The verdict boxes of ``rows`` (at most ``limit``, then a line that counts the rest)."""
    if not rows:
        return f"*This run recorded no comparison for {ref}; see the scorecard.*\n"
    text = "\n".join(verdict_markdown(r) for r in rows[:limit])
    if len(rows) > limit:
        text += (f"\n*{len(rows) - limit} more {ref} comparison(s) in the table below and in the "
                 "scorecard.*\n")
    return text


def glue_verdicts(res, refs: Iterable[str], headline: tuple[str, str] | str,
                  limit: int = 3) -> dict[str, list[dict]]:
    """Glue the verdict boxes of every ref in ``refs`` (for the cells under their figures,
    :func:`under_figure_markdown`) and the page's opening verdict: the first comparison of
    ``headline`` (a ref, or ``(ref, text its item contains)``), from what chapter ``res``
    recorded. A ref without comparisons gets a line that says so, never a missing key (the
    book is built with warnings as errors). Call it once, after the chapter's last score.

    Returns:
        dict: ref -> its recorded comparisons.
    """
    from IPython.display import Markdown
    out = {ref: recorded(res, ref) for ref in refs}
    for ref, rows in out.items():
        _glue(verdict_key(ref), Markdown(boxes_markdown(rows, ref, limit)))
    ref, match = (headline, "") if isinstance(headline, str) else headline
    rows = recorded(res, ref)
    best = [r for r in rows if match in r["item"]] or rows
    _glue(HEADLINE_VERDICT, Markdown(verdict_markdown(best[0]) if best else boxes_markdown([], ref)))
    return out


def headline(fig) -> None:
    """Glue ``fig`` (a matplotlib figure) as the figure that opens the page; it is still
    shown where it is drawn."""
    _glue(HEADLINE_FIGURE, fig)


def glue_markdown(key: str, text: str) -> None:
    """Glue MyST ``text`` under ``key`` (e.g. :data:`HEADLINE_VERDICT`), not shown here."""
    from IPython.display import Markdown
    _glue(key, Markdown(text))


def _glue(key: str, obj: Any) -> None:
    from myst_nb import glue
    glue(key, obj, display=False)
