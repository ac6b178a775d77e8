"""Chapter 04, training on high-rank images (Section 5.1, appendix 9.5: Table 3, Figure 14).

Also the pieces chapters 05 and 06 share with it: the training block (:func:`train_runs`,
:func:`training_markdown`) and the accuracy-per-epoch figure (:func:`accuracy_figure`).

Accuracies from :mod:`rankcore.book.runs` are fractions; the tables here hold percent,
the unit of the paper's tables, so the two sit side by side. The verdict rules and their
tolerances are fixed below, before any run, and tested in
``tests/test_ch04_high_rank_training.py``. A tolerance against the paper is the larger of
the fixed one and twice the profile's measured seed scatter
(:func:`rankcore.book.seed_scatter.tolerance`); the notebook's note says which it used.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

from ..training import transform_rank
from . import paper, runs
from .verdicts import not_meaningful, rule

__all__ = ["CHAPTER", "CHANCE", "TABLE3_CLOSE", "FALL_NOISE", "ABOVE_CHANCE", "LATE_BAND", "FULL_MIN",
           "training_evidence", "TrainedRuns",
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
#: Table 3's later rows (5 and 10 removed; the paper: 13.54% and 11.19%, "this accuracy
#: quickly decreases"): the same trend only within this many points above the paper's.
LATE_BAND = 10.0
#: A training comparison needs the full-rank model of the same recipe above this top-1
#: (percent: chance plus 10 points); below it the recipe learned nothing, and rows near
#: chance would agree with the paper for that reason alone.
FULL_MIN = CHANCE + 10.0


def training_evidence(full_top1: float | None) -> str:
    """Why a training comparison is not meaningful ('' when it is): the full-rank model of
    the same recipe at or below :data:`FULL_MIN` percent."""
    if full_top1 is not None and full_top1 == full_top1 and full_top1 <= FULL_MIN:
        return (f"the full-rank model of this recipe reaches {full_top1:.1f}%, not above "
                f"{FULL_MIN:g}%: the runs learned too little to compare")
    return ""


def run_names(removed: Sequence[int], include_natural: bool = True) -> list[str]:
    """This chapter's runs: one per number of removed singular values, then full rank."""
    return [f"high_rank:{k}" for k in removed] + (["natural"] if include_natural else [])


# ------------------------------------------------------------ the shared training block

@dataclasses.dataclass
class TrainedRuns:
    """What :func:`train_runs` returns: the configurations, the models, their summary and the
    runs' results (:class:`rankcore.training.RunResult`: history, whether from the cache)."""
    configs: dict
    models: dict
    table: "pandas.DataFrame"  # noqa: F821  (rankcore.book.runs.summary, top-1 as fractions)
    wall_minutes: float
    family: str = "airbench"
    results: dict = dataclasses.field(default_factory=dict)

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
    results = {name: runs.get_or_train(cfg, progress=progress) for name, cfg in configs.items()}
    return TrainedRuns(configs, {name: r.model for name, r in results.items()},
                       runs.summary(results), (time.perf_counter() - t0) / 60, family, results)


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


@rule("table3", examples={
    "reproduced": [dict(k=3, ours=27.0, paper_value=28.02, falls=True),
                   dict(k=10, ours=12.0, paper_value=11.19, falls=False)],
    "same trend": [dict(k=3, ours=45.0, paper_value=28.02, falls=True),
                   dict(k=5, ours=20.0, paper_value=13.54, falls=True)],
    "differs": [dict(k=3, ours=45.0, paper_value=28.02, falls=False),
                dict(k=2, ours=10.5, paper_value=31.71, falls=True),
                dict(k=10, ours=60.0, paper_value=11.19, falls=True)],
    "not meaningful here": [dict(k=5, ours=9.0, paper_value=13.54, falls=True,
                                 why=training_evidence(11.7))]},
      needs=f"the full-rank model of the recipe above {FULL_MIN:g}%")
def table3_verdict(k: int, ours: float, paper_value: float | None, falls: bool,
                   close: float = TABLE3_CLOSE, why: str = "") -> str:
    """One Table 3 row: "reproduced" within ``close`` points of the paper; else "same
    trend" when accuracy falls with ``k`` and the row stays in the paper's regime: above
    :data:`ABOVE_CHANCE` (non-random) where the paper's is (k < 5), at most
    :data:`LATE_BAND` points above the paper's where it is near chance (k >= 5); else
    "differs".

    Args:
        close (float, optional): the tolerance in points (:data:`TABLE3_CLOSE`, or the
            seed scatter's where larger). Default: :data:`TABLE3_CLOSE`.
        why (str, optional): missing evidence (:func:`training_evidence`): "not meaningful
            here" with it.
    """
    if why:
        return not_meaningful(why)
    if paper_value is not None and abs(ours - paper_value) <= close:
        return "reproduced"
    if k < 5:
        regime = ours > ABOVE_CHANCE
    else:
        regime = paper_value is not None and ours <= paper_value + LATE_BAND
    return "same trend" if falls and regime else "differs"


def table3_verdicts(t3, close: float = TABLE3_CLOSE) -> tuple[dict[int, str], bool]:
    """Verdict of every row of :func:`table3` and whether accuracy falls with ``k``."""
    ours = dict(zip(t3["removed"], t3["ours_top1"]))
    falls = falls_with_k(ours)
    full = t3["ours_natural_top1"].iloc[0] if "ours_natural_top1" in t3 else None
    why = training_evidence(full)
    paper_of = {int(r.removed): (None if r.paper_top1 != r.paper_top1 else r.paper_top1)
                for r in t3.itertuples()}
    return ({int(r.removed): table3_verdict(int(r.removed), r.ours_top1, paper_of[int(r.removed)],
                                            falls, close, why)
             for r in t3.itertuples()}, falls)


@rule("fig14", examples={"reproduced": [dict(falls=True, rows=["reproduced", "reproduced"])],
                         "same trend": [dict(falls=True, rows=["reproduced", "same trend"])],
                         "differs": [dict(falls=False, rows=["reproduced", "reproduced"])],
                         "not meaningful here": [dict(falls=True, why="at chance")]},
      needs=f"the full-rank model of the recipe above {FULL_MIN:g}%")
def fig14_verdict(falls: bool, rows: list[str] | tuple[str, ...] = (), why: str = "") -> str:
    """Figure 14: accuracy falls towards chance as more singular values are removed.
    "reproduced" when it falls and every Table 3 row (``rows``, their verdicts) is
    reproduced; "same trend" when it falls; "differs" otherwise; "not meaningful here"
    with ``why`` (:func:`training_evidence`)."""
    if why:
        return not_meaningful(why)
    if not falls:
        return "differs"
    return "reproduced" if rows and all(v == "reproduced" for v in rows) else "same trend"


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
