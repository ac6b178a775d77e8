"""Chapter 06, robustness of low-rank-trained models (Section 5.3, Table 2).

The models are chapter 05's (:func:`rankcore.book.ch04_high_rank_training.train_runs`) plus
the adversarially trained one; the attack is :func:`rankcore.attacks.evaluate_models`
(rates as fractions), shown here in percent beside the paper's Table 2
(:func:`rankcore.book.paper.table2_row`). The verdict rules are fixed below and tested in
``tests/test_ch06_low_rank_robustness.py``.

Operational definitions (:data:`rankcore.book.verdicts.DEFINITIONS`): a targeted attack
*succeeds* on an image when the model predicts the target class on the adversarial image;
an image is *recovered* when the prediction on the adversarial image is the true label.
Rates are judged by their 95% Wilson interval on the attacked images against the paper's
own numbers: within "a few times the paper's" failure rate (100 - success) or recovery
rate (:data:`RATE_FACTOR`), so a network that the attack steers on 90% of the images does
not pass. The attack rates carry no seed scatter (one attacked model per run).

Beyond the paper, the adversarially trained model's robust accuracy under 20-step PGD is
checked against AutoAttack (Croce & Hein 2020) on the same images (:func:`pgd_vs_autoattack`,
:func:`autoattack_table`, :func:`autoattack_verdict`): a PGD number can hide gradient
masking, which AutoAttack's self-tuned steps expose.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .. import attacks, stats
from ..spectrum import wilson_interval
from ..training import transform_rank
from . import paper
from .ch04_high_rank_training import training_evidence
from .verdicts import not_meaningful, rule

__all__ = ["CHAPTER", "RATE_CLOSE", "RATE_FACTOR", "ADV_MARGIN", "rate_band",
           "RATES", "PAPER_FAMILY", "run_names", "run_label", "attack", "table2", "rate_verdict",
           "table2_verdicts", "adv_verdict", "robust_accuracy", "robust_markdown",
           "extra_markdown", "AA_GAP", "AA_MIN_ROBUST", "random_order", "attack_subset",
           "robust_per_image", "pgd_vs_autoattack",
           "autoattack_table", "autoattack_verdict", "autoattack_markdown", "table2_figure",
           "IMAGENET_DROP", "imagenet_verdicts",
           "architecture_markdown", "other_family_markdown", "summary_markdown"]

CHAPTER = "06_low_rank_robustness"
#: ImageNet success rates: within this many points of the paper's -> "reproduced".
RATE_CLOSE = 2.0
#: "A few times the paper's": a CIFAR-10 failure rate (100 - success) or recovery rate at
#: most this many times the paper's is the same trend (the paper: 0.07-0.73% failures,
#: 0.03-0.34% recovered; so success >= 96.4-99.7%, recovery <= 0.15-1.7%).
RATE_FACTOR = 5.0
#: Adversarial training is "stronger" when its success rate is more than this many points
#: below the lowest success rate of the low-rank and full-rank models.
ADV_MARGIN = 10.0
#: ImageNet's trend (Section 5.3: lower training ranks help): the lowest-rank model's success
#: rate at least this many points below the full-rank model's.
IMAGENET_DROP = 10.0
#: The per-image rates of :func:`rankcore.attacks.evaluate`, as fractions.
RATES = ("top1", "success", "recovery", "success_on_correct", "recovery_on_correct")
#: The family of :mod:`rankcore.book.runs` that is of the paper's architecture (residual).
PAPER_FAMILY = "resnet"
#: PGD-20's robust accuracy "holds" when AutoAttack takes at most this many points more
#: (paired 95% interval). Fixed before any run from what a model without gradient masking
#: shows: Wong et al.'s FGSM-RS training, the recipe of the quick L-inf model, reads 46.1%
#: under PGD-50 with 10 restarts and 43.2% under AutoAttack (RobustBench's Wong2020Fast),
#: a 3-point gap; masked models lose 10 points and more.
AA_GAP = 5.0
#: Below this PGD-20 accuracy (95% Wilson upper bound, percent) the model has no robustness
#: for AutoAttack to test: the gap would be 0 whatever the attacks.
AA_MIN_ROBUST = 10.0


def run_names(ranks: Sequence[int], include_adv: bool = True) -> list[str]:
    """The attacked runs: full rank, the training ranks from high to low, then ``"adv"``."""
    return (["natural"] + [f"low_rank:{k}" for k in sorted(ranks, reverse=True)]
            + (["adv"] if include_adv else []))


def run_label(name: str) -> str:
    """``"natural"`` -> ``"full rank"``, ``"adv"`` -> ``"full rank, adversarial"``,
    ``"low_rank:5"`` -> ``"rank 5"``."""
    return {"natural": "full rank", "adv": "full rank, adversarial"}.get(
        name, f"rank {transform_rank(name)}")


def attack(models: dict, x, y, eps: float, steps: int, restarts: int, seed: int,
           progress: bool = False) -> "pandas.DataFrame":  # noqa: F821
    """Table 2's attack on every model: targeted ``steps``-step L-inf PGD of radius ``eps``.

    Returns :func:`rankcore.attacks.evaluate_models`' table with the rates of
    :data:`RATES` turned into percent.
    """
    df = attacks.evaluate_models(models, x, y, eps=eps, steps=steps, restarts=restarts,
                                 seed=seed, progress=progress)
    for c in RATES:
        if c in df:
            df[c] = 100.0 * df[c]
    return df


def robust_accuracy(models: dict, x, y, eps: float, steps: int, restarts: int,
                    seed: int) -> "pandas.DataFrame":  # noqa: F821
    """Untargeted ``steps``-step L-inf PGD of radius ``eps`` (the adversarial training radius)
    on each model: the standard robustness check of an adversarially trained network.

    Args:
        models (dict): ``{run name: model}``.
        x (Tensor): clean images ``(N, C, H, W)`` in [0, 1]. y (Tensor): labels ``(N,)``.
        eps, steps, restarts, seed: as for :func:`rankcore.attacks.evaluate`.

    Returns:
        DataFrame, one row per model: ``run``, ``trained_on``, ``n``, ``top1`` (clean) and
        ``pgd_top1`` (still correct after the attack) in percent, and ``pgd_lo``/``pgd_hi``,
        the 95% Wilson interval of ``pgd_top1``.
    """
    import pandas as pd
    rows = []
    for name, model in models.items():
        r = attacks.evaluate(model, x, y, eps=eps, steps=steps, targeted=False,
                             restarts=restarts, seed=seed)
        lo, hi = wilson_interval(r["recovery"], r["n"])
        rows.append({"run": name, "trained_on": run_label(name), "n": r["n"],
                     "top1": 100.0 * r["top1"], "pgd_top1": 100.0 * r["recovery"],
                     "pgd_lo": 100.0 * float(lo), "pgd_hi": 100.0 * float(hi)})
    return pd.DataFrame(rows)


def robust_markdown(rob, eps: float, steps: int) -> str:
    """One summary line from :func:`robust_accuracy`."""
    rows = "; ".join(f"{r.trained_on}: {r.top1:.1f}% clean -> {r.pgd_top1:.1f}% "
                     f"[{r.pgd_lo:.1f}, {r.pgd_hi:.1f}]" for r in rob.itertuples())
    n = int(rob["n"].iloc[0]) if len(rob) else 0
    return (f"- **At the adversarial training radius** (untargeted {steps}-step L-inf PGD, "
            f"eps {eps * 255:.0f}/255, {n} test images, 95% interval): {rows}.")


def random_order(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` (int64).

    ``rankcore.data.load(n=..., seed=...)`` returns its subset in the data set's order, and
    the CIFAR-10 JPEG copy is ordered by class: the first 100 of a 500-image subset are 50
    airplanes and 50 cars. Taken in this order, every prefix of the subset is a seeded
    random draw of it, so "attack the first k" attacks every class."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def attack_subset(n: int, k: int, seed: int) -> torch.Tensor:
    """Indices of the ``k`` of ``n`` images to attack: all of them, in order, when
    ``k >= n`` (or ``k`` is 0); else the first ``k`` of :func:`random_order`."""
    if not k or k >= n:
        return torch.arange(n)
    return random_order(n, seed)[:k]


def robust_per_image(model, x, y, attack_specs: dict, seed: int,
                     batch_size: int = 256) -> dict[str, np.ndarray]:
    """``{attack name: (n,) bool still correct}`` for each untargeted attack of
    ``attack_specs``: name -> dict with ``attack`` (``"pgd"`` or ``"autoattack"``),
    ``norm``, ``eps``, optional ``steps``, ``restarts`` (PGD), ``version`` (AutoAttack) and
    ``n`` (attack only the first n images; default all).

    Each is :func:`rankcore.attacks.evaluate`'s per-image ``recovery`` (its batches and
    seeds), so the mean of each array is evaluate's rate on the same images; the per-image
    outcomes are what paired intervals need.
    """
    out = {}
    for name, spec in attack_specs.items():
        if spec["attack"] not in ("pgd", "autoattack"):
            raise ValueError(f"attack={spec['attack']!r} in attack_specs[{name!r}]; "
                             "expected 'pgd' or 'autoattack'")
        n = spec.get("n") or len(x)
        kwargs = ({"version": spec.get("version", "standard")} if spec["attack"] == "autoattack"
                  else {"steps": spec.get("steps", 20), "restarts": spec.get("restarts", 1)})
        r = attacks.evaluate(model, x[:n], y[:n], spec["eps"], norm=spec["norm"], targeted=False,
                             batch_size=batch_size, seed=seed, attack=spec["attack"],
                             per_image=True, **kwargs)
        out[name] = r["per_image"]["recovery"]
    return out


def pgd_vs_autoattack(model, x, y, eps: float, steps: int, restarts: int, seed: int,
                      version: str) -> dict[str, np.ndarray]:
    """Untargeted L-inf PGD (``steps`` steps) and AutoAttack (``version``) of radius ``eps``
    on the same images: ``{"pgd": (N,) bool, "autoattack": (N,) bool}``, still correct."""
    return robust_per_image(model, x, y, {
        "pgd": {"attack": "pgd", "norm": "linf", "eps": eps, "steps": steps,
                "restarts": restarts},
        "autoattack": {"attack": "autoattack", "norm": "linf", "eps": eps,
                       "version": version}}, seed)


def autoattack_table(pgd_ok, aa_ok, steps: int = 20,
                     version: str = "fast") -> "pandas.DataFrame":  # noqa: F821
    """PGD's and AutoAttack's robust accuracy on the same images, each with its 95% Wilson
    interval, and their paired difference (PGD minus AutoAttack) with Newcombe's paired
    interval (:func:`rankcore.stats.paired_difference`), all in percent.

    Args:
        pgd_ok, aa_ok (array ``(N,)`` of bool): still correct after each attack, per image
            (:func:`pgd_vs_autoattack`).

    Returns:
        DataFrame with rows ``PGD-<steps>``, ``AutoAttack (<version>)`` and ``PGD-<steps>
        minus AutoAttack (paired)``; columns ``attack``, ``n``, ``accuracy``, ``lo``, ``hi``.
    """
    import pandas as pd
    rows = []
    for name, ok in ((f"PGD-{steps}", pgd_ok), (f"AutoAttack ({version})", aa_ok)):
        ok = np.asarray(ok, bool)
        lo, hi = stats.wilson(int(ok.sum()), len(ok))
        rows.append({"attack": name, "n": len(ok), "accuracy": 100 * ok.mean(),
                     "lo": 100 * lo, "hi": 100 * hi})
    d, lo, hi = stats.paired_difference(pgd_ok, aa_ok)
    rows.append({"attack": f"PGD-{steps} minus AutoAttack (paired)", "n": len(pgd_ok),
                 "accuracy": 100 * d, "lo": 100 * lo, "hi": 100 * hi})
    return pd.DataFrame(rows)


@rule("autoattack", kind="beyond the paper", examples={
    "reproduced": [dict(gap=2.0, gap_lo=0.8, gap_hi=3.6, pgd_hi=45.0)],
    "same trend": [dict(gap=3.8, gap_lo=1.9, gap_hi=6.1, pgd_hi=45.0)],
    "differs": [dict(gap=12.0, gap_lo=9.1, gap_hi=15.3, pgd_hi=45.0)],
    "not meaningful here": [dict(gap=0.0, gap_lo=0.0, gap_hi=0.8, pgd_hi=4.0),
                            dict(gap=6.2, gap_lo=-10.4, gap_hi=22.5, pgd_hi=61.4)]},
    needs=f"a model that PGD leaves some robustness (Wilson upper bound >= {AA_MIN_ROBUST:g}%) "
          f"and images enough for a paired interval at most {2 * AA_GAP:g} points wide")
def autoattack_verdict(gap: float, gap_lo: float, gap_hi: float, pgd_hi: float) -> str:
    """Does PGD's robust accuracy hold against AutoAttack? (percent points; ``gap`` = PGD
    minus AutoAttack accuracy on the same images with its paired interval, ``pgd_hi`` the
    upper Wilson bound of PGD's accuracy, :func:`autoattack_table`).

    "reproduced" (PGD's number stands) when the whole interval of the gap lies at or below
    :data:`AA_GAP`; "differs" (AutoAttack finds robustness that PGD only seemed to show)
    when it lies wholly above; "same trend" when it straddles :data:`AA_GAP`; "not
    meaningful here" when PGD leaves less than :data:`AA_MIN_ROBUST` percent, or when the
    interval is wider than twice :data:`AA_GAP` (too few images to place the gap).
    """
    if pgd_hi < AA_MIN_ROBUST:
        return not_meaningful(f"PGD leaves at most {pgd_hi:.1f}% correct: no robustness for "
                              "AutoAttack to test")
    if gap_hi - gap_lo > 2 * AA_GAP:
        return not_meaningful(f"the paired interval [{gap_lo:.1f}, {gap_hi:.1f}] is wider than "
                              f"{2 * AA_GAP:g} points: too few images to resolve {AA_GAP:g}")
    if gap_lo > AA_GAP:
        return "differs"
    return "reproduced" if gap_hi <= AA_GAP else "same trend"


def autoattack_markdown(table, eps: float, verdict: str) -> str:
    """One sentence from :func:`autoattack_table`: both accuracies and how far apart."""
    p, a, d = (table.iloc[i] for i in range(3))
    return (f"- **PGD against AutoAttack** (the adversarially trained model, untargeted L-inf "
            f"eps {eps * 255:.0f}/255, the same {int(p.n)} test images, 95% intervals): "
            f"{p.attack} leaves {p.accuracy:.1f}% [{p.lo:.1f}, {p.hi:.1f}] correct, "
            f"{a.attack} {a.accuracy:.1f}% [{a.lo:.1f}, {a.hi:.1f}]: AutoAttack takes "
            f"{d.accuracy:.1f} points more [{d.lo:.1f}, {d.hi:.1f}] (paired), "
            + ("within" if d.hi <= AA_GAP else "beyond" if d.lo > AA_GAP else "around")
            + f" the {AA_GAP:g} points a model without gradient masking loses ({verdict}).")


def extra_markdown(ours, skipped: dict) -> list[str]:
    """Summary lines for extra models (:func:`rankcore.book.runs.load_models`) attacked
    with Table 2's attack (``ours``: :func:`attack`'s table, rates in percent, or None when
    none loaded)."""
    rows = [] if ours is None else ours.itertuples()
    lines = [f"- **{r.run}**, attacked the same way (not scored): success {r.success:.1f}%, "
             f"recovery {r.recovery:.1f}%, top-1 {r.top1:.1f}%." for r in rows]
    return lines + [f"- **{k}**: skipped: {v}" for k, v in skipped.items()]


def table2(ours, dataset: str = "cifar10") -> "pandas.DataFrame":  # noqa: F821
    """One half of Table 2 (``"cifar10"`` or ``"imagenet"``) beside ours (percent), one row
    per attacked run, with the 95% Wilson interval of our success and recovery rates on the
    ``n`` attacked images (``ours_success_lo``/``_hi``, ``ours_recovery_lo``/``_hi``: the
    intervals :func:`rate_verdict` judges)."""
    import pandas as pd
    rows = []
    for r in ours.itertuples():
        p = paper.table2_row(r.run, dataset)
        row = {"run": r.run, "trained_on": run_label(r.run), "n": int(r.n),
               "paper_success": p.get("success"), "ours_success": r.success,
               "paper_recovery": p.get("recovery"), "ours_recovery": r.recovery,
               "paper_top1": p.get("top1"), "ours_top1": r.top1}
        for what in ("success", "recovery"):
            lo, hi = wilson_interval(getattr(r, what) / 100, int(r.n))
            row[f"ours_{what}_lo"], row[f"ours_{what}_hi"] = 100 * float(lo), 100 * float(hi)
        rows.append(row)
    return pd.DataFrame(rows)


def table2_figure(t2, title: str = "Table 2: targeted PGD against low-rank-trained models"):
    """Table 2 as a figure for the book's column: per attacked run, our success and recovery
    rates (percent) with their 95% Wilson intervals, and the paper's values as crosses."""
    import matplotlib.pyplot as plt

    from .figures import figsize
    fig, axes = plt.subplots(1, 2, figsize=figsize(2, 1, aspect=1.0, extra=0.3))
    pos = np.arange(len(t2))
    for ax, what in zip(axes, ("success", "recovery")):
        ours = t2[f"ours_{what}"].to_numpy(float)
        err = np.vstack([ours - t2[f"ours_{what}_lo"].to_numpy(float),
                         t2[f"ours_{what}_hi"].to_numpy(float) - ours])
        ax.errorbar(ours, pos, xerr=err, fmt="o", capsize=3, label="this run (95% Wilson)")
        paper_v = t2[f"paper_{what}"].to_numpy(dtype=float, na_value=np.nan)
        ax.plot(paper_v, pos, "x", color="C3", markersize=8, label="the paper")
        ax.set(xlabel=f"{what} rate (%)", xlim=(-3, 103), yticks=pos,
               yticklabels=list(t2["trained_on"]) if what == "success" else [])
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _with_interval(r, what: str) -> str:
    v = getattr(r, f"ours_{what}")
    lo, hi = getattr(r, f"ours_{what}_lo", None), getattr(r, f"ours_{what}_hi", None)
    return f"{v:.1f}%" + ("" if lo is None else f" [{lo:.1f}, {hi:.1f}]")


