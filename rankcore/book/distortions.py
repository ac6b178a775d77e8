"""Distortions with a prescribed L2 norm: the paper's Figure 5 on the limits of Lp budgets."""
from __future__ import annotations

import torch
from torch import Tensor


def _check(x: Tensor, l2: float) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor image (C, H, W), got {type(x).__name__}")
    if x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"x must be one float image (C, H, W), got shape {tuple(x.shape)} "
                         f"and dtype {x.dtype}")
    if isinstance(l2, bool) or not isinstance(l2, (int, float)):
        raise TypeError(f"l2 must be a number, got {type(l2).__name__} {l2!r}")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0, got {l2}")


def uniform_noise(x: Tensor, l2: float, seed: int = 0) -> Tensor:
    """``x`` plus zero-mean uniform noise scaled to L2 norm ``l2`` (before clipping to [0, 1]).

    Args:
        x (Tensor): one image ``(C, H, W)`` in ``[0, 1]``.
        l2 (float): the perturbation's Euclidean norm over all pixels and channels.
        seed (int): seed of the noise. Default: 0.

    Returns:
        Tensor: ``(C, H, W)`` in ``[0, 1]``. Clipping can shorten the perturbation a
        little; measure ``(out - x).norm()`` to report the realised distortion.
    """
    _check(x, l2)
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=g, dtype=torch.float64) * 2 - 1
    noise = (noise * (l2 / noise.norm())).to(x)
    return (x + noise).clamp(0, 1)


def square_patch(x: Tensor, l2: float, colour: float = 0.0, corner: tuple[int, int] | None = None) -> Tensor:
    """``x`` with a square of constant ``colour`` pasted so that ``||out - x||_2 ~= l2``.

    The square grows from ``corner`` (default: the image centre) one pixel at a time
    until the change reaches ``l2``, then the last ring is blended so the norm matches.

    Args:
        x (Tensor): one image ``(C, H, W)`` in ``[0, 1]``.
        l2 (float): target Euclidean norm of the change.
        colour (float): the patch's value in ``[0, 1]`` in every channel. Default: 0 (black).
        corner (tuple, optional): top-left ``(row, col)``; default centres the square.

    Returns:
        Tensor: ``(C, H, W)``; raises ``ValueError`` if even a full-image patch is too small.
    """
    _check(x, l2)
    _, h, w = x.shape
    target = torch.full_like(x, colour)
    for side in range(1, min(h, w) + 1):
        r0, c0 = corner if corner is not None else ((h - side) // 2, (w - side) // 2)
        out = x.clone()
        out[:, r0:r0 + side, c0:c0 + side] = target[:, r0:r0 + side, c0:c0 + side]
        d = (out - x).norm().item()
        if d >= l2:
            prev = x.clone()
            if side > 1:
                s = side - 1
                p0, q0 = corner if corner is not None else ((h - s) // 2, (w - s) // 2)
                prev[:, p0:p0 + s, q0:q0 + s] = target[:, p0:p0 + s, q0:q0 + s]
            # Blend between the two squares: the norm is monotone in the blend weight.
            lo, hi = 0.0, 1.0
            for _ in range(40):
                t = (lo + hi) / 2
                if ((prev + t * (out - prev)) - x).norm().item() < l2:
                    lo = t
                else:
                    hi = t
            return prev + lo * (out - prev)
    raise ValueError(f"l2={l2} is larger than a full-image patch of colour {colour} can reach")
