"""Chapter 01, rank-k images: the experiments, figures and verdict rules of Figures 2, 3, 5, 9.

Every function takes images ``(C, H, W)`` or ``(N, C, H, W)`` in ``[0, 1]``. The verdict
rules (``*_verdict``) are fixed here, before any run, and tested in
``tests/test_ch01_rank_images.py``; the notebook ``book/01_rank_images.ipynb`` only calls
them and prints :func:`summary_markdown` of what its run found.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..rank import high_rank, low_rank, max_rank, parse_ranks, rank_sweep, singular_values
from .distortions import square_patch, uniform_noise
from .figures import figsize, image_grid
from .verdicts import rule

#: Every row of this chapter regenerates a figure or checks the library against itself
#: (Figure 2 is the same function twice, Figure 3's rise is Eckart-Young's, Figure 5's norms
#: are equal by construction, Figure 9's energy bound holds for any photo): shown, not counted.
KIND = "illustration"

__all__ = ["CHAPTER", "L2_TOLERANCE", "FIG9_MAX_ENERGY_LEFT", "pipeline", "figure2",
           "fig2_verdict", "gallery", "figure3", "error_table", "fig3_verdict", "spectra",
           "figure_spectra", "energy_ranks", "equal_l2", "KIND", "figure5", "fig5_verdict",
           "reverse_truncation", "figure9", "fig9_verdict", "summary_markdown"]

CHAPTER = "01_rank_images"
#: Figure 5: the two distortions count as "identical" when their L2 norms differ by less.
L2_TOLERANCE = 1e-3
#: Figure 9: "largely imperceptible" residual = less than this share of the image's energy.
FIG9_MAX_ENERGY_LEFT = 0.1


def _psnr(x: Tensor, ref: Tensor) -> float:
    return float(10 * torch.log10(1 / ((x - ref) ** 2).mean()))


# ------------------------------------------------------------------ Figure 2: the pipeline

def pipeline(x: Tensor, k: int) -> dict:
    """Figure 2: the rank-``k`` image of one image ``(3, H, W)`` and its channels.

    Returns:
        dict: ``image`` (the clamped rank-k image ``(3, H, W)``) and ``same`` (bool: truncating
        each channel on its own and stacking them gives the same image).
    """
    k = parse_ranks(k, max_rank(x), "k")[0]
    xk = low_rank(x, k, clamp=True)
    per_channel = torch.stack([low_rank(x[c], k, clamp=True) for c in range(x.shape[0])])
    return {"image": xk, "same": bool(torch.allclose(xk, per_channel)), "k": k}


def figure2(x: Tensor, result: dict):
    """Original, its three channels, the rank-k image and its three channels (Figure 2)."""
    k, xk = result["k"], result["image"]
    return image_grid([x] + [x[c] for c in range(3)] + [xk] + [xk[c] for c in range(3)],
                      ncols=4, size=2.2, cmap="gray",
                      titles=["original"] + [f"{c} channel" for c in "RGB"]
                      + [f"rank {k} image"] + [f"{c}, rank {k}" for c in "RGB"],
                      suptitle=f"Figure 2: per-channel truncated SVD (k = {k})")


@rule("fig2", kind=KIND)
def fig2_verdict(same: bool) -> str:
    """Figure 2 is reproduced when per-channel truncation equals truncating the stack."""
    return "reproduced" if same else "differs"


# ------------------------------------------------------------------- Figure 3: the gallery

def gallery(x: Tensor, ranks) -> dict[int, Tensor]:
    """Rank-k images of ``x`` for every rank of ``ranks`` (ranks above ``min(H, W)`` are capped).

    All ranks come from one SVD per channel (:func:`rankcore.rank.rank_sweep`).
    """
    w = max_rank(x)
    if isinstance(ranks, (list, tuple)):
        bad = [k for k in ranks if isinstance(k, bool) or not isinstance(k, int)]
        if bad:
            raise TypeError(f"ranks must hold ints, got {bad[0]!r} ({type(bad[0]).__name__})")
        ranks = sorted({min(k, w) for k in ranks})
    return dict(rank_sweep(x, ranks=parse_ranks(ranks, w), clamp=True))


def figure3(images: dict[int, Tensor]):
    """The gallery of :func:`gallery` in one row (Figure 3)."""
    return image_grid(list(images.values()), titles=[f"rank {k}" for k in images],
                      ncols=min(4, len(images)),
                      suptitle="Figure 3: low-rank approximations of the same image")


def error_table(x: Tensor, images: dict[int, Tensor]) -> "pandas.DataFrame":  # noqa: F821
    """Relative error ``||x_k - x|| / ||x||`` and PSNR (dB) of each rank-k image against ``x``."""
    import pandas as pd
    return pd.DataFrame([{"rank": k, "relative_error": float((xk - x).norm() / x.norm()),
                          "psnr_db": _psnr(xk, x)} for k, xk in images.items()])


@rule("fig3", kind=KIND)
def fig3_verdict(psnr_db: Sequence[float]) -> str:
    """Figure 3's point, "quality rises with rank": PSNR strictly increasing in rank."""
    v = [float(p) for p in psnr_db]
    return "reproduced" if all(b > a for a, b in zip(v, v[1:])) else "differs"


