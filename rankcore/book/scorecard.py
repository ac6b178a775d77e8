"""The reproduction scorecard: every figure and table of the paper beside what we measured.

Chapters record their comparisons with :meth:`rankcore.results.Results.score` into
``results/<profile>/<chapter>/scorecard.json``. This module gathers those records and sets
them against the list of the paper's figures and tables in ``rankcore/book/paper_values.yml``, so the
book's last page (``book/scorecard.ipynb``) shows at a glance what the companion confirms::

    df = rankcore.scorecard.scorecard("quick")   # one row per comparison, every ref present
    rankcore.scorecard.counts(df)                # paper claims per verdict
    rankcore.scorecard.kind_counts(df)           # verdict x kind, illustrations apart

Only rows of kind ``paper claim`` count as reproductions; ``illustration`` rows (a figure
regenerated, or the library checked against itself) and ``zoo check`` rows (the model zoo
against its sources' accuracies) are shown and counted apart
(:mod:`rankcore.book.verdicts`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

from . import paper
from ..paths import results_root
from .verdicts import COUNTED, DEFINITIONS, KINDS, VERDICTS

#: Verdict of a figure or table for which no chapter recorded a comparison.
MISSING = "not yet reproduced"
#: Every verdict a scorecard row can carry, from strongest to weakest agreement.
ALL_VERDICTS = VERDICTS + (MISSING,)
#: Profiles from the most to the least faithful to the paper's scale.
PROFILE_ORDER = ("paper", "quick", "smoke")
COLUMNS = ["ref", "what", "chapter", "item", "paper", "ours", "unit", "profile", "verdict",
           "kind", "note"]


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
            # Records written before kinds existed were all counted as paper claims.
            rows.append({**{c: r.get(c, "") for c in COLUMNS}, "ref": ref,
                         "what": entry.get("what", r.get("what", "")),
                         "kind": r.get("kind") or COUNTED})
        if ref not in by_ref:
            chapter = entry.get("chapter", "")
            done = [p for p in order if (p, chapter) in ran]
            note = (f"{chapter} ran ({done[0]} profile) but recorded no comparison" if done
                    else f"{chapter} has not run")
            rows.append({"ref": ref, "what": entry.get("what", ""), "chapter": chapter,
                         "item": "", "paper": "", "ours": "", "unit": "", "profile": "",
                         "verdict": MISSING, "kind": entry.get("kind", COUNTED),
                         "note": note})
    return pd.DataFrame(rows, columns=COLUMNS)


def _check(df) -> None:
    unknown = set(df["verdict"]) - set(ALL_VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; expected {ALL_VERDICTS}")
    if "kind" in df:
        bad = set(df["kind"]) - set(KINDS)
        if bad:
            raise ValueError(f"unknown kinds {sorted(bad)}; expected {KINDS}")


def counts(df, kind: str | None = COUNTED) -> "pandas.Series":  # noqa: F821 (lazy pandas)
    """Number of rows per verdict, in :data:`ALL_VERDICTS` order (zeros included).

    Args:
        df (DataFrame): a :func:`scorecard`.
        kind (str or None, optional): count only rows of this kind; ``None`` counts all.
            Default: ``"paper claim"`` (the rows that count as reproductions).
    """
    _check(df)
    rows = df if kind is None or "kind" not in df else df[df["kind"] == kind]
    return rows["verdict"].value_counts().reindex(list(ALL_VERDICTS), fill_value=0)


def kind_counts(df) -> "pandas.DataFrame":  # noqa: F821
    """Rows per verdict (index, :data:`ALL_VERDICTS` order) and kind (columns,
    :data:`~rankcore.book.verdicts.KINDS` order), zeros included, with a total column."""
    import pandas as pd
    _check(df)
    t = pd.crosstab(df["verdict"], df["kind"]).reindex(index=list(ALL_VERDICTS),
                                                       columns=list(KINDS), fill_value=0)
    t["all"] = t.sum(axis=1)
    t.index.name, t.columns.name = "verdict", "kind"
    return t


def legend_markdown() -> str:
    """The scorecard's legend: the verdicts, the kinds and the book's operational definitions."""
    verdicts = {
        "reproduced": "the paper's number (or, for a claim without one, its statement in "
                      "full) within the rule's tolerance, by the interval where there is one",
        "same trend": "the direction the paper states holds, not its size",
        "differs": "the measurement contradicts the claim, or falls outside the rule's band",
        "not meaningful here": "the evidence is below what the rule declares it needs "
                               "(images, rank grid, accuracy above chance, seeds); the note "
                               "says which",
        "needs GPU or data": "the comparison could not run in this profile",
        MISSING: "no chapter recorded a comparison",
    }
    kinds = {
        "paper claim": "counted: a measured test of what the paper reports",
        "illustration": "shown, counted apart: the figure regenerated, or the library checked "
                        "against itself (it cannot fail for a reason the paper is about)",
        "zoo check": "shown, counted apart: a model of the zoo against its source's published "
                     "accuracy (the paper's Table 1 states none)",
    }
    return "\n".join(["**Verdicts.**", *(f"- *{k}*: {v}." for k, v in verdicts.items()), "",
                      "**Kinds.**", *(f"- *{k}*: {v}." for k, v in kinds.items()), "",
                      "**Operational definitions** (the book's, where the paper uses words).",
                      *(f"- *{k}*: {v}." for k, v in DEFINITIONS.items())])


def per_ref(df) -> "pandas.DataFrame":  # noqa: F821
    """One row per figure/table with its weakest verdict, for a compact overview."""
    rank = {v: i for i, v in enumerate(ALL_VERDICTS)}
    worst = (df.assign(_r=df["verdict"].map(rank)).sort_values("_r", kind="stable")
             .groupby("ref", sort=False).tail(1).drop(columns="_r"))
    keep = ["ref", "what", "chapter", "profile", "verdict"] + (["kind"] if "kind" in df else [])
    return worst.set_index("ref").loc[list(dict.fromkeys(df["ref"]))].reset_index()[keep]


#: Background colours for the verdict column (colour-blind-safe, light).
COLOURS = {"reproduced": "#c7e9c0", "same trend": "#deebf7", "differs": "#fdd0a2",
           "not meaningful here": "#fff2ae", "needs GPU or data": "#e0e0e0", MISSING: "#f0f0f0"}


def format_value(value: Any, unit: str) -> str:
    """A scorecard value as shown: floats to 4 significant digits, then its unit."""
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
            shown[col] = [format_value(v, u) for v, u in zip(df[col], df["unit"])]
        shown = shown.drop(columns="unit")
    return (shown.style.hide(axis="index")
            .map(lambda v: f"background-color: {COLOURS.get(v, 'white')}", subset=["verdict"]))


def plot_counts(df):
    """A horizontal bar of how many paper claims got each verdict; returns the figure.
    Illustrations and zoo checks are counted apart (:func:`kind_counts`)."""
    import matplotlib.pyplot as plt

    c = counts(df)
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.barh(list(c.index), c.to_numpy(), color=[COLOURS[v] for v in c.index], edgecolor="0.4")
    for y, v in enumerate(c.to_numpy()):
        ax.text(v, y, f" {v}", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("paper claims compared (illustrations and zoo checks apart)")
    profiles = sorted({p for p in df["profile"] if p})
    ax.set_title(f"Reproduction scorecard (profiles: {', '.join(profiles) or 'none'})", fontsize=10)
    fig.tight_layout()
    return fig


def _effective(profile: str) -> dict[str, dict[str, Any]]:
    """Chapter -> its parameters under ``profile`` (notebook defaults overlaid)."""
    from . import runner
    injected = runner.load_profile(profile)
    return {c.name: runner.effective_parameters(c, injected.get(c.name, {}))
            for c in runner.chapters() if c.is_notebook}


def profile_summary(profile: str, params: dict[str, dict[str, Any]] | None = None,
                    root: str | os.PathLike | None = None) -> str:
    """One paragraph on what ``profile`` can and cannot test, generated from its settings.

    Args:
        profile (str): a profile name, e.g. ``"quick"``.
        params (dict, optional): chapter -> effective parameters (for tests). Default: the
            notebooks' defaults overlaid with the profile's.
        root (path, optional): the data root, to name the CIFAR-10 copy found.
    """
    from . import ch00_setup, runs, seed_scatter

    p = params if params is not None else _effective(profile)
    ch02, ch03, ch06 = (p.get(c, {}) for c in ("02_rank_spectrum", "03_rig",
                                               "06_low_rank_robustness"))
    cannot, can = [], []
    if not ch02.get("imagenet_robust"):
        cannot.append("no robust ImageNet model (Figures 4, 6 and 7b's robust curves, 7d)")
    nat = ch02.get("imagenet_natural", "")
    if nat and nat != "resnet50":
        cannot.append(f"ImageNet curves from {nat}, not the paper's ResNet-50")
    try:
        fams = runs.families(profile)
        t2 = runs.table2_family(profile)
        cfg = {n: runs.preset(n, profile) for n in ("natural", "adv")}
    except ValueError:
        fams, t2, cfg = [], "", {}
    if cfg:
        arch = cfg["natural"].arch
        if t2 != "resnet" and "resnet" not in fams:
            cannot.append(f"no model of the paper's architecture is trained (CIFAR-10 runs "
                          f"are {arch} stand-ins)")
        lengths = ", ".join(f"{n} {c.epochs}" for n, c in cfg.items())
        cannot.append(f"CPU-trained stand-ins for the paper's 350-epoch ResNet-50s "
                      f"({lengths} epochs{', ' + str(cfg['natural'].n_train) + ' training images' if cfg['natural'].n_train else ''})")
    proxy = ch00_setup.proxy_note("cifar10", root)
    if proxy:
        cannot.append(f"CIFAR-10 images are a {proxy}")
    scatter = seed_scatter.load(profile)
    cannot.append("ImageNet training (Figure 15, Table 2's ImageNet half) needs a GPU")
    if scatter is None:
        cannot.append("no seed scatter measured (tolerances are the fixed ones)")
    from . import ch02_rank_spectrum as c2, ch03_rig as c3

    def enough(n, need, what_can, what_not):
        if n is None:
            return
        (can if n >= need else cannot).append(
            what_can.format(n=n) if n >= need else what_not.format(n=n, need=need))
    enough(ch02.get("cifar_n"), c2.MIN_IMAGES,
           "the CIFAR-10 rank spectrum on {n} test images, robust against natural with "
           "paired intervals", "CIFAR-10 saturation on {n} images (a verdict needs {need})")
    enough(ch02.get("imagenet_n"), c2.MIN_IMAGES, "ImageNet saturation on {n} images",
           "ImageNet saturation on {n} images (a verdict needs {need})")
    enough(ch03.get("imagenet_n"), c3.MIN_IMAGES,
           "RIG against vanilla gradients in numbers on {n} images (paired intervals)",
           "RIG against vanilla gradients on {n} images (a paired interval needs {need})")
    enough(ch03.get("cifar_n"), c3.MIN_IMAGES,
           "Figure 11's robust against natural RIG maps on {n} images",
           "Figure 11 on {n} images (a paired interval needs {need})")
    n_attack = ch06.get("cifar_n")
    if n_attack:
        can.append(f"Table 2's CIFAR-10 attack on {n_attack} test images (rates these images "
                   "cannot resolve say 'not meaningful here')")
    can.append("the rank-k image algebra (Figures 2, 3, 5, 9: illustrations, not counted)")
    if scatter is not None:
        can.append("training results against the seed scatter of "
                   + ", ".join(scatter.get("runs", {})))
    return (f"**What the {profile} profile can test:** " + "; ".join(can) + ". "
            f"**What it cannot:** " + "; ".join(cannot) + ".")


# ---------------------------------------------------------------------------- the landing page

#: What the scorecard chapter writes for the book's landing page (``book/intro.md``
#: includes ``landing.md``; :func:`rankcore.book.runner.build` copies both beside it).
LANDING_FIGURE, LANDING_TEXT = "landing.png", "landing.md"
#: The headline comparison: Figure 7c, robust minus natural top-1 at low rank (CIFAR-10).
HEADLINE_REF, HEADLINE_CHAPTER = "fig7c", "02_rank_spectrum"


def headline_gaps(card, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Figure 7c's robust-minus-natural curves (``rank``, ``gap``, ``gap_lo``, ``gap_hi``,
    fractions) from the results of the profile whose fig7c rows the scorecard ``card`` shows;
    ``{}`` when none was saved."""
    import pandas as pd
    shown = card[(card["ref"] == HEADLINE_REF) & (card["profile"] != "")]
    if shown.empty:
        return {}
    folder = Path(root or results_root()) / str(shown["profile"].iloc[0]) / HEADLINE_CHAPTER
    return {p.stem.removeprefix("fig7c_gap_"): pd.read_csv(p)
            for p in sorted(folder.glob("fig7c_gap_*.csv"))}