def rate_band(what: str, paper_value: float, factor: float = RATE_FACTOR) -> tuple[float, float]:
    """The "same trend" band of a Table 2 rate, percent: success at least ``100 - factor *
    (100 - paper)``, recovery at most ``factor * paper``."""
    if what == "success":
        return 100.0 - factor * (100.0 - paper_value), 100.0
    if what == "recovery":
        return 0.0, factor * paper_value
    raise ValueError(f"what={what!r}; expected 'success' or 'recovery'")


@rule("table2", examples={
    "reproduced": [dict(what="success", ours=99.4, paper_value=99.27, n=2000),
                   dict(what="recovery", ours=0.2, paper_value=0.34, n=2000)],
    "same trend": [dict(what="success", ours=97.0, paper_value=99.27, n=2000),
                   dict(what="recovery", ours=1.0, paper_value=0.34, n=2000)],
    "differs": [dict(what="success", ours=90.0, paper_value=99.27, n=2000),
                dict(what="recovery", ours=30.0, paper_value=0.19, n=2000)],
    "not meaningful here": [dict(what="recovery", ours=0.0, paper_value=0.03, n=500),
                            dict(what="success", ours=100.0, paper_value=99.93, n=64),
                            dict(what="success", ours=15.0, paper_value=99.93, n=2000,
                                 why=training_evidence(11.7))]},
      needs="enough images that the paper's own rate would lie inside the same-trend band, "
            "and a full-rank model of the recipe above chance by 10 points")
def rate_verdict(what: str, ours: float, paper_value: float, n: int,
                 factor: float = RATE_FACTOR, why: str = "") -> str:
    """One CIFAR-10 Table 2 rate (percent) on ``n`` attacked images.

    "differs" when the 95% Wilson interval of ours lies outside :func:`rate_band` (a few
    times the paper's failure or recovery rate): decisive on any number of images.
    Otherwise "not meaningful here" when ``n`` is too small for the band (the paper's own
    rate, measured on ``n`` images, would have an interval reaching outside it, so
    agreement could not be told from disagreement); else "reproduced" when our interval
    contains the paper's value and "same trend" when it only reaches the band. With ``why``
    (a recipe that learned nothing, :func:`~rankcore.book.ch04_high_rank_training.training_evidence`),
    "not meaningful here".
    """
    if why:
        return not_meaningful(why)
    band = rate_band(what, paper_value, factor)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (images attacked), got {n!r}")
    lo, hi = (100 * float(v) for v in wilson_interval(ours / 100, n))
    if hi < band[0] or lo > band[1]:
        return "differs"
    plo, phi = (100 * float(v) for v in wilson_interval(paper_value / 100, n))
    if plo < band[0] or phi > band[1]:
        return not_meaningful(f"{n} images cannot resolve a {what} rate of {paper_value}% from "
                              f"{band[0]:.2f}-{band[1]:.2f}% (the paper's rate would read "
                              f"[{plo:.2f}, {phi:.2f}]%)")
    return "reproduced" if lo <= paper_value <= hi else "same trend"


