"""Chapter 03, Rank Integrated Gradients: experiments, figures and verdict rules of Figures 1, 8,
10, 11, 17 and 18.

The library computes the maps (:func:`rankcore.rig`, :mod:`rankcore.attribution`) and their
scores (deletion/insertion areas, edge alignment, spatial coherence). This module loads the
models the chapter names, draws the figures and holds the verdict rules, fixed here before
any run and tested in ``tests/test_ch03_rig.py``. The paper judges its figures by eye; the
verdicts follow the numbers that stand in for the eye, by paired intervals over the images
(both methods, or both models, on the same images: a seeded paired bootstrap of the mean
per-image difference, :func:`rankcore.stats.paired_bootstrap`). Figures 10 and 17 are
illustrations (the method drawn term by term; Figure 1's maps on ImageNet validation images),
shown but not counted.
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from .. import attribution, data
from ..attribution import rig
from ..rank import max_rank
from ..stats import paired_bootstrap
from ..torch_utils import predict
from .figures import COLUMN_INCHES, figsize, to_hwc
from .verdicts import not_meaningful, rule

__all__ = ["CHAPTER", "stride", "load_images", "saliency_figure",
           "figure10_ranks", "figure10", "pair_alignment", "auc_methods", "auc_table",
           "auc_verdicts", "paired_verdict", "claim_answer", "alignment_verdicts", "record_scores",
           "summary_markdown", "plot_rig_terms", "plot_saliency", "plot_auc", "top_classes"]

CHAPTER = "03_rig"
#: Figure 10's ranks as fractions of w = min(H, W): the paper's 1, 5, 10, 25, 50, 100 of 224.
FIGURE10_FRACTIONS = (1 / 224, 5 / 224, 10 / 224, 25 / 224, 50 / 224, 100 / 224)
#: A paired comparison over images is judged on at least this many images.
MIN_IMAGES = 20
#: Seed of the paired bootstraps.
BOOTSTRAP_SEED = 0


def stride(s: int) -> str:
    """The rank specification of every ``s``-th rank, ``"s:max:s"`` (``1``: every rank)."""
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise ValueError(f"stride must be a positive int; got {s!r}")
    return f"{s}:max:{s}"


# ---------------------------------------------------------------------------- models and data

def load_images(model: nn.Module, name: str, n: int, seed: int = 0):
    """``n`` images of data set ``name`` in ``model``'s preprocessing (``rankcore.data.load``),
    at most as many as the set holds (the embedded photos are few)."""
    config = dict(getattr(model, "data_kwargs", None) or {})
    full = len(data.dataset(name, progress=False, **config))
    return data.load(name, n=min(n, full), seed=seed, progress=False, **config)


# ---------------------------------------------------------------------------- Figures 1, 8, 17, 10

def saliency_figure(model: nn.Module, x: Tensor, target: Tensor, ranks: Any, batch_size: int,
                    titles: Sequence[str] = ()):
    """Figures 1/8/17: each image, its vanilla gradient and its RIG map (the top class)."""
    vanilla = attribution.vanilla_gradient(model, x, target=target,
                                           internal_batch_size=batch_size)
    rig_maps = rig(model, x, target=target, ranks=ranks, internal_batch_size=batch_size)
    return plot_saliency(x, {"vanilla gradient": vanilla, "RIG (ours)": rig_maps}, titles=titles)


def figure10_ranks(w: int) -> list[int]:
    """The paper's Figure 10 ranks (1, 5, 10, 25, 50, 100 of 224) scaled to images of rank w."""
    return sorted({min(w - 1, max(1, round(w * f))) for f in FIGURE10_FRACTIONS})


def figure10(model: nn.Module, x: Tensor, target: Tensor, batch_size: int):
    """Figure 10 for one image ``x`` ``(1, C, H, W)``: returns ``(figure, ranks)``."""
    ks, imgs, terms = attribution.rig_terms(model, x, figure10_ranks(max_rank(x)), target=target,
                                            internal_batch_size=batch_size)
    return plot_rig_terms(ks, imgs[:, 0], terms[:, 0]), ks