def plot_headline(gaps: dict[str, Any], profile: str):
    """Figure 7c for the landing page: each robust-minus-natural curve (points) with its
    95% interval band; returns the figure."""
    import matplotlib.pyplot as plt

    from .figures import figsize
    names = {"linf": "L-inf robust", "l2": "L2 robust"}
    fig, ax = plt.subplots(figsize=figsize(1, 1, aspect=0.5))
    for (key, g), colour in zip(gaps.items(), ("tab:red", "tab:blue", "tab:green")):
        label = names.get(key, key)
        ax.plot(g["rank"], 100 * g["gap"], marker=".", color=colour, label=f"{label} minus natural")
        ax.fill_between(g["rank"], 100 * g["gap_lo"], 100 * g["gap_hi"], color=colour, alpha=0.18,
                        lw=0)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(20, color="0.5", lw=0.8, ls="--", label="the paper: > 20 points at ranks 1-10")
    ax.set(xlabel="input rank k (CIFAR-10, 32 x 32)", ylabel="top-1 gap (points)")
    ax.set_title(f"Figure 7c, this build ({profile} profile): robust minus natural top-1, "
                 "95% interval bands", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def landing_markdown(card, has_figure: bool) -> str:
    """The landing page's result block: the headline figure, its verdict and the counts."""
    c = counts(card)
    n = int(c.sum())
    said = ", ".join(f"**{int(v)}** {k}" for k, v in c.items() if v)
    apart = kind_counts(card)["all"].sum() - n
    rows = card[(card["ref"] == HEADLINE_REF) & (card["item"] != "")]
    profiles = sorted({p for p in card["profile"] if p})
    out = [f"**This build** ({', '.join(profiles) or 'no'} profile results): of **{n}** paper "
           f"claims compared, {said or 'none yet'}. {int(apart)} illustrations, zoo checks and "
           "beyond-the-paper rows are counted apart; the [scorecard](scorecard) lists every "
           "row."]
    if has_figure:
        out += ["", f"![Figure 7c of this build: robust minus natural top-1 against input rank]"
                    f"({LANDING_FIGURE})"]
    for r in rows.itertuples():
        out += ["", f"- *{r.item}*: the paper {r.paper}; this run {r.ours}: **{r.verdict}**."]
    if rows.empty:
        out += ["", "*Figure 7c has not run in this build; chapter 02 draws it.*"]
    return "\n".join(out) + "\n"


def write_landing(res, card, root: str | os.PathLike | None = None):
    """Write the landing page's figure and text into the scorecard chapter's results ``res``.

    Returns:
        (Figure or None, str): the headline figure (``None`` when chapter 02 saved no
        Figure 7c curve) and the text without the picture, for the scorecard's own page.
    """
    from .. import _io
    gaps = headline_gaps(card, root)
    fig = None
    if gaps:
        fig = plot_headline(gaps, str(card[card["ref"] == HEADLINE_REF]["profile"].iloc[0]))
        res.figure(fig, LANDING_FIGURE.removesuffix(".png"), dpi=100)
    _io.write_text(res.dir / LANDING_TEXT, landing_markdown(card, fig is not None))
    return fig, landing_markdown(card, False)
