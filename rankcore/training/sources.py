"""Where the one epoch loop of :func:`rankcore.train.train` gets its batches: two sources.

A source is what differs between CIFAR-10 and ImageNet training, and nothing else:

- :class:`InMemory`: a tensor pair ``(x, y)`` resident on the device (uint8, or float16
  for signed high-rank residuals), rank-transformed once up front (cached) and augmented
  per batch on the device (flip + translate) from the epoch's generator.
- :class:`Streamed`: a Dataset of ``(uint8 (3, H, W), label)`` items (ImageNet folders),
  decoded and augmented in DataLoader workers, rank-transformed per batch on the device.

Both give ``steps`` (optimiser steps per epoch), ``guard`` (the overfitting guard's held-out
batch, or None) and ``batches(epoch, generator)``, which yields float ``(B, C, H, W)``
images in ``[0, 1]`` (or signed residuals) and labels ``(B,)`` on the device, ready for the
attack and the step: like nanoGPT's ``get_batch(split)``, the loop never asks where they
came from. :func:`evaluate` scores a test set of either kind.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor, nn

from .. import data
from .._recipe import augment
from ..data import to_float
from .transform import Transform, transformed

__all__ = ["InMemory", "Streamed", "make", "streamed", "evaluate", "balanced_subset", "steps_per_epoch"]


def steps_per_epoch(n: int, config, world: int = 1) -> int:
    """Optimiser steps per epoch of ``n`` in-memory images: every batch (the last partial)
    on one process; under ``torchrun`` whole global batches only."""
    per_rank = config.batch_size // world if world > 1 else config.batch_size
    return n // (per_rank * world) if world > 1 else math.ceil(n / per_rank)


def balanced_subset(y: Tensor, n: int, seed: int) -> Tensor:
    """``min(n, len(y))`` sorted indices into labels ``y`` ``(N,)``, every class as often as
    the others (counts differ by at most one until a class runs out), seeded by ``seed``.

    Classes take turns in a seeded random order of the images: first every class's first
    image, then every class's second, and so on.
    """
    y = y.detach().cpu().long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    ys = y[perm]
    grouped = torch.argsort(ys, stable=True)                 # by class, each in perm order
    counts = torch.bincount(ys)
    starts = torch.cumsum(counts, 0) - counts
    turn = torch.empty_like(grouped)
    turn[grouped] = torch.arange(len(ys)) - starts[ys[grouped]]   # place within its class
    take = torch.argsort(turn * len(ys) + torch.arange(len(ys)))[:n]
    return perm[take].sort().values


def _guarded(config) -> bool:
    return config.adv == "fgsm-rs" and config.adv_guard


class InMemory:
    """The training images ``(x, y)`` on ``device`` (see the module docstring).

    ``tag`` names the transform's cache file (None: not cached). With the overfitting guard,
    its batch is a :func:`balanced_subset` of ``test`` (a pair), else of the training
    images, which are then not trained on.
    """

    def __init__(self, train: tuple[Tensor, Tensor], test, config, device: torch.device,
                 tag: str | None, world: tuple[int, int] = (0, 1)):
        x, y = train
        self.config, self.device, (self.rank, self.world) = config, device, world
        # On the training device first: the batched SVDs of the transform run there too.
        xs = transformed(x.to(device), config.transform, tag=tag or "data",
                         clamp_high=config.high_rank_clamp, cache=tag is not None)
        y = y.to(device)
        self.guard = None
        if _guarded(config):
            self.guard, xs, y = self._hold_out(xs, y, test)
        self.xs, self.y = xs, y
        self.steps = steps_per_epoch(len(xs), config, self.world)

    def _hold_out(self, xs: Tensor, y: Tensor, test):
        config, device = self.config, self.device
        if test is not None and not streamed(test):
            xt, yt = test
            idx = balanced_subset(yt, config.guard_n, config.seed)
            return (to_float(xt[idx]).to(device), yt[idx].to(device)), xs, y
        if len(xs) <= config.guard_n:
            raise ValueError(f"train_data has {len(xs)} images; the overfitting guard holds "
                             f"out guard_n={config.guard_n} (pass test_data)")
        held = torch.zeros(len(xs), dtype=torch.bool)
        held[balanced_subset(y, config.guard_n, config.seed)] = True
        held = held.to(device)
        return (to_float(xs[held]), y[held]), xs[~held], y[~held]

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        config = self.config
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 7)
        perm = torch.randperm(len(self.xs), generator=g)
        per_rank = config.batch_size // self.world if self.world > 1 else config.batch_size
        # Each rank takes an interleaved shard of the same permutation; the last partial
        # batch is dropped so every rank makes the same number of steps (DDP needs that).
        usable = (len(perm) // (per_rank * self.world)) * per_rank * self.world
        shard = perm[:usable][self.rank::self.world] if self.world > 1 else perm
        for i in range(0, len(shard), per_rank):
            idx = shard[i:i + per_rank].to(self.device)
            xb = to_float(self.xs[idx])
            if config.augment:
                xb = augment(xb, config.crop_padding, generator, config.pad_mode)
            yield xb, self.y[idx]


class Streamed:
    """Batches of a Dataset of ``(uint8 (3, H, W), label)`` items through a DataLoader
    (``workers`` decoding processes; under ``torchrun`` each process its share of the
    global ``batch_size``, whole batches only). The rank transform runs per batch on
    ``device``, on the crop the network sees. Order and per-item augmentation are drawn
    from (seed, epoch, item) alone (:class:`rankcore.data.ImageDataset`'s ``item_seed``), so
    a resumed run sees the same images with any number of workers.

    The overfitting guard's batch: a :func:`balanced_subset` of ``test`` (a Dataset with
    ``labels``), decoded once; without one the guard is refused.
    """

    def __init__(self, train, test, config, device: torch.device, workers: int | None,
                 world: tuple[int, int] = (0, 1)):
        self.config, self.device, self.dataset = config, device, train
        n_world = world[1]
        if config.batch_size % n_world:
            raise ValueError(f"batch_size={config.batch_size} does not split over {n_world} "
                             "processes")
        if len(train) < config.batch_size:
            raise ValueError(f"train_data has {len(train)} images, fewer than one batch "
                             f"(batch_size={config.batch_size})")
        self.per_rank, self.workers = config.batch_size // n_world, workers
        self.loader = data.loader(train, self.per_rank, workers, device=device, shuffle=True,
                                  seed=config.seed, distributed=True, drop_last=True)
        self.steps = len(self.loader)
        self.transform = Transform.parse(config.transform)
        self.guard = None
        if _guarded(config):
            if test is None or getattr(test, "labels", None) is None:
                raise ValueError("the overfitting guard (adv='fgsm-rs', adv_guard=True) of a "
                                 "streamed run needs a labelled test_data Dataset")
            idx = balanced_subset(test.labels, config.guard_n, config.seed).tolist()
            items = [test[i] for i in idx]
            self.guard = (to_float(torch.stack([x for x, _ in items])).to(device),
                          torch.tensor([int(label) for _, label in items], device=device))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        self.loader.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "item_seed"):
            self.dataset.item_seed = self.config.seed * 100_003 + epoch
        for x, y in self.loader:
            xb = to_float(x, self.device)
            if self.transform is not None:
                xb = self.transform(xb, self.config.high_rank_clamp)
            yield xb, y.to(self.device, non_blocking=True)


def streamed(data) -> bool:
    """Whether ``data`` streams (a ``torch.utils.data.Dataset``); anything else is taken for
    an in-memory ``(images, labels)`` pair (and checked as one)."""
    return isinstance(data, torch.utils.data.Dataset)


def make(train, test, config, device: torch.device, tag: str | None, workers: int | None,
         world: tuple[int, int]) -> InMemory | Streamed:
    """The source of ``train``: :class:`Streamed` for a Dataset, else :class:`InMemory`."""
    if streamed(train):
        return Streamed(train, test, config, device, workers, world)
    return InMemory(train, test, config, device, tag, world)


def evaluate(model: nn.Module, test, config, batch_size: int, workers: int | None) -> dict:
    """The per-epoch scores on ``test`` (a pair on the device, a Dataset, or None):
    ``test_top1`` (a fraction, or None); a Dataset adds ``test_top5`` and ``test_images``
    (under ``torchrun`` each process scores its share and the counts are summed)."""
    from ..torch_utils import accuracy
    if test is None:
        return {"test_top1": None}
    if not streamed(test):
        return {"test_top1": accuracy(model, *test, 500, config.amp)}
    scores = data.evaluate(model, test, batch_size, workers, progress=False)
    return {"test_top1": scores["top1"], "test_top5": scores["top5"], "test_images": scores["n"]}
