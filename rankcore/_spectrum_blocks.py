"""The block engine of :func:`rankcore.spectrum.rank_spectrum` (private: its names may change).

Input sources read a block of images at a time, digests key the resume file, the forward
pass with autocast, one block's predictions at every rank, the per-rank table, and the
checkpoint files.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import queue
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import _io
from .rank import factor_rank, max_rank, rank_blocks, svd_factors

#: Columns of the table returned by ``rank_spectrum``, in order.
COLUMNS = ("rank", "agreement", "top1", "top5", "mean_true_prob", "n")
AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------- inputs

def image_tensor(x: Any, where: str) -> Tensor:
    """``(B, C, H, W)`` float in ``[0, 1]`` on the CPU from float or uint8 images."""
    x = torch.as_tensor(x).detach()
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(x.shape)} for {where}")
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if not x.is_floating_point():
        raise TypeError(f"images must be float in [0, 1] or uint8, got dtype {x.dtype} for {where}")
    lo, hi = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN reaches both, one pass
        raise ValueError(f"images contain NaN or infinite values ({where})")
    if lo < 0 or hi > 1:
        raise ValueError(f"images must lie in [0, 1] (models normalise their own input), "
                         f"got values in [{lo:.3g}, {hi:.3g}] among {where}")
    return x


def as_labels(v: Any, n: int | None = None) -> Tensor:
    y = torch.as_tensor(v).detach()
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    y = y.long().flatten().cpu()
    if n is not None and len(y) != n:
        raise ValueError(f"labels has {len(y)} entries for {n} images")
    return y


def _item_label(v: Any, i: int) -> int | None:
    """A data set item's label as an int; a float label (3.7) is refused, never truncated."""
    if v is None:
        return None
    t = torch.as_tensor(v)
    if t.numel() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got {v!r} ({type(v).__name__}) as the "
                        f"label of images[{i}]")
    return int(t)


class Source:
    """Images (and labels) fetched a block at a time from tensors, a data set or a loader.

    Data sets are read one block at a time (through a ``DataLoader`` with the loader's
    worker processes when one is given), so memory does not grow with their length.
    """

    def __init__(self, images: Any, labels: Any):
        self.workers = 0
        if isinstance(images, (tuple, list)) and len(images) == 2 and isinstance(images[0], Tensor):
            images, labels = images[0], images[1] if labels is None else labels
        if isinstance(images, torch.utils.data.DataLoader):
            self.workers = images.num_workers
            images = images.dataset
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if isinstance(images, (str, bytes, dict)):
            raise TypeError("images must be a tensor (N, C, H, W), a data set of (image, label) "
                            f"items or a DataLoader over one, got {type(images).__name__}")
        if isinstance(images, Tensor):
            if images.dim() != 4:
                raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
            self._x, self._ds = images, None
        elif hasattr(images, "__getitem__") and hasattr(images, "__len__"):
            self._x, self._ds = None, images
        else:
            raise TypeError("images must be a tensor (N, C, H, W), a data set of (image, label) "
                            f"items or a DataLoader over one, got {type(images).__name__}")
        self.n = len(images)
        if self.n == 0:
            raise ValueError("images is empty: the rank spectrum needs at least one image")
        self._y = None if labels is None else as_labels(labels, self.n)
        first, y0 = self.get(0, 1)
        self.shape = tuple(first.shape[1:])  # (C, H, W)
        self.has_labels = y0 is not None

    def _items(self, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
        items = [self._ds[i] for i in range(start, stop)]
        pairs = [it if isinstance(it, (tuple, list)) else (it, None) for it in items]
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        ys = [_item_label(p[1], i) for i, p in enumerate(pairs, start)]
        if any(v is None or v < 0 for v in ys):  # -1: an unlabelled item (samples)
            return x, None
        return x, torch.as_tensor(ys, dtype=torch.long)

    def get(self, start: int, stop: int) -> tuple[Tensor, Tensor | None]:
        """Images ``[start, stop)`` as ``(B, C, H, W)`` float and their labels ``(B,)`` or None."""
        if self._x is not None:
            x, y = self._x[start:stop], None
        else:
            x, y = self._items(start, stop)
        if self._y is not None:
            y = self._y[start:stop]
        return image_tensor(x, f"images [{start}, {stop})"), y

    def blocks(self, which: Sequence[int], size: int) -> Iterator[tuple[int, Tensor, Tensor | None]]:
        """``(b, images, labels)`` of the blocks ``which``, in order."""
        if self._ds is None or self.workers == 0 or len(which) < 2:
            for b in which:
                yield (b, *self.get(b * size, min((b + 1) * size, self.n)))
            return
        loader = torch.utils.data.DataLoader(  # worker processes decode the next blocks
            list(which), batch_size=None, num_workers=self.workers,
            collate_fn=lambda b: (b, *self.get(b * size, min((b + 1) * size, self.n))))
        yield from loader


def digest(*tensors: Tensor | None) -> str:
    h = hashlib.sha1()
    for t in tensors:
        if t is None:
            h.update(b"none")
        else:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:20]


def model_digest(model: nn.Module) -> str:
    """Class, names, shapes and the bytes of every parameter and buffer."""
    h = hashlib.sha1(type(model).__qualname__.encode())
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(name.encode())
        h.update(digest(t).encode())
    return h.hexdigest()[:20]


# ---------------------------------------------------------------------------- forward

class Forward:
    """The model's softmax on a batch, under autocast and (optionally) channels-last."""

    def __init__(self, model: nn.Module, device: torch.device, batch_size: int,
                 amp: str | None, channels_last: bool):
        self.model, self.device, self.batch_size = model, device, batch_size
        # Inputs take the model's float dtype (float64 models get float64 images).
        dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
        self.dtype = dtypes[0] if dtypes and dtypes[0] == torch.float64 else torch.float32
        self.channels_last = channels_last
        self.amp = amp

    def __call__(self, x: Tensor) -> Tensor:
        """``x (B, C, H, W)`` -> probabilities ``(B, classes)``, float32 or the model's float64."""
        out = []
        autocast = (torch.autocast(device_type=self.device.type, dtype=AMP[self.amp])
                    if self.amp else contextlib.nullcontext())
        for start in range(0, x.shape[0], self.batch_size):
            xb = x[start:start + self.batch_size]
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = self.model(xb)
            if isinstance(logits, (tuple, list)):  # e.g. GoogLeNet's auxiliary outputs
                logits = logits[0]
            if logits.dtype in (torch.float16, torch.bfloat16):
                logits = logits.float()  # softmax of autocast logits in float32
            probs = logits.softmax(dim=-1)
            # NaN logits argmax to one class at every rank: agreement 1.0, silently wrong
            if not bool(torch.isfinite(probs).all()):
                bad = int((~torch.isfinite(probs).all(dim=-1)).sum())
                raise ValueError(
                    f"model returned non-finite logits (NaN or inf) for {bad} of {xb.shape[0]} "
                    "inputs, so its predictions, agreement and accuracy are meaningless; check "
                    "its weights and input normalisation" + (f" (or run without amp={self.amp!r})"
                                                             if self.amp else ""))
            out.append(probs)
        return torch.cat(out) if len(out) > 1 else out[0]


#: A default block holds at most this many pixels per channel: 16 images of 224 x 224.
BLOCK_PIXELS = 16 * 224 * 224


def default_block(batch_size: int, shape: tuple[int, ...]) -> int:
    """Images per block when ``rank_spectrum`` is not told: at most a batch, and at most
    :data:`BLOCK_PIXELS` (16 images of 224 x 224, 784 of 32 x 32). Small images thus get
    blocks of a whole batch, so every forward pass is a full batch, as in a plain loop:
    16-image blocks of CIFAR-10 sent 33 ranks through ResNet-20 in passes of 176, 1-2%
    slower per image than 256 on 2 cores (``bench/spectrum_bench.py --batch-sizes``)."""
    return max(1, min(batch_size, BLOCK_PIXELS // (shape[-2] * shape[-1])))


def rank_chunk(batch_size: int, images: int, n_ranks: int) -> int:
    """Ranks per forward pass for a block of ``images`` images: enough that each pass sees
    about ``batch_size`` inputs, spread evenly (33 ranks of 16 images in batches of 256:
    3 passes of 176, not 256 + 256 + 16)."""
    chunk = max(1, batch_size // images)
    return -(-n_ranks // -(-n_ranks // chunk))


def run_block(forward: Forward, x: Tensor, y: Tensor | None, ks: list[int],
               step: Callable[[int], Any], factors=None) -> dict[str, Tensor]:
    """Predictions of one block of images at every rank in ``ks``.

    Returns CPU tensors: ``full (B,)`` full-rank prediction, ``pred (R, B)`` rank-k
    prediction, and with labels ``top5 (R, B)`` bool and ``prob (R, B)`` probability of
    the true class.
    """
    x = x.to(forward.device, forward.dtype, non_blocking=True)
    b = x.shape[0]
    y_dev = None if y is None else y.to(forward.device)
    # Full rank is x itself: when it is among the ranks, its row gives the full-rank
    # prediction and saves a forward pass per image.
    full = None if ks[-1] == min(x.shape[-2:]) else forward(x).argmax(dim=-1).int().cpu()
    chunk = rank_chunk(forward.batch_size, b, len(ks))
    preds, top5s, probs = [], [], []
    for block_ks, xs in rank_blocks(x, ks, chunk=chunk, clamp=True, factors=factors):
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


def prefetched(blocks: Iterator, device: torch.device, dtype: torch.dtype,
               ks: list[int]) -> Iterator:
    """``(b, x, y, factors)`` with the SVD of the next block (the factors ``ks`` need)
    computed on a CPU thread while the caller runs the model on the current one (worth it
    when the model is on a GPU)."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = object()

    def work():
        try:
            for b, x, y in blocks:
                x = x.to(dtype)
                if device.type == "cuda" and x.device.type == "cpu":
                    x = x.pin_memory()  # lets run_block copy it asynchronously
                q.put((b, x, y, svd_factors(x, factor_rank(ks, max_rank(x)))))
            q.put(stop)
        except BaseException as e:  # handed to the caller
            q.put(e)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is stop:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def table(blocks: dict[int, dict[str, Tensor]], ks: list[int], has_labels: bool):
    """Per-rank means over all images, in image order (so the sum order is fixed)."""
    import pandas as pd

    order = sorted(blocks)
    keys = [k for k in ("full", "pred", "y", "top5", "prob") if k in blocks[order[0]]]
    cat = {key: torch.cat([blocks[b][key] for b in order], dim=-1) for key in keys}
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

#: The first entry of every checkpoint this module writes: tells ours from other files.
CHECKPOINT_TAG = "rankcore rank_spectrum checkpoint"


def _well_formed(state: dict) -> bool:
    return isinstance(state.get("blocks"), dict) and isinstance(state.get("fingerprint"), dict)


def part_path(path: Path, rank: int, world: int) -> Path:
    return path if world == 1 else path.with_name(f"{path.name}.part{rank}of{world}")


#: Fingerprint keys of older checkpoints that describe the memory layout, not the answer.
LAYOUT_KEYS = ("channels_last",)


def load_checkpoints(path: Path, fingerprint: dict) -> dict[int, dict[str, Any]]:
    """Finished blocks from ``path`` and from the per-process parts beside it (each with the
    digest of its images and labels; the caller reuses a block only if that still matches)."""
    blocks: dict[int, dict[str, Any]] = {}
    for f in [path] + sorted(path.parent.glob(f"{path.name}.part*of*")):
        # a file that is not ours raises; a damaged one of ours is moved aside (warned)
        state = _io.load_own(f, CHECKPOINT_TAG, "rank spectrum checkpoint",
                             ("fingerprint", "blocks"), valid=_well_formed)
        if state is None:
            continue  # missing or damaged: computed afresh
        old = state.get("fingerprint") or {}
        if old.get("version") != fingerprint["version"]:  # an older rankcore's: not the user's doing
            warnings.warn(f"checkpoint {str(f)!r} was written by another rankcore (checkpoint "
                          f"version {old.get('version')}, now {fingerprint['version']}); "
                          "recomputing it", RuntimeWarning, stacklevel=3)
            continue
        # Files written before the input layout stopped keying them still say which it was.
        old = {k: v for k, v in old.items() if k not in LAYOUT_KEYS}
        if old != fingerprint:
            diff = sorted(k for k in set(fingerprint) | set(old) if old.get(k) != fingerprint.get(k))
            raise ValueError(f"checkpoint {str(f)!r} was written by a different run (differs in "
                             f"{diff}); delete it or pass another checkpoint path")
        blocks.update({int(b): v for b, v in state["blocks"].items()})
    return blocks


def save_checkpoint(path: Path, fingerprint: dict, blocks: dict[int, dict[str, Any]]) -> None:
    _io.save_own({"fingerprint": fingerprint, "blocks": blocks}, path, CHECKPOINT_TAG)


def gather(blocks: dict[int, dict[str, Tensor]], world: int) -> dict[int, dict[str, Tensor]]:
    if world == 1:
        return blocks
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, blocks)
    merged: dict[int, dict[str, Tensor]] = {}
    for part in parts:
        merged.update(part)
    return merged