# ----------------------------------------------------------------- spectra of photographs

def spectra(images: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values (mean over channels) and cumulative energy of images ``(N, C, H, W)``.

    Returns:
        tuple: ``s`` ``(N, w)`` descending and ``energy`` ``(N, w)``, the fraction of
        ``sum_j sigma_j^2`` kept by the rank-k image, ``k = 1 .. w``.
    """
    s = singular_values(images).mean(dim=1)                       # (N, w)
    energy = (s ** 2).cumsum(-1) / (s ** 2).sum(-1, keepdim=True)
    return s, energy


def figure_spectra(names: Sequence[str], s: Tensor, energy: Tensor):
    """Singular values (log scale) and the energy kept per rank, one line per image."""
    import matplotlib.pyplot as plt
    import numpy as np
    w = s.shape[-1]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=figsize(2, 1, aspect=0.9))
    for name, sv, e in zip(names, s, energy):
        a1.semilogy(np.arange(1, w + 1), sv.numpy(), label=name, lw=1.2)
        a2.plot(np.arange(1, w + 1), e.numpy(), lw=1.2)
    a1.set(xlabel="index j", ylabel="singular value (mean over RGB)", title="singular values")
    a2.set(xlabel="rank k", ylabel="fraction of energy kept",
           title="energy of the rank-k image", ylim=(0.8, 1.001))
    a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def energy_ranks(names: Sequence[str], energy: Tensor,
                 levels: Sequence[float] = (0.99, 0.999)) -> "pandas.DataFrame":  # noqa: F821
    """The smallest rank whose image keeps each fraction of ``levels`` of the energy."""
    import pandas as pd
    table = {"image": list(names)}
    for level in levels:
        table[f"rank for {100 * level:g}% energy"] = [int((e < level).sum()) + 1 for e in energy]
    return pd.DataFrame(table)


# ----------------------------------------------------------- Figure 5: equal L2 distortion

def equal_l2(x: Tensor, l2: float, seed: int = 0) -> dict:
    """Figure 5: uniform noise of norm ``l2`` and a black patch of the same realised norm."""
    noisy = uniform_noise(x, l2, seed=seed)
    l2_noise = (noisy - x).norm().item()
    patched = square_patch(x, l2_noise, colour=0.0)
    return {"noisy": noisy, "patched": patched, "l2_noise": l2_noise,
            "l2_patch": (patched - x).norm().item()}


def figure5(x: Tensor, d: dict):
    """Original, noisy and patched images with their L2 distortions (Figure 5)."""
    return image_grid([x, d["noisy"], d["patched"]], ncols=3, size=3,
                      titles=["original", f"uniform noise, L2 = {d['l2_noise']:.2f}",
                              f"patch, L2 = {d['l2_patch']:.2f}"],
                      suptitle="Figure 5: identical L2 distortions")


@rule("fig5", kind=KIND)
def fig5_verdict(l2_noise: float, l2_patch: float, tol: float = L2_TOLERANCE) -> str:
    """Reproduced when the two L2 norms differ by less than ``tol``."""
    return "reproduced" if abs(l2_noise - l2_patch) < tol else "differs"


# --------------------------------------------------- Figure 9: reverse rank truncation

def reverse_truncation(x: Tensor, removed: int) -> dict:
    """Remove the ``removed`` largest singular values of every channel of ``x`` (Figure 9).

    Returns:
        dict: ``high`` (the signed residual, :func:`rankcore.rank.high_rank`), ``taken``
        (what was removed, the rank-``removed`` image) and ``energy_left``
        (``||high||^2 / ||x||^2``, a fraction).
    """
    high = high_rank(x, removed)
    return {"high": high, "taken": x - high, "removed": removed,
            "energy_left": float((high ** 2).sum() / (x ** 2).sum())}


def figure9(x: Tensor, result: dict, source: str):
    """Rows of original, residual and difference, the signed ones rescaled (Figure 9).

    Shared by chapters 01 (sample photos or CIFAR-10) and 04 (the CIFAR-10 training images).
    """
    k, n = result["removed"], x.shape[0]
    trios = [im for trio in zip(x, result["high"], result["taken"]) for im in trio]
    return image_grid(trios, ncols=3, size=1.9, rescale=[False, True, True] * n,
                      titles=["original", f"{k} largest removed", "difference"] * n,
                      suptitle=f"Figure 9: {source} images without their {k} largest "
                               "singular values")


@rule("fig9", kind=KIND)
def fig9_verdict(energy_left: float, limit: float = FIG9_MAX_ENERGY_LEFT) -> str:
    """Reproduced ("largely imperceptible") when less than ``limit`` of the energy is left."""
    return "reproduced" if energy_left < limit else "differs"


# ----------------------------------------------------------------------------- summary

def summary_markdown(*, n_photos: int, errors, energy_table, fig5: dict, fig9: dict,
                     fig9_source: str, verdicts: dict[str, str]) -> str:
    """The chapter's summary, written from this run's numbers.

    Args:
        n_photos (int): photographs whose spectra were measured.
        errors (DataFrame): :func:`error_table` of the gallery.
        energy_table (DataFrame): :func:`energy_ranks`.
        fig5 (dict): :func:`equal_l2`'s result.
        fig9 (dict): :func:`reverse_truncation`'s result.
        fig9_source (str): the data set of Figure 9's images.
        verdicts (dict): ``{"fig2": ..., "fig3": ..., "fig5": ..., "fig9": ...}``.
    """
    e = errors.set_index("rank")["psnr_db"]
    col99 = [c for c in energy_table.columns if c.startswith("rank for 99%")]
    r99 = energy_table[col99[0]] if col99 else None
    lines = [
        f"- **Figure 2** ({verdicts['fig2']}): truncating each colour channel and stacking "
        "them gives the same image as truncating the stack.",
        f"- **Figure 3** ({verdicts['fig3']}): PSNR against the original is "
        + ", ".join(f"{p:.1f} dB at rank {k}" if p != float("inf") else
                    f"the original itself at rank {k}" for k, p in e.items()) + ".",
    ]
    if r99 is not None:
        lines.append(f"- **Spectra**: on {n_photos} photographs, 99% of the energy sits in the "
                     f"first {int(r99.min())} to {int(r99.max())} singular values per channel.")
    lines += [
        f"- **Figure 5** ({verdicts['fig5']}): the noise has L2 norm {fig5['l2_noise']:.3f} and "
        f"the patch {fig5['l2_patch']:.3f}.",
        f"- **Figure 9** ({verdicts['fig9']}): without their {fig9['removed']} largest singular "
        f"values, {fig9_source} images keep {100 * fig9['energy_left']:.1f}% of their energy "
        f"(rule: under {100 * FIG9_MAX_ENERGY_LEFT:g}%).",
    ]
    return "\n".join(lines)
