"""The per-batch steps of :mod:`rankcore.train`'s recipe: on-device augmentation and
training-time adversarial examples (re-exported as ``rankcore.train.augment`` and
``rankcore.train.adversarial``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def adversarial(model: nn.Module, x: Tensor, y: Tensor, *, method: str, norm: str, eps: float,
                steps: int, step_size: float | None, generator: torch.Generator) -> Tensor:
    """Training-time adversarial examples in the model's current mode: ``"fgsm-rs"`` (a
    uniform start, one signed step of ``step_size`` or 1.25 eps) or ``"pgd"`` (``steps`` steps
    of ``step_size`` or 2.5 eps / steps from a random start), projected onto the ``norm``
    ("linf"/"l2") ball of radius ``eps``, images kept in [0, 1]."""
    steps = 1 if method == "fgsm-rs" else steps
    alpha = step_size or (1.25 * eps if method == "fgsm-rs" else 2.5 * eps / steps)
    delta = torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1
    if norm == "l2":  # a random direction with a random radius below eps
        r = torch.rand(len(x), 1, device=x.device, generator=generator)
    delta = (_unit(delta) * r * eps).view_as(x) if norm == "l2" else delta * eps
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        with torch.no_grad():
            if norm == "linf":
                delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
            else:
                delta = delta + alpha * _unit(grad).view_as(x)
                n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
                delta = delta * (eps / n).clamp(max=1).view(-1, 1, 1, 1)
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def _unit(t: Tensor) -> Tensor:
    """Rows of ``t.flatten(1)`` scaled to unit L2 norm."""
    flat = t.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