def table2_verdicts(t2) -> dict[tuple[str, str], str]:
    """``{(run, "success"|"recovery"): verdict}`` for every row the paper has (``t2`` needs
    its ``n`` column: the images attacked)."""
    out = {}
    full = t2.loc[t2.run == "natural", "ours_top1"]
    why = training_evidence(float(full.iloc[0]) if len(full) else None)
    for r in t2.itertuples():
        if r.paper_success is None or r.paper_success != r.paper_success:
            continue
        out[(r.run, "success")] = rate_verdict("success", r.ours_success, r.paper_success,
                                               int(r.n), why=why)
        out[(r.run, "recovery")] = rate_verdict("recovery", r.ours_recovery, r.paper_recovery,
                                                int(r.n), why=why)
    return out


@rule("table2", examples={
    "reproduced": [dict(adv_success=20.0, weakest_low_rank_success=99.0, n=500)],
    "same trend": [dict(adv_success=80.0, weakest_low_rank_success=95.0, n=40)],
    "differs": [dict(adv_success=95.0, weakest_low_rank_success=99.0, n=500)]})
def adv_verdict(adv_success: float, weakest_low_rank_success: float, n: int | None = None) -> str:
    """Section 5.3's remark that adversarial training is stronger than low-rank training
    (percent, on the same ``n`` images): "reproduced" when the adversarial model's success
    interval lies more than :data:`ADV_MARGIN` points below the other's interval; "same
    trend" when the point does; "differs" otherwise."""
    if adv_success >= weakest_low_rank_success - ADV_MARGIN:
        return "differs"
    if n:
        a_hi = 100 * float(wilson_interval(adv_success / 100, n)[1])
        w_lo = 100 * float(wilson_interval(weakest_low_rank_success / 100, n)[0])
        if a_hi < w_lo - ADV_MARGIN:
            return "reproduced"
    return "same trend"


