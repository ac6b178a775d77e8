"""Small plotting helpers shared by the chapters (matplotlib only)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

#: The book's text column, in inches of a figure drawn at :data:`DPI`: 700 px. A figure
#: this wide shows its text at the size it was set in; a wider one is scaled down to fit.
COLUMN_INCHES = 7.0
#: Dots per inch of the figures inlined in the book (matplotlib-inline's default).
DPI = 100


def figsize(ncols: int = 1, nrows: int = 1, aspect: float = 0.75, extra: float = 0.0,
            width: float = COLUMN_INCHES) -> tuple[float, float]:
    """``(width, height)`` in inches of a figure of ``nrows`` x ``ncols`` panels that fills
    the book's column: each panel ``width / ncols`` wide and ``aspect`` times as tall, plus
    ``extra`` inches (a suptitle, a legend row). Lay four panels out 2 x 2, not 1 x 4: at
    700 px a panel of a 1 x 4 row is under 175 px wide.

    Raises:
        ValueError: ``ncols`` or ``nrows`` below 1, or ``aspect``/``width`` not positive.
    """
    for name, value in (("ncols", ncols), ("nrows", nrows)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a whole number of panels, at least 1")
    for name, value in (("aspect", aspect), ("width", width)):
        if not value > 0:
            raise ValueError(f"{name}={value!r}; expected a positive number")
    if extra < 0:
        raise ValueError(f"extra={extra!r}; expected inches >= 0")
    return (float(width), width / ncols * aspect * nrows + extra)


def grid_shape(n: int, max_cols: int = 2) -> tuple[int, int]:
    """``(nrows, ncols)`` for ``n`` panels at most ``max_cols`` to a row (2: the 2 x 2 rule)."""
    if n < 1 or max_cols < 1:
        raise ValueError(f"n={n!r}, max_cols={max_cols!r}; expected both at least 1")
    ncols = min(n, max_cols)
    return math.ceil(n / ncols), ncols


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
               size: float | None = None, rescale: Sequence[bool] | bool = False, cmap: str | None = None,
               suptitle: str | None = None):
    """A figure showing ``images`` (each ``(C, H, W)`` or ``(H, W)``) in a grid; returns the figure.

    ``size`` (inches per panel) is capped so that the grid fits the book's column
    (:func:`figsize`); by default the panels fill it.
    """
    import matplotlib.pyplot as plt
    n = len(images)
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    size = min(size or COLUMN_INCHES / ncols, COLUMN_INCHES / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize(ncols, nrows, aspect=(size + 0.3) / size,
                                                           extra=0.4 if suptitle else 0,
                                                           width=size * ncols),
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

