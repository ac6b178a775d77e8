"""Saliency maps: Rank Integrated Gradients (equation 3 of the paper) and its baselines.

Every method takes a model that maps ``[0, 1]`` images ``(N, C, H, W)`` to class logits,
an optional ``target`` (default: the top class on the full-rank image) and returns
attributions, computed in bounded batches (``internal_batch_size`` images per
forward/backward pass)::

    rankcore.rig(model, x)                       # equation 3, (N, H, W)
    rankcore.rank_ig(model, x)                   # IG along the rank path, (N, C, H, W)
    attribution.vanilla_gradient(model, x)       # Simonyan et al. 2014, (N, H, W)
    attribution.integrated_gradients(model, x)   # Sundararajan et al. 2017, (N, C, H, W)
    attribution.smoothgrad(model, x)             # Smilkov et al. 2017, (N, H, W)
    attribution.blur_ig(model, x)                # Xu et al. 2020, (N, C, H, W)
    attribution.deletion_insertion(model, x, s)  # Petsiuk et al. 2018 curves and areas

The model must be in eval mode (batch norm in train mode would mix the images of a batch).
Gradients of the two rank methods are taken with respect to each rank-k image ``x_k``
treated as the input (equation 3): the SVD is never differentiated.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import _io
from .rank import rank_blocks

#: What a method differentiates: the target's softmax probability (the paper's f) or its logit.
OUTPUTS = ("prob", "logit")
#: How a ``(N, C, H, W)`` attribution becomes a ``(N, H, W)`` map; ``None`` keeps channels.
REDUCTIONS = ("max", "abs_max", "sum", "abs_sum", None)


# --------------------------------------------------------------------------- validation

def _check_images(x: Any, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0 or math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} must hold images in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")
    return x


def _check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {tuple(choices)}")


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _check_call(x: Any, output: str, channel_reduce: Any = None, **positive: Any) -> None:
    """The checks every public method shares: images, output, reduction, positive ints."""
    _check_images(x)
    _check_choice("output", output, OUTPUTS)
    _check_choice("channel_reduce", channel_reduce, REDUCTIONS)
    for name, value in positive.items():
        _check_positive_int(name, value)


def _resolve_target(model: Callable, x: torch.Tensor, target: Any) -> torch.Tensor:
    """``target`` as a ``(N,)`` long tensor on ``x.device``, checked against the class count."""
    if getattr(model, "training", False):
        warnings.warn("model is in training mode: batch norm and dropout make the saliency "
                      "depend on the batch; call model.eval() first", stacklevel=3)
    with torch.no_grad():
        logits = model(x[:1])
    if logits.dim() != 2:
        raise ValueError(f"model must return logits of shape (N, classes); got shape "
                         f"{tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if target is None:
        with torch.no_grad():
            return torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    t = torch.as_tensor(target, device=x.device)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"target must hold integer class indices; got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(len(x))
    if t.numel() != len(x):
        raise ValueError(f"target must be an int or hold one class per image ({len(x)}); "
                         f"got {t.numel()} values")
    if int(t.min()) < 0 or int(t.max()) >= n_classes:
        raise ValueError(f"target must lie in [0, {n_classes - 1}] (the model has {n_classes} "
                         f"classes); got values in [{int(t.min())}, {int(t.max())}]")
    return t.clone()


# --------------------------------------------------------------------------- helpers

def _score(model: Callable, x: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """The target's probability or logit for each image: ``(B,)``."""
    logits = model(x)
    if output == "prob":
        logits = logits.softmax(1)
    return logits.gather(1, target[:, None])[:, 0]


def _grad(model: Callable, x: torch.Tensor, target: torch.Tensor, output: str):
    """Gradient of the target's score with respect to ``x`` treated as a leaf input.

    Returns ``(grad (B, C, H, W), score (B,))``; nothing is accumulated on the model.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = _score(model, x, target, output)
        g, = torch.autograd.grad(s.sum(), x)
    return g, s.detach()


def reduce_channels(a: torch.Tensor, how: str | None) -> torch.Tensor:
    """Collapse the channel axis of an attribution ``(..., C, H, W)`` into a map ``(..., H, W)``.

    Args:
        a (Tensor): attributions, channel axis third from last.
        how (str or None): ``"max"`` (signed maximum, the paper's equation 3), ``"abs_max"``
            (Simonyan et al.'s saliency), ``"sum"`` (keeps completeness), ``"abs_sum"``, or
            ``None`` to return ``a`` unchanged.
    """
    _check_choice("channel_reduce", how, REDUCTIONS)
    if how is None:
        return a
    if how == "max":
        return a.amax(-3)
    if how == "abs_max":
        return a.abs().amax(-3)
    if how == "sum":
        return a.sum(-3)
    return a.abs().sum(-3)


def _image_groups(n: int, internal_batch_size: int):
    """Image slices and how many path points fit beside them in one pass."""
    size = min(n, internal_batch_size)
    per_pass = max(1, internal_batch_size // size)
    return [slice(i, i + size) for i in range(0, n, size)], per_pass


def _forward(model: Callable, output: str) -> Callable:
    """The model as captum sees it: images -> probabilities (or logits)."""
    if output == "logit":
        return model
    return lambda inp: model(inp).softmax(1)


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Method:
    """An attribution method for comparisons: its function and how its output ranks pixels."""
    name: str
    fn: Callable
    reduce: str            # channel reduction that turns its output into a pixel ranking
    cite: str


#: The paper's method and its baselines by short name, filled in by :func:`register`.
METHODS: dict[str, Method] = {}


def register(name: str, reduce: str, cite: str) -> Callable:
    """Record an attribution function in :data:`METHODS` under ``name``."""
    def wrap(fn: Callable) -> Callable:
        METHODS[name] = Method(name, fn, reduce, cite)
        return fn
    return wrap


# --------------------------------------------------------------------------- RIG (equation 3)

def _rig_ranks(ranks: Any, w: int) -> tuple[list[int], list[float]]:
    """Ranks to visit and their weights ``(w - k) / w * gap``.

    With every rank 1..w the gap is 1 and this is equation 3 exactly. A stride ``s`` or a
    subset is a Riemann sum: each chosen rank stands for the ``gap`` ranks between it and
    the previous chosen one. Rank ``w`` has weight 0 and is skipped.
    """
    if ranks is None:
        ks = list(range(1, w + 1))
    elif isinstance(ranks, int) and not isinstance(ranks, bool):
        if ranks < 1:
            raise ValueError(f"ranks as a stride must be >= 1; got {ranks}")
        ks = list(range(ranks, w + 1, ranks))
    else:
        ks = sorted({int(k) for k in ranks})
        if not ks or ks[0] < 1 or ks[-1] > w:
            raise ValueError(f"ranks must be a stride or a non-empty subset of 1..{w} "
                             f"(w = min(H, W)); got {list(ranks)!r}")
    gaps = [k - prev for prev, k in zip([0] + ks[:-1], ks)]
    kept = [(k, (w - k) / w * g) for k, g in zip(ks, gaps) if k < w]
    return [k for k, _ in kept], [wt for _, wt in kept]


def _rig_blocks(model, x, target, ks, weights, output, internal_batch_size, channel_reduce,
                progress) -> Iterator[tuple[slice, list[int], torch.Tensor, torch.Tensor]]:
    """Yield ``(images, ranks, x_k (n, B, C, H, W), weighted reduced gradients (n, B, ...))``."""
    weight_of = dict(zip(ks, weights))
    groups, per_pass = _image_groups(len(x), internal_batch_size)
    bar = tqdm(total=len(groups) * len(ks), desc="RIG", unit="rank", disable=not progress)
    for sl in groups:
        xg, tg = x[sl], target[sl]
        # one SVD per image and channel; blocks of per_pass ranks share a forward pass
        for kb, xs in rank_blocks(xg, ranks=ks, chunk=per_pass, clamp=True):
            g, _ = _grad(model, xs.flatten(0, 1), tg.repeat(len(kb)), output)
            g = reduce_channels(g.view_as(xs), channel_reduce)           # (n, B, [C,] H, W)
            wt = torch.tensor([weight_of[k] for k in kb], dtype=g.dtype, device=g.device)
            yield sl, list(kb), xs, g * wt.view(-1, *[1] * (g.dim() - 1))
            bar.update(len(kb))
    bar.close()


@register("rig", reduce="max", cite="Jere et al., equation 3")
def rig(model: Callable, x: torch.Tensor, target: Any = None, ranks: Any = None,
        output: str = "prob", internal_batch_size: int = 16,
        channel_reduce: str | None = "max", progress: bool = False) -> torch.Tensor:
    r"""Rank Integrated Gradients, equation 3 of the paper.

    .. math:: RIG(x, f, i) = \sum_{k=1}^{w} \frac{w-k}{w} \max_c
              \frac{\partial f(x_k)_i}{\partial x_k}

    where ``x_k`` is the rank-k image (per channel truncated SVD, clamped to [0, 1]),
    ``w = min(H, W)``, ``f`` the softmax probability and ``i`` the target. The gradient is
    taken with respect to ``x_k`` as the input; one SVD per image serves every rank.

    Args:
        model (callable): maps ``[0, 1]`` images ``(N, C, H, W)`` to logits ``(N, classes)``,
            in eval mode, on the same device as ``x``.
        x (Tensor): images ``(N, C, H, W)`` in ``[0, 1]``; dimension 0 indexes examples.
        target (int, sequence or Tensor, optional): class per image (or one for all).
            Default: the top class on the full-rank image.
        ranks (int, sequence or None, optional): ``None`` uses every rank ``1..w``
            (exact). An int ``s`` visits ranks ``s, 2s, ...`` with weights multiplied by
            ``s``; a subset weights each rank by its gap to the previous one (a Riemann
            sum of equation 3). Default: ``None``.
        output (str, optional): ``"prob"`` (the paper) or ``"logit"``. Default: ``"prob"``.
        internal_batch_size (int, optional): images per forward/backward pass (ranks of
            the same image are batched together). Default: 16.
        channel_reduce (str or None, optional): applied to each rank's gradient before
            the sum; ``"max"`` is the paper's, ``None`` returns ``(N, C, H, W)``.
            Default: ``"max"``.
        progress (bool, optional): show a progress bar. Default: ``False``.

    Returns:
        Tensor: saliency ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``), on
        ``x.device``.

    Examples::

        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
        ...                           torch.nn.LazyLinear(10)).eval()
        >>> saliency = rig(net, torch.rand(2, 3, 32, 32))   # (2, 32, 32)
    """
    _check_call(x, output, channel_reduce, internal_batch_size=internal_batch_size)
    target = _resolve_target(model, x, target)
    ks, weights = _rig_ranks(ranks, min(x.shape[-2:]))
    total = reduce_channels(torch.zeros_like(x), channel_reduce)
    for sl, _, _, terms in _rig_blocks(model, x, target, ks, weights, output,
                                       internal_batch_size, channel_reduce, progress):
        total[sl] += terms.sum(0)
    return total


def rig_terms(model: Callable, x: torch.Tensor, ranks: Sequence[int], target: Any = None,
              output: str = "prob", channel_reduce: str | None = "max",
              internal_batch_size: int = 16) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """The pieces RIG adds up (the paper's Figure 10): rank-k images and weighted gradients.

    Args:
        model, x, target, output, channel_reduce, internal_batch_size: as in :func:`rig`.
        ranks (sequence of int): ranks to show, each in ``1..w - 1``; unlike :func:`rig`
            each term carries only ``(w - k) / w`` (no gap factor).

    Returns:
        tuple: ``(ks, images (len(ks), N, C, H, W), terms (len(ks), N, H, W))`` where
        ``terms[j]`` is ``(w - k) / w`` times the channel-reduced gradient at rank ``ks[j]``.
    """
    _check_images(x)
    w = min(x.shape[-2:])
    ks = sorted({int(k) for k in ranks})
    if not ks or ks[0] < 1 or ks[-1] >= w:
        raise ValueError(f"ranks must be a non-empty subset of 1..{w - 1}; got {list(ranks)!r}")
    target = _resolve_target(model, x, target)
    images = torch.empty(len(ks), *x.shape, dtype=x.dtype, device=x.device)
    terms = reduce_channels(torch.empty_like(images), channel_reduce)
    weights = [(w - k) / w for k in ks]
    for sl, kb, xs, t in _rig_blocks(model, x, target, ks, weights, output,
                                     internal_batch_size, channel_reduce, False):
        j = ks.index(kb[0])
        images[j:j + len(kb), sl], terms[j:j + len(kb), sl] = xs, t
    return ks, images, terms


# --------------------------------------------------------------------------- path integrals

def _integrate_path(model, blocks: Iterable[torch.Tensor], target, output):
    """Trapezoid rule for the path integral of grad f along ordered points.

    ``blocks`` yields consecutive path points ``(P, B, C, H, W)``. Returns
    ``(attributions (B, C, H, W), f(first point) (B,), f(last point) (B,))``.
    """
    attr = prev_x = prev_g = f_first = f_last = None
    for xs in blocks:
        g, f = _grad(model, xs.flatten(0, 1), target.repeat(len(xs)), output)
        g, f = g.view_as(xs), f.view(len(xs), -1)
        if prev_x is None:
            attr, f_first, pts, grads = torch.zeros_like(xs[0]), f[0], xs, g
        else:
            pts, grads = torch.cat([prev_x[None], xs]), torch.cat([prev_g[None], g])
        # (P - 1, B, C, H, W): mean gradient on each segment times the segment's step
        attr += (0.5 * (grads[1:] + grads[:-1]) * (pts[1:] - pts[:-1])).sum(0)
        prev_x, prev_g, f_last = pts[-1], grads[-1], f[-1]
    return attr, f_first, f_last


def _path_ranks(ranks: Any, w: int) -> list[int]:
    """Ranks 0 = k_0 < ... < k_m = w of the rank path (a stride or subset gets both ends)."""
    if ranks is None:
        return list(range(w + 1))
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        if ranks < 1:
            raise ValueError(f"ranks as a stride must be >= 1; got {ranks}")
        return sorted(set(range(0, w + 1, ranks)) | {w})
    ks = {int(k) for k in ranks}
    if any(k < 0 or k > w for k in ks):
        raise ValueError(f"ranks must lie in 0..{w} (w = min(H, W)); got {sorted(ks)}")
    return sorted(ks | {0, w})


def _run_path(model, x, target, output, internal_batch_size, n_points, make_blocks, desc,
              progress):
    """Integrate along a path for each image group; ``make_blocks(xg, per_pass)`` yields points."""
    groups, per_pass = _image_groups(len(x), internal_batch_size)
    attr, gap = torch.zeros_like(x), torch.zeros(len(x), dtype=x.dtype, device=x.device)
    bar = tqdm(total=len(groups) * n_points, desc=desc, unit="point", disable=not progress)
    for sl in groups:
        def counted(blocks):
            for xs in blocks:
                yield xs
                bar.update(len(xs))
        a, f0, f1 = _integrate_path(model, counted(make_blocks(x[sl], per_pass)), target[sl],
                                    output)
        attr[sl], gap[sl] = a, a.flatten(1).sum(1) - (f1 - f0)
    bar.close()
    return attr, gap


def _finish(attr, gap, channel_reduce, return_gap):
    attr = reduce_channels(attr, channel_reduce)
    return (attr, gap) if return_gap else attr


def _refine(blocks: Iterable[torch.Tensor], substeps: int) -> Iterator[torch.Tensor]:
    """Insert ``substeps - 1`` evenly spaced points between consecutive path points."""
    prev = None
    for xs in blocks:
        pts = []
        for p in xs:
            if prev is not None:
                pts += [prev + (j / substeps) * (p - prev) for j in range(1, substeps)]
            pts.append(p)
            prev = p
        yield torch.stack(pts)


@register("rank_ig", reduce="sum", cite="rank-path IG (beyond the paper)")
def rank_ig(model: Callable, x: torch.Tensor, target: Any = None, ranks: Any = None,
            output: str = "prob", internal_batch_size: int = 16, substeps: int = 1,
            channel_reduce: str | None = None, return_gap: bool = False,
            progress: bool = False):
    r"""Integrated gradients along the rank path (beyond the paper).

    .. math:: A(x) = \sum_{j=1}^{m} \tfrac12\left(\nabla f(x_{k_j}) + \nabla f(x_{k_{j-1}})
              \right) \odot (x_{k_j} - x_{k_{j-1}})

    with ``0 = k_0 < ... < k_m = w`` and ``x_0`` the black rank-0 image. Per pixel and
    channel; it satisfies completeness, ``sum(A) = f(x) - f(x_0)``, up to the path
    discretisation (trapezoid rule between consecutive ranks). The path is piecewise
    linear through the rank images; ``substeps > 1`` adds points on each segment, which
    shrinks the completeness gap (the first segment, black to rank 1, is the longest).

    Args:
        model, x, target, output, internal_batch_size, progress: as in :func:`rig`.
        ranks (int, sequence or None, optional): ``None`` visits every rank ``0..w``; an
            int is a stride, a sequence a subset (0 and ``w`` are always added).
            Default: ``None``.
        substeps (int, optional): path points per rank interval. Default: 1.
        channel_reduce (str or None, optional): see :func:`reduce_channels`; ``"sum"``
            keeps completeness. Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return the completeness gap
            ``sum(A) - (f(x) - f(x_0))`` per image, ``(N,)``. Default: ``False``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap ``(N,)`` if ``return_gap``.
    """
    _check_call(x, output, channel_reduce, internal_batch_size=internal_batch_size,
                substeps=substeps)
    target = _resolve_target(model, x, target)
    ks = _path_ranks(ranks, min(x.shape[-2:]))

    def make(xg, per_pass):
        chunk = max(1, per_pass // substeps)
        return _refine((xs for _, xs in rank_blocks(xg, ranks=ks, chunk=chunk, clamp=True)),
                       substeps)

    attr, gap = _run_path(model, x, target, output, internal_batch_size,
                          (len(ks) - 1) * substeps + 1, make, "rank IG", progress)
    return _finish(attr, gap, channel_reduce, return_gap)


def _gaussian_matrix(n: int, sigma: float, dtype, device) -> torch.Tensor:
    """``(n, n)`` matrix that blurs a length-n signal with a Gaussian of std ``sigma`` pixels.

    Symmetric (mirror) boundaries are folded into the matrix, so any sigma works, even one
    wider than the image, and blurring an image is two small matrix products.
    """
    if sigma <= 0:
        return torch.eye(n, dtype=dtype, device=device)
    radius = int(math.ceil(4 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=device)
    kernel = torch.exp(-0.5 * (offsets.to(torch.float64) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    src = torch.arange(n, device=device)[:, None] + offsets[None]            # (n, 2r + 1)
    src = src % (2 * n)
    src = torch.where(src >= n, 2 * n - 1 - src, src)                         # mirror
    g = torch.zeros(n, n, dtype=torch.float64, device=device)
    g.scatter_add_(1, src, kernel.expand(n, -1).contiguous())
    return g.to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images ``(..., H, W)`` with an isotropic Gaussian of std ``sigma`` pixels.

    ``sigma = 0`` returns ``x`` unchanged. Mirror boundaries (as ``scipy.ndimage``).
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    if sigma == 0:
        return x
    h, w = x.shape[-2:]
    gh = _gaussian_matrix(h, sigma, x.dtype, x.device)
    gw = _gaussian_matrix(w, sigma, x.dtype, x.device)
    return gh @ x @ gw.T


@register("blur_ig", reduce="sum", cite="Xu et al. 2020")
def blur_ig(model: Callable, x: torch.Tensor, target: Any = None, sigma_max: float | None = None,
            steps: int = 100, output: str = "prob", internal_batch_size: int = 16,
            channel_reduce: str | None = None, return_gap: bool = False,
            progress: bool = False):
    r"""Blur integrated gradients (Xu, Venugopalan and Sundararajan, CVPR 2020).

    Integrates the gradient along the path of Gaussian-blurred images from
    ``sigma_max`` down to 0 (the image itself), with the trapezoid rule over ``steps``
    equal sigma intervals (Xu et al. use a left Riemann sum with an analytic path
    derivative; both converge to the same integral). Completeness: the attributions sum
    to ``f(x) - f(blur(x, sigma_max))`` up to discretisation.

    Args:
        model, x, target, output, internal_batch_size, progress: as in :func:`rig`.
        sigma_max (float, optional): widest blur, in pixels. Default: Xu et al.'s 50 px at
            224 px, scaled with ``min(H, W)``.
        steps (int, optional): sigma intervals on the path (``steps + 1`` gradients).
            Default: 100 (as Xu et al.).
        channel_reduce (str or None, optional): see :func:`reduce_channels`.
            Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return the completeness gap ``(N,)``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap ``(N,)`` if ``return_gap``.
    """
    _check_call(x, output, channel_reduce, steps=steps, internal_batch_size=internal_batch_size)
    if sigma_max is None:
        sigma_max = 50.0 * min(x.shape[-2:]) / 224
    if not sigma_max > 0:
        raise ValueError(f"sigma_max must be > 0; got {sigma_max}")
    target = _resolve_target(model, x, target)
    sigmas = [sigma_max * (1 - i / steps) for i in range(steps + 1)]      # sigma_max -> 0

    def make(xg, per_pass):
        for i in range(0, len(sigmas), per_pass):
            yield torch.stack([gaussian_blur(xg, s) for s in sigmas[i:i + per_pass]])

    attr, gap = _run_path(model, x, target, output, internal_batch_size, len(sigmas), make,
                          "blur IG", progress)
    return _finish(attr, gap, channel_reduce, return_gap)


# --------------------------------------------------------------------------- captum baselines

def _leaf(x: torch.Tensor) -> torch.Tensor:
    """A copy that requires grad, as captum wants its inputs (it warns otherwise)."""
    return x.detach().clone().requires_grad_(True)


def _by_groups(x, target, internal_batch_size, fn) -> torch.Tensor:
    groups, per_pass = _image_groups(len(x), internal_batch_size)
    return torch.cat([fn(x[sl], target[sl], per_pass) for sl in groups])


@register("vanilla", reduce="abs_max", cite="Simonyan et al. 2014")
def vanilla_gradient(model: Callable, x: torch.Tensor, target: Any = None, output: str = "prob",
                     internal_batch_size: int = 16,
                     channel_reduce: str | None = "abs_max") -> torch.Tensor:
    """Vanilla gradient saliency (Simonyan, Vedaldi and Zisserman, 2014), via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rig`.
        channel_reduce (str or None, optional): Default: ``"abs_max"`` (Simonyan et al.'s
            maximum absolute gradient over channels).

    Returns:
        Tensor: ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``).
    """
    from captum.attr import Saliency
    _check_call(x, output, channel_reduce, internal_batch_size=internal_batch_size)
    target = _resolve_target(model, x, target)
    method = Saliency(_forward(model, output))
    with torch.enable_grad():
        g = _by_groups(x, target, internal_batch_size,
                       lambda xg, tg, _: method.attribute(_leaf(xg), target=tg, abs=False).detach())
    return reduce_channels(g, channel_reduce)


@register("ig", reduce="sum", cite="Sundararajan et al. 2017")
def integrated_gradients(model: Callable, x: torch.Tensor, target: Any = None,
                         baseline: float | torch.Tensor = 0.0, steps: int = 50,
                         output: str = "prob", internal_batch_size: int = 16,
                         channel_reduce: str | None = None, return_gap: bool = False):
    """Integrated gradients from a black baseline (Sundararajan, Taly and Yan, 2017), via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rig`.
        baseline (float or Tensor, optional): start of the straight path, a scalar or a
            tensor broadcastable to ``x``. Default: 0 (black).
        steps (int, optional): Gauss-Legendre points on the path. Default: 50.
        channel_reduce (str or None, optional): Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return captum's completeness gap ``(N,)``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap if ``return_gap``.
    """
    from captum.attr import IntegratedGradients
    _check_call(x, output, channel_reduce, steps=steps, internal_batch_size=internal_batch_size)
    target = _resolve_target(model, x, target)
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    method = IntegratedGradients(_forward(model, output))
    attr, gap = torch.zeros_like(x), torch.zeros(len(x), dtype=x.dtype, device=x.device)
    groups, _ = _image_groups(len(x), internal_batch_size)
    with torch.enable_grad():
        for sl in groups:
            a, d = method.attribute(_leaf(x[sl]), baselines=base[sl], target=target[sl], n_steps=steps,
                                    internal_batch_size=max(internal_batch_size, len(x[sl])),
                                    return_convergence_delta=True)
            attr[sl], gap[sl] = a.detach(), d.detach().to(x.dtype)
    return _finish(attr, gap, channel_reduce, return_gap)


@register("smoothgrad", reduce="abs_max", cite="Smilkov et al. 2017")
def smoothgrad(model: Callable, x: torch.Tensor, target: Any = None, samples: int = 25,
               noise: float = 0.15, seed: int = 0, output: str = "prob",
               internal_batch_size: int = 16,
               channel_reduce: str | None = "abs_max") -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies, via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rig`.
        samples (int, optional): noisy copies per image. Default: 25.
        noise (float, optional): Gaussian noise std in [0, 1] pixel units (Smilkov et al.'s
            noise level times the pixel range 1). Default: 0.15.
        seed (int, optional): seeds the noise, without touching the global generator.
            Default: 0.
        channel_reduce (str or None, optional): applied to the averaged gradient.
            Default: ``"abs_max"``.

    Returns:
        Tensor: ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``).
    """
    from captum.attr import NoiseTunnel, Saliency
    _check_call(x, output, channel_reduce, samples=samples,
                internal_batch_size=internal_batch_size)
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    target = _resolve_target(model, x, target)
    method = NoiseTunnel(Saliency(_forward(model, output)))
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        torch.manual_seed(seed)
        g = _by_groups(x, target, internal_batch_size, lambda xg, tg, per_pass: method.attribute(
            _leaf(xg), nt_type="smoothgrad", nt_samples=samples, stdevs=float(noise),
            nt_samples_batch_size=min(samples, per_pass), target=tg, abs=False).detach())
    return reduce_channels(g, channel_reduce)


# --------------------------------------------------------------------------- deletion / insertion

def _order_masks(saliency: torch.Tensor, steps: int):
    """Pixel counts per curve point, their fractions ``(steps + 1,)``, and each pixel's rank.

    The rank ``(N, 1, H, W)`` is the pixel's position in decreasing saliency, so the pixels
    changed at point ``i`` are those with ``rank < counts[i]``.
    """
    n_img, h, w = saliency.shape
    n = h * w
    step = math.ceil(n / steps)
    # rank of each pixel in decreasing saliency (stable, so ties keep raster order)
    order = saliency.reshape(n_img, n).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(n_img, n).contiguous())
    counts = [min(i * step, n) for i in range(steps + 1)]
    fractions = torch.tensor(counts, dtype=torch.float64) / n
    return counts, fractions, rank.view(n_img, 1, h, w)


@dataclass
class DeletionInsertion:
    """Curves ``(N, steps + 1)`` of the target's score and their areas ``(N,)``.

    ``fractions`` ``(steps + 1,)`` is the share of pixels removed (deletion) or added
    (insertion) at each point; areas use the trapezoid rule over it. Lower deletion area
    and higher insertion area mean a better ordering (Petsiuk et al. 2018).
    """
    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_auc: torch.Tensor = field(init=False)
    insertion_auc: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.deletion_auc = torch.trapezoid(self.deletion, self.fractions, dim=1)
        self.insertion_auc = torch.trapezoid(self.insertion, self.fractions, dim=1)


def deletion_insertion(model: Callable, x: torch.Tensor, saliency: torch.Tensor,
                       target: Any = None, steps: int = 32, output: str = "prob",
                       insertion_start: str = "blur", blur_sigma: float = 5.0,
                       internal_batch_size: int = 64) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk, Das and Saenko, BMVC 2018).

    Deletion sets pixels (all channels) to black in order of decreasing saliency;
    insertion copies them, in the same order, onto a blurred copy of the image (Petsiuk
    et al.'s canvas) or onto black. The target's score is tracked after every
    ``ceil(H * W / steps)`` pixels.

    Args:
        model, x, target, output: as in :func:`rig` (``target`` defaults to the top class
            on ``x``).
        saliency (Tensor): ``(N, H, W)`` scores, higher = more important.
        steps (int, optional): points on each curve after the start. Default: 32.
        insertion_start (str, optional): ``"blur"`` or ``"black"``. Default: ``"blur"``.
        blur_sigma (float, optional): std in pixels of the insertion canvas blur.
            Default: 5 (Petsiuk et al.).
        internal_batch_size (int, optional): images per forward pass. Default: 64.

    Returns:
        DeletionInsertion: ``fractions``, ``deletion``, ``insertion`` curves ``(N, steps + 1)``
        and their areas ``deletion_auc``, ``insertion_auc`` ``(N,)`` on the CPU, float64.
    """
    _check_call(x, output, steps=steps, internal_batch_size=internal_batch_size)
    _check_choice("insertion_start", insertion_start, ("blur", "black"))
    if not isinstance(saliency, torch.Tensor) or saliency.shape != (x.shape[0], *x.shape[2:]):
        got = tuple(saliency.shape) if isinstance(saliency, torch.Tensor) else type(saliency).__name__
        raise ValueError(f"saliency must have shape (N, H, W) = {(x.shape[0], *x.shape[2:])}; "
                         f"got {got} (reduce channel attributions with reduce_channels)")
    target = _resolve_target(model, x, target)
    start = gaussian_blur(x, blur_sigma) if insertion_start == "blur" else torch.zeros_like(x)
    ends = _end_scores(model, x, start, target, output, internal_batch_size)
    return _deletion_insertion(model, x, start, saliency, target, steps, output,
                               internal_batch_size, ends)


def _batched_scores(model, images: Callable[[slice], torch.Tensor], n: int, target, output,
                    internal_batch_size: int) -> torch.Tensor:
    """Scores ``(n,)`` of ``images(slice)`` computed ``internal_batch_size`` at a time."""
    with torch.no_grad():
        return torch.cat([_score(model, images(slice(i, i + internal_batch_size)),
                                 target[i:i + internal_batch_size], output)
                          for i in range(0, n, internal_batch_size)])


def _end_scores(model, x, start, target, output, internal_batch_size) -> dict[str, torch.Tensor]:
    """The curves' ends, shared by every saliency map: the image, black, the insertion start."""
    black = torch.zeros_like(x[:1])
    return {name: _batched_scores(model, fn, len(x), target, output, internal_batch_size)
            for name, fn in (("image", lambda sl: x[sl]),
                             ("black", lambda sl: black.expand_as(x[sl])),
                             ("start", lambda sl: start[sl]))}


def _deletion_insertion(model, x, start, saliency, target, steps, output, internal_batch_size,
                        ends) -> DeletionInsertion:
    counts, fractions, rank = _order_masks(saliency.to(x.device), steps)
    inner = counts[1:-1]            # counts[0] = 0 and counts[-1] = H * W are the ends
    groups, per_pass = _image_groups(len(x), internal_batch_size)
    curves = {}
    for name, src, dst, first, last in (
            ("deletion", x, torch.zeros_like(x), ends["image"], ends["black"]),
            ("insertion", start, x, ends["start"], ends["image"])):
        rows = []
        for sl in groups:
            scores = [torch.zeros(0, len(x[sl]), dtype=x.dtype, device=x.device)]
            for i in range(0, len(inner), per_pass):
                # (P, B, C, H, W): pixels whose rank < count come from dst
                mask = torch.stack([rank[sl] < c for c in inner[i:i + per_pass]])
                imgs = torch.where(mask, dst[sl][None], src[sl][None])
                with torch.no_grad():
                    s = _score(model, imgs.flatten(0, 1), target[sl].repeat(len(mask)), output)
                scores.append(s.view(len(mask), -1))
            rows.append(torch.cat(scores).T)                                 # (B, len(inner))
        mid = torch.cat(rows)
        curves[name] = torch.cat([first[:, None], mid, last[:, None]], 1).double().cpu()
    return DeletionInsertion(fractions, curves["deletion"], curves["insertion"])


# --------------------------------------------------------------------------- comparing methods

def saliency_map(method: str, model: Callable, x: torch.Tensor, target: Any = None,
                 **kwargs) -> torch.Tensor:
    """A registered method's saliency ``(N, H, W)``, reduced as :data:`METHODS` says.

    Args:
        method (str): a key of :data:`METHODS`.
        kwargs: passed to the method (``ranks``, ``steps``, ``samples``, ...).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {sorted(METHODS)}")
    m = METHODS[method]
    return m.fn(model, x, target=target, channel_reduce=m.reduce, **kwargs)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compare_methods(model: Callable, x: torch.Tensor, methods: dict[str, dict],
                    target: Any = None, steps: int = 32, batch: int = 8,
                    cache: str | Path | None = None, cache_key: Any = None,
                    progress: bool = True) -> list[dict]:
    """Deletion and insertion areas of several methods on the same images.

    Images are processed ``batch`` at a time; with ``cache`` each finished batch is
    written atomically to that JSON file, so an interrupted run resumes where it stopped.

    Args:
        model, x, target: as in :func:`rig`.
        methods (dict): method name (a key of :data:`METHODS`) -> keyword arguments.
        steps (int, optional): points per deletion/insertion curve after the start, as in
            :func:`deletion_insertion` (whose other defaults apply). Default: 32.
        batch (int, optional): images per attribution call and per forward pass of the
            curves. Default: 8.
        cache (path, optional): resumable results file. Default: none.
        cache_key (any, optional): identifies the model and images (e.g. their names); rows
            cached under another key or other parameters are recomputed.
        progress (bool, optional): progress bar over batches x methods. Default: ``True``.

    Returns:
        list of dict: one row per image and method: ``image``, ``method``, ``target``,
        ``deletion_auc``, ``insertion_auc``, ``seconds`` (attribution time per image).
    """
    _check_images(x)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods {unknown} unknown; expected keys of {sorted(METHODS)}")
    target = _resolve_target(model, x, target)
    # the key covers this module's code too, so a fix never reuses stale areas
    key = _key([cache_key, methods, steps, target.tolist(), x.shape,
                hashlib.sha256(Path(__file__).read_bytes()).hexdigest()])
    done = {}
    if cache is not None and Path(cache).exists():
        saved = json.loads(Path(cache).read_text())
        done = saved["rows"] if saved.get("key") == key else {}
    bar = tqdm(total=math.ceil(len(x) / batch) * len(methods), desc="deletion/insertion",
               disable=not progress)
    for first in range(0, len(x), batch):
        xb, tb = x[first:first + batch], target[first:first + batch]
        canvas = ends = None
        for name, kwargs in methods.items():
            tag = f"{name}:{first}"
            if tag not in done:
                if ends is None:   # the curves' ends are the same for every method
                    canvas = gaussian_blur(xb, 5.0)
                    ends = _end_scores(model, xb, canvas, tb, "prob", batch)
                t0 = time.perf_counter()
                sal = saliency_map(name, model, xb, tb, **kwargs)
                seconds = (time.perf_counter() - t0) / len(xb)
                di = _deletion_insertion(model, xb, canvas, sal, tb, steps, "prob", batch, ends)
                done[tag] = [{"image": first + i, "method": name, "target": int(tb[i]),
                              "deletion_auc": float(di.deletion_auc[i]),
                              "insertion_auc": float(di.insertion_auc[i]), "seconds": seconds}
                             for i in range(len(xb))]
                if cache is not None:
                    _io.write_json(cache, {"key": key, "rows": done})
            bar.update(1)
    bar.close()
    return [row for first in range(0, len(x), batch) for name in methods
            for row in done[f"{name}:{first}"]]


def auc_summary(rows: list[dict], reference: str = "vanilla"):
    """The comparison table: mean areas per method with standard errors.

    Args:
        rows (list of dict): output of :func:`compare_methods`.
        reference (str, optional): method the others are paired against, image by image.
            Default: ``"vanilla"``.

    Returns:
        pandas.DataFrame: one row per method (in the order of ``rows``): ``method``,
        ``cite``, ``images``, ``deletion_auc`` and ``insertion_auc`` (means, with ``_sem``
        standard errors), ``ins_minus_del`` (higher is better), ``beats_reference`` (share
        of images where both areas are better than the reference's) and ``seconds``
        (attribution time per image).
    """
    import pandas as pd
    df = pd.DataFrame(rows)
    ref = df[df.method == reference].set_index("image")
    out = []
    for method, g in df.groupby("method", sort=False):
        g = g.set_index("image")
        both = g.index.intersection(ref.index)
        better = ((g.loc[both, "deletion_auc"] < ref.loc[both, "deletion_auc"])
                  & (g.loc[both, "insertion_auc"] > ref.loc[both, "insertion_auc"]))
        out.append({"method": method, "cite": METHODS[method].cite, "images": len(g),
                    "deletion_auc": g.deletion_auc.mean(), "deletion_auc_sem": g.deletion_auc.sem(),
                    "insertion_auc": g.insertion_auc.mean(),
                    "insertion_auc_sem": g.insertion_auc.sem(),
                    "ins_minus_del": (g.insertion_auc - g.deletion_auc).mean(),
                    "beats_reference": float(better.mean()) if len(both) else float("nan"),
                    "seconds": g.seconds.mean()})
    return pd.DataFrame(out)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank) along the last axis, float64."""
    order = v.argsort(dim=-1, stable=True)
    sorted_v = v.gather(-1, order)
    ranks = torch.empty_like(v, dtype=torch.float64)
    pos = torch.arange(v.shape[-1], dtype=torch.float64, device=v.device).expand_as(v)
    ranks.scatter_(-1, order, pos.contiguous())
    for row in range(v.shape[0]):       # ties: rare in real maps, exact handling is cheap
        vals, inverse = torch.unique_consecutive(sorted_v[row], return_inverse=True)
        if len(vals) < v.shape[-1]:
            sums = torch.zeros(len(vals), dtype=torch.float64, device=v.device)
            sums.index_add_(0, inverse, pos[row])
            ranks[row, order[row]] = (sums / torch.bincount(inverse))[inverse]
    return ranks


def edge_alignment(x: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
    """Spearman correlation between ``|saliency|`` and the image's edge strength, per image.

    A number for "perceptually aligned" (the paper's Figures 11 and 18 judge it by eye):
    gradients of robust models are known to follow object edges (Tsipras et al. 2019).
    Edge strength is the Sobel gradient magnitude of the grey image.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in [0, 1].
        saliency (Tensor): maps ``(N, H, W)``.

    Returns:
        Tensor: ``(N,)`` float64 in [-1, 1] on the CPU.
    """
    _check_images(x)
    if not isinstance(saliency, torch.Tensor) or saliency.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"saliency must have shape (N, H, W) = {(x.shape[0], *x.shape[2:])}; "
                         f"got {tuple(getattr(saliency, 'shape', ()))}")
    grey = x.double().mean(1, keepdim=True).cpu()                            # (N, 1, H, W)
    sobel = torch.tensor([[1., 0., -1.], [2., 0., -2.], [1., 0., -1.]], dtype=torch.float64)
    kernels = torch.stack([sobel, sobel.T])[:, None]                         # (2, 1, 3, 3)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)       # (N, 2, H, W)
    edges = g.pow(2).sum(1).sqrt().flatten(1)
    a, b = _ranks(edges), _ranks(saliency.detach().abs().double().cpu().flatten(1))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)


def spatial_coherence(saliency: torch.Tensor) -> torch.Tensor:
    """How structured a map is: correlation of ``|saliency|`` with its neighbour pixels.

    The mean of the Pearson correlations between each pixel and its right and its lower
    neighbour, per map: near 0 for pixel noise, near 1 for smooth blobs. A second number
    for Figures 11 and 18, whose robust-model maps look less noisy.

    Args:
        saliency (Tensor): maps ``(N, H, W)`` with ``H, W >= 2``.

    Returns:
        Tensor: ``(N,)`` float64 in [-1, 1] on the CPU.
    """
    if not isinstance(saliency, torch.Tensor) or saliency.dim() != 3 or min(saliency.shape[1:]) < 2:
        raise ValueError(f"saliency must have shape (N, H, W) with H, W >= 2; got "
                         f"{tuple(getattr(saliency, 'shape', ()))}")
    m = saliency.detach().abs().double().cpu()

    def corr(a, b):
        a, b = a.flatten(1), b.flatten(1)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)

    return 0.5 * (corr(m[:, :, :-1], m[:, :, 1:]) + corr(m[:, :-1], m[:, 1:]))


# --------------------------------------------------------------------------- plotting

def _display(m: torch.Tensor, signed: bool):
    """Scale a map to [-1, 1] (signed) or [0, 1] by its 99th percentile of |m|."""
    m = m.detach().double().cpu()
    scale = torch.quantile(m.abs().flatten(), 0.99).clamp_min(1e-12)
    return (m / scale).clamp(-1, 1) if signed else (m.abs() / scale).clamp(0, 1)


def plot_rig_terms(ks: Sequence[int], images: torch.Tensor, terms: torch.Tensor,
                   size: float = 2.0):
    """The paper's Figure 10: rank-k images (top) and their weighted gradients (bottom).

    Args:
        ks, images, terms: the output of :func:`rig_terms` for one image
            (``images`` ``(len(ks), C, H, W)``, ``terms`` ``(len(ks), H, W)``).
        size (float, optional): inches per panel.

    Returns:
        matplotlib Figure; the last column is the sum of the terms shown.
    """
    import matplotlib.pyplot as plt
    from .plot import to_hwc
    n, w = len(ks), min(images.shape[-2:])
    fig, axes = plt.subplots(2, n + 1, figsize=(size * (n + 1), 2 * size), squeeze=False)
    total = terms.sum(0)
    scale = torch.quantile(terms.detach().abs().flatten().double().cpu(), 0.99).clamp_min(1e-12)
    for j in range(n + 1):
        if j < n:
            axes[0, j].imshow(to_hwc(images[j]))
            axes[0, j].set_title(f"rank {ks[j]}", fontsize=9)
            shown = (terms[j].detach().abs().double().cpu() / scale).clamp(0, 1)
            axes[1, j].set_title(f"weight (w - k)/w = {(w - ks[j]) / w:.2f}", fontsize=8)
        else:
            axes[0, j].set_visible(False)
            shown = _display(total, signed=False)
            axes[1, j].set_title("sum of terms", fontsize=9)
        axes[1, j].imshow(shown.numpy(), cmap="gray", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[1, 0].set_ylabel("max_c gradient", fontsize=8)
    fig.tight_layout()
    return fig


def plot_saliency(x: torch.Tensor, maps: dict[str, torch.Tensor], titles: Sequence[str] = (),
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
    from .plot import to_hwc
    n, cols = len(x), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n), squeeze=False)
    for i in range(n):
        img = to_hwc(x[i])
        axes[i, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[i, 0].set_ylabel(titles[i] if i < len(titles) else "", fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            shown = _display(m[i], signed)
            axes[i, j].imshow(shown.numpy(), cmap="bwr" if signed else "gray",
                              vmin=-1 if signed else 0, vmax=1)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig
