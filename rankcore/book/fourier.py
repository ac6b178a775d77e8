"""Fourier low-pass filtering and its rank (Section 9.1 of the paper).

The paper states that an image low-pass filtered with a ``k x k`` window in the 2-D Fourier
domain has rank at most ``k``. Its proof models the transform as one-sided, ``F(X) = W X``.
The 2-D DFT is two-sided, ``F(X) = W X W^T``; a rectangular window is separable, mask
``a b^T``, so the filtered image is ``X~ = P_a X P_b^T`` with ``P_a = W^{-1} diag(a) W`` a
projection of rank ``|a|``: the bound holds for the 2-D transform too, as long as the kept
frequencies form the window (a complex result). An image is real, though: keeping the
real part adds the mirrored frequencies ``-a``, so ``rank <= |a U -a|``, which is ``k`` for
a conjugate-symmetric window (odd ``k`` centred on DC) and ``k + 1`` for an even ``k``.
:func:`rank_bound_table` measures all of this.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..rank import check_images, low_rank, max_rank
from ..torch_utils import top_k

__all__ = ["frequency_window", "low_pass", "numerical_rank", "rank_bound_table",
           "low_rank_params", "low_pass_params", "window_for_budget", "psnr",
           "budget_comparison", "plot_budget"]


def _check_size(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{name} must be a non-negative int, got {type(k).__name__} {k!r}")
    if k < 0:
        raise ValueError(f"{name} must be a non-negative int, got {k!r}")
    return k


def frequency_window(n: int, k: int, symmetric: bool = False, device=None) -> Tensor:
    """Which of the ``n`` DFT frequencies a centred low-pass window of width ``k`` keeps.

    Args:
        n (int): signal length (image height or width), ``>= 1``.
        k (int): window width in frequencies, ``>= 0``; ``k >= n`` keeps everything.
        symmetric (bool, optional): also keep the mirror ``-f`` of every kept ``f``, so the
            window is conjugate-symmetric and a real image stays real. For an even ``k`` the
            centred window ``-k/2 .. k/2 - 1`` then gains ``+k/2`` (``k + 1`` frequencies).
            Default: ``False``.
        device (torch.device, optional): where the mask lives. Default: CPU.

    Returns:
        Tensor: boolean mask of shape ``(n,)`` in ``torch.fft.fft`` order (DC first).
    """
    n, k = _check_size(n, "n"), _check_size(k)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    f = torch.fft.fftfreq(n, d=1.0 / n, device=device).round().long()  # integer frequencies
    lo, hi = -(k // 2), k - k // 2 - 1           # centred on DC: odd k symmetric, even k not
    keep = (f >= lo) & (f <= hi)
    if symmetric:
        keep = keep | ((-f >= lo) & (-f <= hi))
    if k >= n:
        keep[:] = True
    return keep


def low_pass(x: Tensor, k: int, symmetric: bool = False, real: bool = True,
             axes: str = "both") -> Tensor:
    """Keep a centred ``k x k`` window of the 2-D DFT of every channel (Section 9.1).

    Args:
        x (Tensor): images ``(..., H, W)``, float, any device.
        k (int): window width in frequencies per axis, ``>= 0``.
        symmetric (bool, optional): conjugate-symmetric window (see
            :func:`frequency_window`). Default: ``False``.
        real (bool, optional): return the real part (an image), else the complex result.
            Default: ``True``.
        axes (str, optional): ``"both"`` filters rows and columns (the 2-D DFT
            ``W X W^T``); ``"rows"`` filters only along the height, the one-sided ``W X`` of
            the paper's proof. Default: ``"both"``.

    Returns:
        Tensor: ``x``'s shape; ``x``'s dtype when ``real``, else the matching complex dtype.
    """
    check_images(x)
    k = _check_size(k)
    if axes not in ("both", "rows"):
        raise ValueError(f"axes={axes!r}; expected 'both' or 'rows'")
    h, w = x.shape[-2:]
    if h == 0 or w == 0:
        raise ValueError(f"x must have images of at least 1 x 1 pixels, got shape {tuple(x.shape)}")
    if x.numel() == 0:                            # an empty batch: nothing to filter
        return x.clone() if real else x.to(torch.complex128 if x.dtype == torch.float64
                                            else torch.complex64)
    work = x if x.dtype == torch.float64 else x.float()
    rows = frequency_window(h, k, symmetric, x.device)
    cols = (frequency_window(w, k, symmetric, x.device) if axes == "both"
            else torch.ones(w, dtype=torch.bool, device=x.device))
    mask = rows[:, None] & cols[None, :]          # (H, W), separable: a b^T
    y = torch.fft.ifft2(torch.fft.fft2(work) * mask)
    return y.real.to(x.dtype) if real else y


def numerical_rank(x: Tensor, rtol: float | None = None) -> Tensor:
    """Rank of every matrix ``(..., H, W)`` (real or complex), counted in float64.

    Args:
        x (Tensor): matrices ``(..., H, W)``.
        rtol (float, optional): singular values below ``rtol * sigma_max`` count as zero.
            Default: ``max(H, W) * 1e-10``, far above float64 round-off of a filtered
            image and far below any singular value that carries image content.

    Returns:
        Tensor: integer ranks of shape ``x.shape[:-2]``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor of matrices (..., H, W), got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"x must be a tensor of matrices (..., H, W), got shape {tuple(x.shape)}")
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float))
                             or not 0 <= rtol < 1):
        raise ValueError(f"rtol={rtol!r}; expected None or a number in [0, 1)")
    work = x.to(torch.complex128 if x.is_complex() else torch.float64)
    tol = rtol if rtol is not None else max(x.shape[-2:]) * 1e-10
    s = torch.linalg.svdvals(work)                # (..., min(H, W)), descending
    return (s > tol * s[..., :1].clamp_min(torch.finfo(torch.float64).tiny)).sum(-1)


def rank_bound_table(x: Tensor, ks) -> "pandas.DataFrame":  # noqa: F821
    """Measure the rank of low-pass filtered images against the paper's bound ``k``.

    Args:
        x (Tensor): images ``(..., H, W)``; computed in float64.
        ks (iterable of int): window widths to test.

    Returns:
        pandas.DataFrame with one row per ``(k, variant)``: ``k``, ``variant``, ``kept`` (the
        number of distinct frequencies per axis the result can contain, kept or mirrored),
        ``rank`` (the largest over images and channels), ``image_rank`` (rank of the
        unfiltered image), ``holds`` (``rank <= k``, the paper's bound), ``bound`` (the
        refined bound: ``min(kept, image_rank)``, or ``min(k + 1, image_rank + 2)`` for the real
        part of an even window, see below) and ``at_bound``
        (``rank == bound``: the refined bound is tight).
    """
    import pandas as pd

    x = x.to(torch.float64)
    h, w = x.shape[-2:]
    image_rank = int(numerical_rank(x).max())
    # name: (low_pass kwargs, frequencies per axis the result can contain, rank added to
    # the image's by an even window). The real part of an even window is the mean of
    # P_a X P_b^T and its mirror; a and -a share all but one frequency (p, p'), so it is
    # P_c X (...)^T (rank <= rank X) plus terms whose columns lie in span(p, p'): + 2.
    variants = {
        "2-D window, complex": (dict(real=False), lambda k: k, 0),
        "2-D window, real part": (dict(), lambda k: k + (k % 2 == 0), 2),
        "2-D symmetric window": (dict(symmetric=True), lambda k: k + (k % 2 == 0), 0),
        "one-sided W X (proof), complex": (dict(real=False, axes="rows"), lambda k: k, 0),
    }
    rows = []
    for k in ks:
        k = _check_size(k)
        for name, (kwargs, kept, extra) in variants.items():
            r = int(numerical_rank(low_pass(x, k, **kwargs)).max())
            n_kept = min(kept(k), h, w)
            bound = min(n_kept, image_rank + (extra if k % 2 == 0 else 0))
            rows.append({"k": k, "variant": name, "kept": n_kept, "rank": r,
                         "image_rank": image_rank, "holds": r <= k, "bound": bound,
                         "at_bound": r == bound})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- equal parameter budget

def low_rank_params(k: int, h: int, w: int) -> int:
    """Numbers stored for a rank-k channel: ``k`` columns of U and V plus ``k`` singular values."""
    k, h, w = _check_size(k), _check_size(h, "h"), _check_size(w, "w")
    return k * (h + w + 1)


def low_pass_params(k: int) -> int:
    """Real numbers behind a conjugate-symmetric ``k x k`` window of a real channel: ``k^2``.

    Half of the ``k^2`` complex coefficients mirror the other half, so ``k^2`` reals suffice.
    """
    return k * k


def window_for_budget(rank: int, h: int, w: int) -> int:
    """The largest odd window ``k`` (conjugate-symmetric) with ``k^2 <= low_rank_params(rank)``.

    Capped at the largest odd width that fits the image; rank 0 gives window 0.
    """
    rank = _check_size(rank, "rank")
    if _check_size(h, "h") < 1 or _check_size(w, "w") < 1:
        raise ValueError(f"h={h}, w={w}; expected an image side of at least 1")
    if rank == 0:
        return 0
    k = math.isqrt(low_rank_params(rank, h, w))
    k -= (k % 2 == 0)
    top = min(h, w) - (min(h, w) % 2 == 0)
    return min(k, top)


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of images in ``[0, 1]``, one value per image.

    Args:
        x, ref (Tensor): ``(N, C, H, W)``, same shape.

    Returns:
        Tensor: ``(N,)`` float32; ``inf`` where ``x == ref``.
    """
    for name, v in (("x", x), ("ref", ref)):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), got {type(v).__name__}")
    if x.shape != ref.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but ref has {tuple(ref.shape)}; "
                         "expected the same shape")
    mse = (x.float() - ref.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)



def budget_comparison(x: Tensor, ranks, model=None, progress: bool = True) -> "pandas.DataFrame":  # noqa: F821
    """Low-rank against low-pass approximations that store the same number of values.

    For each rank ``r`` the low-rank image keeps ``r`` singular triplets per channel
    (:func:`low_rank_params`) and the low-pass image the conjugate-symmetric window
    :func:`window_for_budget` ``(r)``, which needs no more numbers.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in ``[0, 1]``.
        ranks (iterable of int): ranks to compare, each in ``[0, min(H, W)]``.
        model (nn.Module, optional): classifier on ``[0, 1]`` images (as
            :func:`rankcore.torch_utils.top_k` takes it); adds ``agreement``, the
            fraction of images whose top-1 class matches the full image's. Default: ``None``.
        progress (bool, optional): tqdm bar over ranks. Default: ``True``.

    Returns:
        pandas.DataFrame with one row per ``(rank, method)``: ``rank``, ``method``
        (``"low-rank"`` or ``"low-pass"``), ``window`` (low-pass width), ``params`` (values
        stored per channel), ``signal_rank`` (largest rank of an approximated channel),
        ``psnr`` (mean dB) and, with a model, ``agreement`` (in ``[0, 1]``).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    check_images(x)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ranks = [_check_size(r, "ranks item") for r in ranks]
    if any(r > max_rank(x) for r in ranks):
        raise ValueError(f"ranks={ranks}; expected each in [0, {max_rank(x)}]")
    if model is not None:
        full = top_k(model, x, 1)[1][:, 0]
    rows = []
    for r in tqdm(ranks, desc="equal budget", disable=not progress):
        k = window_for_budget(r, h, w)
        # The rank is measured before clamping to [0, 1], which is not linear.
        pairs = (("low-rank", low_rank(x, r), low_rank_params(r, h, w)),
                 ("low-pass", low_pass(x, k, symmetric=True), low_pass_params(k)))
        for method, raw, params in pairs:
            approx = raw.clamp(0, 1)
            row = {"rank": r, "method": method, "window": k, "params": params,
                   "signal_rank": int(numerical_rank(raw, rtol=1e-5).max()),
                   "psnr": float(psnr(approx, x).mean())}
            if model is not None:
                top1 = top_k(model, approx, 1)[1][:, 0]
                row["agreement"] = float((top1 == full).float().mean())
            rows.append(row)
    return pd.DataFrame(rows)


def plot_budget(df):
    """PSNR (and model agreement, when present) against the budget, per method; a figure."""
    import matplotlib.pyplot as plt

    cols = ["psnr"] + (["agreement"] if "agreement" in df else [])
    fig, axes = plt.subplots(1, len(cols), figsize=(5 * len(cols), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        for method, g in df.groupby("method", sort=False):
            ax.plot(g["params"], g[col], "o-", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("values stored per channel")
        ax.set_ylabel({"psnr": "PSNR (dB)", "agreement": "top-1 agreement with full image"}[col])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