@rule("table2", examples=lambda: _imagenet_examples(), read=lambda d: d["low_rank:30"])
def imagenet_verdicts(t2) -> dict[str, str]:
    """ImageNet success rates: reproduced within :data:`RATE_CLOSE` points of the paper;
    else the same trend when the lowest training rank's success rate is at least
    :data:`IMAGENET_DROP` points below full rank's (lower ranks help); else differs."""
    low = t2[t2.run.map(lambda r: transform_rank(r, "low_rank") is not None)]
    lowest = low.loc[low.run.map(lambda r: transform_rank(r, "low_rank")).idxmin()]
    full = t2.set_index("run").loc["natural"]
    trend = lowest.ours_success <= full.ours_success - IMAGENET_DROP
    return {r.run: "reproduced" if abs(r.ours_success - r.paper_success) <= RATE_CLOSE
            else "same trend" if trend else "differs"
            for r in t2.itertuples() if r.paper_success == r.paper_success
            and r.paper_success is not None}


def _imagenet_examples():
    import pandas as pd

    def t(full, r30):
        return pd.DataFrame({"run": ["natural", "low_rank:30"], "paper_success": [95.87, 73.19],
                             "ours_success": [full, r30]})
    return {"reproduced": [dict(t2=t(95.0, 73.0))], "same trend": [dict(t2=t(99.0, 85.0))],
            "differs": [dict(t2=t(99.0, 97.0))]}


def architecture_markdown(trained, families: Sequence[str] = ()) -> str:
    """Which architecture the comparison rests on, from this run's configurations.

    Args:
        trained (TrainedRuns): :func:`rankcore.book.ch04_high_rank_training.train_runs`.
        families (sequence of str, optional): the families this profile trains
            (:func:`rankcore.book.runs.families`), to say which were left out.
    """
    archs = sorted({c.arch for c in trained.configs.values()})
    others = [f for f in families if f != trained.family]
    return (f"Every model attacked here is of the `{trained.family}` family "
            f"(`{'`, `'.join(archs)}`). The paper attacks CIFAR-10 ResNet-50s: Table 2 is about "
            "*steering* a model into a chosen class, and how easily that works depends on the "
            "network, on its architecture and on how long it was trained, so the comparison "
            "with the paper rests on this network"
            + (f"; this profile also trains the `{'`, `'.join(others)}` family." if others else
               "; this profile trains no other family.")
            + ("" if trained.family == PAPER_FAMILY else
               f" Without a `{PAPER_FAMILY}` run (the residual family of the paper's ResNet-50) "
               f"the verdicts below are about the `{trained.family}` network, not a test of "
               "the paper's numbers on its own architecture."))


def other_family_markdown(family: str, t2) -> str:
    """One line on the same attack against another family's models (not scored)."""
    rows = "; ".join(f"{r.trained_on}: success {r.ours_success:.1f}%, top-1 {r.ours_top1:.1f}%"
                     for r in t2.itertuples())
    return f"- **The `{family}` family**, attacked the same way (not scored): {rows}."


def summary_markdown(t2, verdicts: dict, untargeted: dict, adv: str | None, n: int,
                     eps: float, steps: int, trained, profile: str,
                     families: Sequence[str] = (), others: dict | None = None,
                     robust: str | None = None, extra: Sequence[str] = ()) -> str:
    """The chapter's summary from this run's Table 2.

    Args:
        t2 (DataFrame): :func:`table2`.
        verdicts (dict): :func:`table2_verdicts`.
        untargeted (dict): :func:`rankcore.attacks.evaluate` of the full-rank model,
            untargeted, rates as fractions.
        adv (str or None): the adversarial-training verdict, ``None`` when not attacked.
        n (int): test images attacked.
        trained (TrainedRuns), families (sequence of str): see :func:`architecture_markdown`.
        others (dict, optional): family -> :func:`table2` of the same attack on that family's
            models, reported beside the scored one.
        robust (str, optional): the line of :func:`robust_markdown`.
        extra (sequence of str, optional): the lines of :func:`extra_markdown`.
    """
    low = t2[t2.run != "adv"]
    rows = "; ".join(f"{r.trained_on}: success {_with_interval(r, 'success')} (paper "
                     f"{r.paper_success}%), recovery {_with_interval(r, 'recovery')} (paper "
                     f"{r.paper_recovery}%), top-1 {r.ours_top1:.1f}%" for r in low.itertuples())
    agree = sum(v in ("reproduced", "same trend") for v in verdicts.values())
    unresolved = sum(v == "not meaningful here" for v in verdicts.values())
    lines = [
        f"- **Table 2, CIFAR-10** ({profile} profile, {n} test images, targeted {steps}-step "
        f"L-inf PGD, eps {eps * 255:.0f}/255, 95% Wilson intervals): {rows}.",
        f"- {agree} of {len(verdicts)} rates follow the paper (rule: the 95% Wilson interval "
        f"contains the paper's rate, or reaches within {RATE_FACTOR:g} times the paper's "
        f"failure or recovery rate)"
        + (f"; {unresolved} cannot be resolved on {n} images" if unresolved else "")
        + (": low-rank training brings no L-inf robustness here either." if agree == len(verdicts)
           else ": where they differ, the numbers above say by how much."),
        f"- **Sanity check**: the untargeted attack with the same budget leaves the full-rank "
        f"model {100 * untargeted['top1']:.1f}% -> "
        f"{100 * untargeted['recovery']:.1f}% accuracy.",
    ]
    if adv is not None and (t2.run == "adv").any():
        a = t2.set_index("run").loc["adv"]
        lines.append(f"- **Adversarial training** ({adv}): success {a.ours_success:.1f}% "
                     f"against at least {low.ours_success.min():.1f}% for the others.")
    if robust:
        lines.append(robust)
    lines.append(f"- {architecture_markdown(trained, families)}")
    lines += [other_family_markdown(f, t) for f, t in (others or {}).items()]
    lines += list(extra)
    return "\n".join(lines)
