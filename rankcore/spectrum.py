"""The rank spectrum: a model's predictions as a function of the rank of its input.

This is the paper's Algorithm 1 (Section 3.2, Figures 6, 7 and 13): every image is
truncated to rank k per colour channel (equation 2), and the model's rank-k prediction
is compared with its full-rank prediction (``agreement``, exactly Algorithm 1) and with
the true label (``top1``, ``top5``).

Algorithm 1 as written computes a fresh SVD for every rank and image. Here each image
and channel is decomposed once (:func:`rankcore.rank.rank_blocks`), and the rank-k
images of several images and ranks share each forward pass, so the cost is the model's
forward passes plus a small overhead (``bench/spectrum_bench.py`` measures it).

The computation is organised in blocks of consecutive images. A block is the unit of
work for everything that must not change the answer:

* resuming (``checkpoint=PATH``): finished blocks are written atomically and skipped on
  a re-run;
* distribution (``torchrun``): block ``b`` goes to process ``b % world_size``;
* batching: a block always meets the model in the same batches.

So an interrupted, resumed or distributed run gives the table of an uninterrupted
single-process run, bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import _io
from .torch_utils import model_device
from .rank import parse_ranks, rank_blocks

__all__ = ["rank_spectrum", "summary", "parse_ranks", "top_predictions", "COLUMNS",
           "load_model", "load_data_for", "spectra", "summary_table", "saturation_rank", "gap",
           "plot", "figure_top5"]

#: Columns of the table returned by :func:`rank_spectrum`, in order.
COLUMNS = ("rank", "agreement", "top1", "top5", "mean_true_prob", "n")

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: Bumped when a change alters what a checkpointed block holds, so old files are not resumed.
CHECKPOINT_VERSION = 2


# ---------------------------------------------------------------------------- ranks

# ---------------------------------------------------------------------------- inputs

class _Source:
    """Images (and labels) fetched a block at a time from a tensor or a data set."""

    def __init__(self, images: Any, labels: Any):
        if isinstance(images, (tuple, list)) and len(images) == 2 and isinstance(images[0], Tensor):
            images, labels = images[0], images[1] if labels is None else labels
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
            self._x, self._ds = images, None
        elif hasattr(images, "__getitem__") and hasattr(images, "__len__"):
            self._x, self._ds = None, images
        else:
            raise TypeError("images must be a tensor (N, C, H, W) or a data set of "
                            f"(image, label) items, got {type(images).__name__}")
        self.n = len(images)
        if self.n == 0:
            raise ValueError("images is empty: the rank spectrum needs at least one image")
        self._y = None if labels is None else torch.as_tensor(labels).long().flatten().cpu()
        if self._y is not None and len(self._y) != self.n:
            raise ValueError(f"labels has {len(self._y)} entries for {self.n} images")
        first, y0 = self.get(0, 1)
        self.shape = tuple(first.shape[1:])  # (C, H, W)
        self.has_labels = y0 is not None

    def get(self, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
        """Images ``[start, stop)`` as ``(B, C, H, W)`` float and their labels ``(B,)`` or None."""
        if self._x is not None:
            x = self._x[start:stop]
            y = None if self._y is None else self._y[start:stop]
        else:
            items = [self._ds[i] for i in range(start, stop)]
            pairs = [it if isinstance(it, (tuple, list)) else (it, None) for it in items]
            x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            ys = [p[1] for p in pairs]
            if self._y is not None:
                y = self._y[start:stop]
            elif any(v is None for v in ys):
                y = None
            else:
                y = torch.as_tensor([int(v) for v in ys], dtype=torch.long)
        if x.dim() != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)} for "
                             f"images [{start}, {stop})")
        if not x.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {x.dtype}")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"images must lie in [0, 1] (models normalise their own input), "
                             f"got values in [{lo:.3g}, {hi:.3g}] among images [{start}, {stop})")
        return x, y

    def digest(self) -> str:
        """A short hash of the first image, so a checkpoint is not resumed on other data."""
        x, _ = self.get(0, 1)
        return hashlib.sha1(x.float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _model_digest(model: nn.Module) -> str:
    """Names, shapes and sums of the parameters: cheap, and changes with the weights."""
    h = hashlib.sha1(type(model).__name__.encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{name}{tuple(t.shape)}{float(t.detach().double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- forward

class _Forward:
    """The model's softmax on a batch, under inference mode, autocast and channels-last."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int,
                 amp: str | None, channels_last: bool):
        self.model, self.device, self.batch_size = model, device, batch_size
        # Inputs take the model's float dtype (float64 models get float64 images).
        dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
        self.dtype = dtypes[0] if dtypes and dtypes[0] == torch.float64 else torch.float32
        self.channels_last = channels_last
        self.autocast = (torch.autocast(device_type=device.type, dtype=_AMP[amp])
                         if amp else contextlib.nullcontext())

    def __call__(self, x: Tensor) -> Tensor:
        """``x (B, C, H, W)`` -> probabilities ``(B, classes)``, float32 or the model's float64."""
        out = []
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start:start + self.batch_size]
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with self.autocast:
                logits = self.model(xb)
            if isinstance(logits, (tuple, list)):  # e.g. GoogLeNet's auxiliary outputs
                logits = logits[0]
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # softmax of autocast logits in float32
            out.append(logits.softmax(dim=-1))
        return torch.cat(out)


