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

import numpy as np
import torch
from torch import nn

from . import _io, _spectrum_blocks as eng
from ._spectrum_blocks import COLUMNS, model_digest
from .rank import parse_ranks
from .torch_utils import evaluating, init_distributed, model_device, synchronize, trim_memory

__all__ = ["rank_spectrum", "default_batch_size", "throughput", "summary", "summary_table",
           "saturation_rank", "gap", "wilson_interval", "with_intervals", "per_image_outcomes",
           "plot", "model_digest", "COLUMNS"]

#: The columns that are fractions of images (binomial proportions, with intervals).
RATES = ("agreement", "top1", "top5")

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
                  ranks: str | int | Sequence[int] | None = None, batch_size: int | None = None,
                  device: str | torch.device | None = None, progress: bool = True,
                  checkpoint: str | os.PathLike | None = None, block: int | None = None,
                  amp: str | None = "auto", channels_last: bool | None = None,
                  overlap: bool | None = None, per_image: bool = False):
    """Accuracy and agreement of a model against the rank of its input (Algorithm 1).

    For every rank k, each image is replaced by its best rank-k approximation (per colour
    channel, equation 2, clamped to ``[0, 1]``) and classified. Figures 6, 7 and 13 of the
    paper plot these curves. The model runs in eval mode; the caller's train/eval modes
    (and so its BatchNorm statistics) are left as they were.

    The cost is the model's forward passes plus the SVDs and the rank-k images. On 2 CPU
    cores (``bench/spectrum_bench.py``, medians of back-to-back pairs) it was 1.00-1.02x
    the bare model for every rank of CIFAR-10 images, and 1.06-1.09x for 7 ranks of
    ImageNet images (single pairs 1.04-1.15), where the SVD factors and rank-k images
    alone take 7.6-8.7% of the model's time. On one H100 (bfloat16, channels-last, images
    handed over on the CPU, 16 CPU cores), ResNet-50 on 1,000 images x all 225 ranks took
    20.2 s against 18.1 s for the bare model (1.12x, two runs; the GPU busy 90-92% of the
    time against 99%). A model too small to keep the GPU busy waits for the SVDs instead:
    EfficientNet-Lite0 with 7 ranks took 2.8x its bare passes. On the CPU under glibc, a
    script should call :func:`rankcore.torch_utils.tune_allocator` once at its start, as
    ``rankcore spectrum`` does: with glibc's defaults every forward pass of an ImageNet
    model maps and unmaps its activations, which made the same work 1.9x slower on 2 cores.

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
        channels_last (bool, optional): feed channels-last inputs. Default: True on CUDA.
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
    channels_last = device.type == "cuda" if channels_last is None else bool(channels_last)
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
        "batch_size": batch_size, "amp": str(amp), "channels_last": channels_last,
        "dtype": str(forward.dtype), "labels": source.has_labels,
        "model": eng.model_digest(model)}
    done = {} if path is None else eng.load_checkpoints(path, fingerprint)
    which = list(range(rank, n_blocks, world))
    mine: dict[int, dict[str, Any]] = {}

    from tqdm.auto import tqdm

    total = sum(min(block, source.n - b * block) for b in which) * len(ks)
    saved, dirty, changed, on_disk = time.monotonic(), False, 0, set(done)
    computed = 0
    with tqdm(total=total, unit="img", desc="rank spectrum",
              disable=not progress or rank != 0) as bar, \
            evaluating(model), torch.inference_mode():
        blocks = source.blocks(which, block)
        if overlap:
            blocks = eng.prefetched(blocks, device, forward.dtype, ks)
        for item in blocks:
            b, x, y = item[:3]
            digest = None if path is None else eng.digest(x, y)  # keys the resume file only
            if b in done and done[b].get("digest") == digest:
                mine[b] = done[b]  # finished on the same images and labels
                bar.update(x.shape[0] * len(ks))
                continue
            changed += b in done
            mine[b] = {**eng.run_block(forward, x, y, ks, bar.update, *item[3:]), "digest": digest}
            dirty = True
            computed += 1
            if device.type == "cpu" and computed % _TRIM_BLOCKS == 0:
                trim_memory()
            if path is not None and time.monotonic() - saved >= _SAVE_SECONDS:
                eng.save_checkpoint(eng.part_path(path, rank, world), fingerprint, mine)
                saved, dirty, on_disk = time.monotonic(), False, set(mine)
    if changed:
        import warnings
        warnings.warn(f"checkpoint {str(path)!r}: the images or labels of {changed} finished "
                      "block(s) changed since it was written; those blocks were recomputed",
                      RuntimeWarning, stacklevel=2)
    if path is not None and (dirty or set(mine) - on_disk or world > 1):
        eng.save_checkpoint(eng.part_path(path, rank, world), fingerprint, mine)
    blocks_all = eng.gather(mine, world)
    if path is not None and world > 1 and rank == 0:
        eng.save_checkpoint(path, fingerprint, blocks_all)
    has_labels = all("y" in v for v in blocks_all.values())
    if has_labels != source.has_labels:
        raise ValueError("images: some items have labels and others not (label -1 or None)")
    df = eng.table(blocks_all, ks, source.has_labels)
    return (df, per_image_outcomes(blocks_all)) if per_image else df


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


# ---------------------------------------------------------------------------- summaries

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


def wilson_interval(p, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials
    (:func:`rankcore.stats.wilson`, scipy's, at ``round(p * n)`` successes).

    Args:
        p (float or array): observed fractions in ``[0, 1]``.
        n (int or array): numbers of trials (images), ``>= 1``.
        confidence (float, optional): Default: 0.95.

    Returns:
        (ndarray, ndarray): lower and upper bounds, in ``[0, 1]``, of ``p``'s shape.
    """
    from .stats import wilson

    p, n = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(n, dtype=float))
    if np.any(n < 1):
        raise ValueError(f"n must be >= 1, got {n.min():g}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p must lie in [0, 1]")
    lo, hi = np.empty(p.shape), np.empty(p.shape)
    for i in np.ndindex(p.shape):
        lo[i], hi[i] = wilson(int(round(p[i] * n[i])), int(n[i]), confidence)
    return lo, hi


def per_image_outcomes(blocks: dict[int, dict[str, Any]]) -> dict[str, np.ndarray | None]:
    """Each image's outcome at each rank from :func:`rank_spectrum`'s blocks, in image order.

    Returns:
        dict: ``agree`` ``(R, N)`` bool (rank-k prediction equals the full-rank one) and
        ``correct`` ``(R, N)`` bool (equals the true label; ``None`` without labels).
    """
    order = sorted(blocks)
    pred = torch.cat([blocks[b]["pred"] for b in order], dim=-1)            # (R, N)
    full = torch.cat([blocks[b]["full"] for b in order])                    # (N,)
    out: dict[str, np.ndarray | None] = {"agree": (pred == full).numpy(), "correct": None}
    if all("y" in blocks[b] for b in order):
        y = torch.cat([blocks[b]["y"] for b in order])
        out["correct"] = (pred == y).numpy()
    return out


def with_intervals(df, confidence: float = 0.95):
    """``df`` with ``<rate>_lo`` and ``<rate>_hi`` columns: the Wilson interval of every
    rate (``agreement``, ``top1``, ``top5``) over the table's ``n`` images (NaN where the
    rate is NaN)."""
    out = df.copy()
    for col in RATES:
        if col not in df.columns:
            continue
        v = df[col].to_numpy(dtype=float)
        ok = ~np.isnan(v)
        lo, hi = np.full(len(v), np.nan), np.full(len(v), np.nan)
        if ok.any():
            lo[ok], hi[ok] = wilson_interval(v[ok], df["n"].to_numpy()[ok], confidence)
        out[f"{col}_lo"], out[f"{col}_hi"] = lo, hi
    return out


def gap(robust, natural, column: str = "top1", confidence: float = 0.95,
        correct: tuple[Any, Any] | None = None):
    """``robust - natural`` of ``column`` at every rank both evaluated (Figures 7c, 7d),
    with a confidence interval.

    Both models see the same images, so the right interval is the paired one: with
    ``correct`` (each model's per-image outcomes), Newcombe's paired interval
    (:func:`rankcore.stats.newcombe_paired`), which uses the images on which exactly one
    model is right. Without it, Newcombe's independent-samples interval, wider where the
    models' errors are correlated (conservative). Both are returned when ``correct`` is given.

    Args:
        robust, natural (DataFrame): tables of :func:`rank_spectrum`.
        column (str, optional): Default: ``"top1"``.
        confidence (float, optional): Default: 0.95.
        correct (pair of arrays, optional): ``(robust, natural)`` per-image outcomes
            ``(R, N)`` bool, row ``i`` at the table's ``i``-th rank (``per_image=True`` of
            :func:`rank_spectrum`: ``outcomes["correct"]``, or ``["agree"]`` for
            ``column="agreement"``), on the same ``N`` images.

    Returns:
        pandas.DataFrame: ``rank``, ``gap``, ``gap_lo``, ``gap_hi`` (the paired interval when
        ``correct`` is given), ``gap_lo_unpaired``, ``gap_hi_unpaired`` and ``paired``
        (bool), in the column's unit.
    """
    from .stats import newcombe_paired, paired_counts

    if column not in robust.columns or column not in natural.columns:
        raise ValueError(f"column={column!r} is not in both tables")
    m = robust[["rank", column, "n"]].merge(natural[["rank", column, "n"]], on="rank",
                                            suffixes=("_robust", "_natural"))
    if m.empty:
        raise ValueError("robust and natural share no evaluated rank")
    p1, p2 = m[f"{column}_robust"].to_numpy(float), m[f"{column}_natural"].to_numpy(float)
    d = p1 - p2
    if column in RATES:
        l1, u1 = wilson_interval(p1, m["n_robust"], confidence)
        l2, u2 = wilson_interval(p2, m["n_natural"], confidence)
        lo_u = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        hi_u = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    else:
        lo_u = hi_u = np.full(len(d), np.nan)
    lo, hi = lo_u.copy(), hi_u.copy()
    if correct is not None:
        rows_r = {int(k): i for i, k in enumerate(robust["rank"])}
        rows_n = {int(k): i for i, k in enumerate(natural["rank"])}
        cr, cn = (np.asarray(c) for c in correct)
        if cr.shape[0] != len(robust) or cn.shape[0] != len(natural) or cr.shape[1] != cn.shape[1]:
            raise ValueError(f"correct: shapes {cr.shape} and {cn.shape} do not match the "
                             f"tables' {len(robust)} and {len(natural)} ranks of the same images")
        for j, k in enumerate(m["rank"].astype(int)):
            _, lo[j], hi[j] = newcombe_paired(*paired_counts(cr[rows_r[k]], cn[rows_n[k]]),
                                              confidence=confidence)
    return m.assign(gap=d, gap_lo=lo, gap_hi=hi, gap_lo_unpaired=lo_u, gap_hi_unpaired=hi_u,
                    paired=correct is not None)[
        ["rank", "gap", "gap_lo", "gap_hi", "gap_lo_unpaired", "gap_hi_unpaired", "paired"]]


# ---------------------------------------------------------------------------- plot

#: Axis names of the table's columns.
COLUMN_NAMES = {"top1": "top-1 accuracy", "agreement": "agreement with full rank",
                "top5": "top-5 accuracy", "mean_true_prob": "mean true-class probability"}


def plot(tables, column: str | Sequence[str] = "top1", ax=None, percent: bool = True,
         title: str | None = None):
    """Draw rank spectra: ``column`` against input rank, one curve per table and column
    (Figures 6, 7 and 13 of the paper), with the interval band of :func:`with_intervals`
    where the table has ``<column>_lo`` and ``<column>_hi``.

    Needs matplotlib (``pip install 'rankcore[plot]'``), imported only here.

    Args:
        tables (DataFrame or dict of str to DataFrame): a table of :func:`rank_spectrum`,
            or several keyed by their legend label (e.g. ``{"natural": df1, "robust": df2}``).
        column (str or sequence of str, optional): the columns to draw (``"top1"``,
            ``"agreement"``, ``"top5"``, ``"mean_true_prob"``). A column that is all NaN
            (``top1`` of unlabelled images) is left out. Default: ``"top1"``.
        ax (matplotlib Axes, optional): where to draw. Default: a new 5.5 x 3.6 inch figure.
        percent (bool, optional): rates in percent. Default: True.
        title (str, optional): the axes' title. Default: none.

    Returns:
        matplotlib.axes.Axes: the axes drawn on.

    Examples::

        >>> import pandas as pd
        >>> df = pd.DataFrame({"rank": [0, 16, 32], "agreement": [0.1, 0.8, 1.0],
        ...                    "top1": [float("nan")] * 3})
        >>> ax = plot(df, ["agreement", "top1"])
        >>> [line.get_label() for line in ax.get_lines()]  # top1 is all NaN: left out
        ['agreement with full rank']
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("rankcore.spectrum.plot needs matplotlib: "
                          "pip install 'rankcore[plot]'") from err
    if not isinstance(tables, dict):
        tables = {"": tables}
    columns = [column] if isinstance(column, str) else list(column)
    for label, df in tables.items():
        missing = [c for c in ["rank", *columns] if c not in df.columns]
        if missing:
            raise ValueError(f"table {label!r} has no column {missing[0]!r} "
                             f"(its columns: {list(df.columns)})")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    scale = 100 if percent else 1
    for label, df in tables.items():
        for c in columns:
            if df[c].isna().all():
                continue
            name = " ".join(filter(None, [label, COLUMN_NAMES.get(c, c) if len(columns) > 1
                                          or not label else ""]))
            line, = ax.plot(df["rank"], scale * df[c], marker=".", ms=3, label=name)
            if f"{c}_lo" in df.columns:
                ax.fill_between(df["rank"], scale * df[f"{c}_lo"], scale * df[f"{c}_hi"],
                                color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("input rank k")
    ylabel = COLUMN_NAMES.get(columns[0], columns[0]) if len(columns) == 1 else "fraction"
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax
