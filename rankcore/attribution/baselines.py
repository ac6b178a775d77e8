"""The attribution baselines RIG is compared with: vanilla gradient, IG, SmoothGrad, Blur IG.

Vanilla gradient, integrated gradients and SmoothGrad run through captum; Blur IG
integrates along the path of Gaussian-blurred images with the same trapezoid rule as
rank-path IG. Every method takes ``(model, x, target=None, ...)`` with images ``x``
``(N, C, H, W)`` in [0, 1] (moved to the model's device), evaluates the model in eval
mode (the caller's mode restored) and returns its result on ``x``'s device.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .common import (finish, image_groups, prepared, reduce_channels, register, run_path)

__all__ = ["vanilla_gradient", "integrated_gradients", "smoothgrad", "blur_ig",
           "gaussian_blur"]


def _forward(model: Callable, output: str) -> Callable:
    """The model as captum sees it: images -> probabilities (or logits)."""
    if output == "logit":
        return model
    return lambda inp: model(inp).softmax(1)


def _leaf(x: Tensor) -> Tensor:
    """A copy that requires grad, as captum wants its inputs (it warns otherwise)."""
    return x.detach().clone().requires_grad_(True)


def _by_groups(x: Tensor, target: Tensor, internal_batch_size: int, fn: Callable) -> Tensor:
    groups, per_pass = image_groups(len(x), internal_batch_size)
    return torch.cat([fn(x[sl], target[sl], per_pass) for sl in groups])


# --------------------------------------------------------------------------- captum baselines

@register("vanilla", reduce="abs_max", cite="Simonyan et al. 2014")
def vanilla_gradient(model: nn.Module, x: Tensor, target: Any = None, output: str = "prob",
                     internal_batch_size: int = 16,
                     channel_reduce: str | None = "abs_max") -> Tensor:
    """Vanilla gradient saliency (Simonyan, Vedaldi and Zisserman, 2014), via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rankcore.rig`.
        channel_reduce (str or None, optional): Default: ``"abs_max"`` (Simonyan et al.'s
            maximum absolute gradient over channels).

    Returns:
        Tensor: ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``) on ``x``'s device.
    """
    from captum.attr import Saliency
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size) as (x, target):
        method = Saliency(_forward(model, output))
        with torch.enable_grad():
            g = _by_groups(x, target, internal_batch_size, lambda xg, tg, _: method.attribute(
                _leaf(xg), target=tg, abs=False).detach())
    return reduce_channels(g, channel_reduce).to(home)


@register("ig", reduce="sum", cite="Sundararajan et al. 2017")
def integrated_gradients(model: nn.Module, x: Tensor, target: Any = None,
                         baseline: float | Tensor = 0.0, steps: int = 50,
                         *, output: str = "prob", internal_batch_size: int = 16,
                         channel_reduce: str | None = None, return_gap: bool = False):
    """Integrated gradients from a black baseline (Sundararajan, Taly and Yan, 2017), via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rankcore.rig`.
        baseline (float or Tensor, optional): start of the straight path, a scalar or a
            tensor broadcastable to ``x``. Default: 0 (black).
        steps (int, optional): Gauss-Legendre points on the path. Default: 50.
        channel_reduce (str or None, optional): Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return captum's completeness gap ``(N,)``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap if ``return_gap``, on ``x``'s device.
    """
    from captum.attr import IntegratedGradients
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size,
                  steps=steps) as (x, target):
        try:
            base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"baseline must be a number or a tensor broadcastable to x "
                             f"{tuple(x.shape)}; got {getattr(baseline, 'shape', baseline)!r}") from None
        method = IntegratedGradients(_forward(model, output))
        attr, gap = torch.zeros_like(x), torch.zeros(len(x), dtype=x.dtype, device=x.device)
        groups, _ = image_groups(len(x), internal_batch_size)
        with torch.enable_grad():
            for sl in groups:
                a, d = method.attribute(_leaf(x[sl]), baselines=base[sl], target=target[sl],
                                        n_steps=steps,
                                        internal_batch_size=max(internal_batch_size, len(x[sl])),
                                        return_convergence_delta=True)
                attr[sl], gap[sl] = a.detach(), d.detach().to(x.dtype)
    return finish(attr, gap, channel_reduce, return_gap, home)


@register("smoothgrad", reduce="abs_max", cite="Smilkov et al. 2017")
def smoothgrad(model: nn.Module, x: Tensor, target: Any = None, samples: int = 25,
               noise: float = 0.15, *, seed: int = 0, output: str = "prob",
               internal_batch_size: int = 16,
               channel_reduce: str | None = "abs_max") -> Tensor:
    """SmoothGrad (Smilkov et al., 2017): the gradient averaged over noisy copies, via captum.

    Args:
        model, x, target, output, internal_batch_size: as in :func:`rankcore.rig`.
        samples (int, optional): noisy copies per image. Default: 25.
        noise (float, optional): Gaussian noise std in [0, 1] pixel units (Smilkov et al.'s
            noise level times the pixel range 1). Default: 0.15.
        seed (int, optional): seeds the noise, without touching the global generator.
            Default: 0.
        channel_reduce (str or None, optional): applied to the averaged gradient.
            Default: ``"abs_max"``.

    Returns:
        Tensor: ``(N, H, W)`` (``(N, C, H, W)`` if ``channel_reduce=None``) on ``x``'s device.
    """
    from captum.attr import NoiseTunnel, Saliency
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0; got {noise!r}")
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size,
                  samples=samples) as (x, target):
        method = NoiseTunnel(Saliency(_forward(model, output)))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(seed)
            g = _by_groups(x, target, internal_batch_size, lambda xg, tg, per_pass: method.attribute(
                _leaf(xg), nt_type="smoothgrad", nt_samples=samples, stdevs=float(noise),
                nt_samples_batch_size=min(samples, per_pass), target=tg, abs=False).detach())
    return reduce_channels(g, channel_reduce).to(home)


# --------------------------------------------------------------------------- Blur IG

def _gaussian_matrix(n: int, sigma: float, dtype, device) -> Tensor:
    """``(n, n)`` matrix that blurs a length-n signal with a Gaussian of std ``sigma`` pixels.

    Symmetric (mirror) boundaries are folded into the matrix, so any sigma works, even one
    wider than the image, and blurring an image is two small matrix products.
    """
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


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Blur images ``(..., H, W)`` with an isotropic Gaussian of std ``sigma`` pixels.

    ``sigma = 0`` returns ``x`` unchanged. Mirror boundaries (as ``scipy.ndimage``).
    """
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
        raise ValueError(f"sigma must be a number >= 0; got {sigma!r}")
    if sigma == 0:
        return x
    h, w = x.shape[-2:]
    gh = _gaussian_matrix(h, sigma, x.dtype, x.device)
    gw = _gaussian_matrix(w, sigma, x.dtype, x.device)
    return gh @ x @ gw.T