# ---------------------------------------------------------------------------- Figures 11, 18

def pair_alignment(pair: dict[str, nn.Module], x: Tensor, y: Tensor | None, batch_size: int,
                   ranks: Any = None) -> tuple[dict[str, Tensor], pd.DataFrame]:
    """Vanilla gradient and RIG maps of each model (true label, else top class) and their
    edge alignment and spatial coherence, mean and standard error over the images.

    Returns:
        (dict, DataFrame): ``"model: method"`` -> maps ``(N, H, W)``; one row per model
        and method: ``model``, ``method``, ``images``, ``edge_alignment``,
        ``edge_alignment_sem``, ``coherence``, ``coherence_sem``. The frame's
        ``attrs["per_image"]`` holds ``"model: method"`` -> ``{"edge_alignment": [...],
        "coherence": [...]}`` (lists, one value per image) for the paired intervals.
    """
    maps, rows, per_image = {}, [], {}
    for name, m in pair.items():
        for method, fn, kw in (("vanilla", attribution.vanilla_gradient, {}),
                               ("RIG", rig, {"ranks": ranks})):
            s = fn(m, x, target=y, internal_batch_size=batch_size, **kw)
            maps[f"{name}: {method}"] = s
            corr, coh = attribution.edge_alignment(x, s), attribution.spatial_coherence(s)
            sem = (lambda v: v.std().item() / len(v) ** 0.5 if len(v) > 1 else float("nan"))
            rows.append({"model": name, "method": method, "images": len(corr),
                         "edge_alignment": corr.mean().item(), "edge_alignment_sem": sem(corr),
                         "coherence": coh.mean().item(), "coherence_sem": sem(coh)})
            per_image[f"{name}: {method}"] = {"edge_alignment": corr.tolist(),
                                              "coherence": coh.tolist()}
    df = pd.DataFrame(rows)
    df.attrs["per_image"] = per_image
    return maps, df


def _paired_examples(higher_is_better: bool = True):
    import numpy as np
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, 40)
    sign = 1 if higher_is_better else -1
    wobble = np.tile([0.08, -0.08], 20)          # mean 0, spread 0.08 per image
    return {"reproduced": [dict(first=base + sign * (0.1 + wobble / 4), second=base)],
            "same trend": [dict(first=base + sign * (0.01 + wobble), second=base)],
            "differs": [dict(first=base - sign * (0.1 + wobble / 4), second=base)],
            "not meaningful here": [dict(first=base[:6] + sign * 0.1, second=base[:6])]}


@rule("fig1", "fig8", "fig11", "fig18", examples=_paired_examples,
      needs=f"{MIN_IMAGES} images, paired")
def paired_verdict(first, second, higher_is_better: bool = True,
                   min_images: int = MIN_IMAGES) -> tuple[str, tuple[float, float, float]]:
    """A claim that ``first`` scores better than ``second`` on the same images (RIG against
    the vanilla gradient, Figures 1/8; a robust model's RIG against a natural one's,
    Figures 11/18), by the seeded paired bootstrap of the mean per-image difference.

    "reproduced" when the whole 95% interval favours ``first``; "same trend" when the mean
    does but the interval reaches 0; "differs" when the mean does not; "not meaningful here"
    below ``min_images`` images.

    Returns:
        (str, (float, float, float)): the verdict and the mean difference ``first - second``
        with its interval (in the score's unit).
    """
    import numpy as np
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    diff = paired_bootstrap(a, b, seed=BOOTSTRAP_SEED)
    if len(a) < min_images:
        return not_meaningful(f"{len(a)} images; a paired interval needs {min_images}"), diff
    d, lo, hi = diff if higher_is_better else (-diff[0], -diff[2], -diff[1])
    if lo > 0:
        return "reproduced", diff
    return ("same trend" if d > 0 else "differs"), diff


