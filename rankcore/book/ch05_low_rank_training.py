"""Chapter 05, training on low-rank images (Section 5.2, appendix 9.6: Figures 15, 16 and
Table 2's top-1 column).

The training block and the accuracy-per-epoch figure are chapter 04's
(:func:`rankcore.book.ch04_high_rank_training.train_runs`, ``accuracy_figure``); the paper's
Table 2 comes from :func:`rankcore.book.paper.table2_row`. Tables hold percent, as the
paper's do. The verdict rules are fixed below and tested in
``tests/test_ch05_low_rank_training.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .. import imagenet_training as it
from ..train import TrainConfig, build_model, load_checkpoint
from ..paths import cache_dir
from ..training import transform_rank
from . import paper
from .ch04_high_rank_training import FALL_NOISE, TrainedRuns, epochs_text, training_evidence
from .verdicts import not_meaningful, rule

__all__ = ["CHAPTER", "TOP1_CLOSE", "GAP_SLACK", "SHRINK_NOISE", "FULL_TREND_BAND", "run_names", "rank_label",
           "table2_top1", "gap_shrinks", "training_evidence", "table2_top1_verdict", "table2_top1_verdicts",
           "fig16_verdict", "fig15_claim", "imagenet_markdown", "imagenet_config", "imagenet_dir",
           "imagenet_status", "imagenet_top1", "imagenet_curves", "imagenet_models",
           "summary_markdown"]

CHAPTER = "05_low_rank_training"
#: Ours within this many points of the paper's top-1 -> "reproduced".
TOP1_CLOSE = 2.0
#: A rank-K model's gap to full rank counts as small when at most the paper's gap plus this.
GAP_SLACK = 3.0
#: The gap "shrinks as K grows" when no larger K has a gap more than this many points wider.
SHRINK_NOISE = FALL_NOISE
#: The full-rank row is judged on its own accuracy: "same trend" within this many points of
#: the paper's 95.21% (a network of the paper's class), "differs" further away.
FULL_TREND_BAND = 5.0


def run_names(ranks: Sequence[int]) -> list[str]:
    """The runs of this chapter: one per training rank, then the full-rank model."""
    return [f"low_rank:{k}" for k in ranks] + ["natural"]


def rank_label(name: str) -> str:
    """Legend label: ``"low_rank:5"`` -> ``"rank 5"``, ``"natural"`` -> ``"full rank"``."""
    return "full rank" if name == "natural" else f"rank {transform_rank(name)}"


def table2_top1(top1: dict[str, float], ranks: Sequence[int],
                dataset: str = "cifar10") -> "pandas.DataFrame":  # noqa: F821
    """Table 2's top-1 column beside ours, with the gap to full-rank training (percent).

    Args:
        top1 (dict): run name -> full-rank test top-1 in percent
            (:meth:`~rankcore.book.ch04_high_rank_training.TrainedRuns.top1`); must hold
            ``"natural"`` and ``"low_rank:K"`` for every ``K`` in ``ranks``.
        ranks (sequence of int): training ranks.
        dataset (str, optional): the half of Table 2, ``"cifar10"`` or ``"imagenet"``.
            Default: ``"cifar10"``.

    Returns:
        DataFrame, rows ``"full"`` then the ranks from high to low: ``trained_on``,
        ``paper_top1``, ``ours_top1``, ``paper_gap``, ``ours_gap`` (full minus this row;
        ``None`` where the paper has no row, e.g. rank 3).
    """
    import pandas as pd
    p_full = paper.table2_row("natural", dataset)["top1"]
    rows = []
    for k in ["full"] + sorted(ranks, reverse=True):
        run = "natural" if k == "full" else f"low_rank:{k}"
        p = paper.table2_row(run, dataset).get("top1")
        rows.append({"trained_on": k, "paper_top1": p, "ours_top1": top1[run],
                     "paper_gap": None if p is None else round(p_full - p, 2),
                     "ours_gap": top1["natural"] - top1[run]})
    return pd.DataFrame(rows)


def gap_shrinks(gaps: dict[int, float], noise: float = SHRINK_NOISE) -> bool:
    """True when the gap to full rank does not widen by more than ``noise`` as K grows."""
    ks = sorted(gaps)
    return all(gaps[a] >= gaps[b] - noise for a, b in zip(ks, ks[1:]))


@rule("table2", examples={
    "reproduced": [dict(trained_on="full", ours=94.0, paper_top1=95.21, ours_gap=0.0,
                        paper_gap=0.0, shrinks=True),
                   dict(trained_on=5, ours=90.5, paper_top1=91.54, ours_gap=4.0,
                        paper_gap=3.67, shrinks=False)],
    "same trend": [dict(trained_on="full", ours=91.0, paper_top1=95.21, ours_gap=0.0,
                        paper_gap=0.0, shrinks=True),
                   dict(trained_on=5, ours=80.0, paper_top1=91.54, ours_gap=5.0,
                        paper_gap=3.67, shrinks=True)],
    "differs": [dict(trained_on="full", ours=82.6, paper_top1=95.21, ours_gap=0.0,
                     paper_gap=0.0, shrinks=True),
                dict(trained_on=5, ours=70.0, paper_top1=91.54, ours_gap=12.0,
                     paper_gap=3.67, shrinks=True),
                dict(trained_on=5, ours=80.0, paper_top1=91.54, ours_gap=5.0,
                     paper_gap=3.67, shrinks=False)],
    "not meaningful here": [dict(trained_on=5, ours=20.0, paper_top1=91.54, ours_gap=-8.0,
                                 paper_gap=3.67, shrinks=True,
                                 why=training_evidence(11.7))]},
      needs="a full-rank model of the recipe above chance by 10 points (for the rank rows)")
def table2_top1_verdict(trained_on, ours: float, paper_top1: float, ours_gap: float,
                        paper_gap: float, shrinks: bool, close: float = TOP1_CLOSE,
                        why: str = "") -> str:
    """One row of Table 2's top-1 column: "reproduced" within ``close`` points of the paper.

    Else the full-rank row is judged on its own accuracy: "same trend" within
    :data:`FULL_TREND_BAND` points of the paper's, "differs" further away. A rank-K row is
    judged on the paper's relative claim: "same trend" when the gap to our full-rank model
    shrinks with K and this row's gap is at most the paper's plus :data:`GAP_SLACK`; else
    "differs".

    Args:
        close (float, optional): tolerance in points (the seed scatter's where larger).
            Default: :data:`TOP1_CLOSE`.
        why (str, optional): missing evidence for a rank row's gap (a full-rank model at
            chance, :func:`~rankcore.book.ch04_high_rank_training.training_evidence`).
    """
    if abs(ours - paper_top1) <= close:
        return "reproduced"
    if trained_on == "full":
        return "same trend" if abs(ours - paper_top1) <= FULL_TREND_BAND else "differs"
    if why:
        return not_meaningful(why)
    return "same trend" if shrinks and ours_gap <= paper_gap + GAP_SLACK else "differs"


def table2_top1_verdicts(t2, close: float = TOP1_CLOSE) -> tuple[dict, bool]:
    """Verdicts of the rows of :func:`table2_top1` that the paper has, and ``shrinks``."""
    gaps = {int(r.trained_on): r.ours_gap for r in t2.itertuples() if r.trained_on != "full"}
    shrinks = gap_shrinks(gaps)
    why = training_evidence(t2.loc[t2.trained_on == "full", "ours_top1"].iloc[0])
    out = {}
    for r in t2.itertuples():
        if r.paper_top1 is None or r.paper_top1 != r.paper_top1:   # no paper row (NaN/None)
            continue
        out[r.trained_on] = table2_top1_verdict(r.trained_on, r.ours_top1, r.paper_top1,
                                                r.ours_gap, r.paper_gap, shrinks, close, why)
    return out, shrinks


@rule("fig16", "fig15", examples={
    "reproduced": [dict(shrinks=True, rows=["reproduced", "reproduced"])],
    "same trend": [dict(shrinks=True, rows=["differs", "same trend"])],
    "differs": [dict(shrinks=False, rows=["reproduced"])],
    "not meaningful here": [dict(shrinks=True, why="at chance")]})
def fig16_verdict(shrinks: bool, rows: list[str] | tuple[str, ...] = (), why: str = "") -> str:
    """Figures 15/16: the gap to full rank shrinks as the training rank grows. "reproduced"
    when it shrinks and every Table 2 top-1 row (``rows``, their verdicts) is reproduced;
    "same trend" when it shrinks; "differs" otherwise; "not meaningful here" with ``why``."""
    if why:
        return not_meaningful(why)
    if not shrinks:
        return "differs"
    return "reproduced" if rows and all(v == "reproduced" for v in rows) else "same trend"


def fig15_claim() -> str:
    """Figure 15's point in the paper's numbers: the rank-100 ImageNet model's gap to full rank."""
    full = paper.table2_row("natural", "imagenet")["top1"]
    r100 = paper.table2_row("low_rank:100", "imagenet")["top1"]
    return f"rank 100: {full - r100:.1f} points below full rank ({r100}% vs {full}%)"


