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
from .common import (check_choice, check_forward_args, check_images, check_positive_int,
                     finish, grad, image_groups, prepared, reduce_channels, register,
                     resolve_target, run_path, slice_args, with_args, OUTPUTS, REDUCTIONS)

__all__ = ["rig", "rig_terms", "rank_ig", "rig_ranks", "RankIntegratedGradients",
           "RankPathIntegratedGradients"]


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
                *, progress, forward_args: tuple = ()
                ) -> Iterator[tuple[slice, list[int], Tensor, Tensor]]:
    """Yield ``(images, ranks, x_k (n, B, C, H, W), weighted reduced gradients (n, B, ...))``."""
    weight_of = dict(zip(ks, weights))
    groups, per_pass = image_groups(len(x), internal_batch_size)
    bar = tqdm(total=len(groups) * len(ks), desc="RIG", unit="rank", disable=not progress)
    for sl in groups:
        xg, tg, ag = x[sl], target[sl], slice_args(forward_args, sl)
        # one SVD per image and channel; blocks of per_pass ranks share a forward pass
        for kb, xs in rank_blocks(xg, ranks=ks, chunk=per_pass, clamp=True):
            # (n * B, C, H, W), rank-major
            g, _ = grad(with_args(model, ag, len(kb)), xs.flatten(0, 1), tg.repeat(len(kb)),
                        output)
            g = reduce_channels(g.view_as(xs), channel_reduce)           # (n, B, [C,] H, W)
            wt = torch.tensor([weight_of[k] for k in kb], dtype=g.dtype, device=g.device)
            yield sl, list(kb), xs, g * wt.view(-1, *[1] * (g.dim() - 1))
            bar.update(len(kb))
    bar.close()


def _rig_sum(model, x, target, ranks, output, internal_batch_size, channel_reduce,
             progress, *, forward_args: tuple = ()) -> Tensor:
    """Equation 3 on checked inputs: ``(N, H, W)`` (or ``(N, C, H, W)``) on ``x.device``."""
    ks, weights = rig_ranks(ranks, min(x.shape[-2:]))
    total = reduce_channels(torch.zeros_like(x), channel_reduce)
    for sl, _, _, terms in _rig_blocks(model, x, target, ks, weights, output,
                                       internal_batch_size, channel_reduce,
                                       progress=progress, forward_args=forward_args):
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
                                         internal_batch_size, channel_reduce, progress=False):
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
            output: str = "prob", *, internal_batch_size: int = 16, substeps: int = 1,
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
        attr, gap = _rank_ig_path(model, x, target, ranks, output, internal_batch_size,
                                  substeps, progress)
    return finish(attr, gap, channel_reduce, return_gap, home)