def alignment_verdicts(align: pd.DataFrame) -> dict[str, tuple]:
    """Robust against natural RIG maps: ``column -> (verdict, robust, natural, (diff, lo,
    hi))``, by :func:`paired_verdict` over the images of ``align.attrs["per_image"]``.

    The paper: robust models' maps are "much more aligned with human perception".
    """
    a = align.set_index(["model", "method"])
    per = align.attrs.get("per_image", {})
    out = {}
    for col in ("edge_alignment", "coherence"):
        rob, nat = float(a.loc[("robust", "RIG"), col]), float(a.loc[("natural", "RIG"), col])
        v, diff = paired_verdict(per["robust: RIG"][col], per["natural: RIG"][col])
        out[col] = (v, rob, nat, diff)
    return out


# ---------------------------------------------------------------------------- deletion / insertion

def auc_methods(rank_stride: int, steps: int, seed: int, batch_size: int) -> dict[str, dict]:
    """The six methods of the comparison and their settings (path points, samples, ranks)."""
    methods = {"vanilla": {}, "smoothgrad": dict(samples=steps, seed=seed),
               "ig": dict(steps=steps), "blur_ig": dict(steps=steps),
               "rig": dict(ranks=stride(rank_stride)), "rank_ig": dict(ranks=stride(rank_stride))}
    for kw in methods.values():
        kw["internal_batch_size"] = batch_size
    return methods


def auc_table(model: nn.Module, x: Tensor, target: Tensor, methods: dict[str, dict],
              curve_steps: int, batch_size: int, cache_key: Any, profile: str):
    """Per-image rows and the summary table of :func:`rankcore.attribution.compare_methods`,
    resumable from ``cache_dir("03_rig")``."""
    from ..paths import cache_dir
    rows = attribution.compare_methods(model, x, methods, target=target, steps=curve_steps,
                                       batch=batch_size, cache=cache_dir(CHAPTER) / f"auc_{profile}.pt",
                                       cache_key=cache_key, progress=False)
    return rows, attribution.auc_summary(rows)


def auc_verdicts(rows: list[dict]) -> dict[str, tuple]:
    """RIG against the vanilla gradient, image by image: ``"insertion"``/``"deletion"`` ->
    ``(verdict, rig mean, vanilla mean, (diff, lo, hi))``.

    "RIG is more perceptually aligned" (Figures 1 and 8), in numbers: RIG's insertion area
    higher (deletion area lower) than the vanilla gradient's on the same images, judged by
    :func:`paired_verdict` (a paired bootstrap over images).

    Args:
        rows (list of dict): the per-image rows of :func:`rankcore.attribution.compare_methods`.
    """
    import numpy as np
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["image"]] = r
    images = sorted(set(by["rig"]) & set(by["vanilla"]))
    out = {}
    for key, col, higher in (("insertion", "insertion_auc", True),
                             ("deletion", "deletion_auc", False)):
        rig_v = np.array([by["rig"][i][col] for i in images], dtype=float)
        van_v = np.array([by["vanilla"][i][col] for i in images], dtype=float)
        v, diff = paired_verdict(rig_v, van_v, higher_is_better=higher)
        out[key] = (v, float(rig_v.mean()), float(van_v.mean()), diff)
    return out


def claim_answer(verdicts: dict[str, tuple]) -> str:
    """``"Yes"`` (both areas favour RIG), ``"Partly"`` (one) or ``"No"``."""
    agree = sum(v[0] in ("reproduced", "same trend") for v in verdicts.values())
    return "Yes" if agree == len(verdicts) else "Partly" if agree else "No"


def _interval(diff: tuple[float, float, float]) -> str:
    d, lo, hi = diff
    return f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" if lo == lo else f"{d:+.3f} (no interval)"


