"""Scoring saliency maps: deletion/insertion (Petsiuk et al. 2018), edge alignment, coherence.

- :func:`deletion_insertion`: curves of the target's score as pixels are removed
  (deletion) or added (insertion) in order of decreasing saliency, and their areas;
- :func:`compare_methods` and :func:`auc_summary`: those areas for several registered
  methods on the same images, resumable from a cache file;
- :func:`edge_alignment` and :func:`spatial_coherence`: two numbers for "perceptually
  aligned" (the paper's Figures 11 and 18 judge it by eye).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import _io
from .baselines import gaussian_blur
from .common import METHODS, check_choice, check_images, image_groups, prepared, score

__all__ = ["DeletionInsertion", "deletion_insertion", "saliency_map", "compare_methods",
           "auc_summary", "edge_alignment", "spatial_coherence"]


# --------------------------------------------------------------------------- deletion / insertion

@torch.no_grad()
def _scores(model: nn.Module, x: Tensor, target: Tensor, output: str, batch_size: int) -> Tensor:
    """The target's probability (or logit) for each image ``(B,)``, in the model's dtype.

    (Not :func:`rankcore.torch_utils.predict`, which returns float32 logits: the areas of
    a float64 model are compared with closed forms to 1e-9 in the tests.)
    """
    return torch.cat([score(model, x[i:i + batch_size], target[i:i + batch_size], output)
                      for i in range(0, len(x), batch_size)])


def _order_masks(saliency: Tensor, steps: int):
    """Pixel counts per curve point, their fractions ``(steps + 1,)``, and each pixel's rank.

    The rank ``(N, 1, H, W)`` is the pixel's position in decreasing saliency, so the pixels
    changed at point ``i`` are those with ``rank < counts[i]``.
    """
    n_img, h, w = saliency.shape
    n = h * w
    step = math.ceil(n / steps)
    # rank of each pixel in decreasing saliency (stable, so ties keep raster order)
    order = saliency.reshape(n_img, n).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(n_img, n).contiguous())
    counts = [min(i * step, n) for i in range(steps + 1)]
    fractions = torch.tensor(counts, dtype=torch.float64) / n
    return counts, fractions, rank.view(n_img, 1, h, w)


@dataclass
class DeletionInsertion:
    """Curves ``(N, steps + 1)`` of the target's score and their areas ``(N,)``.

    ``fractions`` ``(steps + 1,)`` is the share of pixels removed (deletion) or added
    (insertion) at each point; areas use the trapezoid rule over it. Lower deletion area
    and higher insertion area mean a better ordering (Petsiuk et al. 2018).
    """
    fractions: Tensor
    deletion: Tensor
    insertion: Tensor
    deletion_auc: Tensor = field(init=False)
    insertion_auc: Tensor = field(init=False)

    def __post_init__(self):
        self.deletion_auc = torch.trapezoid(self.deletion, self.fractions, dim=1)
        self.insertion_auc = torch.trapezoid(self.insertion, self.fractions, dim=1)


def _end_scores(model, x, start, target, output, batch_size) -> dict[str, Tensor]:
    """The curves' ends, shared by every saliency map: the image, black, the insertion start."""
    return {"image": _scores(model, x, target, output, batch_size),
            "black": _scores(model, torch.zeros_like(x), target, output, batch_size),
            "start": _scores(model, start, target, output, batch_size)}


def _curves(model, x, start, saliency, target, steps, output, batch_size,
            *, ends) -> DeletionInsertion:
    counts, fractions, rank = _order_masks(saliency.to(x.device), steps)
    inner = counts[1:-1]            # counts[0] = 0 and counts[-1] = H * W are the ends
    groups, per_pass = image_groups(len(x), batch_size)
    curves = {}
    for name, src, dst, first, last in (
            ("deletion", x, torch.zeros_like(x), ends["image"], ends["black"]),
            ("insertion", start, x, ends["start"], ends["image"])):
        rows = []
        for sl in groups:
            scores = [torch.zeros(0, len(x[sl]), dtype=x.dtype, device=x.device)]
            for i in range(0, len(inner), per_pass):
                # (P, B, C, H, W): pixels whose rank < count come from dst
                mask = torch.stack([rank[sl] < c for c in inner[i:i + per_pass]])
                imgs = torch.where(mask, dst[sl][None], src[sl][None])
                s = _scores(model, imgs.flatten(0, 1), target[sl].repeat(len(mask)), output,
                            batch_size * per_pass)
                scores.append(s.view(len(mask), -1))
            rows.append(torch.cat(scores).T)                                 # (B, len(inner))
        mid = torch.cat(rows)
        curves[name] = torch.cat([first[:, None], mid, last[:, None]], 1).double().cpu()
    return DeletionInsertion(fractions, curves["deletion"], curves["insertion"])


def _check_saliency(saliency: Any, x: Tensor) -> None:
    if not isinstance(saliency, Tensor) or saliency.shape != (x.shape[0], *x.shape[2:]):
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"saliency must have shape (N, H, W) = {(x.shape[0], *x.shape[2:])}; "
                         f"got {got} (reduce channel attributions with reduce_channels)")


def deletion_insertion(model: nn.Module, x: Tensor, saliency: Tensor, target: Any = None,
                       steps: int = 32, output: str = "prob", *, insertion_start: str = "blur",
                       blur_sigma: float = 5.0,
                       internal_batch_size: int = 64) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk, Das and Saenko, BMVC 2018).

    Deletion sets pixels (all channels) to black in order of decreasing saliency;
    insertion copies them, in the same order, onto a blurred copy of the image (Petsiuk
    et al.'s canvas) or onto black. The target's score is tracked after every
    ``ceil(H * W / steps)`` pixels.

    Args:
        model, x, target, output: as in :func:`rankcore.rig` (``target`` defaults to the
            top class on ``x``).
        saliency (Tensor): ``(N, H, W)`` scores, higher = more important.
        steps (int, optional): points on each curve after the start. Default: 32.
        insertion_start (str, optional): ``"blur"`` or ``"black"``. Default: ``"blur"``.
        blur_sigma (float, optional): std in pixels of the insertion canvas blur.
            Default: 5 (Petsiuk et al.).
        internal_batch_size (int, optional): images per forward pass. Default: 64.

    Returns:
        DeletionInsertion: ``fractions``, ``deletion``, ``insertion`` curves ``(N, steps + 1)``
        and their areas ``deletion_auc``, ``insertion_auc`` ``(N,)`` on the CPU, float64.
    """
    check_choice("insertion_start", insertion_start, ("blur", "black"))
    with prepared(model, x, target, output, None, internal_batch_size,
                  steps=steps) as (x, target):
        _check_saliency(saliency, x)
        start = gaussian_blur(x, blur_sigma) if insertion_start == "blur" else torch.zeros_like(x)
        ends = _end_scores(model, x, start, target, output, internal_batch_size)
        return _curves(model, x, start, saliency, target, steps, output, internal_batch_size,
                       ends=ends)


# --------------------------------------------------------------------------- comparing methods

def saliency_map(method: str, model: nn.Module, x: Tensor, target: Any = None,
                 **kwargs) -> Tensor:
    """A registered method's saliency ``(N, H, W)``, reduced as :data:`METHODS` says.

    Args:
        method (str): a key of :data:`METHODS`.
        kwargs: passed to the method (``ranks``, ``steps``, ``samples``, ...).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {sorted(METHODS)}")
    m = METHODS[method]
    return m.fn(model, x, target=target, channel_reduce=m.reduce, **kwargs)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _code_digest() -> str:
    """Digest of this package's source: a fix to any method never reuses stale areas."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


#: The first entry of every :func:`compare_methods` cache: tells ours from other files.
CACHE_TAG = "rankcore compare_methods cache"


def compare_methods(model: nn.Module, x: Tensor, methods: dict[str, dict],
                    target: Any = None, steps: int = 32, batch: int = 8,
                    *, cache: str | Path | None = None, cache_key: Any = None,
                    progress: bool = True) -> list[dict]:
    """Deletion and insertion areas of several methods on the same images.

    Images are processed ``batch`` at a time; with ``cache`` each finished batch is
    written atomically to that file (read back with :func:`rankcore._io.load_own`,
    without running code), so an interrupted run resumes where it stopped. A file that is
    not such a cache raises ``ValueError`` and is left untouched; a damaged one is moved
    aside to ``<cache>.corrupt-<time>`` with a warning.

    Args:
        model, x, target: as in :func:`rankcore.rig`.
        methods (dict): method name (a key of :data:`METHODS`) -> keyword arguments.
        steps (int, optional): points per deletion/insertion curve after the start, as in
            :func:`deletion_insertion` (whose other defaults apply). Default: 32.
        batch (int, optional): images per attribution call and per forward pass of the
            curves. Default: 8.
        cache (path, optional): resumable results file (a ``torch.save`` file). Default: none.
        cache_key (any, optional): identifies the model and images (e.g. their names); rows
            cached under another key or other parameters are recomputed.
        progress (bool, optional): progress bar over batches x methods. Default: ``True``.

    Returns:
        list of dict: one row per image and method: ``image``, ``method``, ``target``,
        ``deletion_auc``, ``insertion_auc``, ``seconds`` (attribution time per image).
    """
    if not isinstance(methods, dict) or not methods:
        raise ValueError(f"methods must be a non-empty dict name -> kwargs; got {methods!r}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods {unknown} unknown; expected keys of {sorted(METHODS)}")
    with prepared(model, x, target, "prob", None, batch, steps=steps) as (x, target):
        key = _key([cache_key, methods, steps, target.tolist(), x.shape, _code_digest()])
        done = {}
        if cache is not None:
            _io.check_writable(cache, "cache")
            # a file that is not ours raises; a damaged one of ours is moved aside (warned)
            saved = _io.load_own(cache, CACHE_TAG, "deletion/insertion cache", ("key", "rows"),
                                 valid=lambda blob: isinstance(blob.get("rows"), dict))
            if saved is not None and saved.get("key") == key:
                done = saved["rows"]
        bar = tqdm(total=math.ceil(len(x) / batch) * len(methods), desc="deletion/insertion",
                   disable=not progress)
        for first in range(0, len(x), batch):
            xb, tb = x[first:first + batch], target[first:first + batch]
            canvas = ends = None
            for name, kwargs in methods.items():
                tag = f"{name}:{first}"
                if tag not in done:
                    if ends is None:   # the curves' ends are the same for every method
                        canvas = gaussian_blur(xb, 5.0)
                        ends = _end_scores(model, xb, canvas, tb, "prob", batch)
                    t0 = time.perf_counter()
                    sal = saliency_map(name, model, xb, tb, **kwargs)
                    seconds = (time.perf_counter() - t0) / len(xb)
                    di = _curves(model, xb, canvas, sal, tb, steps, "prob", batch, ends=ends)
                    done[tag] = [{"image": first + i, "method": name, "target": int(tb[i]),
                                  "deletion_auc": float(di.deletion_auc[i]),
                                  "insertion_auc": float(di.insertion_auc[i]),
                                  "seconds": seconds} for i in range(len(xb))]
                    if cache is not None:
                        _io.save_own({"key": key, "rows": done}, cache, CACHE_TAG)
                bar.update(1)
        bar.close()
    return [row for first in range(0, len(x), batch) for name in methods
            for row in done[f"{name}:{first}"]]


def auc_summary(rows: list[dict], reference: str = "vanilla"):
    """The comparison table: mean areas per method with standard errors.

    Args:
        rows (list of dict): output of :func:`compare_methods`.
        reference (str, optional): method the others are paired against, image by image.
            Default: ``"vanilla"``.

    Returns:
        pandas.DataFrame: one row per method (in the order of ``rows``): ``method``,
        ``cite``, ``images``, ``deletion_auc`` and ``insertion_auc`` (means, with ``_sem``
        standard errors), ``ins_minus_del`` (higher is better), ``beats_reference`` (the
        fraction of images where both areas are better than the reference's) and
        ``seconds`` (attribution time per image).
    """
    import pandas as pd
    df = pd.DataFrame(rows)
    if df.empty or "method" not in df:
        raise ValueError("rows must be the non-empty output of compare_methods")
    if reference not in set(df.method):
        raise ValueError(f"reference={reference!r}; expected one of {sorted(set(df.method))}")
    ref = df[df.method == reference].set_index("image")
    out = []
    for method, g in df.groupby("method", sort=False):
        g = g.set_index("image")
        both = g.index.intersection(ref.index)
        better = ((g.loc[both, "deletion_auc"] < ref.loc[both, "deletion_auc"])
                  & (g.loc[both, "insertion_auc"] > ref.loc[both, "insertion_auc"]))
        out.append({"method": method, "cite": METHODS[method].cite, "images": len(g),
                    "deletion_auc": g.deletion_auc.mean(), "deletion_auc_sem": g.deletion_auc.sem(),
                    "insertion_auc": g.insertion_auc.mean(),
                    "insertion_auc_sem": g.insertion_auc.sem(),
                    "ins_minus_del": (g.insertion_auc - g.deletion_auc).mean(),
                    "beats_reference": float(better.mean()) if len(both) else float("nan"),
                    "seconds": g.seconds.mean()})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- alignment numbers

def _ranks(v: Tensor) -> Tensor:
    """Average ranks (ties share their mean rank) along the last axis, float64."""
    order = v.argsort(dim=-1, stable=True)
    sorted_v = v.gather(-1, order)
    ranks = torch.empty_like(v, dtype=torch.float64)
    pos = torch.arange(v.shape[-1], dtype=torch.float64, device=v.device).expand_as(v)
    ranks.scatter_(-1, order, pos.contiguous())
    for row in range(v.shape[0]):       # ties: rare in real maps, exact handling is cheap
        vals, inverse = torch.unique_consecutive(sorted_v[row], return_inverse=True)
        if len(vals) < v.shape[-1]:
            sums = torch.zeros(len(vals), dtype=torch.float64, device=v.device)
            sums.index_add_(0, inverse, pos[row])
            ranks[row, order[row]] = (sums / torch.bincount(inverse))[inverse]
    return ranks


def _corr(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (flattened)."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)


def edge_alignment(x: Tensor, saliency: Tensor) -> Tensor:
    """Spearman correlation between ``|saliency|`` and the image's edge strength, per image.

    A number for "perceptually aligned" (the paper's Figures 11 and 18 judge it by eye):
    gradients of robust models are known to follow object edges (Tsipras et al. 2019).
    Edge strength is the Sobel gradient magnitude of the grey image.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in [0, 1].
        saliency (Tensor): maps ``(N, H, W)``.

    Returns:
        Tensor: ``(N,)`` float64 in [-1, 1] on the CPU.
    """
    check_images(x)
    _check_saliency(saliency, x)
    grey = x.detach().double().mean(1, keepdim=True).cpu()                   # (N, 1, H, W)
    sobel = torch.tensor([[1., 0., -1.], [2., 0., -2.], [1., 0., -1.]], dtype=torch.float64)
    kernels = torch.stack([sobel, sobel.T])[:, None]                         # (2, 1, 3, 3)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)       # (N, 2, H, W)
    edges = g.pow(2).sum(1).sqrt().flatten(1)
    return _corr(_ranks(edges), _ranks(saliency.detach().abs().double().cpu().flatten(1)))


def spatial_coherence(saliency: Tensor) -> Tensor:
    """How structured a map is: correlation of ``|saliency|`` with its neighbour pixels.

    The mean of the Pearson correlations between each pixel and its right and its lower
    neighbour, per map: near 0 for pixel noise, near 1 for smooth blobs. A second number
    for Figures 11 and 18, whose robust-model maps look less noisy.

    Args:
        saliency (Tensor): maps ``(N, H, W)`` with ``H, W >= 2``.

    Returns:
        Tensor: ``(N,)`` float64 in [-1, 1] on the CPU.
    """
    if not isinstance(saliency, Tensor) or saliency.dim() != 3 or min(saliency.shape[1:]) < 2:
        raise ValueError(f"saliency must have shape (N, H, W) with H, W >= 2; got "
                         f"{tuple(getattr(saliency, 'shape', ()))}")
    m = saliency.detach().abs().double().cpu()
    return 0.5 * (_corr(m[:, :, :-1], m[:, :, 1:]) + _corr(m[:, :-1], m[:, 1:]))
