"""Small plotting helpers shared by the chapters (matplotlib only)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def to_hwc(x: Tensor, rescale: bool = False) -> np.ndarray:
    """An image ``(C, H, W)`` or ``(H, W)`` as a NumPy array ``(H, W, C)`` for ``imshow``.

    Args:
        x (Tensor): one image; values are clipped to ``[0, 1]``.
        rescale (bool): map ``[min, max]`` to ``[0, 1]`` first, for signed images such as
            high-rank residuals and differences. Default: ``False``.
    """
    x = x.detach().float().cpu()
    if rescale:
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    x = x.clamp(0, 1)
    if x.dim() == 3:
        x = x.permute(1, 2, 0)
        if x.shape[-1] == 1:
            x = x[..., 0]
    return x.numpy()


def image_grid(images: Sequence[Tensor], titles: Sequence[str] | None = None, ncols: int | None = None,
               size: float = 2.4, rescale: Sequence[bool] | bool = False, cmap: str | None = None,
               suptitle: str | None = None):
    """A figure showing ``images`` (each ``(C, H, W)`` or ``(H, W)``) in a grid; returns the figure."""
    import matplotlib.pyplot as plt
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.3) * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    flags = [rescale] * n if isinstance(rescale, bool) else list(rescale)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = to_hwc(images[i], flags[i])
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig

