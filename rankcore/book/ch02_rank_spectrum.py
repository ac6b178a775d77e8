"""Chapter 02, the rank spectrum: experiments, figures and verdict rules of Figures 4, 6, 7, 13.

The library computes the curves (:func:`rankcore.spectrum.rank_spectrum`, with Wilson
intervals from :func:`rankcore.spectrum.with_intervals` and the robust-minus-natural gap
with its interval from :func:`rankcore.spectrum.gap`). This module loads the models the
chapter names, runs them on streamed images, draws the figures and holds the verdict
rules, fixed here before any run and tested in ``tests/test_ch02_rank_spectrum.py``.
Verdicts follow confidence intervals, never a point estimate.
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
from ..spectrum import gap, model_digest, rank_spectrum, saturation_rank, summary, with_intervals
from ..torch_utils import top_k
from . import runs

__all__ = ["CHAPTER", "CONFIDENCE", "LOW_RANK_MAX", "IMAGENET_LOW_RANK_MAX",
           "load_data_for", "spectra", "plot", "plot_gap", "figure_top5",
           "saturation_verdict", "gap_verdict", "figure4_row", "full_rank_verdict", "lowest_auc_verdict",
           "paper_comparison", "summary_markdown"]

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
            confidence: float = CONFIDENCE) -> tuple[dict[str, Any], dict[str, str]]:
    """Rank spectra of several models on the same images (Figures 6, 7 and 13).

    Each model sees the images in its own preprocessing, so ``ranks`` may use ``max`` for
    each model's full rank. Results are checkpointed in ``cache_dir("spectrum")`` under a
    key of the model's weights, the data and the ranks: an interrupted run resumes, a
    repeated one returns at once.

    Args:
        specs (dict): label -> model specification of :func:`rankcore.book.runs.load_model`.
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

    Returns:
        (dict, dict): label -> table of ``rank_spectrum`` with the Wilson interval columns
        of ``with_intervals`` (``.attrs["source"]``: the data set loaded), and label ->
        why a model was skipped (``"ExceptionClass: message"``).
    """
    from ..paths import cache_dir

    tables, skipped = {}, {}
    for label, spec in specs.items():
        try:
            model = runs.load_model(spec, profile=profile, download=download, progress=progress)
        except runs.LOAD_ERRORS as e:
            skipped[label] = runs.skip_reason(e)
            continue
        loaded = load_data_for(model, data, n, seed)
        ckpt = None
        if cache:
            key = hashlib.sha1(repr((spec, model_digest(model), loaded.source, data, n, seed,
                                     ranks, batch_size)).encode()).hexdigest()[:16]
            ckpt = cache_dir("spectrum") / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', spec)[:60]}-{key}.pt"
        df = with_intervals(rank_spectrum(model, loaded, ranks=ranks, batch_size=batch_size,
                                          progress=progress, checkpoint=ckpt), confidence)
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
        _, ax = plt.subplots(figsize=(5.5, 3.6))
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
    fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 6.4))
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

def saturation_verdict(ours: float, paper: float, max_rank: int, dataset: str) -> str:
    """Figures 6 / 7a: where top-1 saturates (reaches 95% of its full-rank value).

    ImageNet: "reproduced" within 0.6x to 1.5x of the paper's rank; CIFAR-10: within 5
    ranks of it. Otherwise "same trend" if it saturates before full rank, else "differs".
    """
    if np.isnan(ours):
        return "differs"
    if dataset == "cifar10":
        close = abs(ours - paper) <= CIFAR_SATURATION_TOLERANCE
    else:
        lo, hi = IMAGENET_SATURATION_FACTORS
        close = lo * paper <= ours <= hi * paper
    return "reproduced" if close else "same trend" if ours < max_rank else "differs"


def _low(g, low_max: int):
    return g[(g["rank"] >= 1) & (g["rank"] <= low_max)]


def gap_verdict(g, paper_points: float, low_max: int = LOW_RANK_MAX) -> tuple[str, dict]:
    """Figures 7c / 7d: robust models are more than ``paper_points`` ahead at low rank.

    Judged on the ranks 1..``low_max`` of a :func:`rankcore.spectrum.gap` table, by the
    interval, never the point: "reproduced" if at some such rank the interval's lower
    bound exceeds ``paper_points``; "same trend" if at some such rank it exceeds 0 (robust
    ahead, but not by the paper's margin); "differs" otherwise (no rank where robust is
    clearly ahead).

    Returns:
        (str, dict): the verdict and the evidence: ``rank`` (where the lower bound is
        largest), ``gap``, ``lo``, ``hi`` in points.
    """
    low = _low(g, low_max)
    if low.empty:
        raise ValueError(f"the gap table has no rank in [1, {low_max}]")
    best = low.loc[low["gap_lo"].idxmax()]
    ev = {"rank": int(best["rank"]), "gap": 100 * float(best["gap"]),
          "lo": 100 * float(best["gap_lo"]), "hi": 100 * float(best["gap_hi"])}
    verdict = ("reproduced" if ev["lo"] > paper_points else "same trend" if ev["lo"] > 0
               else "differs")
    return verdict, ev


def full_rank_verdict(g) -> tuple[str, dict]:
    """Figure 7a: robust models are behind natural ones at full rank (the trade-off).

    "reproduced" if the gap's interval at the highest rank lies below 0; "differs"
    otherwise (above 0, or containing 0: not shown by these images).
    """
    last = g.sort_values("rank").iloc[-1]
    ev = {"rank": int(last["rank"]), "gap": 100 * float(last["gap"]),
          "lo": 100 * float(last["gap_lo"]), "hi": 100 * float(last["gap_hi"])}
    return ("reproduced" if ev["hi"] < 0 else "differs"), ev


def lowest_auc_verdict(tables: dict[str, Any], expected: str) -> tuple[str, str]:
    """Figure 13: ``expected`` (VGG-19) leans most on high ranks: the lowest agreement AUC
    among the natural models. Returns the verdict and the model found."""
    auc = {k: summary(v)["auc"] for k, v in tables.items() if "robust" not in k.lower()}
    most = min(auc, key=auc.get)
    return ("reproduced" if expected in most else "differs"), most


def figure4_row(has_robust: bool, rank: int) -> dict:
    """Figure 4's scorecard row (keyword arguments of ``Results.score``): judged by eye when
    a robust model is present, else "needs GPU or data"."""
    return {"ref": "fig4", "item": f"robust model's top-5 on a rank-{rank} image names the object",
            "paper": "robust: correct, natural: not",
            "ours": "see figure" if has_robust else "no robust model here",
            "verdict": "same trend" if has_robust else "needs GPU or data",
            "note": "one image; judge by eye" if has_robust else
            "robust ImageNet ResNet-50 checkpoints are not available offline"}


def _fmt(ev: dict) -> str:
    unresolved = " (interval contains 0: not resolved)" if ev["lo"] <= 0 <= ev["hi"] else ""
    return f"{ev['gap']:+.1f} [{ev['lo']:+.1f}, {ev['hi']:+.1f}] at rank {ev['rank']}{unresolved}"


def paper_comparison(paper_get, imagenet: dict, cifar: dict, archs: dict, *,
                     natural: str | None, robust: str | None, imagenet_has_labels: bool,
                     cifar_pairs: dict[str, tuple[str, str]], skipped: dict[str, str],
                     notes: dict[str, str]) -> list[dict]:
    """Every scorecard row of the chapter, from the run's tables and the rules above.

    Args:
        paper_get (callable): ``rankcore.book.paper.get``.
        imagenet, cifar, archs (dict): label -> table (Figures 6/7b, 7a/7c, 13).
        natural, robust (str or None): labels of the ImageNet natural / robust model.
        imagenet_has_labels (bool): whether the ImageNet images carry labels.
        cifar_pairs (dict): name -> (robust label, natural label) for Figure 7c.
        skipped (dict): label -> why a model was skipped.
        notes (dict): ``"imagenet"``, ``"cifar"``: what the images were.

    Returns:
        list of dict: ``ref``, ``item``, ``paper``, ``ours``, ``verdict``, ``note``.
    """
    rows = []

    def row(ref, item, paper, ours, verdict, note):
        rows.append({"ref": ref, "item": item, "paper": paper, "ours": ours,
                     "verdict": verdict, "note": note})

    sat_paper = paper_get("text.imagenet_saturation_rank.value")
    # Figure 7b is Figure 6's spectrum with the robust model beside the natural one; the
    # paper puts the ImageNet saturation near rank 100 for both kinds.
    for ref, kind, label in (("fig6", "natural", natural), ("fig7b", "robust", robust)):
        if imagenet_has_labels and label in imagenet:
            df = imagenet[label]
            sat = saturation_rank(df)
            row(ref, f"ImageNet saturation rank, {kind} ({label})", sat_paper, sat,
                saturation_verdict(sat, sat_paper, int(df["rank"].max()), "imagenet"),
                notes.get("imagenet", ""))
        elif not imagenet_has_labels:
            row(ref, f"ImageNet saturation rank, {kind}", sat_paper, "no labels",
                "needs GPU or data", "the embedded samples have no ImageNet labels")
        else:
            row(ref, f"ImageNet saturation rank, {kind}", sat_paper, f"no {kind} model",
                "needs GPU or data",
                skipped.get(label or "", f"no {kind} ImageNet model in this profile"))
    cifar_sat = paper_get("text.cifar10_saturation_rank.value")
    for label, df in cifar.items():
        sat = saturation_rank(df)
        row("fig7a", f"CIFAR-10 saturation rank, {label}", cifar_sat, sat,
            saturation_verdict(sat, cifar_sat, int(df["rank"].max()), "cifar10"),
            notes.get("cifar", ""))
    adv = paper_get("text.robust_low_rank_advantage.value")
    for name, (rob, nat) in cifar_pairs.items():
        if rob in cifar and nat in cifar:
            g = gap(cifar[rob], cifar[nat], confidence=CONFIDENCE)
            v, ev = gap_verdict(g, adv)
            row("fig7c", f"CIFAR-10: {name} minus natural top-1, ranks 1-{LOW_RANK_MAX} "
                "(points, 95% interval)", f"> {adv}", _fmt(ev), v,
                "verdict by the interval's lower bound; " + notes.get("cifar", ""))
            v, ev = full_rank_verdict(g)
            row("fig7a", f"CIFAR-10: {name} behind natural at full rank (points)", "< 0",
                _fmt(ev), v, "robust models trade clean accuracy")
        else:
            why = "; ".join(f"{k}: {skipped[k]}" for k in (rob, nat) if k in skipped)
            row("fig7c", f"CIFAR-10: {name} minus natural top-1 at low rank (points)",
                f"> {adv}", "model missing", "needs GPU or data", why)
    if robust in imagenet and natural in imagenet and imagenet_has_labels:
        g = gap(imagenet[robust], imagenet[natural], confidence=CONFIDENCE)
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
