"""Rank Integrated Gradients (equation 3 of the paper) and integrated gradients along the rank path.

Gradients are taken with respect to each rank-k image ``x_k`` treated as the input
(equation 3): the SVD is never differentiated. One SVD per image and channel serves every
rank (:func:`rankcore.rank.rank_blocks`); blocks of ranks share a forward/backward pass.

``ranks`` takes every form of :func:`rankcore.rank.parse_ranks`: an int is one rank,
strides are written ``range(4, 225, 4)`` or ``"4:max:4"``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from captum.attr import GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..rank import parse_ranks, rank_blocks
from ..torch_utils import evaluating, model_device
from .common import (check_choice, check_images, check_positive_int, finish, grad,
                     image_groups, prepared, reduce_channels, register, resolve_target,
                     run_path, OUTPUTS, REDUCTIONS)

__all__ = ["rig", "rig_terms", "rank_ig", "rig_ranks", "RankIntegratedGradients"]


# --------------------------------------------------------------------------- ranks

def rig_ranks(ranks: Any, w: int) -> tuple[list[int], list[float]]:
    """The ranks RIG visits and their weights ``(w - k) / w * gap``.

    With every rank ``1..w`` (``ranks=None`` or ``"all"``) the gap is 1 and this is
    equation 3 exactly. Any other set is a Riemann sum: each chosen rank stands for the
    ``gap`` ranks between it and the previous chosen one (so ``"4:max:4"`` weighs each term
    by 4, and a single int rank ``k`` by ``k``). Rank ``w`` has weight 0 and is skipped.

    Args:
        ranks: any form of :func:`rankcore.rank.parse_ranks`, each rank in ``1..w``.
        w (int): ``min(H, W)`` of the images.

    Returns:
        (list[int], list[float]): ranks below ``w``, ascending, and their weights.
    """
    every = ranks is None or (isinstance(ranks, str) and ranks.strip().lower() == "all")
    ks = list(range(1, w + 1)) if every else parse_ranks(ranks, w)
    if ks[0] < 1:
        raise ValueError(f"ranks={ranks!r}: RIG sums ranks 1..{w} (equation 3, w = min(H, W)); "
                         f"got rank {ks[0]}")
    gaps = [k - prev for prev, k in zip([0] + ks[:-1], ks)]
    kept = [(k, (w - k) / w * g) for k, g in zip(ks, gaps) if k < w]
    return [k for k, _ in kept], [wt for _, wt in kept]


def path_ranks(ranks: Any, w: int) -> list[int]:
    """Ranks ``0 = k_0 < ... < k_m = w`` of the rank path: 0 and ``w`` are always added."""
    return sorted(set(parse_ranks(ranks, w)) | {0, w})


# --------------------------------------------------------------------------- RIG

def _rig_blocks(model, x, target, ks, weights, output, internal_batch_size, channel_reduce,
                progress) -> Iterator[tuple[slice, list[int], Tensor, Tensor]]:
    """Yield ``(images, ranks, x_k (n, B, C, H, W), weighted reduced gradients (n, B, ...))``."""
    weight_of = dict(zip(ks, weights))
    groups, per_pass = image_groups(len(x), internal_batch_size)
    bar = tqdm(total=len(groups) * len(ks), desc="RIG", unit="rank", disable=not progress)
    for sl in groups:
        xg, tg = x[sl], target[sl]
        # one SVD per image and channel; blocks of per_pass ranks share a forward pass
        for kb, xs in rank_blocks(xg, ranks=ks, chunk=per_pass, clamp=True):
            g, _ = grad(model, xs.flatten(0, 1), tg.repeat(len(kb)), output)
            g = reduce_channels(g.view_as(xs), channel_reduce)           # (n, B, [C,] H, W)
            wt = torch.tensor([weight_of[k] for k in kb], dtype=g.dtype, device=g.device)
            yield sl, list(kb), xs, g * wt.view(-1, *[1] * (g.dim() - 1))
            bar.update(len(kb))
    bar.close()


def _rig_sum(model, x, target, ranks, output, internal_batch_size, channel_reduce,
             progress) -> Tensor:
    """Equation 3 on checked inputs: ``(N, H, W)`` (or ``(N, C, H, W)``) on ``x.device``."""
    ks, weights = rig_ranks(ranks, min(x.shape[-2:]))
    total = reduce_channels(torch.zeros_like(x), channel_reduce)
    for sl, _, _, terms in _rig_blocks(model, x, target, ks, weights, output,
                                       internal_batch_size, channel_reduce, progress):
        total[sl] += terms.sum(0)
    return total


@register("rig", reduce="max", cite="Jere et al., equation 3")
def rig(model: nn.Module, x: Tensor, target: Any = None, ranks: Any = None,
        output: str = "prob", internal_batch_size: int = 16,
        channel_reduce: str | None = "max", progress: bool = False) -> Tensor:
    r"""Rank Integrated Gradients, equation 3 of the paper.

    .. math:: RIG(x, f, i) = \sum_{k=1}^{w} \frac{w-k}{w} \max_c
              \frac{\partial f(x_k)_i}{\partial x_k}

    where ``x_k`` is the rank-k image (per channel truncated SVD, clamped to [0, 1]),
    ``w = min(H, W)``, ``f`` the softmax probability and ``i`` the target. The gradient is
    taken with respect to ``x_k`` as the input; one SVD per image serves every rank.

    Args:
        model (nn.Module): maps ``[0, 1]`` images ``(N, C, H, W)`` to logits
            ``(N, classes)``. Evaluated in eval mode; the caller's mode is restored.
        x (Tensor): images ``(N, C, H, W)`` in ``[0, 1]``; dimension 0 indexes examples.
            Moved to the model's device for the computation.
        target (int, sequence or Tensor, optional): class per image (or one for all).
            Default: the top class on the full-rank image.
        ranks (optional): the ranks summed, any form of
            :func:`rankcore.rank.parse_ranks` (an int is one rank; ``"4:max:4"`` or
            ``range(4, w + 1, 4)`` a stride), each in ``1..w``. ``None`` uses every rank
            (exact); any subset weights each rank by its gap to the previous one (a
            Riemann sum of equation 3). Default: ``None``.
        output (str, optional): ``"prob"`` (the paper) or ``"logit"``. Default: ``"prob"``.
        internal_batch_size (int, optional): images per forward/backward pass (ranks of
            the same image are batched together). Default: 16.
        channel_reduce (str or None, optional): applied to each rank's gradient before
            the sum; ``"max"`` is the paper's, ``None`` returns ``(N, C, H, W)``.
            Default: ``"max"``.
        progress (bool, optional): show a progress bar. Default: ``False``.

    Returns:
        Tensor: saliency ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``), on
        ``x``'s device.

    Examples::

        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
        ...                           torch.nn.LazyLinear(10)).eval()
        >>> saliency = rig(net, torch.rand(2, 3, 32, 32), ranks="4:max:4")   # (2, 32, 32)
    """
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size) as (x, target):
        rig_ranks(ranks, min(x.shape[-2:]))                    # rank errors before any work
        total = _rig_sum(model, x, target, ranks, output, internal_batch_size, channel_reduce,
                         progress)
    return total.to(home)


def rig_terms(model: nn.Module, x: Tensor, ranks: Any, target: Any = None,
              output: str = "prob", channel_reduce: str | None = "max",
              internal_batch_size: int = 16) -> tuple[list[int], Tensor, Tensor]:
    """The pieces RIG adds up (the paper's Figure 10): rank-k images and weighted gradients.

    Args:
        model, x, target, output, channel_reduce, internal_batch_size: as in :func:`rig`.
        ranks: ranks to show, any form of :func:`rankcore.rank.parse_ranks`, each in
            ``1..w - 1``; unlike :func:`rig` each term carries only ``(w - k) / w`` (no
            gap factor).

    Returns:
        tuple: ``(ks, images (len(ks), N, C, H, W), terms (len(ks), N, H, W))`` on ``x``'s
        device, where ``terms[j]`` is ``(w - k) / w`` times the channel-reduced gradient
        at rank ``ks[j]``.
    """
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size) as (x, target):
        w = min(x.shape[-2:])
        ks = parse_ranks(ranks, w)
        if ks[0] < 1 or ks[-1] >= w:
            raise ValueError(f"ranks={ranks!r}: each rank must lie in 1..{w - 1} "
                             f"(w = min(H, W)); got {ks}")
        images = torch.empty(len(ks), *x.shape, dtype=x.dtype, device=x.device)
        terms = reduce_channels(torch.empty_like(images), channel_reduce)
        weights = [(w - k) / w for k in ks]
        for sl, kb, xs, t in _rig_blocks(model, x, target, ks, weights, output,
                                         internal_batch_size, channel_reduce, False):
            j = ks.index(kb[0])
            images[j:j + len(kb), sl], terms[j:j + len(kb), sl] = xs, t
    return ks, images.to(home), terms.to(home)


# --------------------------------------------------------------------------- rank-path IG

def _refine(blocks: Iterator[Tensor], substeps: int) -> Iterator[Tensor]:
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
def rank_ig(model: nn.Module, x: Tensor, target: Any = None, ranks: Any = None,
            output: str = "prob", internal_batch_size: int = 16, substeps: int = 1,
            channel_reduce: str | None = None, return_gap: bool = False,
            progress: bool = False):
    r"""Integrated gradients along the rank path (beyond the paper).

    .. math:: A(x) = \sum_{j=1}^{m} \tfrac12\left(\nabla f(x_{k_j}) + \nabla f(x_{k_{j-1}})
              \right) \odot (x_{k_j} - x_{k_{j-1}})

    with ``0 = k_0 < ... < k_m = w`` and ``x_0`` the black rank-0 image. Per pixel and
    channel; it satisfies completeness, ``sum(A) = f(x) - f(x_0)``, up to the path
    discretisation (trapezoid rule between consecutive ranks). ``substeps > 1`` adds
    points on each segment, which shrinks the completeness gap.

    Args:
        model, x, target, output, internal_batch_size, progress: as in :func:`rig`.
        ranks (optional): the path's ranks, any form of :func:`rankcore.rank.parse_ranks`
            (an int is one rank, ``"4:max:4"`` a stride); 0 and ``w`` are always added.
            Default: ``None`` (every rank ``0..w``).
        substeps (int, optional): path points per rank interval. Default: 1.
        channel_reduce (str or None, optional): see :func:`reduce_channels`; ``"sum"``
            keeps completeness. Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return the completeness gap
            ``sum(A) - (f(x) - f(x_0))`` per image, ``(N,)``. Default: ``False``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap ``(N,)`` if ``return_gap``, on
        ``x``'s device.
    """
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size,
                  substeps=substeps) as (x, target):
        ks = path_ranks(ranks, min(x.shape[-2:]))

        def make(xg, per_pass):
            chunk = max(1, per_pass // substeps)
            return _refine((xs for _, xs in rank_blocks(xg, ranks=ks, chunk=chunk, clamp=True)),
                           substeps)

        attr, gap = run_path(model, x, target, output, internal_batch_size,
                             (len(ks) - 1) * substeps + 1, make, "rank IG", progress)
    return finish(attr, gap, channel_reduce, return_gap, home)


# --------------------------------------------------------------------------- captum

class RankIntegratedGradients(GradientAttribution):
    r"""Rank Integrated Gradients (Jere et al., equation 3) as a captum attribution.

    For each image ``x`` with ``w = min(H, W)``, sums over the ranks ``k`` the gradient of
    the target's score at the rank-k image ``x_k`` (per channel truncated SVD, clamped to
    [0, 1]), weighted by ``(w - k) / w``:

    .. math:: RIG(x, f, i) = \sum_{k=1}^{w} \frac{w-k}{w} \max_c
              \frac{\partial f(x_k)_i}{\partial x_k}

    It works wherever captum expects an attribution object: :class:`captum.attr.NoiseTunnel`,
    :func:`captum.attr.visualization.visualize_image_attr`, :mod:`captum.metrics`.
    Unlike :func:`rankcore.rig`, inputs may leave [0, 1] (``NoiseTunnel`` adds noise);
    their rank-k images are clamped to [0, 1], the model's input range.

    Paper: "A Singular Value Perspective on Model Robustness", Section 4.3.
    """

    def __init__(self, forward_func: Callable) -> None:
        r"""
        Args:
            forward_func (Callable or torch.nn.Module): maps images ``(N, C, H, W)`` to
                logits ``(N, classes)``. A module is evaluated in eval mode (its caller's
                mode restored) and the inputs are moved to its device.
        """
        super().__init__(forward_func)

    @log_usage()
    def attribute(self, inputs: Tensor | tuple[Tensor], target: Any = None, ranks: Any = None,
                  additional_forward_args: Any = None, output: str = "prob",
                  channel_reduce: str | None = "max",
                  internal_batch_size: int = 16) -> Tensor | tuple[Tensor]:
        r"""
        Args:
            inputs (Tensor or tuple of one Tensor): images ``(N, C, H, W)``, finite; dimension
                0 indexes examples. A 1-tuple gives a 1-tuple back.
            target (int, list of int or Tensor, optional): the class per example (an int for
                all, or ``N`` of them). Default: ``None``, each example's top class.
            ranks (optional): ranks summed, any form of :func:`rankcore.rank.parse_ranks`
                (an int is one rank, ``"4:max:4"`` a stride). Default: ``None``, every rank
                ``1..w`` (equation 3 exactly); a subset is a Riemann sum.
            additional_forward_args: not supported (the ranks of an image share a batch);
                must be ``None``. Default: ``None``.
            output (str, optional): ``"prob"`` (softmax probability, the paper) or
                ``"logit"``. Default: ``"prob"``.
            channel_reduce (str or None, optional): ``"max"`` (the paper's maximum over
                channels, broadcast back to every channel so the result keeps the inputs'
                shape), ``"sum"``, ``"abs_max"``, ``"abs_sum"`` (likewise broadcast) or
                ``None`` (per-channel sums of weighted gradients). Default: ``"max"``.
            internal_batch_size (int, optional): images per forward/backward pass.
                Default: 16.

        Returns:
            *Tensor* or *tuple[Tensor]* of **attributions**: the inputs' shape ``(N, C, H, W)``,
            dtype and device.

        Examples::

            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
            ...                           torch.nn.LazyLinear(10)).eval()
            >>> rig = RankIntegratedGradients(net)
            >>> attr = rig.attribute(torch.rand(2, 3, 32, 32), target=3, ranks="4:max:4")
            >>> from captum.attr import NoiseTunnel
            >>> smooth = NoiseTunnel(rig).attribute(torch.rand(2, 3, 32, 32), target=3,
            ...                                     nt_type="smoothgrad", nt_samples=4)
        """
        as_tuple = isinstance(inputs, tuple)
        if as_tuple:
            if len(inputs) != 1:
                raise ValueError(f"inputs must be one image tensor (or a 1-tuple); got a tuple "
                                 f"of {len(inputs)}")
            inputs = inputs[0]
        if additional_forward_args is not None:
            raise ValueError("additional_forward_args is not supported by "
                             "RankIntegratedGradients; got "
                             f"{type(additional_forward_args).__name__}")
        check_images(inputs, name="inputs", unit_range=False)
        check_choice("output", output, OUTPUTS)
        check_choice("channel_reduce", channel_reduce, REDUCTIONS)
        check_positive_int("internal_batch_size", internal_batch_size)
        forward = self.forward_func
        module = forward if isinstance(forward, nn.Module) else nn.Identity()
        device = model_device(forward) if isinstance(forward, nn.Module) else inputs.device
        with evaluating(module):
            x = inputs.detach().to(device)
            t = resolve_target(forward, x, target, internal_batch_size)
            rig_ranks(ranks, min(x.shape[-2:]))
            total = _rig_sum(forward, x, t, ranks, output, internal_batch_size,
                             channel_reduce, False)
        if channel_reduce is not None:
            total = total[:, None].expand_as(x).contiguous()             # (N, C, H, W)
        out = total.to(device=inputs.device, dtype=inputs.dtype)
        return (out,) if as_tuple else out
