"""Chapter 04, training on high-rank images (Section 5.1, appendix 9.5: Table 3, Figure 14).

Also the pieces chapters 05 and 06 share with it: the training block (:func:`train_runs`,
:func:`training_markdown`) and the accuracy-per-epoch figure (:func:`accuracy_figure`).

Accuracies from :mod:`rankcore.book.runs` are fractions; the tables here hold percent,
the unit of the paper's tables, so the two sit side by side. The verdict rules and their
tolerances are fixed below, before any run, and tested in
``tests/test_ch04_high_rank_training.py``.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

from ..training import transform_rank
from . import paper, runs

__all__ = ["CHAPTER", "CHANCE", "TABLE3_CLOSE", "FALL_NOISE", "ABOVE_CHANCE", "TrainedRuns",
           "run_names", "train_runs", "epochs_text", "training_markdown", "accuracy_figure",
           "removed_label", "table3", "falls_with_k",
           "table3_verdict", "table3_verdicts", "fig14_verdict", "summary_markdown"]

CHAPTER = "04_high_rank_training"
#: CIFAR-10 chance accuracy, percent.
CHANCE = 10.0
#: Table 3: ours within this many points of the paper's accuracy -> "reproduced".
TABLE3_CLOSE = 3.0
#: Accuracy "falls as more singular values are removed" when no later run is more than
#: this many points above an earlier one (seed noise of short runs).
FALL_NOISE = 2.0
#: "Non-random" accuracy: above this, percent (chance plus the fall noise).
ABOVE_CHANCE = CHANCE + FALL_NOISE


def run_names(removed: Sequence[int], include_natural: bool = True) -> list[str]:
    """This chapter's runs: one per number of removed singular values, then full rank."""
    return [f"high_rank:{k}" for k in removed] + (["natural"] if include_natural else [])


# ------------------------------------------------------------ the shared training block

@dataclasses.dataclass
class TrainedRuns:
    """What :func:`train_runs` returns: the configurations, the models and their summary."""
    configs: dict
    models: dict
    table: "pandas.DataFrame"  # noqa: F821  (rankcore.book.runs.summary, top-1 as fractions)
    wall_minutes: float
    family: str = "airbench"

    def top1(self) -> dict[str, float]:
        """Final full-rank test top-1 of every run, percent."""
        return {r: 100.0 * float(v) for r, v in zip(self.table["run"], self.table["test_top1"])}


def train_runs(names: Sequence[str], profile: str, family: str = "airbench",
               progress: bool = False) -> TrainedRuns:
    """Train (or load from the cache) the named runs of a profile (chapters 04, 05, 06).

    Args:
        names (sequence of str): run names of :func:`rankcore.book.runs.preset`, e.g.
            ``["high_rank:3", "natural"]``.
        profile (str): the book profile, which is the training scale.
        family (str, optional): architecture family of :func:`rankcore.book.runs.preset`
            (``"airbench"`` or ``"resnet"``). Default: ``"airbench"``.
        progress (bool, optional): progress bars while training. Default: ``False``.
    """
    configs = {name: runs.preset(name, profile, family=family) for name in names}
    t0 = time.perf_counter()
    models = {name: runs.cached(cfg, progress=progress) for name, cfg in configs.items()}
    return TrainedRuns(configs, models, runs.summary(models), (time.perf_counter() - t0) / 60,
                       family)


def epochs_text(configs: dict) -> str:
    """``"4 epochs"``, or ``"4 epochs (natural 5, adv 10)"`` where runs train for different
    lengths: the most common length first, then each run that differs."""
    lengths = [c.epochs for c in configs.values()]
    main = max(lengths, key=lengths.count)
    others = [f"{name} {c.epochs}" for name, c in configs.items() if c.epochs != main]
    return f"{main} epochs" + (f" ({', '.join(others)})" if others else "")


def training_markdown(trained: TrainedRuns) -> str:
    """One sentence on where the models came from and what they cost, from this build."""
    t = trained.table
    first = next(iter(trained.configs.values()))
    images = f"{first.n_train} training images" if first.n_train else "all training images"
    return (f"{len(t)} models ({first.arch}, {epochs_text(trained.configs)}, {images}) ready in "
            f"{trained.wall_minutes:.1f} min "
            f"in this build; training them took {t['train_minutes'].sum():.1f} min "
            f"({int(t['from_cache'].sum())} loaded from the cache).")


def accuracy_figure(curves, title: str, label: Callable[[str], str],
                    chance: float | None = None):
    """Full-rank test top-1 (percent) against epoch, one line per run (Figures 14 and 16).

    Args:
        curves (DataFrame): :func:`rankcore.book.runs.curves` (``run``, ``epoch``,
            ``test_top1`` as a fraction).
        title (str): the figure's title.
        label (callable): run name -> legend label.
        chance (float, optional): draw chance accuracy (percent) as a dotted line.
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, g in curves.groupby("run", sort=False):
        ax.plot(g["epoch"], 100 * g["test_top1"], marker="o", ms=3, label=label(name))
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", label="chance")
    ax.set(xlabel="epoch", ylabel="full-rank test top-1 (%)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def removed_label(name: str) -> str:
    """Legend label of a chapter-04 run: ``"high_rank:3"`` -> ``"3 largest removed"``."""
    return "full rank" if name == "natural" else f"{transform_rank(name)} largest removed"


# ------------------------------------------------------------------------- Table 3

def table3(top1: dict[str, float], removed: Sequence[int]) -> "pandas.DataFrame":  # noqa: F821
    """Table 3 beside ours: one row per number of removed singular values (percent).

    Args:
        top1 (dict): run name -> full-rank test top-1 in percent (:meth:`TrainedRuns.top1`).
        removed (sequence of int): the numbers of largest singular values removed.
    """
    import pandas as pd
    paper_t3 = paper.get("table3")
    rows = [{"removed": k, "paper_top1": paper_t3.get(k), "ours_top1": top1[f"high_rank:{k}"],
             "chance": CHANCE} for k in removed]
    df = pd.DataFrame(rows)
    if "natural" in top1:
        df["ours_natural_top1"] = top1["natural"]
    return df


def falls_with_k(ours: dict[int, float], noise: float = FALL_NOISE) -> bool:
    """True when accuracy does not rise by more than ``noise`` points as ``k`` grows."""
    ks = sorted(ours)
    return all(ours[a] >= ours[b] - noise for a, b in zip(ks, ks[1:]))


def table3_verdict(k: int, ours: float, paper_value: float | None, falls: bool) -> str:
    """One Table 3 row: reproduced within :data:`TABLE3_CLOSE` points of the paper; else the
    same trend when accuracy falls with ``k`` and stays non-random (above
    :data:`ABOVE_CHANCE`) where the paper's does (k < 5); else differs."""
    if paper_value is not None and abs(ours - paper_value) <= TABLE3_CLOSE:
        return "reproduced"
    if falls and (ours > ABOVE_CHANCE or k >= 5):
        return "same trend"
    return "differs"


def table3_verdicts(t3) -> tuple[dict[int, str], bool]:
    """Verdict of every row of :func:`table3` and whether accuracy falls with ``k``."""
    ours = dict(zip(t3["removed"], t3["ours_top1"]))
    falls = falls_with_k(ours)
    return ({int(r.removed): table3_verdict(int(r.removed), r.ours_top1, r.paper_top1, falls)
             for r in t3.itertuples()}, falls)


def fig14_verdict(falls: bool) -> str:
    """Figure 14: the same trend when the final accuracies fall with ``k``."""
    return "same trend" if falls else "differs"


def summary_markdown(t3, verdicts: dict[int, str], falls: bool, fig9_energy: float,
                     fig9_removed: int, trained: TrainedRuns, profile: str) -> str:
    """The chapter's summary from this run's Table 3."""
    cfg = next(iter(trained.configs.values()))
    rows = ", ".join(f"{r.removed} removed: {r.ours_top1:.1f}% (paper {r.paper_top1}%, "
                     f"{verdicts[int(r.removed)]})" for r in t3.itertuples())
    lines = [
        f"- **Figure 9**: without their {fig9_removed} largest singular values, the CIFAR-10 "
        f"training images keep {100 * fig9_energy:.1f}% of their energy: faint edges and texture.",
        f"- **Table 3** ({profile} profile, {cfg.arch}, {epochs_text(trained.configs)}): "
        f"full-rank test top-1 after training on high-rank images only: {rows}.",
        f"- **Figure 14**: accuracy {'falls' if falls else 'does not fall'} as more singular "
        f"values are removed (rule: no rise above {FALL_NOISE:g} points); "
        + ("the paper's trend holds." if falls else "the paper's trend does not hold here."),
    ]
    if "ours_natural_top1" in t3:
        lines.append(f"- The full-rank model of the same recipe reaches "
                     f"{t3['ours_natural_top1'].iloc[0]:.1f}% (paper: "
                     f"{paper.get('table2.cifar10.full.top1')}%).")
    return "\n".join(lines)
