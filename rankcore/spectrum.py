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

* resuming (``checkpoint=PATH``): finished blocks are saved atomically, each with a
  digest of its images and labels, and reused only when the digest still matches;
* distribution (``torchrun``): block ``b`` goes to process ``b % world_size``;
* batching: a block always meets the model in the same batches;
* memory: one block of images is decoded at a time, so a data set of any size runs in
  the memory of one block.

So an interrupted, resumed or distributed run gives the table of an uninterrupted
single-process run, bit for bit on CPU.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import _io, _spectrum_blocks as eng
from ._spectrum_blocks import COLUMNS, model_digest
from ._spectrum_tables import (COLUMN_NAMES, RATES, gap, per_image_outcomes, plot,  # re-exported
                               saturation_rank, summary, summary_table, wilson_interval,
                               with_intervals)
from .rank import parse_ranks
from .torch_utils import evaluating, init_distributed, model_device, synchronize, trim_memory

__all__ = ["rank_spectrum", "default_batch_size", "throughput", "summary", "summary_table",
           "saturation_rank", "gap", "wilson_interval", "with_intervals", "per_image_outcomes",
           "plot", "model_digest", "COLUMNS"]

#: Bumped when a change alters what a checkpointed block holds, so old files are not resumed.
CHECKPOINT_VERSION = 6  # 6: default blocks of a whole batch of small images (5: CUDA Gram factors)
#: Seconds between checkpoint writes (the last block is always written).
_SAVE_SECONDS = 30.0
#: On the CPU, hand the heap's freed pages back to the system after this many blocks
#: (:func:`rankcore.torch_utils.trim_memory`). Not after every block: the next block would
#: fault the same pages in again. With blocks of 8 ImageNet images (EfficientNet-Lite0, 2
#: cores) the growth between trims stays near 80 MB: peak memory for 1,000 streamed images
#: was 1.105x that for 100 (``bench/spectrum_bench.py --memory 100,1000``; 1.21x untrimmed).
_TRIM_BLOCKS = 32
#: Pixels per forward pass of the default batch size: 8 images of 224 x 224. Measured with
#: ``bench/spectrum_bench.py --n 64 --batch-sizes 4,8,16,32,64`` on a 2-core CPU
#: (EfficientNet-Lite0): 76, 79, 73, 62, 36 passes/s with rankcore's allocator settings
#: (:func:`rankcore.torch_utils.tune_allocator`), 45, 42, 48, 33, 29 with glibc's. Larger
#: batches allocate activations above the mmap threshold, which go back to the system
#: after every pass and are page-faulted in again.
_PIXELS_PER_BATCH = 8 * 224 * 224


def default_batch_size(shape: Sequence[int], device: str | torch.device = "cpu") -> int:
    """Images per forward pass that :func:`rank_spectrum` uses when not told.

    On the CPU, about ``8 * 224 * 224`` pixels per pass (8 ImageNet images, 392 -> 256
    CIFAR-10 images), the fastest in ``bench/spectrum_bench.py --batch-sizes``; on a GPU,
    256 images (not tuned: an H100 ran ResNet-50 at 99% busy with it).

    Args:
        shape (sequence of int): an image's ``(C, H, W)``.
        device (optional): where the model runs. Default: ``"cpu"``.
    """
    if torch.device(device).type != "cpu":
        return 256
    h, w = int(shape[-2]), int(shape[-1])
    return int(min(256, max(1, round(_PIXELS_PER_BATCH / max(1, h * w)))))


# ---------------------------------------------------------------------------- public API