@register("blur_ig", reduce="sum", cite="Xu et al. 2020")
def blur_ig(model: nn.Module, x: Tensor, target: Any = None, sigma_max: float | None = None,
            steps: int = 100, *, output: str = "prob", internal_batch_size: int = 16,
            channel_reduce: str | None = None, return_gap: bool = False,
            progress: bool = False):
    r"""Blur integrated gradients (Xu, Venugopalan and Sundararajan, CVPR 2020).

    Integrates the gradient along the path of Gaussian-blurred images from
    ``sigma_max`` down to 0 (the image itself), with the trapezoid rule over ``steps``
    equal sigma intervals (Xu et al. use a left Riemann sum with an analytic path
    derivative; both converge to the same integral). Completeness: the attributions sum
    to ``f(x) - f(blur(x, sigma_max))`` up to discretisation.

    Args:
        model, x, target, output, internal_batch_size, progress: as in :func:`rankcore.rig`.
        sigma_max (float, optional): widest blur, in pixels. Default: Xu et al.'s 50 px at
            224 px, scaled with ``min(H, W)``.
        steps (int, optional): sigma intervals on the path (``steps + 1`` gradients).
            Default: 100 (as Xu et al.).
        channel_reduce (str or None, optional): see :func:`reduce_channels`.
            Default: ``None`` (``(N, C, H, W)``).
        return_gap (bool, optional): also return the completeness gap ``(N,)``.

    Returns:
        Tensor ``(N, C, H, W)`` (or reduced), and the gap ``(N,)`` if ``return_gap``, on
        ``x``'s device.
    """
    if sigma_max is not None and (isinstance(sigma_max, bool)
                                  or not isinstance(sigma_max, (int, float)) or not sigma_max > 0):
        raise ValueError(f"sigma_max must be a number > 0; got {sigma_max!r}")
    home = getattr(x, "device", None)
    with prepared(model, x, target, output, channel_reduce, internal_batch_size,
                  steps=steps) as (x, target):
        if sigma_max is None:
            sigma_max = 50.0 * min(x.shape[-2:]) / 224
        sigmas = [sigma_max * (1 - i / steps) for i in range(steps + 1)]      # sigma_max -> 0

        def make(xg, per_pass):
            for i in range(0, len(sigmas), per_pass):
                yield torch.stack([gaussian_blur(xg, s) for s in sigmas[i:i + per_pass]])

        attr, gap = run_path(model, x, target, output, internal_batch_size, len(sigmas), make,
                             desc="blur IG", progress=progress)
    return finish(attr, gap, channel_reduce, return_gap, home)