def _run_block(forward: _Forward, x: Tensor, y: Tensor | None, ks: list[int],
               step: Callable[[int], Any]) -> dict[str, Tensor]:
    """Predictions of one block of images at every rank in ``ks``.

    Returns CPU tensors: ``full (B,)`` full-rank prediction, ``pred (R, B)`` rank-k
    prediction, and with labels ``top5 (R, B)`` bool and ``prob (R, B)`` probability of
    the true class.
    """
    x = x.to(forward.device, forward.dtype)
    b = x.shape[0]
    y_dev = None if y is None else y.to(forward.device)
    # Full rank is x itself: when it is among the ranks, its row gives the full-rank
    # prediction and saves a forward pass per image.
    full = None if ks[-1] == min(x.shape[-2:]) else forward(x).argmax(dim=-1).int().cpu()
    # Enough ranks per block that each forward pass sees about batch_size images.
    chunk = max(1, forward.batch_size // b)
    preds, top5s, probs = [], [], []
    for block_ks, xs in rank_blocks(x, ks, chunk=chunk, clamp=True):  # xs: (r, B, C, H, W)
        p = forward(xs.flatten(0, 1)).view(len(block_ks), b, -1)     # (r, B, classes)
        if y is not None and not preds and (int(y.min()) < 0 or int(y.max()) >= p.shape[-1]):
            raise ValueError(f"labels must lie in [0, {p.shape[-1] - 1}] (the model's classes), "
                             f"got values in [{int(y.min())}, {int(y.max())}]")
        preds.append(p.argmax(dim=-1).int().cpu())  # int32 halves the checkpoint
        if y_dev is not None:
            target = y_dev.view(1, b, 1).expand(len(block_ks), b, 1)
            top = p.topk(min(5, p.shape[-1]), dim=-1).indices           # (r, B, 5)
            top5s.append((top == target).any(dim=-1).cpu())
            probs.append(p.gather(-1, target).squeeze(-1).cpu())
        step(len(block_ks) * b)
    pred = torch.cat(preds)                                      # (R, B)
    out = {"full": pred[-1].clone() if full is None else full, "pred": pred}
    if y is not None:
        out.update(y=y.int().cpu(), top5=torch.cat(top5s), prob=torch.cat(probs))
    return out


def _table(blocks: dict[int, dict[str, Tensor]], ks: list[int], has_labels: bool):
    """Per-rank means over all images, in image order (so the sum order is fixed)."""
    import pandas as pd

    order = sorted(blocks)
    cat = {key: torch.cat([blocks[b][key] for b in order], dim=-1)
           for key in blocks[order[0]]}
    n = cat["full"].shape[0]
    pred = cat["pred"]                                           # (R, N)
    nan = np.full(len(ks), np.nan)
    data = {"rank": ks,
            "agreement": (pred == cat["full"]).double().mean(dim=1).numpy(),
            "top1": (pred == cat["y"]).double().mean(dim=1).numpy() if has_labels else nan,
            "top5": cat["top5"].double().mean(dim=1).numpy() if has_labels else nan,
            "mean_true_prob": cat["prob"].double().mean(dim=1).numpy() if has_labels else nan,
            "n": [n] * len(ks)}
    return pd.DataFrame(data, columns=list(COLUMNS))


# ---------------------------------------------------------------------------- resume

def _part_path(path: Path, rank: int, world: int) -> Path:
    return path if world == 1 else path.with_name(f"{path.name}.part{rank}of{world}")


def _load_checkpoints(path: Path, fingerprint: dict) -> dict[int, dict[str, Tensor]]:
    """Finished blocks from ``path`` and from the per-process parts beside it."""
    blocks: dict[int, dict[str, Tensor]] = {}
    files = [path] + sorted(path.parent.glob(f"{path.name}.part*of*"))
    for f in files:
        if not f.is_file():
            continue
        state = torch.load(f, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            diff = sorted(k for k in fingerprint if state.get("fingerprint", {}).get(k) != fingerprint[k])
            raise ValueError(f"checkpoint {str(f)!r} was written by a different run (differs in "
                             f"{diff}); delete it or pass another checkpoint path")
        blocks.update({int(b): v for b, v in state["blocks"].items()})
    return blocks


def _save_checkpoint(path: Path, fingerprint: dict, blocks: dict[int, dict[str, Tensor]]) -> None:
    _io.torch_save({"fingerprint": fingerprint, "blocks": blocks}, path)


# ---------------------------------------------------------------------------- distributed

def _dist_setup(device: torch.device) -> tuple[int, int]:
    """``(rank, world_size)``; joins the ``torchrun`` process group if there is one.

    Under ``torchrun`` (``WORLD_SIZE > 1``) without an initialised group, one is created
    with ``nccl`` for CUDA models and ``gloo`` otherwise.
    """
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _gather(blocks: dict[int, dict[str, Tensor]], world: int) -> dict[int, dict[str, Tensor]]:
    if world == 1:
        return blocks
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, blocks)
    merged: dict[int, dict[str, Tensor]] = {}
    for part in parts:
        merged.update(part)
    return merged


# ---------------------------------------------------------------------------- public API

def rank_spectrum(model: nn.Module, images: Any, labels: Any = None,
                  ranks: str | int | Sequence[int] | None = None, batch_size: int = 128,
                  device: str | torch.device | None = None, progress: bool = True,
                  checkpoint: str | os.PathLike | None = None, block: int | None = None,
                  amp: str | None = "auto", channels_last: bool | None = None):
    """Accuracy and agreement of a model against the rank of its input (Algorithm 1).

    For every rank k, each image is replaced by its best rank-k approximation (per colour
    channel, equation 2, clamped to ``[0, 1]``) and classified. Figures 6, 7 and 13 of the
    paper plot these curves.

    Args:
        model (nn.Module): a classifier in eval mode taking ``[0, 1]`` images
            ``(B, C, H, W)`` and returning logits ``(B, classes)``. It is not moved or
            modified; if it has ``input_size`` ``(C, H, W)``, the images must match it.
        images (Tensor or data set): ``(N, C, H, W)`` float images in ``[0, 1]``
            (dimension 0 indexes images), a pair ``(images, labels)``, or a data set
            (e.g. from :mod:`rankcore.data`) whose items are ``(image, label)`` or images.
        labels (Tensor or sequence of int, optional): ``(N,)`` true classes. Without
            labels (and none in the data set) ``top1``, ``top5`` and ``mean_true_prob``
            are NaN. Default: None.
        ranks (str, int, sequence or None, optional): the ranks to evaluate, each in
            ``[0, min(H, W)]``; any form of :func:`parse_ranks` (``"all"``,
            ``"0:50:5,max"``, ``[10, 20]``). Default: every rank.
        batch_size (int, optional): images per forward pass. Default: 128.
        device (str or torch.device, optional): where to compute; must be the model's
            device. Default: the device of the model's parameters.
        progress (bool, optional): show a tqdm progress bar (process 0 only). Default: True.
        checkpoint (path, optional): file for partial results, rewritten atomically after
            every block of images. A re-run with the same arguments skips the finished
            blocks and returns the same table as an uninterrupted run; a checkpoint
            written by a different model, data or ranks raises ``ValueError``. Under
            ``torchrun`` each process writes ``<checkpoint>.part<r>of<world>`` and process
            0 writes the complete ``<checkpoint>`` at the end. Default: None.
        block (int, optional): images per block, the unit of checkpointing and of
            distribution; the answer does not depend on it except through float
            rounding. Default: ``max(1, min(16, batch_size))``.
        amp (str or None, optional): autocast dtype for the forward passes, ``"bf16"``,
            ``"fp16"``, ``None`` (float32) or ``"auto"`` (bf16 on CUDA, float32 elsewhere).
            Default: ``"auto"``.
        channels_last (bool, optional): feed the model channels-last inputs (faster
            convolutions on CUDA). Default: True on CUDA, False elsewhere.

    Returns:
        pandas.DataFrame: one row per rank, ascending, with columns ``rank``,
        ``agreement`` (fraction of images whose rank-k prediction equals the full-rank
        prediction: Algorithm 1), ``top1`` and ``top5`` (fractions correct),
        ``mean_true_prob`` (mean softmax probability of the true class) and ``n``
        (images). Fractions lie in ``[0, 1]``.

    Under ``torchrun`` (CPU ``gloo`` or CUDA ``nccl``), blocks of images are shared out
    among the processes and every process returns the complete table.

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> df = rank_spectrum(model, x, y, ranks=[0, 4, 8], progress=False)
        >>> list(df["rank"]), float(df["agreement"].iloc[-1])
        ([0, 4, 8], 1.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    block = max(1, min(16, batch_size)) if block is None else block
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    on_device = model_device(model)
    device = on_device if device is None else torch.device(device)
    if device.type != on_device.type or (device.index is not None and on_device.index is not None
                                         and device.index != on_device.index):
        raise ValueError(f"device={str(device)!r} but the model's parameters are on "
                         f"{str(on_device)!r}; move the model first")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else None
    if amp is not None and amp not in _AMP:
        raise ValueError(f"amp={amp!r}; expected 'bf16', 'fp16', 'auto' or None")
    channels_last = device.type == "cuda" if channels_last is None else bool(channels_last)

    source = _Source(images, labels)
    expected = getattr(model, "input_size", None)
    if expected is not None and tuple(expected) != source.shape:
        raise ValueError(f"images have shape (C, H, W) = {source.shape} but the model expects "
                         f"input_size {tuple(expected)}; load the data with size="
                         f"{tuple(expected)[1:]}")
    ks = parse_ranks(ranks, min(source.shape[-2:]))
    forward = _Forward(model, device, batch_size, amp, channels_last)

    rank, world = _dist_setup(device)
    n_blocks = -(-source.n // block)
    fingerprint = {"version": CHECKPOINT_VERSION, "ranks": ks, "n": source.n, "block": block, "batch_size": batch_size,
                   "amp": str(amp), "labels": source.has_labels, "data": source.digest(),
                   "model": _model_digest(model)}
    path = None if checkpoint is None else Path(checkpoint)
    done = {} if path is None else _load_checkpoints(path, fingerprint)
    mine = {b: v for b, v in done.items() if b % world == rank}
    todo = [b for b in range(rank, n_blocks, world) if b not in done]

    from tqdm.auto import tqdm

    total = sum(min(block, source.n - b * block) for b in todo) * len(ks)
    with tqdm(total=total, unit="img", desc="rank spectrum",
              disable=not progress or rank != 0) as bar, torch.inference_mode():
        for b in todo:
            x, y = source.get(b * block, min((b + 1) * block, source.n))
            mine[b] = _run_block(forward, x, y, ks, bar.update)
            if path is not None:
                _save_checkpoint(_part_path(path, rank, world), fingerprint, mine)
    blocks = _gather({**done, **mine} if world == 1 else mine, world)
    if path is not None and rank == 0 and (world > 1 or todo or not path.exists()):
        _save_checkpoint(path, fingerprint, blocks)
    return _table(blocks, ks, source.has_labels)


def summary(df, column: str = "agreement") -> dict[str, float]:
    """One-number summaries of a rank spectrum, for comparing models.

    Args:
        df (pandas.DataFrame): a table from :func:`rank_spectrum`.
        column (str, optional): the curve to summarise, ``"agreement"`` or ``"top1"``.
            Default: ``"agreement"``.

    Returns:
        dict: ``rank_50`` and ``rank_90``, the smallest evaluated rank whose ``column``
        reaches 0.5 and 0.9 (NaN if none does); ``auc``, the area under the curve over
        the evaluated rank range divided by its width (in ``[0, 1]``; 1 means the full
        answer at every rank: a rank-robustness score); ``full``, the value at the
        highest evaluated rank; ``max_rank``, that rank.
    """
    if column not in df.columns:
        raise ValueError(f"column={column!r}; expected one of {list(df.columns)}")
    d = df.sort_values("rank")
    r = d["rank"].to_numpy(dtype=float)
    v = d[column].to_numpy(dtype=float)
    if len(r) == 0:
        raise ValueError("df is empty: no ranks to summarise")

    def first(th: float) -> float:
        hit = np.nonzero(v >= th)[0]
        return float(r[hit[0]]) if len(hit) else float("nan")

    width = r[-1] - r[0]
    area = float(np.sum((v[1:] + v[:-1]) / 2 * np.diff(r)) / width) if width > 0 else float(v[0])
    return {"rank_50": first(0.5), "rank_90": first(0.9), "auc": area,
            "full": float(v[-1]), "max_rank": float(r[-1])}


def top_predictions(model: nn.Module, x: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """The model's ``k`` most probable classes for each image (Figure 4).

    Args:
        model (nn.Module): classifier on ``[0, 1]`` images, as for :func:`rank_spectrum`.
        x (Tensor): images ``(B, C, H, W)`` in ``[0, 1]``; moved to the model's device.
        k (int, optional): how many classes. Default: 5.

    Returns:
        (Tensor, Tensor): probabilities ``(B, k)`` in float32 and class indices
        ``(B, k)`` int64, most probable first, on the CPU.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor of shape (B, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    with torch.inference_mode():
        forward = _Forward(model, model_device(model), max(1, x.shape[0]), None, False)
        p = forward(x.to(forward.device, forward.dtype))
    top = p.topk(min(k, p.shape[-1]), dim=-1)
    return top.values.cpu(), top.indices.cpu()


# ---------------------------------------------------------------------------- several models

def load_model(spec: str, scale: str = "quick", device: str | torch.device | None = None,
               download: bool = True, progress: bool = True) -> nn.Module:
    """A model from a short specification, as the book's parameters name them.

    Args:
        spec (str): ``"NAME"`` (a :mod:`rankcore.models` name with its default weights),
            ``"NAME=PATH"`` (with a weight file or folder), or ``"train:PRESET"`` (the cached
            model of ``rankcore.train.preset(PRESET, scale)``, trained on first use), e.g.
            ``"train:natural"``, ``"train:adv"``.
        scale (str, optional): the training scale for ``train:`` specs (a profile name).
            Default: ``"quick"``.
        device (optional): Default: CUDA when available, else CPU.
        download (bool, optional): allow downloading missing weights. Default: True.
        progress (bool, optional): progress bars while training. Default: True.

    Returns:
        nn.Module in eval mode on ``[0, 1]`` images, with ``input_size``.

    Raises:
        FileNotFoundError: the weights are not here (and not downloadable).
    """
    from . import models, train

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec={spec!r}; expected 'NAME', 'NAME=PATH' or 'train:PRESET'")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("train:"):
        return train.cached(train.preset(spec[len("train:"):], scale), progress=progress,
                            device=device)
    name, _, weights = spec.partition("=")
    return models.load(name.strip(), weights=weights.strip() or None, device=device,
                       download=download)


def load_data_for(model: nn.Module, data: str, n: int | None = None, seed: int = 0,
                  root: str | os.PathLike | None = None):
    """``rankcore.data.load(data, ...)`` with the model's own preprocessing (input size,
    resize before the centre crop, interpolation). ``n`` larger than the set (the ten
    embedded sample photos) takes the whole set."""
    from . import data as data_mod

    config = dict(getattr(model, "data_config", None) or {"size": tuple(model.input_size)[-1]})
    if n is not None and data_mod.resolve(data, root) == "samples":
        n = min(n, len(data_mod.SAMPLES))
    return data_mod.load(data, n=n, seed=seed, root=root, progress=False, **config)


def spectra(specs: dict[str, str], data: str, n: int | None = None,
            ranks: str | Sequence[int] | None = None, seed: int = 0, batch_size: int = 64,
            scale: str = "quick", download: bool = False, progress: bool = True,
            cache: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Rank spectra of several models on the same images (Figures 6, 7 and 13).

    Each model sees the images in its own preprocessing (EfficientNet-Lite1 at 240x240,
    ...), so ``ranks`` may use ``max`` for each model's full rank. Results are
    checkpointed in ``cache_dir("spectrum")`` under a key of the model's weights, the data
    and the ranks: an interrupted run resumes, a repeated one returns at once.

    Args:
        specs (dict): label -> model specification of :func:`load_model`.
        data (str): a :mod:`rankcore.data` name, e.g. ``"imagenet-auto"``, ``"cifar10"``.
        n (int, optional): images (a seeded subset). Default: all.
        ranks (optional): as in :func:`rank_spectrum`. Default: every rank.
        seed (int, optional): seed of the image subset. Default: 0.
        batch_size (int, optional): Default: 64.
        scale (str, optional): training scale of ``train:`` specs. Default: ``"quick"``.
        download (bool, optional): try downloading missing weights. Default: False.
        progress (bool, optional): progress bars. Default: True.
        cache (bool, optional): checkpoint in the cache folder. Default: True.

    Returns:
        (dict, dict): label -> table of :func:`rank_spectrum` (with ``.attrs["source"]``,
        the data set actually loaded), and label -> why a model was skipped (weights
        not found).
    """
    from .paths import cache_dir

    tables, skipped = {}, {}
    for label, spec in specs.items():
        try:
            model = load_model(spec, scale=scale, download=download, progress=progress)
        except FileNotFoundError as e:
            skipped[label] = str(e).split(". ")[0]
            continue
        loaded = load_data_for(model, data, n, seed)
        ckpt = None
        if cache:
            key = hashlib.sha1(repr((CHECKPOINT_VERSION, spec, _model_digest(model), loaded.source,
                                     data, n, seed, ranks, batch_size)).encode()).hexdigest()[:16]
            # Named by the model, not the label: two labels for one model share the file.
            ckpt = cache_dir("spectrum") / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', spec)[:60]}-{key}.pt"
        df = rank_spectrum(model, loaded, ranks=ranks, batch_size=batch_size,
                           progress=progress, checkpoint=ckpt)
        df.attrs["source"] = getattr(loaded, "source", data)
        tables[label] = df
    return tables, skipped


def summary_table(tables: dict[str, Any]):
    """One row per model: :func:`summary` of agreement and of top-1 (fractions).

    Columns: ``model``, ``n``, ``max_rank``, ``agreement_rank_50``, ``agreement_rank_90``,
    ``agreement_auc``, ``top1_full``, ``top1_auc``, ``top1_saturation`` (smallest rank
    whose top-1 reaches 95% of the full-rank top-1; NaN without labels).
    """
    import pandas as pd

    rows = []
    for label, df in tables.items():
        a = summary(df, "agreement")
        row = {"model": label, "n": int(df["n"].iloc[0]), "max_rank": int(a["max_rank"]),
               "agreement_rank_50": a["rank_50"], "agreement_rank_90": a["rank_90"],
               "agreement_auc": a["auc"]}
        if df["top1"].notna().all():
            t = summary(df, "top1")
            row.update(top1_full=t["full"], top1_auc=t["auc"],
                       top1_saturation=saturation_rank(df, "top1"))
        else:
            row.update(top1_full=np.nan, top1_auc=np.nan, top1_saturation=np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def saturation_rank(df, column: str = "top1", fraction: float = 0.95) -> float:
    """The smallest evaluated rank whose ``column`` reaches ``fraction`` of its value at the
    highest rank: where the curve saturates (Section 4.2.1: about rank 100 on ImageNet,
    15 on CIFAR-10)."""
    d = df.sort_values("rank")
    v = d[column].to_numpy(dtype=float)
    hit = np.nonzero(v >= fraction * v[-1])[0]
    return float(d["rank"].to_numpy()[hit[0]]) if len(hit) else float("nan")


def gap(robust, natural, column: str = "top1"):
    """``robust - natural`` of ``column`` at every rank both evaluated (Figures 7c, 7d).

    Returns:
        pandas.DataFrame: columns ``rank`` and ``gap`` (in the column's unit).
    """
    m = robust[["rank", column]].merge(natural[["rank", column]], on="rank",
                                       suffixes=("_robust", "_natural"))
    if m.empty:
        raise ValueError("robust and natural share no evaluated rank")
    return m.assign(gap=m[f"{column}_robust"] - m[f"{column}_natural"])[["rank", "gap"]]


def plot(tables: dict[str, Any], column: str = "top1", ax=None, percent: bool = True,
         title: str | None = None):
    """Curves of ``column`` against input rank, one per model (Figures 6, 7, 13)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    scale = 100 if percent else 1
    for label, df in tables.items():
        ax.plot(df["rank"], scale * df[column], marker=".", ms=3, label=label)
    names = {"top1": "top-1 accuracy", "agreement": "agreement with full rank",
             "top5": "top-5 accuracy", "mean_true_prob": "mean true-class probability"}
    ax.set_xlabel("input rank k")
    ax.set_ylabel(names.get(column, column) + (" (%)" if percent else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def figure_top5(models: dict[str, nn.Module], image: Tensor, rank: int = 10,
                class_names: Sequence[str] | None = None, k: int = 5):
    """Figure 4: an image at full rank and at rank ``rank``, with each model's top-k on
    the rank-k image.

    Args:
        models (dict): label -> model; all must take ``image``'s size.
        image (Tensor): ``(C, H, W)`` in ``[0, 1]``.
        rank (int, optional): Default: 10 (the paper's).
        class_names (sequence of str, optional): names by class index.
        k (int, optional): Default: 5.

    Returns:
        (Figure, pandas.DataFrame): the figure and the predictions (``model``, ``input``,
        ``position``, ``class``, ``name``, ``prob``) at full rank and at rank ``rank``.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from .rank import low_rank

    if not isinstance(image, Tensor) or image.dim() != 3:
        raise ValueError(f"image must be a tensor (C, H, W), got "
                         f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
    low = low_rank(image[None], rank, clamp=True)[0]
    rows = []
    for label, model in models.items():
        for name, x in (("full rank", image), (f"rank {rank}", low)):
            probs, idx = top_predictions(model, x[None], k)
            for pos, (pr, c) in enumerate(zip(probs[0].tolist(), idx[0].tolist())):
                rows.append({"model": label, "input": name, "position": pos + 1, "class": c,
                             "name": class_names[c] if class_names else str(c), "prob": pr})
    table = pd.DataFrame(rows)
    fig, axes = plt.subplots(2, max(2, len(models)), figsize=(4.2 * max(2, len(models)), 6.4))
    for ax, x, name in ((axes[0, 0], image, "full rank"), (axes[0, 1], low, f"rank {rank}")):
        ax.imshow(x.permute(1, 2, 0).cpu().numpy())
        ax.set_title(name)
        ax.axis("off")
    for ax in axes[0, 2:]:
        ax.axis("off")
    for ax, label in zip(axes[1], models):
        t = table[(table["model"] == label) & (table["input"] == f"rank {rank}")]
        ax.barh(range(len(t))[::-1], 100 * t["prob"], color="tab:blue")
        ax.set_yticks(range(len(t))[::-1], [s[:28] for s in t["name"]], fontsize=8)
        ax.set_xlabel("probability (%)")
        ax.set_title(f"{label}: top-{k} at rank {rank}", fontsize=9)
    for ax in axes[1, len(models):]:
        ax.axis("off")
    fig.tight_layout()
    return fig, table
