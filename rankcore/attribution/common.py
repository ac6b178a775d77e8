"""What every attribution method shares: the input checks, the target, the gradient.

The one input-check helper of the package is :func:`prepared`: it validates the
images and options, moves the images to the model's device (the device rule of
rankcore: inputs follow the model), runs the model in eval mode with the caller's
train/eval flags restored afterwards (batch norm statistics are never touched), and
resolves the target classes. Methods then compute on ``(x, target)`` and return their
result on the caller's device.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..torch_utils import evaluating, model_device, predict

#: What a method differentiates: the target's softmax probability (the paper's f) or its logit.
OUTPUTS = ("prob", "logit")
#: How a ``(N, C, H, W)`` attribution becomes a ``(N, H, W)`` map; ``None`` keeps channels.
REDUCTIONS = ("max", "abs_max", "sum", "abs_sum", None)


# --------------------------------------------------------------------------- checks

def check_images(x: Any, name: str = "x", unit_range: bool = True) -> Tensor:
    """``x`` must be a non-empty float tensor ``(N, C, H, W)``, finite, in [0, 1] by default."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if x.device.type == "meta":
        return x
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
        raise ValueError(f"{name} must be finite; got values in [{lo:.4g}, {hi:.4g}]")
    if unit_range and (lo < 0.0 or hi > 1.0):
        raise ValueError(f"{name} must hold images in [0, 1]; got values in [{lo:.4g}, {hi:.4g}]")
    return x


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {tuple(choices)}")


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module mapping images to logits; got "
                        f"{type(model).__name__}")
    return model


def resolve_target(model: Callable, x: Tensor, target: Any, batch_size: int) -> Tensor:
    """``target`` as a ``(N,)`` long tensor on ``x.device``, checked against the class count.

    ``None`` gives each image's top class (one batched prediction).
    """
    if isinstance(model, nn.Module):
        logits = predict(model, x[:1], batch_size, amp=False)
    else:
        with torch.no_grad():
            logits = model(x[:1])
    if logits.dim() != 2:
        raise ValueError(f"model must return logits of shape (N, classes); got shape "
                         f"{tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if target is None:
        if isinstance(model, nn.Module):
            return predict(model, x, batch_size, amp=False).argmax(1)
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch_size]).argmax(1)
                              for i in range(0, len(x), batch_size)])
    if isinstance(target, bool) or (isinstance(target, Tensor) and target.dtype == torch.bool):
        raise TypeError(f"target must hold integer class indices; got {target!r}")
    try:
        t = torch.as_tensor(target, device=x.device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be an int, a sequence of ints or an int tensor; got "
                        f"{type(target).__name__} {target!r}") from None
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


@contextlib.contextmanager
def prepared(model: Any, x: Any, target: Any = None, output: str = "prob",
             channel_reduce: Any = None, batch_size: int = 16,
             **positive: Any) -> Iterator[tuple[Tensor, Tensor]]:
    """Check a method's arguments and yield ``(x, target)`` on the model's device.

    Inside the block the model is in eval mode; the caller's flags are restored after.

    Args:
        model (nn.Module): maps ``[0, 1]`` images to logits ``(N, classes)``.
        x (Tensor): images ``(N, C, H, W)`` in [0, 1], on any device.
        target: ``None`` (top class) or class indices, see :func:`resolve_target`.
        output (str): one of :data:`OUTPUTS`.
        channel_reduce (str or None): one of :data:`REDUCTIONS`.
        batch_size (int): images per pass for the target's prediction.
        **positive: further arguments that must be positive ints, by name.
    """
    check_model(model)
    check_images(x)
    check_choice("output", output, OUTPUTS)
    check_choice("channel_reduce", channel_reduce, REDUCTIONS)
    check_positive_int("internal_batch_size", batch_size)
    for name, value in positive.items():
        check_positive_int(name, value)
    with evaluating(model):
        x = x.detach().to(model_device(model))
        yield x, resolve_target(model, x, target, batch_size)


# --------------------------------------------------------------------------- forward args

def check_forward_args(args: Any, n: int) -> tuple:
    """captum's ``additional_forward_args`` as a tuple: ``None`` -> ``()``, one value -> a
    1-tuple. Tensors must have the ``n`` examples along dimension 0 (captum's rule)."""
    if args is None:
        return ()
    args = args if isinstance(args, tuple) else (args,)
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and (a.dim() == 0 or a.shape[0] != n):
            raise ValueError(f"additional_forward_args[{i}] is a tensor of shape "
                             f"{tuple(a.shape)}; a tensor argument must have the {n} examples "
                             "along dimension 0 (other values are passed as they are)")
    return args


def slice_args(args: tuple, sl: slice) -> tuple:
    """The forward args of the examples ``sl``: tensors sliced, other values as they are."""
    return tuple(a[sl] if isinstance(a, Tensor) else a for a in args)