def record_scores(res, auc: dict, ks: list[int], w: int, pair_note: str, cifar_align: dict | None,
                  imagenet_align: dict | None, imagenet_note: str, fig17_ok: bool,
                  auc_note: str) -> None:
    """The chapter's scorecard entries (Figures 1, 8, 10, 11, 17, 18)."""
    res.score("fig10", "RIG built from rank-k images and weighted gradients",
              "rank-k images and their gradients", f"ranks {ks} of {w}", "reproduced",
              note="equation 3 implemented term by term; rankcore.rig equals an explicit loop "
                   "over k in tests/test_attribution.py", kind="illustration")
    (vi, ri_, vi_, di), (vd, rd_, vd_, dd) = auc["insertion"], auc["deletion"]
    res.score("fig1", "RIG vs vanilla gradient: insertion AUC (higher is better)",
              "RIG more perceptually aligned (by eye)",
              f"RIG {ri_:.3f} vs vanilla {vi_:.3f}; paired difference {_interval(di)}",
              vi, note=auc_note + "; 95% paired bootstrap over images")
    res.score("fig8", "RIG vs vanilla gradient: deletion AUC (lower is better)",
              "RIG highlights object features (by eye)",
              f"RIG {rd_:.3f} vs vanilla {vd_:.3f}; paired difference {_interval(dd)}",
              vd, note=auc_note + "; 95% paired bootstrap over images")
    res.score("fig17", "RIG for a naturally trained ResNet-50 on ImageNet validation images",
              "maps by eye", "shown in Figure 1" if fig17_ok else "another model or data",
              "same trend" if fig17_ok else "needs GPU or data", kind="illustration",
              note="the maps of Figure 1 (its verdict is Figure 1's); the paper profile runs "
                   "ResNet-50 on ImageNet, CPU profiles use EfficientNet-Lite0")
    what = {"edge_alignment": "edge alignment", "coherence": "spatial coherence"}
    for col, label in what.items():
        if cifar_align is not None:
            v, rob, nat, diff = cifar_align[col]
            res.score("fig11", f"RIG of robust vs natural model: {label}",
                      "robust more aligned (by eye)",
                      f"robust {rob:.2f}, natural {nat:.2f}; paired difference {_interval(diff)}",
                      v, note=pair_note)
        if imagenet_align is not None:
            v, rob, nat, diff = imagenet_align[col]
            res.score("fig18", f"RIG of an L2 3.0 robust ResNet-50: {label}", "maps by eye",
                      f"robust {rob:.2f}, natural {nat:.2f}; paired difference {_interval(diff)}",
                      v, note=imagenet_note)
    if imagenet_align is None:
        res.score("fig18", "RIG of an L2 3.0 robust ResNet-50", "maps by eye", "not run",
                  "needs GPU or data", note=imagenet_note)


def summary_markdown(profile: str, table: pd.DataFrame, auc: dict, n_images: int, source: str,
                     model_name: str, cifar_align: dict | None, imagenet_align: dict | None,
                     skipped: dict[str, str]) -> str:
    """The chapter's summary, written from this run's numbers."""
    t = table.set_index("method")
    best_ins, best_del = t.insertion_auc.idxmax(), t.deletion_auc.idxmin()
    (_, ri, vi, _), (_, rd, vd, _) = auc["insertion"], auc["deletion"]
    beats = 100 * float(t.loc["rig", "beats_reference"])
    lines = [f"On the **{profile}** profile ({n_images} images from `{source}`, {model_name}):", "",
             f"* Does 'RIG is more perceptually aligned than the vanilla gradient' show in "
             f"numbers? **{claim_answer(auc)}**: RIG's deletion area is "
             f"{'lower' if rd < vd else 'higher'} than the vanilla gradient's ({rd:.3f} vs "
             f"{vd:.3f}) and its insertion area {'higher' if ri > vi else 'lower'} ({ri:.3f} vs "
             f"{vi:.3f}); RIG beats the vanilla gradient on both areas for {beats:.0f}% of the "
             f"images. Best of the {len(t)} methods: {best_del} (deletion), {best_ins} "
             f"(insertion)."]
    for label, al in (("CIFAR-10 pair (Figure 11)", cifar_align),
                      ("ImageNet pair (Figure 18)", imagenet_align)):
        if al is not None:
            (ve, re_, ne, _), (vc, rc, nc, _) = al["edge_alignment"], al["coherence"]
            lines.append(f"* {label}: the robust model's RIG maps have edge alignment "
                         f"{re_:.2f} against {ne:.2f} (**{ve}**) and spatial coherence {rc:.2f} "
                         f"against {nc:.2f} (**{vc}**).")
    for label, why in skipped.items():
        lines.append(f"* {label}: skipped: {why}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plotting

def _display(m: Tensor, signed: bool) -> Tensor:
    """Scale a map to [-1, 1] (signed) or [0, 1] by its 99th percentile of |m|."""
    m = m.detach().double().cpu()
    scale = torch.quantile(m.abs().flatten(), 0.99).clamp_min(1e-12)
    return (m / scale).clamp(-1, 1) if signed else (m.abs() / scale).clamp(0, 1)


def plot_rig_terms(ks: Sequence[int], images: Tensor, terms: Tensor, size: float = 2.0):
    """The paper's Figure 10: rank-k images (top) and their weighted gradients (bottom).

    Args:
        ks, images, terms: the output of :func:`rankcore.attribution.rig_terms` for one
            image (``images`` ``(len(ks), C, H, W)``, ``terms`` ``(len(ks), H, W)``).
        size (float, optional): inches per panel.

    Returns:
        matplotlib Figure; the last column is the sum of the terms shown.
    """
    import matplotlib.pyplot as plt
    n, w = len(ks), min(images.shape[-2:])
    # Every panel's title fits its panel at the column's width (Figure 10 has up to 7 columns).
    size = min(size, COLUMN_INCHES / (n + 1))
    fig, axes = plt.subplots(2, n + 1, figsize=figsize(n + 1, 2, aspect=1.2, extra=0.35,
                                                       width=size * (n + 1)), squeeze=False)
    scale = torch.quantile(terms.detach().abs().flatten().double().cpu(), 0.99).clamp_min(1e-12)
    for j in range(n + 1):
        if j < n:
            axes[0, j].imshow(to_hwc(images[j]))
            axes[0, j].set_title(f"k = {ks[j]}", fontsize=9)
            shown = (terms[j].detach().abs().double().cpu() / scale).clamp(0, 1)
            axes[1, j].set_title(f"x {(w - ks[j]) / w:.2f}", fontsize=9)
        else:
            axes[0, j].set_visible(False)
            shown = _display(terms.sum(0), signed=False)
            axes[1, j].set_title("sum", fontsize=9)
        axes[1, j].imshow(shown.numpy(), cmap="gray", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("rank-k image", fontsize=9)
    axes[1, 0].set_ylabel("gradient", fontsize=9)
    fig.suptitle("Figure 10: rank-k images (top) and their gradients weighted by (w - k)/w "
                 "(bottom)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_saliency(x: Tensor, maps: dict[str, Tensor], titles: Sequence[str] = (),
                  signed: bool = False, size: float = 2.2):
    """A grid with one row per image: the image, then each saliency map.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in [0, 1].
        maps (dict): column title -> saliency ``(N, H, W)``.
        titles (sequence of str, optional): one label per image row.
        signed (bool, optional): show signed maps (red positive, blue negative) instead of
            magnitudes. Default: ``False``.
        size (float, optional): inches per panel.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    n, cols = len(x), 1 + len(maps)
    size = min(size, COLUMN_INCHES / cols)
    fig, axes = plt.subplots(n, cols, figsize=figsize(cols, n, aspect=1.0, width=size * cols),
                             squeeze=False)
    for i in range(n):
        img = to_hwc(x[i])
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 0].set_ylabel(titles[i] if i < len(titles) else "", fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(_display(m[i], signed).numpy(), cmap="bwr" if signed else "gray",
                              vmin=-1 if signed else 0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_auc(table: pd.DataFrame, title: str):
    """Deletion against insertion area per method, with standard errors."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, row in table.iterrows():
        ax.errorbar(row.deletion_auc, row.insertion_auc, xerr=row.deletion_auc_sem,
                    yerr=row.insertion_auc_sem, fmt="o", capsize=3, label=row.method)
    ax.set_xlabel("deletion AUC (lower is better)")
    ax.set_ylabel("insertion AUC (higher is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def top_classes(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """Each image's top class ``(N,)`` on ``x``'s device."""
    return predict(model, x, batch_size, amp=False).argmax(1)