def _rank_ig_path(model, x, target, ranks, output, internal_batch_size, substeps, progress,
                  *, forward_args: tuple = ()) -> tuple[Tensor, Tensor]:
    """Rank-path IG on checked inputs: ``(attributions (N, C, H, W), gap (N,))``."""
    ks = path_ranks(ranks, min(x.shape[-2:]))

    def make(xg, per_pass):
        chunk = max(1, per_pass // substeps)
        return _refine((xs for _, xs in rank_blocks(xg, ranks=ks, chunk=chunk, clamp=True)),
                       substeps)

    return run_path(model, x, target, output, internal_batch_size,
                    (len(ks) - 1) * substeps + 1, make, desc="rank IG", progress=progress,
                    forward_args=forward_args)


# --------------------------------------------------------------------------- captum

class _RankAttribution(GradientAttribution):
    """What the two captum classes share: checking and formatting captum's arguments."""

    def __init__(self, forward_func: Callable) -> None:
        r"""
        Args:
            forward_func (Callable or torch.nn.Module): maps images ``(N, C, H, W)`` (and
                the ``additional_forward_args``, if any) to scores ``(N, classes)``: logits
                for the default ``output="logit"``. A module is evaluated in eval mode (its
                caller's mode restored) and the inputs are moved to its device.
        """
        super().__init__(forward_func)

    def _prepared(self, inputs, target, additional_forward_args, output, channel_reduce,
                  internal_batch_size):
        """Check captum's arguments; returns ``(as_tuple, inputs, module, device, args)``."""
        as_tuple = isinstance(inputs, tuple)
        if as_tuple:
            if len(inputs) != 1:
                raise ValueError(f"inputs must be one image tensor (or a 1-tuple); got a tuple "
                                 f"of {len(inputs)}")
            inputs = inputs[0]
        check_images(inputs, name="inputs", unit_range=False)
        check_choice("output", output, OUTPUTS)
        check_choice("channel_reduce", channel_reduce, REDUCTIONS)
        check_positive_int("internal_batch_size", internal_batch_size)
        args = check_forward_args(additional_forward_args, len(inputs))
        forward = self.forward_func
        module = forward if isinstance(forward, nn.Module) else nn.Identity()
        device = model_device(forward) if isinstance(forward, nn.Module) else inputs.device
        args = tuple(a.to(device) if isinstance(a, Tensor) else a for a in args)
        return as_tuple, inputs, module, device, args

    def _target(self, x: Tensor, target: Any, args: tuple, internal_batch_size: int) -> Tensor:
        """``target`` resolved as :func:`resolve_target` does, the forward taking ``args``."""
        if not args:
            return resolve_target(self.forward_func, x, target, internal_batch_size)
        with torch.no_grad():
            scores = self.forward_func(x, *args)                      # (N, classes)
        if target is None:
            return scores.argmax(1)
        return resolve_target(lambda xb: scores[:len(xb)], x, target, internal_batch_size)


_CAPTUM_ARGS = r"""
            inputs (Tensor or tuple of one Tensor): images ``(N, C, H, W)``, finite; dimension
                0 indexes examples. A 1-tuple gives a 1-tuple back.
            target (int, list of int or Tensor, optional): the class per example (an int for
                all, or ``N`` of them). Default: ``None``, each example's top class.
            additional_forward_args (Any, optional): further arguments of the forward,
                called as ``forward_func(x, *additional_forward_args)`` (one value that is
                not a tuple is one argument). As in captum's ``IntegratedGradients``, a
                tensor argument must have the ``N`` examples along dimension 0 and is
                repeated for every point of the path that shares a pass; other values are
                passed as they are. Default: ``None``.
            output (str, optional): what is differentiated. ``"logit"``: the forward's output
                as it is, like every captum attribution. ``"prob"``: its softmax, the
                paper's ``f``; use it only with a forward that returns logits: **a forward
                that already ends in softmax would be softmaxed twice**. Default:
                ``"logit"``.
            internal_batch_size (int, optional): images per forward/backward pass.
                Default: 16."""


class RankIntegratedGradients(_RankAttribution):
    r"""Rank Integrated Gradients (Jere et al., equation 3) as a captum attribution.

    For each image ``x`` with ``w = min(H, W)``, sums over the ranks ``k`` the gradient of
    the target's score at the rank-k image ``x_k`` (per channel truncated SVD, clamped to
    [0, 1]), weighted by ``(w - k) / w``:

    .. math:: RIG(x, f, i) = \sum_{k=1}^{w} \frac{w-k}{w} \max_c
              \frac{\partial f(x_k)_i}{\partial x_k}

    **The score.** The paper's ``f`` is the softmax probability; :func:`rankcore.rig`
    computes it from a model's logits. This class follows captum instead and, by default
    (``output="logit"``), differentiates what the forward returns, so a forward that ends
    in softmax is not softmaxed twice; pass ``output="prob"`` with a forward returning
    logits for the paper's RIG.

    It works wherever captum expects an attribution object: :class:`captum.attr.NoiseTunnel`,
    :func:`captum.attr.visualization.visualize_image_attr`, :mod:`captum.metrics`.
    Unlike :func:`rankcore.rig`, inputs may leave [0, 1] (``NoiseTunnel`` adds noise);
    their rank-k images are clamped to [0, 1], the model's input range. RIG is a weighted
    sum of gradients, not a path integral, so it has no convergence delta
    (``has_convergence_delta()`` is False); :class:`RankPathIntegratedGradients` has one.

    Paper: "A Singular Value Perspective on Model Robustness", Section 4.3.
    """

    @log_usage()
    def attribute(self, inputs: Tensor | tuple[Tensor], target: Any = None, ranks: Any = None,
                  additional_forward_args: Any = None, output: str = "logit",
                  channel_reduce: str | None = "max",
                  internal_batch_size: int = 16) -> Tensor | tuple[Tensor]:
        as_tuple, inputs, module, device, args = self._prepared(
            inputs, target, additional_forward_args, output, channel_reduce, internal_batch_size)
        with evaluating(module):
            x = inputs.detach().to(device)
            t = self._target(x, target, args, internal_batch_size)
            rig_ranks(ranks, min(x.shape[-2:]))
            total = _rig_sum(self.forward_func, x, t, ranks, output, internal_batch_size,
                             channel_reduce, False, forward_args=args)
        if channel_reduce is not None:
            total = total[:, None].expand_as(x).contiguous()             # (N, C, H, W)
        out = total.to(device=inputs.device, dtype=inputs.dtype)
        return (out,) if as_tuple else out


class RankPathIntegratedGradients(_RankAttribution):
    r"""Integrated gradients along the rank path (:func:`rankcore.rank_ig`) as a captum
    attribution, with captum's convergence delta.

    The path runs through the rank-k images ``x_0 (black), x_{k_1}, ..., x_w = x``
    (trapezoid rule between consecutive points), so the attributions satisfy completeness
    up to the discretisation: ``sum(A) = f(x) - f(x_0)``. ``return_convergence_delta=True``
    returns ``sum(A) - (f(x) - f(x_0))`` per example, which is what captum's
    ``IntegratedGradients`` returns for the baseline ``x_0`` and what
    :meth:`compute_convergence_delta` computes. The score is the forward's output unless
    ``output="prob"`` (see :class:`RankIntegratedGradients`).
    """

    def has_convergence_delta(self) -> bool:
        return True

    @log_usage()
    def attribute(self, inputs: Tensor | tuple[Tensor], target: Any = None, ranks: Any = None,
                  additional_forward_args: Any = None, output: str = "logit",
                  substeps: int = 1, *, internal_batch_size: int = 16,
                  return_convergence_delta: bool = False):
        check_positive_int("substeps", substeps)
        if not isinstance(return_convergence_delta, bool):
            raise TypeError(f"return_convergence_delta={return_convergence_delta!r}; expected "
                            "True or False")
        as_tuple, inputs, module, device, args = self._prepared(
            inputs, target, additional_forward_args, output, None, internal_batch_size)
        with evaluating(module):
            x = inputs.detach().to(device)
            t = self._target(x, target, args, internal_batch_size)
            attr, gap = _rank_ig_path(self.forward_func, x, t, ranks, output,
                                      internal_batch_size, substeps, False, forward_args=args)
        out = attr.to(device=inputs.device, dtype=inputs.dtype)
        out = (out,) if as_tuple else out
        return (out, gap.to(inputs.device)) if return_convergence_delta else out


# The argument list both captum classes share is written once (_CAPTUM_ARGS).
RankIntegratedGradients.attribute.__doc__ = """
        Args:""" + _CAPTUM_ARGS + r"""
            ranks (optional): ranks summed, any form of :func:`rankcore.rank.parse_ranks`
                (an int is one rank, ``"4:max:4"`` a stride). Default: ``None``, every rank
                ``1..w`` (equation 3 exactly); a subset is a Riemann sum.
            channel_reduce (str or None, optional): ``"max"`` (the paper's maximum over
                channels, broadcast back to every channel so the result keeps the inputs'
                shape), ``"sum"``, ``"abs_max"``, ``"abs_sum"`` (likewise broadcast) or
                ``None`` (per-channel sums of weighted gradients). Default: ``"max"``.

        Returns:
            *Tensor* or *tuple[Tensor]* of **attributions**: the inputs' shape ``(N, C, H, W)``,
            dtype and device.

        Examples::

            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
            ...                           torch.nn.LazyLinear(10)).eval()
            >>> rig = RankIntegratedGradients(net)
            >>> attr = rig.attribute(torch.rand(2, 3, 32, 32), target=3, ranks="4:max:4",
            ...                      output="prob")             # the paper's RIG
            >>> from captum.attr import NoiseTunnel
            >>> smooth = NoiseTunnel(rig).attribute(torch.rand(2, 3, 32, 32), target=3,
            ...                                     nt_type="smoothgrad", nt_samples=4)
        """

RankPathIntegratedGradients.attribute.__doc__ = """
        Args:""" + _CAPTUM_ARGS + r"""
            ranks (optional): the path's ranks (0 and ``w`` always added), any form of
                :func:`rankcore.rank.parse_ranks`. Default: ``None``, every rank ``0..w``.
            substeps (int, optional): path points per rank interval. Default: 1.
            return_convergence_delta (bool, optional): also return the convergence delta
                ``(N,)``. Default: ``False``.

        Returns:
            **attributions** of the inputs' shape ``(N, C, H, W)``, dtype and device (a
            1-tuple for a 1-tuple input), and the **delta** ``(N,)`` if asked.

        Examples::

            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
            ...                           torch.nn.LazyLinear(10)).eval()
            >>> ig = RankPathIntegratedGradients(net)
            >>> attr, delta = ig.attribute(torch.rand(2, 3, 32, 32), target=3, ranks="0:max:4",
            ...                            return_convergence_delta=True)
            >>> attr.shape, delta.shape
            (torch.Size([2, 3, 32, 32]), torch.Size([2]))
        """
