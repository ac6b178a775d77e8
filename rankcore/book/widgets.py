"""The rank explorer: move a slider over k and watch an image, its spectrum and predictions.

One view, two renderings (Figures 2-4 of the paper, interactively):

- ``rank_explorer(image, models)`` in a live Jupyter kernel: an ipywidgets slider over
  every rank; each move recomputes the rank-k image and the models' top-5.
- ``rank_explorer(image, models, static=True)``: the same view at every rank as
  self-contained HTML (:mod:`rankcore.book.explorer`: the image's quantised SVD factors, each
  model's top-5 at every rank and a few lines of inline JavaScript that recompose the rank-k
  image on a canvas), so a reader of the static book moves the slider without a kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..rank import parse_ranks, low_rank, max_rank, rank_sweep, singular_values
from . import explorer
from .explorer import top_predictions as _top

__all__ = ["rank_explorer", "default_ranks"]

_CHANNEL_COLOURS = ("tab:red", "tab:green", "tab:blue")


def default_ranks(w: int, frames: int = 12) -> list[int]:
    """About ``frames`` ranks from 1 to ``w``, spaced evenly in log scale (low ranks matter most).

    Args:
        w (int): the largest rank, ``min(H, W)``.
        frames (int, optional): how many ranks at most. Default: 12.

    Returns:
        list[int]: sorted distinct ranks, always containing 1 and ``w``.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames={frames!r}; expected an int >= 2")
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        raise ValueError(f"w={w!r}; expected a positive int (the image's largest rank)")
    grid = torch.logspace(0, torch.log10(torch.tensor(float(w))), frames).round().long()
    return sorted(set(grid.tolist()) | {1, w})


@dataclass
class _Model:
    name: str
    module: nn.Module
    classes: Sequence[str] | None


def _models(models, classes) -> list[_Model]:
    if models is None:
        return []
    if isinstance(models, nn.Module):
        models = [models]
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, Sequence):
        items = [(getattr(m, "name", type(m).__name__), m) for m in models]
    else:
        raise TypeError(f"models must be an nn.Module, a list of them or a dict name -> "
                        f"module, got {type(models).__name__}")
    out = []
    for name, m in items:
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{name!r}] is a {type(m).__name__}; expected an nn.Module")
        names = classes.get(name) if isinstance(classes, Mapping) else classes
        if names is None and getattr(m, "dataset", None):
            from ..data import class_names
            names = class_names(m.dataset)
        out.append(_Model(str(name), m, names))
    return out


def _label(names: Sequence[str] | None, index: int, width: int = 22) -> str:
    text = names[index] if names is not None and index < len(names) else f"class {index}"
    return text if len(text) <= width else text[:width - 1] + "…"