# ------------------------------------------------- Figure 15: ImageNet (paper profile only)

def imagenet_config(name: str) -> TrainConfig:
    """The ImageNet run ``"natural"`` or ``"low_rank:K"``: ResNet-50 with the paper's recipe
    (He et al.: 90 epochs, lr 0.1 per 256 images, divided by 10 every 30 epochs)."""
    return it.imagenet_config(transform=None if name == "natural" else name)


def imagenet_dir(name: str, root: str | Path | None = None) -> Path:
    """Where the ImageNet run ``name`` keeps its checkpoint: ``<root>/<name>-<config key>``.

    Default root: ``rankcore.paths.cache_dir("imagenet_runs")``.
    """
    base = Path(root) if root is not None else cache_dir("imagenet_runs")
    return base / f"{name.replace(':', '_')}-{imagenet_config(name).key()}"


def _finished(name: str, root) -> bool:
    path = imagenet_dir(name, root) / "checkpoint.pt"
    if not path.exists():
        return False
    ckpt = load_checkpoint(path, imagenet_config(name))
    return len(ckpt.get("history", [])) >= imagenet_config(name).epochs


def imagenet_status(names: Sequence[str], root=None, data_root=None) -> dict:
    """Whether the ImageNet runs ``names`` can be reported, and if not, what they need.

    Returns:
        dict: ``ready`` (bool: every run has a finished checkpoint), ``reason`` (one
        sentence: the missing data set or the runs still to train, with their GPU hours)
        and ``commands`` (the ``torchrun`` command of every missing run).
    """
    missing = [n for n in names if not _finished(n, root)]
    if not missing:
        return {"ready": True, "reason": "", "commands": []}
    need = it.resources(imagenet_config(missing[0]), root=data_root)
    absent = [d for d in need["data"] if not d["present"]]
    commands = [f"torchrun --nproc_per_node=8 -m rankcore.imagenet_training"
                + ("" if n == "natural" else f" --transform {n}")
                + f" --out {imagenet_dir(n, root)}" for n in missing]
    if absent:
        reason = ("needs " + " and ".join(f"{d['name']} ({d['images']} images, {d['gb']} GB)"
                                          for d in absent) + f": {absent[0]['how']}")
    else:
        reason = (f"needs GPU: {len(missing)} run(s) not trained ({need['gpu_hours']} GPU hours "
                  "each at the assumed throughput); train them with the commands printed below")
    return {"ready": False, "reason": reason, "commands": commands}


def imagenet_curves(names: Sequence[str], root=None) -> "pandas.DataFrame":  # noqa: F821
    """Per-epoch full-rank validation top-1 of the ImageNet runs, in the shape of
    :func:`rankcore.book.runs.curves` (``run``, ``epoch``, ``test_top1`` as fractions)."""
    import pandas as pd
    rows = []
    for n in names:
        ckpt = load_checkpoint(imagenet_dir(n, root) / "checkpoint.pt", imagenet_config(n))
        rows += [{"run": n, "epoch": h["epoch"], "test_top1": h["test_top1"]}
                 for h in ckpt["history"]]
    return pd.DataFrame(rows)


def imagenet_top1(curves) -> dict[str, float]:
    """Final full-rank validation top-1 of every ImageNet run, percent."""
    last = curves.sort_values("epoch").groupby("run", sort=False).tail(1)
    return {r: 100.0 * float(v) for r, v in zip(last["run"], last["test_top1"])}


def imagenet_models(names: Sequence[str], root=None, device=None) -> dict:
    """The trained ImageNet ResNet-50s (``[0, 1]`` images, eval mode), for Table 2's attacks."""
    out = {}
    for n in names:
        ckpt = load_checkpoint(imagenet_dir(n, root) / "checkpoint.pt", imagenet_config(n))
        model = build_model(imagenet_config(n))
        model.load_state_dict(ckpt["model"])
        out[n] = model.to(device or "cpu").eval()
    return out


def imagenet_markdown(t2, verdicts: dict, shrinks: bool) -> str:
    """One sentence on Figure 15 / Table 2's ImageNet top-1 column from the trained runs."""
    full = t2.loc[t2.trained_on == "full", "ours_top1"].iloc[0]
    rows = "; ".join(f"rank {r.trained_on}: {r.ours_top1:.1f}% (gap {r.ours_gap:.1f} points)"
                     for r in t2.itertuples() if r.trained_on != "full")
    return (f"full rank {full:.1f}%; {rows}. The gap {'shrinks' if shrinks else 'does not shrink'}"
            f" as the rank grows; verdicts " + ", ".join(f"{k}: {v}" for k, v in verdicts.items())
            + ".")


def summary_markdown(t2, verdicts: dict, shrinks: bool, trained: TrainedRuns, profile: str,
                     fig15: str) -> str:
    """The chapter's summary from this run's Table 2 top-1 column.

    Args:
        fig15 (str): one sentence on Figure 15 (ImageNet) from this run.
    """
    cfg = trained.configs["natural"]
    full = t2.loc[t2.trained_on == "full", "ours_top1"].iloc[0]
    rows = "; ".join(
        f"rank {r.trained_on}: {r.ours_top1:.1f}%, gap {r.ours_gap:.1f} points"
        + ("" if r.paper_gap is None or r.paper_gap != r.paper_gap
           else f" (paper {r.paper_gap:.2f})")
        for r in t2.itertuples() if r.trained_on != "full")
    verdict_text = ", ".join(f"{k}: {v}" for k, v in verdicts.items())
    return "\n".join([
        f"- **Figure 16 / Table 2 top-1** ({profile} profile, `{trained.family}` family: "
        f"{cfg.arch}, {epochs_text(trained.configs)}): "
        f"the full-rank model reaches {full:.1f}% on full-rank test images (paper "
        f"{paper.table2_row('natural')['top1']}%); {rows}.",
        f"- The gap {'shrinks' if shrinks else 'does not shrink'} as the training rank grows "
        f"(rule: no widening above {SHRINK_NOISE:g} points); verdicts {verdict_text}.",
        f"- **Figure 15 (ImageNet)**: {fig15}",
    ])
