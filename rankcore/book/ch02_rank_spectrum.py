"""Chapter 02, the rank spectrum: experiments, figures and verdict rules of Figures 4, 6, 7, 13.

The library computes the curves (:func:`rankcore.spectrum.rank_spectrum`, with Wilson
intervals from :func:`rankcore.spectrum.with_intervals` and the robust-minus-natural gap
with its interval from :func:`rankcore.spectrum.gap`). This module loads the models the
chapter names, runs them on streamed images, draws the figures and holds the verdict
rules, fixed here before any run and tested in ``tests/test_ch02_rank_spectrum.py``.
Verdicts follow confidence intervals, never a point estimate; the robust-minus-natural gap
uses the paired interval (both models see the same images, :func:`rankcore.stats.newcombe_paired`).

Operational definitions (:data:`rankcore.book.verdicts.DEFINITIONS`): *saturation* is the
smallest evaluated rank whose top-1 reaches 95% of the top-1 at the highest evaluated rank;
*low rank* is ranks 1-10 of 32 on CIFAR-10 and 1-100 of 224 on ImageNet; a robust model
*rises earlier* when it saturates at least one grid step before the natural model on the
same images (*much earlier*, the paper's "much more quickly", at half the natural rank).
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .. import data as data_mod
from ..rank import low_rank
from ..spectrum import (gap, model_digest, rank_spectrum, saturation_rank, summary,
                        wilson_interval, with_intervals)
from ..torch_utils import top_k
from . import runs
from .figures import figsize
from .verdicts import Verdict, not_meaningful, rule

__all__ = ["CHAPTER", "CONFIDENCE", "LOW_RANK_MAX", "IMAGENET_LOW_RANK_MAX",
           "MIN_IMAGES", "CHANCE", "ABOVE_CHANCE", "matched_natural", "train_epochs",
           "load_data_for", "spectra", "plot", "plot_gap", "figure_top5", "evidence_gap",
           "saturation_verdict", "robust_saturation_verdict", "gap_verdict", "figure4_row",
           "full_rank_verdict", "lowest_auc_verdict", "paper_comparison", "length_effect",
           "summary_markdown"]

CHAPTER = "02_rank_spectrum"
#: Confidence level of every interval of the chapter.
CONFIDENCE = 0.95
#: Figure 7c: "low rank" on CIFAR-10 means ranks 1 to this (of 32).
LOW_RANK_MAX = 10
#: Figure 7d: "low rank" on ImageNet means ranks 1 to this (of 224).
IMAGENET_LOW_RANK_MAX = 100
#: ImageNet saturation rank counts as reproduced within this factor range of the paper's.
IMAGENET_SATURATION_FACTORS = (0.6, 1.5)
#: CIFAR-10 saturation rank counts as reproduced within this many ranks of the paper's.
CIFAR_SATURATION_TOLERANCE = 5
#: Saturation is "the same trend" within this factor of the paper's rank (either way):
#: saturating at rank 3 does not agree with the paper's 15, nor at 300 with its 100.
SATURATION_TREND_FACTOR = 2.0
#: A robust model saturates "much more quickly" (reproduced) at this fraction of the natural
#: model's saturation rank or below.
MUCH_EARLIER = 0.5
#: A saturation rank is judged on at least this many images (below, "not meaningful here":
#: the top-1 of each rank scatters by more than the 5% that saturation is defined by).
MIN_IMAGES = 100
#: Chance top-1 per data set (fractions).
CHANCE = {"cifar10": 0.1, "imagenet": 0.001}
#: A curve is judged only when its full-rank top-1 interval lies this far above chance.
ABOVE_CHANCE = 0.10


def train_epochs(spec: Any, profile: str) -> int | None:
    """Training epochs of a ``train:`` spec or a TrainConfig (``None`` for a zoo model)."""
    if isinstance(spec, str):
        if not spec.startswith("train:"):
            return None
        name, family = runs.train_spec(spec, profile)
        return runs.preset(name, profile, family).epochs
    return spec.epochs


def matched_natural(natural: str, robust: str, profile: str):
    """The natural model for a robust-minus-natural comparison, trained as long as the
    robust one: ``natural`` itself when both train for the same length (or are not ``train:``
    specs), else the natural run's configuration with the robust run's epochs (a
    :class:`rankcore.train.TrainConfig`, trained once and cached). Without it the gap of
    Figure 7c would mix robustness with training length."""
    ne, re_ = train_epochs(natural, profile), train_epochs(robust, profile)
    if ne is None or re_ is None or ne == re_:
        return natural
    name, family = runs.train_spec(natural, profile)
    return runs.preset(name, profile, family, epochs=re_)


def load_data_for(model: nn.Module, data: str, n: int | None = None, seed: int = 0,
                  root: str | os.PathLike | None = None):
    """``rankcore.data.dataset(data, ...)`` with the model's own preprocessing (input size,
    resize before the centre crop, interpolation): uint8 items decoded one at a time, so
    any number of images fits in memory. ``n`` larger than the set takes all of it."""
    config = dict(getattr(model, "data_kwargs", None) or {"size": tuple(model.input_size)[-1]})
    full = len(data_mod.dataset(data, root=root, progress=False, **config))
    n = None if n is None or n >= full else n
    return data_mod.dataset(data, n=n, seed=seed, root=root, progress=False, **config)


def spectra(specs: dict[str, str], data: str, n: int | None = None, ranks: Any = None,
            seed: int = 0, batch_size: int | None = None, profile: str = "quick",
            download: bool = False, progress: bool = True, cache: bool = True,
            confidence: float = CONFIDENCE,
            outcomes: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Rank spectra of several models on the same images (Figures 6, 7 and 13).

    Each model sees the images in its own preprocessing, so ``ranks`` may use ``max`` for
    each model's full rank. Results are checkpointed in ``cache_dir("spectrum")`` under a
    key of the model's weights, the data and the ranks: an interrupted run resumes, a
    repeated one returns at once.

    Args:
        specs (dict): label -> model specification of :func:`rankcore.book.runs.load_model`,
            or a :class:`rankcore.train.TrainConfig` (e.g. :func:`matched_natural`'s).
        data (str): a :mod:`rankcore.data` name, e.g. ``"imagenet-auto"``, ``"cifar10"``.
        n (int, optional): images (a seeded subset). Default: all.
        ranks (optional): as in :func:`rankcore.spectrum.rank_spectrum`. Default: all.
        seed (int, optional): seed of the subset. Default: 0.
        batch_size (int, optional): Default: rank_spectrum's measured default.
        profile (str, optional): the profile of ``train:`` specs. Default: ``"quick"``.
        download (bool, optional): try downloading missing weights. Default: False.
        progress (bool, optional): progress bars. Default: True.
        cache (bool, optional): checkpoint in the cache folder. Default: True.
        confidence (float, optional): level of the intervals. Default: 0.95.
        outcomes (dict, optional): filled with label -> per-image outcomes of
            :func:`rankcore.spectrum.per_image_outcomes` (``correct``, ``agree``: ``(R, N)``
            bool), for the paired intervals of :func:`rankcore.spectrum.gap`.

    Returns:
        (dict, dict): label -> table of ``rank_spectrum`` with the Wilson interval columns
        of ``with_intervals`` (``.attrs["source"]``: the data set loaded), and label ->
        why a model was skipped (``"ExceptionClass: message"``).
    """
    from ..paths import cache_dir

    tables, skipped = {}, {}
    for label, spec in specs.items():
        try:
            model = (runs.load_model(spec, profile=profile, download=download, progress=progress)
                     if isinstance(spec, str) else runs.cached(spec, progress=progress))
        except runs.LOAD_ERRORS as e:
            skipped[label] = runs.skip_reason(e)
            continue
        loaded = load_data_for(model, data, n, seed)
        ckpt = None
        if cache:
            key = hashlib.sha1(repr((spec, model_digest(model), loaded.source, data, n, seed,
                                     ranks, batch_size)).encode()).hexdigest()[:16]
            name = spec if isinstance(spec, str) else f"train_{spec.transform or 'natural'}_{spec.epochs}ep"
            ckpt = cache_dir("spectrum") / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)[:60]}-{key}.pt"
        df, per_image = rank_spectrum(model, loaded, ranks=ranks, batch_size=batch_size,
                                      progress=progress, checkpoint=ckpt, per_image=True)
        df = with_intervals(df, confidence)
        if outcomes is not None:
            outcomes[label] = per_image
        df.attrs["source"] = getattr(loaded, "source", data)
        tables[label] = df
    return tables, skipped