class _View:
    """Everything the explorer draws for one image; ``draw(k)`` fills the figure."""

    def __init__(self, image: Tensor, models: list[_Model], top: int, figsize, dpi):
        import matplotlib.pyplot as plt

        self.image, self.models, self.top = image, models, top
        self.w = max_rank(image)
        self.sv = singular_values(image).cpu()              # (C, w)
        energy = self.sv.double().pow(2).sum(0)             # (w,), summed over channels
        self.energy = (energy.cumsum(0) / energy.sum()).tolist()
        n = 2 + len(models)
        width = 3.0 * n if figsize is None else figsize[0]
        height = 2.9 if figsize is None else figsize[1]
        # A fixed layout: constrained/tight layout would re-measure every text on each
        # slider move and slow the live view down.
        self.fig, self.axes = plt.subplots(1, n, figsize=(width, height), dpi=dpi,
                                           gridspec_kw=dict(wspace=0.9 if models else 0.3))
        self.fig.subplots_adjust(left=0.02, right=0.98, top=0.86, bottom=0.16)
        self.cache: dict[int, tuple[Tensor, list]] = {}

    def frame(self, k: int) -> tuple[Tensor, list]:
        """The rank-k image ``(C, H, W)`` and each model's (probabilities, indices)."""
        if k not in self.cache:
            xk = low_rank(self.image[None], k, clamp=True)   # (1, C, H, W)
            preds = [_top(m.module, xk, self.top, len(xk)) for m in self.models]
            self.cache[k] = (xk[0].cpu(), [(p[0], i[0]) for p, i in preds])
        return self.cache[k]

    def fill(self, ranks: list[int]) -> None:
        """Compute many frames at once: one SVD, one batch per model."""
        todo = [k for k in ranks if k not in self.cache]
        if not todo:
            return
        xs = torch.stack([xk[0] for _, xk in rank_sweep(self.image[None], todo, clamp=True)])
        preds = [_top(m.module, xs, self.top, len(xs)) for m in self.models]  # (K, top) each
        for j, k in enumerate(sorted(set(todo))):
            self.cache[k] = (xs[j].cpu(), [(p[j], i[j]) for p, i in preds])

    def draw(self, k: int) -> None:
        from .figures import to_hwc

        xk, preds = self.frame(k)
        for ax in self.axes:
            ax.clear()
        ax = self.axes[0]
        ax.imshow(to_hwc(xk))
        ax.set_title(f"rank {k} of {self.w}")
        ax.axis("off")
        ax = self.axes[1]
        ranks = torch.arange(1, self.w + 1)
        for c, colour in zip(range(self.sv.shape[0]), _CHANNEL_COLOURS * 2):
            ax.semilogy(ranks, self.sv[c].clamp_min(1e-8), color=colour, lw=1)
        ax.axvspan(k + 0.5, self.w + 0.5, color="0.85", zorder=0)
        ax.axvline(k + 0.5, color="k", ls="--", lw=1)
        kept = self.energy[k - 1] if k > 0 else 0.0
        ax.set_title(f"singular values: {100 * kept:.1f}% energy kept", fontsize=9)
        ax.set_xlabel("index (grey: removed)", fontsize=8)
        ax.tick_params(labelsize=7)
        for ax, m, (p, idx) in zip(self.axes[2:], self.models, preds):
            labels = [_label(m.classes, int(i)) for i in idx]
            ax.barh(range(len(p)), p.numpy(), color="tab:blue")
            ax.set_yticks(range(len(p)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, 1)
            ax.set_title(f"{m.name}: top-{len(p)}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7)


def _static(image: Tensor, models: list[_Model], ticks: list[int], top: int):
    from IPython.display import HTML

    data = explorer.payload(image, [(m.name, m.module, m.classes) for m in models], top)
    return HTML(explorer.explorer_html(data, ticks, ticks[len(ticks) // 2]))


def _live(view: _View, ranks: list[int]):
    import ipywidgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    plt.close(view.fig)  # redrawn into the output widget on every move
    out = ipywidgets.Output()
    slider = ipywidgets.SelectionSlider(options=ranks, value=ranks[min(len(ranks) - 1, 10)],
                                        description="rank k", continuous_update=False,
                                        layout=ipywidgets.Layout(width="60%"))

    def show(change=None):
        with out:
            out.clear_output(wait=True)
            view.draw(slider.value)
            display(view.fig)

    slider.observe(show, names="value")
    show()
    box = ipywidgets.VBox([slider, out])
    box.slider, box.view = slider, view  # handles for tests and for callers' own controls
    return box


def rank_explorer(image: Tensor, models=None, ranks=None, static: bool = False,
                  classes=None, top: int = 5, frames: int = 12,
                  figsize: tuple[float, float] | None = None, dpi: int = 72):
    """A slider over k showing the rank-k image, its spectrum with the cut, and predictions.

    Args:
        image (Tensor): one image ``(C, H, W)`` (or ``(1, C, H, W)``) in ``[0, 1]``, on any
            device; models receive it on their own device. The static explorer shows it as
            an 8-bit picture (rounded to a multiple of 1/255).
        models (nn.Module, list or dict, optional): classifiers on ``[0, 1]`` images (as
            :func:`rankcore.models.load` returns them); a dict gives their display names.
            Default: ``None``, image and spectrum only.
        ranks (sequence of int, optional): in ``[0, min(H, W)]``. Live: the slider's ranks
            (default every rank). Static: the slider always covers every rank; these are
            its labelled ticks (default :func:`default_ranks` ``(w, frames)``) and the
            middle one is the rank shown first.
        static (bool, optional): return self-contained HTML (no kernel, no external
            script) instead of a live widget. Default: ``False``.
        classes (list of str or dict, optional): class names by index, or a dict model name
            -> names. Default: ``rankcore.data.class_names(model.dataset)`` where the model
            has a ``dataset`` attribute, else ``"class i"``.
        top (int, optional): predictions shown per model. Default: 5.
        frames (int, optional): how many ticks the static slider gets when ``ranks`` is not
            given. Default: 12.
        figsize ((float, float), optional): figure size of the live view in inches.
            Default: 3 in per panel.
        dpi (int, optional): resolution of the live view. Default: 72.

    Returns:
        ``ipywidgets.VBox`` (live) or ``IPython.display.HTML`` (static; its ``.data`` is
        the HTML text, which holds one ``<input type="range">`` slider over ``0..min(H, W)``;
        the static one runs every model on all ``min(H, W) + 1`` rank-k images once).

    Examples::

        >>> x = torch.rand(3, 32, 32)
        >>> html = rank_explorer(x, static=True, frames=4)
        >>> "<input" in html.data
        True
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a torch.Tensor (C, H, W), got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3:
        raise ValueError(f"image must have shape (C, H, W) or (1, C, H, W), got "
                         f"{tuple(image.shape)}")
    if not image.is_floating_point() or not bool(torch.isfinite(image).all()):
        raise ValueError(f"image must be a finite floating-point tensor, got dtype {image.dtype}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top={top!r}; expected a positive int")
    w = max_rank(image)
    if ranks is None:
        ranks = default_ranks(w, frames) if static else list(range(0, w + 1))
    ranks = parse_ranks(ranks, w)
    if not ranks:
        raise ValueError("ranks is empty; expected at least one rank")
    if static:
        return _static(image, _models(models, classes), ranks, top)
    return _live(_View(image.float(), _models(models, classes), top, figsize, dpi), ranks)