def with_args(model: Callable, args: tuple, repeats: int) -> Callable:
    """``model`` called as ``model(x, *args)`` on a pass of ``repeats`` path points of the
    same examples, point-major (``(repeats * B, C, H, W)``): each tensor argument ``(B, ...)``
    is repeated per point, as captum's ``IntegratedGradients`` expands it for its steps."""
    if not args:
        return model
    expanded = tuple(torch.cat([a] * repeats) if isinstance(a, Tensor) else a for a in args)
    return lambda x: model(x, *expanded)


# --------------------------------------------------------------------------- arithmetic

def score(model: Callable, x: Tensor, target: Tensor, output: str) -> Tensor:
    """The target's probability or logit for each image: ``(B,)``."""
    logits = model(x)
    if output == "prob":
        logits = logits.softmax(1)
    return logits.gather(1, target[:, None])[:, 0]


def grad(model: Callable, x: Tensor, target: Tensor, output: str) -> tuple[Tensor, Tensor]:
    """Gradient of the target's score with respect to ``x`` treated as a leaf input.

    Returns ``(grad (B, C, H, W), score (B,))``; nothing is accumulated on the model.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = score(model, x, target, output)
        g, = torch.autograd.grad(s.sum(), x)
    return g, s.detach()


def reduce_channels(a: Tensor, how: str | None) -> Tensor:
    """Collapse the channel axis of an attribution ``(..., C, H, W)`` into a map ``(..., H, W)``.

    Args:
        a (Tensor): attributions, channel axis third from last.
        how (str or None): ``"max"`` (signed maximum, the paper's equation 3), ``"abs_max"``
            (Simonyan et al.'s saliency), ``"sum"`` (keeps completeness), ``"abs_sum"``, or
            ``None`` to return ``a`` unchanged.
    """
    check_choice("channel_reduce", how, REDUCTIONS)
    if how is None:
        return a
    if how == "max":
        return a.amax(-3)
    if how == "abs_max":
        return a.abs().amax(-3)
    if how == "sum":
        return a.sum(-3)
    return a.abs().sum(-3)


def image_groups(n: int, internal_batch_size: int) -> tuple[list[slice], int]:
    """Image slices and how many path points fit beside them in one pass."""
    size = min(n, internal_batch_size)
    per_pass = max(1, internal_batch_size // size)
    return [slice(i, i + size) for i in range(0, n, size)], per_pass


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


# --------------------------------------------------------------------------- path integrals

def integrate_path(model: Callable, blocks: Iterator[Tensor], target: Tensor, output: str,
                   forward_args: tuple = ()):
    """Trapezoid rule for the path integral of grad f along ordered points.

    ``blocks`` yields consecutive path points ``(P, B, C, H, W)``; ``forward_args`` are the
    B examples' extra forward arguments (see :func:`with_args`). Returns
    ``(attributions (B, C, H, W), f(first point) (B,), f(last point) (B,))``.
    """
    attr = prev_x = prev_g = f_first = f_last = None
    for xs in blocks:
        g, f = grad(with_args(model, forward_args, len(xs)), xs.flatten(0, 1),
                    target.repeat(len(xs)), output)
        g, f = g.view_as(xs), f.view(len(xs), -1)                        # (P, B, ...), (P, B)
        if prev_x is None:
            attr, f_first, pts, grads = torch.zeros_like(xs[0]), f[0], xs, g
        else:
            pts, grads = torch.cat([prev_x[None], xs]), torch.cat([prev_g[None], g])
        # (P - 1, B, C, H, W): mean gradient on each segment times the segment's step
        attr += (0.5 * (grads[1:] + grads[:-1]) * (pts[1:] - pts[:-1])).sum(0)
        prev_x, prev_g, f_last = pts[-1], grads[-1], f[-1]
    return attr, f_first, f_last


def run_path(model: Callable, x: Tensor, target: Tensor, output: str, internal_batch_size: int,
             n_points: int, make_blocks: Callable, *, desc: str, progress: bool,
             forward_args: tuple = ()):
    """Integrate along a path per image group; ``make_blocks(xg, per_pass)`` yields the points.

    Returns ``(attributions (N, C, H, W), completeness gap (N,))``.
    """
    from tqdm.auto import tqdm
    groups, per_pass = image_groups(len(x), internal_batch_size)
    attr, gap = torch.zeros_like(x), torch.zeros(len(x), dtype=x.dtype, device=x.device)
    bar = tqdm(total=len(groups) * n_points, desc=desc, unit="point", disable=not progress)
    for sl in groups:
        def counted(blocks):
            for xs in blocks:
                yield xs
                bar.update(len(xs))
        a, f0, f1 = integrate_path(model, counted(make_blocks(x[sl], per_pass)), target[sl],
                                   output, slice_args(forward_args, sl))
        attr[sl], gap[sl] = a, a.flatten(1).sum(1) - (f1 - f0)
    bar.close()
    return attr, gap


def finish(attr: Tensor, gap: Tensor, channel_reduce: str | None, return_gap: bool,
           device: torch.device):
    """Reduce channels and move the result (and the gap if asked) to the caller's device."""
    attr = reduce_channels(attr, channel_reduce).to(device)
    return (attr, gap.to(device)) if return_gap else attr