def rank_spectrum(model: nn.Module, images: Any, labels: Any = None,
                  ranks: str | int | Sequence[int] | None = None, *, batch_size: int | None = None,
                  device: str | torch.device | None = None, progress: bool = True,
                  checkpoint: str | os.PathLike | None = None, block: int | None = None,
                  amp: str | None = "auto", channels_last: bool | None = None,
                  overlap: bool | None = None, per_image: bool = False):
    """Accuracy and agreement of a model against the rank of its input (Algorithm 1).

    For every rank k, each image is replaced by its best rank-k approximation (per colour
    channel, equation 2, clamped to ``[0, 1]``) and classified. Figures 6, 7 and 13 of the
    paper plot these curves. The model runs in eval mode; the caller's train/eval modes
    (and so its BatchNorm statistics) are left as they were.

    The cost is the model's forward passes plus the SVDs and the rank-k images: 1.00-1.12x
    the bare model where the model keeps the device busy, more for a small model on a GPU
    (measured on 2 CPU cores and one H100: ``bench/measured/spectrum-cost.md``). On the CPU under glibc, a script should call
    :func:`rankcore.torch_utils.tune_allocator` once at its start, as ``rankcore spectrum``
    does (glibc's defaults made the same work 1.9x slower on 2 cores).

    Args:
        model (nn.Module): a classifier taking ``[0, 1]`` images ``(B, C, H, W)`` and
            returning logits ``(B, classes)``. It is not moved; if it has ``input_size``
            ``(C, H, W)``, the images must match it.
        images (Tensor, data set or DataLoader): ``(N, C, H, W)`` images, float in
            ``[0, 1]`` or uint8 (dimension 0 indexes images), a pair ``(images, labels)``,
            a map-style data set (e.g. ``rankcore.data.dataset(...)``) whose items are
            ``(image, label)`` or images (label ``-1``: unlabelled), or a ``DataLoader``
            over one (its data set is read in order, a block at a time, by its
            ``num_workers`` worker processes). Data sets are never held in memory whole.
        labels (Tensor or sequence of int, optional): ``(N,)`` true classes. Without
            labels (and none in the data set) ``top1``, ``top5`` and ``mean_true_prob``
            are NaN.
        ranks (optional): any form of :func:`rankcore.rank.parse_ranks` (an int is one
            rank; ``"0:32:4,max"``, ``range``, lists). Default: every rank
            ``0..min(H, W)``.
        batch_size (int, optional): images per forward pass. Default:
            :func:`default_batch_size` (8 at 224 x 224 and 256 at 32 x 32 on the CPU,
            256 on a GPU; chosen with ``bench/spectrum_bench.py``).
        device (optional): must be the model's device when given. Default: the model's.
        progress (bool, optional): a tqdm bar over images x ranks. Default: True.
        checkpoint (path, optional): resume file. Finished blocks are saved (atomically, at
            most every 30 s and at the end); a re-run after a kill recomputes only the
            blocks that are missing or whose images or labels changed (each block keeps a
            digest of them) and returns the table of an uninterrupted run. A checkpoint
            of other weights, ranks or settings raises ``ValueError``, and so does a file
            that is not a rank-spectrum checkpoint (the model's weights passed by mistake:
            it is left untouched) or a path that cannot be written; a damaged checkpoint is
            moved aside to ``<checkpoint>.corrupt-<time>`` and one from a rankcore with
            another checkpoint format is rebuilt, each with a warning. Under ``torchrun``
            each process writes ``<checkpoint>.part<r>of<world>`` and process 0 the
            complete file. Default: None.
        block (int, optional): images per block, the unit of checkpointing, distribution
            and memory. Default: a batch, but at most 16 images' worth of 224 x 224
            pixels (16 ImageNet images, 784 CIFAR-10 ones).
        amp (str or None, optional): autocast dtype for the forward passes, ``"bf16"``,
            ``"fp16"``, ``None`` (float32) or ``"auto"`` (bf16 on CUDA, float32 elsewhere).
            Default: ``"auto"``.
        channels_last (bool, optional): feed channels-last inputs (the same arithmetic in
            another memory order: a layout, not a setting of the answer, so it does not key
            the checkpoint). Default: True (faster on the CPU too; see
            ``bench/measured/spectrum-cost.md``).
        overlap (bool, optional): compute the next block's SVD on a CPU thread while the
            model runs (same answer). Default: True on CUDA, False on the CPU, where the
            model already uses every core.
        per_image (bool, optional): also return each image's outcome at each rank
            (:func:`per_image_outcomes`), for paired intervals between models evaluated
            on the same images. Default: False.

    Returns:
        pandas.DataFrame: one row per rank, ascending, with columns ``rank``,
        ``agreement`` (fraction of images whose rank-k prediction equals the full-rank
        prediction: Algorithm 1), ``top1`` and ``top5`` (fractions correct),
        ``mean_true_prob`` (mean softmax probability of the true class) and ``n``
        (images). :func:`with_intervals` adds 95% confidence intervals. With
        ``per_image=True``, ``(table, outcomes)``.

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> df = rank_spectrum(model, x, y, ranks=[0, 4, 8], progress=False)
        >>> list(df["rank"]), float(df["agreement"].iloc[-1])
        ([0, 4, 8], 1.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < 1):
        raise ValueError(f"block must be a positive int or None, got {block!r}")
    on_device = model_device(model)
    device = on_device if device is None else torch.device(device)
    if device.type != on_device.type or (device.index is not None and on_device.index is not None
                                         and device.index != on_device.index):
        raise ValueError(f"device={str(device)!r} but the model's parameters are on "
                         f"{str(on_device)!r}; move the model first")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else None
    if amp is not None and amp not in eng.AMP:
        raise ValueError(f"amp={amp!r}; expected 'bf16', 'fp16', 'auto' or None")
    channels_last = True if channels_last is None else bool(channels_last)
    overlap = device.type == "cuda" if overlap is None else bool(overlap)

    source = eng.Source(images, labels)
    expected = getattr(model, "input_size", None)
    if expected is not None and tuple(expected) != source.shape:
        raise ValueError(f"images have shape (C, H, W) = {source.shape} but the model expects "
                         f"input_size {tuple(expected)}; load the data with size="
                         f"{tuple(expected)[1:]}")
    ks = parse_ranks(ranks, min(source.shape[-2:]))
    batch_size = batch_size or default_batch_size(source.shape, device)
    block = block or eng.default_block(batch_size, source.shape)
    forward = eng.Forward(model, device, batch_size, amp, channels_last)

    rank, world = init_distributed(device)
    n_blocks = -(-source.n // block)
    path = None if checkpoint is None else _io.check_writable(checkpoint, "checkpoint")
    fingerprint = None if path is None else {  # keys the resume file only
        "version": CHECKPOINT_VERSION, "ranks": ks, "n": source.n, "block": block,
        "batch_size": batch_size, "amp": str(amp),
        "dtype": str(forward.dtype), "labels": source.has_labels,
        "model": eng.model_digest(model)}
    resume = _Resume(path, fingerprint, rank, world)
    which = list(range(rank, n_blocks, world))
    mine: dict[int, dict[str, Any]] = {}

    from tqdm.auto import tqdm

    total = sum(min(block, source.n - b * block) for b in which) * len(ks)
    computed = 0
    with tqdm(total=total, unit="img", desc="rank spectrum",
              disable=not progress or rank != 0) as bar, \
            evaluating(model), torch.inference_mode():
        blocks = source.blocks(which, block)
        if overlap:
            blocks = eng.prefetched(blocks, device, forward.dtype, ks)
        for item in blocks:
            b, x, y = item[:3]
            digest = resume.digest(x, y)
            found = resume.reuse(b, digest)
            if found is not None:
                mine[b] = found
                bar.update(x.shape[0] * len(ks))
                continue
            mine[b] = {**eng.run_block(forward, x, y, ks, bar.update, *item[3:]), "digest": digest}
            computed += 1
            if device.type == "cpu" and computed % _TRIM_BLOCKS == 0:
                trim_memory()
            resume.computed(mine)
    blocks_all = resume.finish(mine)
    has_labels = all("y" in v for v in blocks_all.values())
    if has_labels != source.has_labels:
        raise ValueError("images: some items have labels and others not (label -1 or None)")
    df = eng.table(blocks_all, ks, source.has_labels)
    return (df, per_image_outcomes(blocks_all)) if per_image else df


class _Resume:
    """The checkpoint bookkeeping of one :func:`rank_spectrum` call (``path`` None: none):
    the finished blocks the file holds, when this process's part is written again, and how
    many finished blocks were recomputed because their images or labels changed."""

    def __init__(self, path: Path | None, fingerprint: dict | None, rank: int, world: int):
        self.path, self.fingerprint, self.rank, self.world = path, fingerprint, rank, world
        self.done = {} if path is None else eng.load_checkpoints(path, fingerprint)
        self.saved, self.dirty, self.changed = time.monotonic(), False, 0
        self.on_disk = set(self.done)

    def digest(self, x: torch.Tensor, y: torch.Tensor | None) -> str | None:
        """The block's images and labels, hashed (keys the resume file only)."""
        return None if self.path is None else eng.digest(x, y)

    def reuse(self, b: int, digest: str | None) -> dict | None:
        """Block ``b`` as the file holds it, if finished on the same images and labels."""
        if b in self.done and self.done[b].get("digest") == digest:
            return self.done[b]
        self.changed += b in self.done
        return None

    def computed(self, mine: dict[int, dict]) -> None:
        """A block was computed: write this process's part when the last write is old."""
        self.dirty = True
        if self.path is not None and time.monotonic() - self.saved >= _SAVE_SECONDS:
            self._write(mine)

    def _write(self, mine: dict[int, dict]) -> None:
        eng.save_checkpoint(eng.part_path(self.path, self.rank, self.world), self.fingerprint,
                            mine)
        self.saved, self.dirty, self.on_disk = time.monotonic(), False, set(mine)

    def finish(self, mine: dict[int, dict]) -> dict[int, dict]:
        """Warn of recomputed blocks, write what is not on disk yet, and return every
        process's blocks (under ``torchrun`` process 0 writes the complete file)."""
        if self.changed:
            import warnings
            warnings.warn(f"checkpoint {str(self.path)!r}: the images or labels of "
                          f"{self.changed} finished block(s) changed since it was written; "
                          "those blocks were recomputed", RuntimeWarning, stacklevel=3)
        if self.path is not None and (self.dirty or set(mine) - self.on_disk or self.world > 1):
            self._write(mine)
        blocks_all = eng.gather(mine, self.world)
        if self.path is not None and self.world > 1 and self.rank == 0:
            eng.save_checkpoint(self.path, self.fingerprint, blocks_all)
        return blocks_all


def throughput(model: nn.Module, images: Any, ranks: Any = None, batch_size: int | None = None,
               repeat: int = 1) -> dict[str, float]:
    """Speed of :func:`rank_spectrum` on these images (Figure 12 of the appendix).

    Args:
        model (nn.Module), images, ranks, batch_size: as for :func:`rank_spectrum`.
        repeat (int, optional): time this many runs and keep the fastest. Default: 1.

    Returns:
        dict: ``images_x_ranks_per_s``, ``seconds`` (wall time of the fastest run),
        ``forward_passes`` (images x ranks) and ``batch_size`` (the one used).
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be a positive int, got {repeat!r}")
    best, df = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        df = rank_spectrum(model, images, ranks=ranks, batch_size=batch_size, progress=False)
        synchronize(model_device(model))
        best = min(best, time.perf_counter() - start)
    work = int(df["n"].iloc[0]) * len(df)
    shape = eng.Source(images, None).shape
    return {"images_x_ranks_per_s": work / best, "seconds": best, "forward_passes": work,
            "batch_size": batch_size or default_batch_size(shape, model_device(model))}