# ---------------------------------------------------------------------------- figures

#: Curves of a column against input rank with their interval bands (Figures 6, 7, 13): the
#: library's :func:`rankcore.spectrum.plot`, so a user draws the chapter's figure from a table.
from ..spectrum import plot  # noqa: E402


def plot_gap(g, ax=None, title: str | None = None):
    """A robust-minus-natural gap table of :func:`rankcore.spectrum.gap` in points, with its
    interval band (Figures 7c, 7d)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize(1, 1, aspect=0.62))
    ax.plot(g["rank"], 100 * g["gap"], marker=".", color="tab:red")
    ax.fill_between(g["rank"], 100 * g["gap_lo"], 100 * g["gap_hi"], color="tab:red",
                    alpha=0.2, lw=0, label=f"{CONFIDENCE:.0%} interval")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="input rank k", ylabel="top-1 gap (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def figure_top5(models_: dict[str, nn.Module], image: Tensor, rank: int = 10,
                class_names: Sequence[str] | None = None, k: int = 5):
    """Figure 4: an image at full rank and at rank ``rank``, with each model's top-k on
    the rank-k image.

    Args:
        models_ (dict): label -> model; all must take ``image``'s size.
        image (Tensor): ``(C, H, W)`` in ``[0, 1]``.
        rank (int, optional): Default: 10 (the paper's).
        class_names (sequence of str, optional): names by class index.
        k (int, optional): Default: 5.

    Returns:
        (Figure, pandas.DataFrame): the figure and the predictions (``model``, ``input``,
        ``position``, ``class``, ``name``, ``prob``) at full rank and at rank ``rank``.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    if not isinstance(image, Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a tensor (C, H, W), got "
                         f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
    low = low_rank(image[None], rank, clamp=True)[0]
    rows = []
    for label, model in models_.items():
        for name, x in (("full rank", image), (f"rank {rank}", low)):
            probs, idx = top_k(model, x[None], k)
            for pos, (pr, c) in enumerate(zip(probs[0].tolist(), idx[0].tolist())):
                rows.append({"model": label, "input": name, "position": pos + 1, "class": c,
                             "name": class_names[c] if class_names else str(c), "prob": pr})
    table = pd.DataFrame(rows)
    cols = max(2, len(models_))
    fig, axes = plt.subplots(2, cols, figsize=figsize(cols, 2, aspect=0.9), squeeze=False)
    for ax, x, name in ((axes[0, 0], image, "full rank"), (axes[0, 1], low, f"rank {rank}")):
        ax.imshow(x.permute(1, 2, 0).cpu().numpy())
        ax.set_title(name)
        ax.axis("off")
    for ax in axes[0, 2:]:
        ax.axis("off")
    for ax, label in zip(axes[1], models_):
        t = table[(table["model"] == label) & (table["input"] == f"rank {rank}")]
        ax.barh(range(len(t))[::-1], 100 * t["prob"], color="tab:blue")
        ax.set_yticks(range(len(t))[::-1], [s[:28] for s in t["name"]], fontsize=8)
        ax.set_xlabel("probability (%)")
        ax.set_title(f"{label}: top-{k} at rank {rank}", fontsize=9)
    for ax in axes[1, len(models_):]:
        ax.axis("off")
    fig.tight_layout()
    return fig, table


# ---------------------------------------------------------------------------- verdicts

def evidence_gap(df, dataset: str, min_images: int = MIN_IMAGES) -> str:
    """Why a curve cannot carry a saturation verdict ('' when it can): too few images, or a
    full-rank top-1 whose Wilson interval does not lie :data:`ABOVE_CHANCE` above chance."""
    d = df.sort_values("rank")
    n, top = int(d["n"].iloc[-1]), float(d["top1"].iloc[-1])
    if n < min_images:
        return f"{n} images; a saturation rank needs at least {min_images}"
    lo = float(wilson_interval(top, n)[0])
    floor = CHANCE.get(dataset, 0.0) + ABOVE_CHANCE
    if lo <= floor:
        return (f"full-rank top-1 {100 * top:.1f}% (lower bound {100 * lo:.1f}%) is not "
                f"{100 * ABOVE_CHANCE:g} points above chance")
    return ""


def _bands(paper: float, dataset: str) -> tuple[tuple[float, float], tuple[float, float]]:
    if dataset == "cifar10":
        close = (paper - CIFAR_SATURATION_TOLERANCE, paper + CIFAR_SATURATION_TOLERANCE)
    else:
        close = (IMAGENET_SATURATION_FACTORS[0] * paper, IMAGENET_SATURATION_FACTORS[1] * paper)
    return close, (paper / SATURATION_TREND_FACTOR, paper * SATURATION_TREND_FACTOR)


def _saturation_examples():
    grid = list(range(33))
    return {"reproduced": [dict(ours=12, paper=15, ranks=grid, dataset="cifar10")],
            "same trend": [dict(ours=25, paper=15, ranks=grid, dataset="cifar10"),
                           dict(ours=180, paper=100, ranks=[0, 16, 40, 100, 180, 224],
                                dataset="imagenet")],
            "differs": [dict(ours=3, paper=15, ranks=grid, dataset="cifar10"),
                        dict(ours=224, paper=100, ranks=[0, 50, 100, 224], dataset="imagenet")],
            "not meaningful here": [dict(ours=12, paper=15, ranks=[0, 4, 32], dataset="cifar10"),
                                    dict(ours=12, paper=15, ranks=grid, dataset="cifar10",
                                         why="40 images; a saturation rank needs at least 100")]}


@rule("fig6", "fig7a", examples=_saturation_examples,
      needs=f"{MIN_IMAGES} images, full-rank top-1 {100 * ABOVE_CHANCE:g} points above chance, "
            "an evaluated rank inside the reproduced band")
def saturation_verdict(ours: float, paper: float, ranks: Sequence[int], dataset: str,
                       why: str = "") -> str:
    """Figures 6 / 7a: where a *natural* model's top-1 saturates (Section 4.2.1: near rank
    100 on ImageNet, 15 on CIFAR-10).

    "reproduced" within 5 ranks of the paper's (CIFAR-10) or 0.6x to 1.5x of it (ImageNet);
    "same trend" within a factor :data:`SATURATION_TREND_FACTOR` of it; "differs" otherwise.
    "not meaningful here" when ``why`` (:func:`evidence_gap`) names missing evidence, or when
    no evaluated rank lies inside the reproduced band (the grid cannot place the rank).

    Args:
        ours (float): our saturation rank (NaN: none).
        paper (float): the paper's.
        ranks (sequence of int): the evaluated ranks.
        dataset (str): ``"cifar10"`` or ``"imagenet"``.
        why (str, optional): missing evidence, from :func:`evidence_gap`.
    """
    if why:
        return not_meaningful(why)
    (lo, hi), (tlo, thi) = _bands(paper, dataset)
    if not any(lo <= k <= hi for k in ranks):
        return not_meaningful(f"no evaluated rank between {lo:g} and {hi:g}; the grid cannot "
                              f"place a saturation near the paper's {paper:g}")
    if np.isnan(ours):
        return "differs"
    return "reproduced" if lo <= ours <= hi else "same trend" if tlo <= ours <= thi else "differs"


def _robust_examples():
    grid = list(range(33))
    return {"reproduced": [dict(robust=5, natural=15, ranks=grid)],
            "same trend": [dict(robust=12, natural=15, ranks=grid)],
            "differs": [dict(robust=15, natural=15, ranks=grid),
                        dict(robust=20, natural=15, ranks=grid)],
            "not meaningful here": [dict(robust=0, natural=0, ranks=grid),
                                    dict(robust=5, natural=15, ranks=grid, why="40 images")]}


@rule("fig7a", "fig7b", examples=_robust_examples,
      needs=f"{MIN_IMAGES} images for both models, both full-rank top-1 above chance, a rank "
            "evaluated below the natural model's saturation rank")
def robust_saturation_verdict(robust: float, natural: float, ranks: Sequence[int],
                              why: str = "") -> str:
    """Figures 6, 7a, 7b for a *robust* model, judged on what Section 4.2.2 says of robust
    models: their accuracy "increases much more quickly than naturally trained CNNs for
    lower-rank images" (the paper gives no rank for them; the natural models' 100 and 15 are
    not theirs).

    "reproduced" when the robust model saturates at :data:`MUCH_EARLIER` of the natural
    model's rank or below (same images); "same trend" when earlier; "differs" when not
    earlier. "not meaningful here" when ``why`` names missing evidence or no evaluated rank
    lies below the natural model's saturation rank.
    """
    if why:
        return not_meaningful(why)
    if not any(k < natural for k in ranks):
        return not_meaningful(f"no evaluated rank below the natural model's saturation rank "
                              f"{natural:g}")
    if robust <= MUCH_EARLIER * natural:
        return "reproduced"
    return "same trend" if robust < natural else "differs"


def _low(g, low_max: int):
    return g[(g["rank"] >= 1) & (g["rank"] <= low_max)]


def _gap_table(points_lo: float, points: float, points_hi: float, rank: int = 2):
    import pandas as pd
    return pd.DataFrame({"rank": [0, rank, 32], "gap": [0.0, points / 100, -0.05],
                         "gap_lo": [-0.01, points_lo / 100, -0.07],
                         "gap_hi": [0.01, points_hi / 100, -0.03]})


@rule("fig7c", "fig7d", examples=lambda: {
    "reproduced": [dict(g=_gap_table(22, 25, 28), paper_points=20)],
    "same trend": [dict(g=_gap_table(5, 12, 19), paper_points=20)],
    "differs": [dict(g=_gap_table(-3, 1, 5), paper_points=20),
                dict(g=_gap_table(-20, -15, -10), paper_points=20)]})
def gap_verdict(g, paper_points: float, low_max: int = LOW_RANK_MAX,
                seed_sd: float = 0.0) -> tuple[str, dict]:
    """Figures 7c / 7d: robust models are more than ``paper_points`` ahead at low rank.

    Judged on the ranks 1..``low_max`` of a :func:`rankcore.spectrum.gap` table, by the
    interval (the paired one when the table has it), never the point: "reproduced" if at
    some such rank the interval's lower bound exceeds ``paper_points``; "same trend" if at
    some such rank it exceeds 0 (robust ahead, but not by the paper's margin); "differs"
    otherwise (no rank where robust is clearly ahead).

    The interval is over images. With ``seed_sd`` (points: the seed standard deviation of
    one trained model's low-rank top-1, :mod:`rankcore.book.seed_scatter`), it is widened
    to cover the training scatter of both models too: half-width ``1.96 * sqrt((h /
    1.96)^2 + 2 seed_sd^2)`` for an image half-width ``h``.

    Returns:
        (str, dict): the verdict and the evidence: ``rank`` (where the lower bound is
        largest), ``gap``, ``lo``, ``hi`` in points (and ``lo_unpaired``, ``hi_unpaired``
        when the table has them, ``seed_sd`` when used).
    """
    low = _low(g, low_max)
    if low.empty:
        raise ValueError(f"the gap table has no rank in [1, {low_max}]")
    if seed_sd:
        z = 1.959963984540054
        widen = (lambda d, b: d - np.sign(d - b) * z * np.sqrt(((d - b) / z) ** 2
                                                             + 2 * (seed_sd / 100) ** 2))
        low = low.assign(gap_lo=widen(low["gap"], low["gap_lo"]),
                         gap_hi=widen(low["gap"], low["gap_hi"]))
    best = low.loc[low["gap_lo"].idxmax()]
    ev = _evidence(best)
    if seed_sd:
        ev["seed_sd"] = float(seed_sd)
    verdict = ("reproduced" if ev["lo"] > paper_points else "same trend" if ev["lo"] > 0
               else "differs")
    return verdict, ev


def _evidence(row) -> dict:
    ev = {"rank": int(row["rank"]), "gap": 100 * float(row["gap"]),
          "lo": 100 * float(row["gap_lo"]), "hi": 100 * float(row["gap_hi"])}
    if "gap_lo_unpaired" in row.index and bool(row.get("paired", False)):
        ev.update(lo_unpaired=100 * float(row["gap_lo_unpaired"]),
                  hi_unpaired=100 * float(row["gap_hi_unpaired"]))
    return ev


@rule("fig7a", examples=lambda: {
    "reproduced": [dict(g=_gap_table(-1, 0, 1).assign(gap_hi=[0.01, 0.01, -0.01]))],
    "same trend": [dict(g=_gap_table(-1, 0, 1).assign(gap=[0, 0, -0.01], gap_hi=[0, 0, 0.01]))],
    "differs": [dict(g=_gap_table(-1, 0, 1).assign(gap=[0, 0, 0.02], gap_lo=[0, 0, -0.01],
                                                   gap_hi=[0, 0, 0.05]))]})
def full_rank_verdict(g) -> tuple[str, dict]:
    """Figure 7a / Section 4.2.2: robust models are behind natural ones at full rank.

    "reproduced" if the gap's interval at the highest rank lies below 0; "same trend" if
    the point is below 0 but the interval reaches 0 (not resolved by these images);
    "differs" if the robust model is not behind.
    """
    ev = _evidence(g.sort_values("rank").iloc[-1])
    return ("reproduced" if ev["hi"] < 0 else "same trend" if ev["gap"] < 0 else "differs"), ev


def _auc_examples():
    import pandas as pd

    def t(v):
        return pd.DataFrame({"rank": [0, 1, 2], "agreement": v, "top1": v, "n": 100})
    four = {"VGG-19": t([0.0, 0.2, 1.0]), "ResNet-50": t([0.0, 0.8, 1.0]),
            "DenseNet-201": t([0.0, 0.6, 1.0]), "GoogLeNet": t([0.0, 0.7, 1.0])}
    return {"reproduced": [dict(tables=four, expected="VGG")],
            "same trend": [dict(tables={**four, "DenseNet-201": t([0.0, 0.1, 1.0])},
                                expected="VGG")],
            "differs": [dict(tables={**four, "VGG-19": t([0.0, 0.9, 1.0])}, expected="VGG")],
            "not meaningful here": [dict(tables={"VGG-19": four["VGG-19"],
                                                 "ResNet-50": four["ResNet-50"]},
                                         expected="VGG")]}


@rule("fig13", examples=_auc_examples, needs="at least 3 natural models")
def lowest_auc_verdict(tables: dict[str, Any], expected: str) -> tuple[str, str]:
    """Figure 13: ``expected`` (VGG-19) leans most on high ranks: the lowest agreement AUC
    among the natural models ("reproduced"); "same trend" when it is below the median of
    them; "differs" otherwise; "not meaningful here" with fewer than 3 natural models.
    Returns the verdict and the model with the lowest AUC."""
    auc = {k: summary(v)["auc"] for k, v in tables.items() if "robust" not in k.lower()}
    most = min(auc, key=auc.get)
    if len(auc) < 3:
        return not_meaningful(f"{len(auc)} natural models; the ordering needs at least 3"), most
    mine = [v for k, v in auc.items() if expected in k]
    if expected in most:
        return "reproduced", most
    below = bool(mine) and mine[0] < float(np.median(list(auc.values())))
    return ("same trend" if below else "differs"), most


def figure4_row(has_robust: bool, rank: int) -> dict:
    """Figure 4's scorecard row (keyword arguments of ``Results.score``): an illustration
    (one image, judged by eye), shown but not counted; "needs GPU or data" without a robust
    model."""
    return {"ref": "fig4", "item": f"robust model's top-5 on a rank-{rank} image names the object",
            "paper": "robust: correct, natural: not",
            "ours": "see figure" if has_robust else "no robust model here",
            "verdict": "same trend" if has_robust else "needs GPU or data",
            "kind": "illustration",
            "note": "one image; judge by eye" if has_robust else
            "robust ImageNet ResNet-50 checkpoints are not available offline"}


def _fmt(ev: dict) -> str:
    unresolved = " (interval contains 0: not resolved)" if ev["lo"] <= 0 <= ev["hi"] else ""
    paired = " paired" if "lo_unpaired" in ev else ""
    out = (f"{ev['gap']:+.1f} [{ev['lo']:+.1f}, {ev['hi']:+.1f}]{paired} at rank "
           f"{ev['rank']}{unresolved}")
    if paired:
        out += f"; unpaired [{ev['lo_unpaired']:+.1f}, {ev['hi_unpaired']:+.1f}]"
    return out


def _gap(tables: dict, rob: str, nat: str, correct: dict | None):
    pair = None
    if correct and rob in correct and nat in correct \
            and correct[rob].get("correct") is not None and correct[nat].get("correct") is not None:
        pair = (correct[rob]["correct"], correct[nat]["correct"])
    return gap(tables[rob], tables[nat], confidence=CONFIDENCE, correct=pair)


def _length_note(rob: str, nat: str, lengths: dict | None) -> str:
    if not lengths or lengths.get(rob) is None or lengths.get(nat) is None:
        return ""
    r, n = lengths[rob], lengths[nat]
    return (f"both trained {r} epochs" if r == n else
            f"robust trained {r} epochs, natural {n}: the gap mixes robustness with training "
            "length (see the length effect measured in this chapter)")


def paper_comparison(paper_get, imagenet: dict, cifar: dict, archs: dict, *,
                     natural: str | None, robust: str | None, imagenet_has_labels: bool,
                     cifar_pairs: dict[str, tuple[str, str]], skipped: dict[str, str],
                     notes: dict[str, str], correct: dict | None = None,
                     lengths: dict | None = None, seed_sd: float = 0.0) -> list[dict]:
    """Every scorecard row of the chapter, from the run's tables and the rules above.

    Args:
        paper_get (callable): ``rankcore.book.paper.get``.
        imagenet, cifar, archs (dict): label -> table (Figures 6/7b, 7a/7c, 13).
        natural, robust (str or None): labels of the ImageNet natural / robust model.
        imagenet_has_labels (bool): whether the ImageNet images carry labels.
        cifar_pairs (dict): name -> (robust label, natural label) for Figure 7c; every
            robust label is judged as a robust model, every other CIFAR-10 curve as natural.
        skipped (dict): label -> why a model was skipped.
        notes (dict): ``"imagenet"``, ``"cifar"``: what the images were.
        correct (dict, optional): ``{"imagenet": ..., "cifar": ...}``, each label ->
            per-image outcomes (``spectra(outcomes=...)``), for the paired intervals;
            without them the gap has the unpaired interval.
        lengths (dict, optional): label -> training epochs, for the notes.
        seed_sd (float, optional): seed standard deviation (points) of a trained CIFAR-10
            model's low-rank top-1, widening Figure 7c's intervals (:func:`gap_verdict`).

    Returns:
        list of dict: ``ref``, ``item``, ``paper``, ``ours``, ``verdict``, ``kind``, ``note``.
    """
    rows = []

    def row(ref, item, paper, ours, verdict, note):
        rows.append({"ref": ref, "item": item, "paper": paper, "ours": ours,
                     "verdict": verdict, "kind": "paper claim",
                     "note": "; ".join(x for x in (getattr(verdict, "reason", ""), note) if x)})

    def ranks_of(df):
        return [int(k) for k in df["rank"]]

    sat_paper = paper_get("text.imagenet_saturation_rank.value")
    nat_sat = None
    if imagenet_has_labels and natural in imagenet:
        df = imagenet[natural]
        nat_sat = saturation_rank(df)
        row("fig6", f"ImageNet saturation rank, natural ({natural})", sat_paper, nat_sat,
            saturation_verdict(nat_sat, sat_paper, ranks_of(df), "imagenet",
                               evidence_gap(df, "imagenet")), notes.get("imagenet", ""))
    for ref, kind, label in (("fig6", "natural", natural), ("fig7b", "robust", robust)):
        if imagenet_has_labels and label in imagenet:
            if kind == "natural":
                continue
            df = imagenet[label]
            sat = saturation_rank(df)
            if nat_sat is None:
                row(ref, f"ImageNet: robust ({label}) saturates earlier than natural",
                    "earlier (Section 4.2.2)", sat, "needs GPU or data",
                    skipped.get(natural or "", "no natural ImageNet model on the same images"))
                continue
            why = evidence_gap(df, "imagenet") or evidence_gap(imagenet[natural], "imagenet")
            row(ref, f"ImageNet: robust ({label}) saturates earlier than natural",
                f"much earlier than natural (rank {nat_sat:g} here; Section 4.2.2)", sat,
                robust_saturation_verdict(sat, nat_sat, ranks_of(df), why),
                notes.get("imagenet", ""))
        elif not imagenet_has_labels:
            row(ref, f"ImageNet saturation rank, {kind}", sat_paper if kind == "natural"
                else "earlier than natural", "no labels", "needs GPU or data",
                "the embedded samples have no ImageNet labels")
        else:
            row(ref, f"ImageNet saturation rank, {kind}", sat_paper if kind == "natural"
                else "earlier than natural", f"no {kind} model", "needs GPU or data",
                skipped.get(label or "", f"no {kind} ImageNet model in this profile"))
    cifar_sat = paper_get("text.cifar10_saturation_rank.value")
    robust_labels = {rob: nat for rob, nat in cifar_pairs.values()}
    for label, df in cifar.items():
        sat = saturation_rank(df)
        if label in robust_labels:
            nat = robust_labels[label]
            if nat not in cifar:
                continue
            n_sat = saturation_rank(cifar[nat])
            why = evidence_gap(df, "cifar10") or evidence_gap(cifar[nat], "cifar10")
            row("fig7a", f"CIFAR-10: {label} saturates earlier than {nat}",
                f"much earlier than natural (rank {n_sat:g} here; Section 4.2.2)", sat,
                robust_saturation_verdict(sat, n_sat, ranks_of(df), why),
                "; ".join(x for x in (notes.get("cifar", ""),
                                      _length_note(label, nat, lengths)) if x))
        else:
            row("fig7a", f"CIFAR-10 saturation rank, {label}", cifar_sat, sat,
                saturation_verdict(sat, cifar_sat, ranks_of(df), "cifar10",
                                   evidence_gap(df, "cifar10")), notes.get("cifar", ""))
    adv = paper_get("text.robust_low_rank_advantage.value")
    for name, (rob, nat) in cifar_pairs.items():
        if rob in cifar and nat in cifar:
            g = _gap(cifar, rob, nat, (correct or {}).get("cifar"))
            v, ev = gap_verdict(g, adv, seed_sd=seed_sd)
            length = _length_note(rob, nat, lengths)
            seeds = (f"; interval widened by a seed sd of {seed_sd:.1f} points per model "
                     "(bench/seed_scatter.py)" if seed_sd else
                     "; seed scatter not measured: the interval covers the images only")
            row("fig7c", f"CIFAR-10: {name} minus {nat} top-1, ranks 1-{LOW_RANK_MAX} "
                "(points, 95% interval)", f"> {adv}", _fmt(ev), v,
                "verdict by the " + ("paired" if "lo_unpaired" in ev else "unpaired")
                + " interval's lower bound; " + notes.get("cifar", "")
                + (f"; {length}" if length else "") + seeds)
            v, ev = full_rank_verdict(g)
            row("fig7a", f"CIFAR-10: {name} behind {nat} at full rank (points)", "< 0",
                _fmt(ev), v, "robust models trade clean accuracy"
                + (f"; {length}" if length else ""))
        else:
            why = "; ".join(f"{k}: {skipped[k]}" for k in (rob, nat) if k in skipped)
            row("fig7c", f"CIFAR-10: {name} minus natural top-1 at low rank (points)",
                f"> {adv}", "model missing", "needs GPU or data", why)
    if robust in imagenet and natural in imagenet and imagenet_has_labels:
        g = _gap(imagenet, robust, natural, (correct or {}).get("imagenet"))
        v, ev = gap_verdict(g, adv, IMAGENET_LOW_RANK_MAX)
        row("fig7d", f"ImageNet: robust minus natural top-1, ranks 1-{IMAGENET_LOW_RANK_MAX} "
            "(points, 95% interval)", f"> {adv}", _fmt(ev), v, notes.get("imagenet", ""))
    else:
        row("fig7d", "ImageNet: robust minus natural top-1 at low rank (points)", f"> {adv}",
            "no robust model", "needs GPU or data",
            skipped.get(robust or "", "robust ImageNet checkpoints are not available offline"))
    vgg = next((k for k in archs if "VGG" in k), None)
    if vgg is not None:
        v, most = lowest_auc_verdict(archs, "VGG")
        row("fig13", "VGG-19 leans most on high ranks (lowest agreement AUC)", "VGG-19", most,
            v, "among the natural models present")
    else:
        row("fig13", "VGG-19 leans most on high ranks", "VGG-19", "not available",
            "needs GPU or data", skipped.get("VGG-19", "VGG-19 weights are not available"))
    return rows


def length_effect(short, long, correct: dict | None = None, short_label: str = "short",
                  long_label: str = "long", low_max: int = LOW_RANK_MAX) -> dict:
    """The effect of training length on the natural model's low-rank top-1: the same run
    trained for two lengths, on the same images (paired interval when ``correct`` has both
    labels' outcomes). Returns the :func:`gap_verdict` evidence of ``long - short`` at the
    rank of ranks 1..``low_max`` where the difference is largest in size."""
    pair = None
    if correct and short_label in correct and long_label in correct:
        pair = (correct[long_label]["correct"], correct[short_label]["correct"])
    g = gap(long, short, confidence=CONFIDENCE, correct=pair)
    low = _low(g, low_max)
    return _evidence(low.loc[low["gap"].abs().idxmax()])


def summary_markdown(profile: str, tables: dict[str, dict], rows: list[dict],
                     skipped: dict[str, str]) -> str:
    """The chapter's summary, written from this run's tables and scorecard rows."""
    lines = [f"On the **{profile}** profile:", ""]
    for group, ts in tables.items():
        for label, df in ts.items():
            n = int(df["n"].iloc[0])
            last = df.sort_values("rank").iloc[-1]
            top1 = (f"top-1 at full rank {100 * last['top1']:.1f}% "
                    f"[{100 * last['top1_lo']:.1f}, {100 * last['top1_hi']:.1f}]"
                    if not np.isnan(last["top1"]) else "no labels")
            a = summary(df)
            lines.append(f"* {group}, **{label}** ({n} images, {len(df)} ranks): {top1}; "
                         f"agreement reaches 50% at rank {a['rank_50']:g} and 90% at rank "
                         f"{a['rank_90']:g}.")
    lines.append("")
    for r in rows:
        lines.append(f"* {r['ref']}: {r['item']}: paper {r['paper']}, ours {r['ours']} "
                     f"-> **{r['verdict']}**.")
    for label, why in skipped.items():
        lines.append(f"* {label}: skipped: {why}")
    return "\n".join(lines)
