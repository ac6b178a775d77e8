"""The per-batch steps of :mod:`rankcore.train`'s recipe: on-device augmentation and
training-time adversarial examples (re-exported as ``rankcore.train.augment`` and
``rankcore.train.adversarial``; the attack is :func:`rankcore.attacks.adversarial`, which
takes the projected step of :func:`rankcore.attacks.pgd`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .attacks import adversarial

__all__ = ["augment", "adversarial"]


def augment(x: Tensor, padding: int, generator: torch.Generator, mode: str = "zeros") -> Tensor:
    """Random translation by up to ``padding`` pixels (``mode`` "zeros" or "reflect"
    padding) and random horizontal flip of images ``x`` ``(B, C, H, W)``, per image."""
    b, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        xp = F.pad(x, (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
        dy = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]                                      # (B, C, H, W)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
