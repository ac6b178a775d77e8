"""Chapter 08, beyond the paper: is input rank a robustness metric?

The paper argues "in favor of using image rank as a potential human-aligned image robustness
metric" (Section 1) but shows one natural and one robust model per data set. Here every
CIFAR-10 model the book already has (no training in this chapter) gets cheap scores, the
rank scores of :func:`rankcore.spectrum.rank_spectrum` and the proxies a sceptic would try
instead, and its robust accuracy under attack; a score is a metric if it orders the models
as robust accuracy does. Spearman and Kendall correlations across models come with a
bootstrap interval that resamples the test images (the same draw for every model) and
recomputes every score and every robust accuracy per resample. The verdict rules are fixed
below and tested in ``tests/test_ch08_rank_as_a_metric.py``.

The correlations are :func:`rankcore.stats.rank_correlation`'s (scipy's); with fewer than
:data:`MIN_MODELS` models the chapter reports them but its verdict is "not meaningful here".
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import spectrum, stats
from ..rank import rank_sweep
from ..torch_utils import predict
from . import fourier, runs
from .ch06_low_rank_robustness import random_order, robust_per_image
from .verdicts import not_meaningful, rule

__all__ = ["CHAPTER", "RANK_SCORES", "PROXIES", "SCORE_LABELS", "MIN_MODELS", "run_names",
           "load_models", "matched_window", "gaussian_blur", "gaussian_noise",
           "per_image_scores", "random_order", "robust_per_image", "score_row", "score_table", "correlation",
           "blocks", "bootstrap_correlations", "best_score", "best_markdown",
           "metric_verdict", "learned", "LEARNED_OVER_CHANCE", "MIN_CORRELATED", "scatter_figure",
           "with_every_model", "summary_markdown"]

CHAPTER = "08_rank_as_a_metric"
#: Scores from the rank spectrum (agreement AUC over ranks, top-1 averaged over ranks 1-5,
#: the rank where top-1 reaches 95% of its full-rank value).
RANK_SCORES = ("agreement_auc", "top1_rank1_5", "saturation_rank")
#: The sceptic's proxies: accuracy on low-pass images of the rank-matched energy, on
#: Gaussian-noised and on blurred images, and clean accuracy.
PROXIES = ("lowpass_top1", "noise_top1", "blur_top1", "clean_top1")
SCORE_LABELS = {"agreement_auc": "agreement AUC over ranks", "top1_rank1_5": "top-1 at ranks 1-5",
                "saturation_rank": "saturation rank (95% of full top-1)",
                "lowpass_top1": "Fourier low-pass top-1 (matched energy)",
                "noise_top1": "Gaussian-noise top-1", "blur_top1": "blur top-1",
                "clean_top1": "clean top-1"}
#: Fewer models than this and the verdict is "not meaningful here". Across n models a
#: perfect ordering has an exact two-sided Spearman p-value of 2/n!; six is the fewest
#: models for which even rho = 1 is told from chance after a Bonferroni correction for the
#: seven scores compared (2/5! = 0.017 and 2/6! = 0.0028 against 0.05/7 = 0.0071).
MIN_MODELS = 6
#: A model whose clean top-1 is below this multiple of chance (1 / classes) has not learned
#: to classify: it answers one class whatever the input, so it "agrees" with itself at every
#: rank and its rank scores say nothing about robustness. It is shown, and left out of the
#: correlations (fixed before the quick run that showed high_rank:10 at 11% top-1).
LEARNED_OVER_CHANCE = 2.0
#: A correlation across models needs two of them at least (the verdict needs MIN_MODELS).
MIN_CORRELATED = 2


# ------------------------------------------------------------------------- models

def run_names(profile: str) -> list[str]:
    """The profile's trained CIFAR-10 runs (its ``runs: names``), in the profile's order."""
    return list(runs.names(profile))


def load_models(names: Sequence[str], profile: str, family: str | None = None,
                extra: dict | None = None, download: bool = False) -> tuple[dict, dict]:
    """The book's cached runs and the ``extra`` zoo models, loaded, never trained.

    Returns:
        (dict, dict): label -> model (eval mode), label -> why it was skipped.
    """
    loaded, skipped = {}, {}
    for name in names:
        try:
            cfg = runs.preset(name, profile, family)
            loaded[name] = runs.cached(cfg, progress=False, train_if_missing=False)
        except FileNotFoundError:
            skipped[name] = ("not trained yet (this chapter trains nothing; run its chapter "
                             f"or `rankcore train {name} --profile {profile}`)")
        except ValueError as e:
            skipped[name] = runs.skip_reason(e)
    more, more_skipped = runs.load_models(extra or {}, profile, download=download)
    return {**loaded, **more}, {**skipped, **more_skipped}


# ------------------------------------------------------------------------- per-image scores

def matched_window(x: Tensor, rank: int) -> int:
    """The odd conjugate-symmetric low-pass window whose images keep, on average over ``x``
    ``(N, C, H, W)``, the energy fraction closest to that of the rank-``rank`` images
    (both before clamping: each is an orthogonal projection)."""
    total = x.double().pow(2).sum()
    target = float(next(rank_sweep(x, [rank]))[1].double().pow(2).sum() / total)
    widths = range(1, min(x.shape[-2:]) + 1, 2)
    kept = [float(fourier.low_pass(x.double(), k, symmetric=True).pow(2).sum() / total)
            for k in widths]
    return list(widths)[int(np.argmin([abs(e - target) for e in kept]))]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Per-channel Gaussian blur of ``(N, C, H, W)`` images (kernel radius 2 sigma, reflect)."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                   groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="reflect"),
                    k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def gaussian_noise(x: Tensor, std: float, seed: int) -> Tensor:
    """``x`` plus seeded Gaussian noise of standard deviation ``std``, clamped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


def _labels(model: nn.Module, x: Tensor, batch_size: int) -> np.ndarray:
    return predict(model, x, batch_size, amp=False).argmax(1).cpu().numpy()


def per_image_scores(model: nn.Module, x: Tensor, y: Tensor, ranks: Sequence[int],
                     window: int, noise_std: float, blur_sigma: float, seed: int,
                     batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per-image correctness behind every score, for the bootstrap.

    Rank-k images are :func:`rankcore.spectrum.rank_spectrum`'s (per-channel truncated
    SVD, clamped to [0, 1]); the means of ``correct``/``agree`` over images are its
    ``top1``/``agreement`` columns.

    Returns:
        dict: ``correct`` and ``agree`` ``(N, len(ranks))`` bool (rank-k prediction equals
        the label / the full-image prediction), ``clean``, ``lowpass``, ``noise``, ``blur``
        ``(N,)`` bool.
    """
    yn = y.cpu().numpy()
    full = _labels(model, x, batch_size)
    correct, agree = [], []
    for _, xk in rank_sweep(x, ranks, clamp=True):
        p = _labels(model, xk, batch_size)
        correct.append(p == yn)
        agree.append(p == full)
    lp = fourier.low_pass(x, window, symmetric=True).clamp(0, 1)
    return {"correct": np.stack(correct, 1), "agree": np.stack(agree, 1), "clean": full == yn,
            "lowpass": _labels(model, lp, batch_size) == yn,
            "noise": _labels(model, gaussian_noise(x, noise_std, seed), batch_size) == yn,
            "blur": _labels(model, gaussian_blur(x, blur_sigma), batch_size) == yn}


# ------------------------------------------------------------------------- scores

def _curve(ranks: Sequence[int], v: np.ndarray):
    import pandas as pd
    return pd.DataFrame({"rank": list(ranks), "value": v})


def score_row(d: dict, ranks: Sequence[int], idx: np.ndarray | None = None) -> dict:
    """Every score of one model from its per-image arrays (:func:`per_image_scores` merged
    with :func:`robust_per_image`), over the images ``idx`` of each array (all when None;
    a shorter attack array uses the indices below its length, see :func:`blocks`)."""
    def take(a):
        if idx is None:
            return a
        return a[idx[idx < len(a)]]
    top1 = take(d["correct"]).mean(0)
    row = {"agreement_auc": spectrum.summary(_curve(ranks, take(d["agree"]).mean(0)),
                                             "value")["auc"],
           "top1_rank1_5": float(top1[[i for i, k in enumerate(ranks) if 1 <= k <= 5]].mean()),
           "saturation_rank": spectrum.saturation_rank(_curve(ranks, top1), "value"),
           "lowpass_top1": take(d["lowpass"]).mean(), "noise_top1": take(d["noise"]).mean(),
           "blur_top1": take(d["blur"]).mean(), "clean_top1": take(d["clean"]).mean()}
    row.update({k: float(take(v).mean()) for k, v in d.items() if k not in
                ("correct", "agree", "clean", "lowpass", "noise", "blur")})
    return {k: float(v) for k, v in row.items()}


def score_table(per_model: dict, ranks: Sequence[int], idx: np.ndarray | None = None):
    """One row per model (``model`` column), one column per score and robust accuracy."""
    import pandas as pd
    return pd.DataFrame([{"model": m, **score_row(d, ranks, idx)} for m, d in per_model.items()])


# ------------------------------------------------------------------------- correlation

def correlation(a, b, method: str = "spearman") -> float:
    """Spearman's rho or Kendall's tau-b of two ``(n,)`` sequences across models
    (:func:`rankcore.stats.rank_correlation`, scipy's), NaN when either is constant or has
    a NaN (a bootstrap resample can make a score constant: it then counts as no evidence)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.isnan(a).any() or np.isnan(b).any() or len(set(a)) < 2 or len(set(b)) < 2:
        if a.shape != b.shape or a.ndim != 1 or a.size < 2:
            raise ValueError(f"a and b must be 1-D of the same length >= 2; got shapes "
                             f"{a.shape} and {b.shape}")
        return float("nan")
    return stats.rank_correlation(a, b, method)[0]


def blocks(sizes: Sequence[int], n_boot: int, seed: int) -> list[np.ndarray]:
    """Seeded bootstrap resamples of nested image sets.

    ``sizes`` are the nested prefix lengths (e.g. AutoAttack's 100 inside the attacks' 200
    inside the scores' 500): each resample draws every block ``[s_i, s_{i+1})`` with
    replacement from itself, so each prefix is a bootstrap sample of its own images and
    the same draw is shared by every model and every score.
    """
    edges = sorted(set(int(s) for s in sizes))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        parts, lo = [], 0
        for hi in edges:
            parts.append(rng.integers(lo, hi, hi - lo))
            lo = hi
        out.append(np.concatenate(parts))
    return out


def bootstrap_correlations(per_model: dict, ranks: Sequence[int], scores: Sequence[str],
                           targets: Sequence[str], n_boot: int = 200, seed: int = 0,
                           confidence: float = 0.95):
    """Spearman and Kendall of each score with each robust accuracy across models.

    Args:
        per_model (dict): model -> per-image arrays (:func:`score_row`).
        ranks (sequence of int): the ranks of the ``correct``/``agree`` columns.
        scores, targets (sequence of str): score and robust-accuracy names.
        n_boot (int, optional): resamples of the images (:func:`blocks`). Default: 200.
        seed (int, optional): Default: 0. confidence (float, optional): Default: 0.95.

    Returns:
        DataFrame, one row per (score, target): ``score``, ``target``, ``models``,
        ``spearman``, ``spearman_lo``, ``spearman_hi``, ``kendall``, ``kendall_lo``,
        ``kendall_hi`` (percentile intervals; they cover image sampling only, not the
        choice of models).
    """
    import pandas as pd
    if len(per_model) < 2:
        raise ValueError(f"need at least 2 models to correlate; got {len(per_model)}")
    sizes = {len(v) for d in per_model.values() for v in d.values()}
    point = score_table(per_model, ranks)
    boot = [score_table(per_model, ranks, idx) for idx in blocks(sorted(sizes), n_boot, seed)]
    q = ((1 - confidence) / 2, (1 + confidence) / 2)
    rows = []
    for t in targets:
        for s in scores:
            row = {"score": s, "target": t, "models": len(point)}
            for name in ("spearman", "kendall"):
                vals = np.array([correlation(b[s], b[t], name) for b in boot])
                vals = vals[~np.isnan(vals)]
                row[name] = correlation(point[s], point[t], name)
                row[f"{name}_lo"], row[f"{name}_hi"] = (
                    (float(np.quantile(vals, q[0])), float(np.quantile(vals, q[1])))
                    if len(vals) else (float("nan"), float("nan")))
            rows.append(row)
    return pd.DataFrame(rows)


def best_score(corr, target: str) -> "pandas.Series":  # noqa: F821
    """The row of ``corr`` (:func:`bootstrap_correlations`) with the largest |Spearman|
    for ``target``."""
    sub = corr[(corr.target == target) & corr.spearman.notna()]
    if sub.empty:
        raise ValueError(f"no finite correlation with target={target!r}")
    return sub.loc[sub.spearman.abs().idxmax()]


@rule("beyond", kind="beyond the paper", examples={
    "reproduced": [dict(rho=0.8, lo=0.6, hi=0.9, models=11, best_other=0.7),
                   dict(rho=-0.7, lo=-0.85, hi=-0.5, models=6)],
    "same trend": [dict(rho=0.6, lo=0.3, hi=0.8, models=11, best_other=-0.9)],
    "differs": [dict(rho=0.3, lo=-0.2, hi=0.7, models=11, best_other=0.9),
                dict(rho=float("nan"), lo=float("nan"), hi=float("nan"), models=11)],
    "not meaningful here": [dict(rho=0.95, lo=0.9, hi=1.0, models=MIN_MODELS - 1)]},
    needs=f"at least {MIN_MODELS} models (MIN_MODELS)")
def metric_verdict(rho: float, lo: float, hi: float, models: int,
                   best_other: float | None = None) -> str:
    """Is input rank a robustness metric here? ``rho`` [``lo``, ``hi``]: the best rank
    score's Spearman with robust accuracy across ``models`` models and its image-bootstrap
    interval; ``best_other``: the best proxy's Spearman (None: no proxy measured).

    "not meaningful here" below :data:`MIN_MODELS` models; "differs" when the interval
    reaches 0 (or is undefined); "same trend" when it excludes 0 but a proxy predicts
    better (larger |Spearman|); "reproduced" when no proxy does.
    """
    if isinstance(models, bool) or not isinstance(models, (int, np.integer)) or models < 0:
        raise ValueError(f"models must be an int >= 0, got {models!r}")
    if models < MIN_MODELS:
        return not_meaningful(f"{models} models; the rule needs {MIN_MODELS} (MIN_MODELS)")
    if not (rho == rho and lo == lo and hi == hi) or lo <= 0 <= hi:
        return "differs"
    if best_other is not None and best_other == best_other and abs(best_other) > abs(rho):
        return "same trend"
    return "reproduced"


def best_markdown(corr, target: str, label: str) -> str:
    """A plain sentence, computed from ``corr``: which score predicts ``target`` best, and
    whether it is a rank score."""
    b = best_score(corr, target)
    rank = corr[(corr.target == target) & corr.score.isin(RANK_SCORES)]
    r = best_score(rank, target) if rank.spearman.notna().any() else None
    kind = "a rank score" if b.score in RANK_SCORES else "not a rank score"
    s = (f"Across {int(b.models)} models, the score that best predicts {label} is "
         f"**{SCORE_LABELS.get(b.score, b.score)}** ({kind}): Spearman {b.spearman:+.2f} "
         f"[{b.spearman_lo:+.2f}, {b.spearman_hi:+.2f}], Kendall {b.kendall:+.2f} "
         f"[{b.kendall_lo:+.2f}, {b.kendall_hi:+.2f}].")
    if r is not None and r.score != b.score:
        s += (f" The best rank score, {SCORE_LABELS[r.score]}, reaches Spearman "
              f"{r.spearman:+.2f} [{r.spearman_lo:+.2f}, {r.spearman_hi:+.2f}].")
    return s


def learned(per_model: dict, classes: int = 10,
            over_chance: float = LEARNED_OVER_CHANCE) -> tuple[dict, dict[str, str]]:
    """Split ``per_model`` (name -> :func:`per_image_scores` + robust outcomes) into the
    models whose clean top-1 reaches ``over_chance / classes`` and the others, each with
    the reason it is left out of the correlations.

    Returns:
        (kept, dropped): the kept part of ``per_model``; name -> reason.
    """
    if classes < 2 or not over_chance > 0:
        raise ValueError(f"classes={classes!r}, over_chance={over_chance!r}; expected >= 2 and > 0")
    floor = over_chance / classes
    kept, dropped = {}, {}
    for name, d in per_model.items():
        top1 = float(np.mean(d["clean"]))
        if top1 >= floor:
            kept[name] = d
        else:
            dropped[name] = (f"clean top-1 {100 * top1:.1f}% is below {over_chance:g}x chance "
                             f"({100 * floor:.0f}%): it has not learned; shown, not correlated")
    return kept, dropped


def scatter_figure(table, scores: Sequence[str], target: str, label: str,
                   left_out: Sequence[str] = ()):
    """One scatter plot per score against ``target`` (fractions shown as percent), two to
    a row so that each panel is readable in the book's column. Models in ``left_out`` (not
    correlated: at chance) are grey crosses, so a reader sees every model of the table."""
    import matplotlib.pyplot as plt

    from .figures import figsize, grid_shape
    rows, cols = grid_shape(len(scores), max_cols=2)
    fig, axes = plt.subplots(rows, cols, figsize=figsize(cols, rows, aspect=0.8), squeeze=False)
    out = table["model"].isin(list(left_out))
    for ax, s in zip(axes.flat, scores):
        for part, style in ((table[~out], dict(s=18, label="correlated")),
                            (table[out], dict(s=22, marker="x", color="0.55",
                                              label="left out (at chance)"))):
            if len(part):
                ax.scatter(part[s], 100 * part[target], **style)
        for m, a, b in zip(table["model"], table[s], table[target]):
            ax.annotate(str(m), (a, 100 * b), fontsize=6, alpha=0.7)
        ax.set(xlabel=SCORE_LABELS.get(s, s), ylabel=f"{label} (%)")
    if out.any():
        axes.flat[0].legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(scores):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def with_every_model(corr, corr_all, target: str):
    """Spearman of each score with ``target`` on the learned models (``corr``) beside the
    same on every model (``corr_all``, those at chance included): how much the choice to
    leave models out moves each correlation. Columns ``score``, ``learned``,
    ``every model`` (text: rho [lo, hi] and the number of models)."""
    import pandas as pd

    def text(df, score):
        r = df[(df.target == target) & (df.score == score)]
        if r.empty or not np.isfinite(r.spearman.iloc[0]):
            return "not finite"
        r = r.iloc[0]
        return f"{r.spearman:+.2f} [{r.spearman_lo:+.2f}, {r.spearman_hi:+.2f}], {r.models} models"
    return pd.DataFrame([{"score": SCORE_LABELS.get(s, s), "learned": text(corr, s),
                          "every model": text(corr_all, s)}
                         for s in corr[corr.target == target].score])


def summary_markdown(corr, target: str, label: str, n: dict, skipped: dict,
                     profile: str, seconds: float) -> str:
    """The chapter's summary from this run's numbers."""
    rank = corr[(corr.target == target) & corr.score.isin(RANK_SCORES)]
    width = (rank.spearman_hi - rank.spearman_lo).median()
    lines = [f"- {best_markdown(corr, target, label)}",
             f"- Images ({profile} profile): " + ", ".join(f"{k} {v}" for k, v in n.items())
             + f"; the median width of the rank scores' 95% Spearman intervals is {width:.2f}.",
             f"- The chapter took {seconds / 60:.1f} min."]
    lines += [f"- **{k}**: skipped: {v}" for k, v in skipped.items()]
    return "\n".join(lines)
