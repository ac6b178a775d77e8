"""Input checks shared across the library: an int that is not a bool, and the attacks'
arguments (images in [0, 1], labels within the model's classes) with their dtype handling.

Public within the package (``pgd``, ``evaluate``, ``autoattack`` and the rank parser check
their arguments alike); users call those, not these.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

NORMS = ("linf", "l2")
KEEP = ("best", "last")


def num_classes(model: nn.Module, x: Tensor) -> int:
    """The model's number of classes, from one forward pass on one image."""
    with torch.no_grad():
        logits = model(x[:1].to(model_dtype(model, x.dtype)))
    if logits.dim() != 2:
        raise ValueError(f"model must return logits (N, classes); got shape {tuple(logits.shape)}")
    return logits.shape[1]


def check_labels(name: str, labels: Tensor, classes: int) -> None:
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices; got dtype {labels.dtype}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"{name} must lie in [0, {classes - 1}] (the model has {classes} "
                         f"classes); got values in [{int(labels.min())}, {int(labels.max())}]")


def is_int(v) -> bool:
    """A Python int that is not a bool (``True`` is not a step count)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_int_like(v) -> bool:
    """An integer index: a Python int (not a bool), a NumPy integer or a 0-d integer tensor."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    if isinstance(v, Tensor):
        return v.dim() == 0 and not (v.is_floating_point() or v.is_complex() or v.dtype == torch.bool)
    return type(v).__module__ == "numpy" and type(v).__name__.startswith(("int", "uint"))


def check_inputs(x, y, eps, steps, norm, restarts, keep) -> None:
    if not (torch.is_tensor(x) and x.ndim >= 2 and x.is_floating_point()):
        raise TypeError(f"x must be a float tensor (N, C, H, W); got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                        f"{tuple(getattr(x, 'shape', ()))}")
    if x.numel() == 0:
        raise ValueError(f"x is empty: shape {tuple(x.shape)}")
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"x must be finite; got values in [{lo:.4g}, {hi:.4g}]")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"x must hold images in [0, 1]; got values in [{lo:.4g}, {hi:.4g}] "
                         "(divide 0-255 images by 255)")
    if not (torch.is_tensor(y) and y.shape == x.shape[:1]):
        raise ValueError(f"y must be a tensor of shape ({x.shape[0]},); got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"eps={eps!r}; expected a finite number >= 0")
    check_count("steps", steps, 0)
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}; expected one of {NORMS}")
    check_count("restarts", restarts, 1)
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; expected one of {KEEP}")


def check_count(name: str, value, minimum: int) -> None:
    """``value`` must be an int (not a bool) of at least ``minimum``: TypeError, else
    ValueError, each naming ``name``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")


def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype the model's weights expect (float16 models get float16 inputs)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


def cast_inside(adv: Tensor, x: Tensor) -> Tensor:
    """``adv`` (float64) in ``x``'s dtype, still within eps of ``x`` after the rounding.

    Rounding to float16 could carry a pixel past the ball (0.01587 for eps 0.01569). A pixel
    that rounded away from ``x`` moves one representable value back towards it, so every
    pixel's change is at most its unrounded change: the L-inf and L2 sizes (and the box)
    hold in the rounded image too.
    """
    if adv.dtype == x.dtype:
        return adv
    out = adv.to(x.dtype)
    away = (out.double() - x.double()).abs() > (adv.double() - x.double()).abs()
    return torch.where(away, torch.nextafter(out, x), out)
