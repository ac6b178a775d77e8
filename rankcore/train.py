"""Training on natural, adversarial and rank-truncated images (paper Section 5).

:func:`train` runs one training described by a :class:`TrainConfig`, whose defaults are the
paper's CIFAR-10 ResNet-50 schedule (Section 5.1); low-rank images keep each channel's k
largest singular values (Section 5.2), high-rank images lose them (Section 5.1). The fast
airbench-style recipe is a set of fields: uint8-resident data, flip + translate on the
device, label smoothing, Nesterov SGD with warm-up and linear decay, larger rates for
batch-norm shifts, channels-last, bfloat16 autocast. Adversarial training: FGSM-RS (Wong
et al. 2020) guarded against catastrophic overfitting, or PGD (L-inf or L2), both by the
projected step of :func:`rankcore.attacks.pgd`. A run that owns its cache folder and
returns its result: :class:`rankcore.training.Run`. Example::

    config = TrainConfig(arch="airbench_cpu", epochs=2, schedule="onecycle", lr=0.4)
    model = train(build_model(config), (x, y), (x_test, y_test), config)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._recipe import adversarial, augment
from .training import checkpoint as checkpoints
from .training.transform import Transform, to_float, transformed
from .torch_utils import accuracy, autocast, distributed, evaluating, model_device, wrap_distributed

__all__ = ["TrainConfig", "Transform", "train", "build_model", "load_checkpoint", "transformed", "lr_at",
           "augment", "adversarial", "steps_per_epoch", "balanced_subset", "TRAIN_CODE_VERSION"]

TRAIN_CODE_VERSION, CHECKPOINT_FORMAT = checkpoints.CODE_VERSION, checkpoints.FORMAT
ADV_METHODS = ("pgd", "fgsm-rs")
SCHEDULES, PAD_MODES = ("step", "onecycle"), ("zeros", "reflect")
#: The smaller image side of a data set: the largest rank a transform may name.
IMAGE_SIDE = {"cifar10": 32}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights (hashed for the model cache); the
    defaults are the paper's CIFAR-10 schedule (Section 5.1)."""
    arch: str = "resnet50_cifar"        # name in rankcore.models
    dataset: str = "cifar10"
    n_train: int | None = None          # training subset size (None: all 50,000 images)
    n_test: int | None = None           # test subset for the per-epoch top-1 (None: all)
    data_seed: int = 0                  # which subset (rankcore.data.load's seed)
    epochs: int = 350
    batch_size: int = 128
    lr: float = 0.1                     # peak lr for "onecycle"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"              # "step" (paper) or "onecycle" (short runs)
    milestones: tuple[int, ...] = (150, 250)  # "step": epochs after which lr *= gamma
    gamma: float = 0.1
    warmup: float = 0.2                 # "onecycle": fraction of steps spent warming up
    bias_lr_scale: float = 1.0          # 1-d parameters (shifts): lr * this, wd / this
    label_smoothing: float = 0.0
    augment: bool = True                # random translation + horizontal flip
    crop_padding: int = 4               # translation range in pixels
    pad_mode: str = "zeros"             # "zeros" (paper's crop) or "reflect" (airbench)
    transform: str | None = None        # None, "low_rank:K" or "high_rank:K" (or a Transform)
    # High-rank images (k largest singular values removed) are residuals with negative
    # values; the paper trains on them as they are, so they are not clamped by default.
    high_rank_clamp: bool = False
    adv: str | None = None              # None, "pgd" (Madry et al.) or "fgsm-rs" (Wong et al.)
    adv_norm: str = "linf"
    adv_eps: float = 8 / 255
    adv_steps: int = 7                  # "pgd" only
    adv_step_size: float | None = None  # None: 2.5 eps / steps (pgd), 1.25 eps (fgsm-rs)
    adv_guard: bool = True              # fgsm-rs: fall back to 2-step PGD on collapse
    guard_n: int = 256                  # images of the held-out guard batch
    guard_drop: float = 0.2             # collapse: guard PGD accuracy this far below best
    seed: int = 0                       # model initialisation, shuffling, augmentation
    amp: bool | None = None             # bfloat16 autocast; None: on CUDA only
    channels_last: bool = True

    def __post_init__(self):
        parsed = Transform.parse(self.transform)
        if parsed is not None and self.dataset in IMAGE_SIDE:
            parsed.check_side(IMAGE_SIDE[self.dataset], f"dataset={self.dataset!r}")
        # The canonical spelling: a Transform given here is stored as "kind:K", the form
        # the cache key hashes.
        object.__setattr__(self, "transform", None if parsed is None else str(parsed))
        for name, allowed in (("schedule", SCHEDULES), ("pad_mode", PAD_MODES),
                              ("adv_norm", ("linf", "l2")), ("adv", (None, *ADV_METHODS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.adv == "fgsm-rs" and self.adv_norm != "linf":
            raise ValueError(f"adv_norm={self.adv_norm!r}: adv='fgsm-rs' is an L-inf method")
        for names, integer, low, optional in _NUMBERS:
            for name in names:
                _check_number(name, getattr(self, name), integer, low, optional)
        if self.label_smoothing >= 1 or self.warmup > 1:
            raise ValueError(f"label_smoothing={self.label_smoothing!r}, warmup="
                             f"{self.warmup!r}; expected values in [0, 1)")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise TypeError(f"amp={self.amp!r}; expected None, True or False")
        # Lists from YAML/JSON become tuples so the config stays hashable and its key stable.
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @property
    def rank_transform(self) -> Transform | None:
        """``transform`` as a :class:`rankcore.training.Transform` (None: full-rank images)."""
        return Transform.parse(self.transform)

    def key(self) -> str:
        """A hex digest of the configuration and the training code's version."""
        return checkpoints.config_key(self, TRAIN_CODE_VERSION)

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown TrainConfig fields {sorted(unknown)}; known: "
                            f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)


# (fields, integer?, minimum, None allowed?)
_NUMBERS = ((("epochs", "batch_size", "adv_steps", "guard_n"), True, 1, False),
            (("n_train", "n_test"), True, 1, True), (("crop_padding",), True, 0, False),
            (("lr", "momentum", "weight_decay", "gamma", "warmup", "bias_lr_scale",
              "label_smoothing", "adv_eps", "guard_drop"), False, 0, False))


def _check_number(name: str, v, integer: bool, low: float, optional: bool) -> None:
    if v is None and optional:
        return
    ok = (int,) if integer else (int, float)
    if isinstance(v, bool) or not isinstance(v, ok):
        raise TypeError(f"{name}={v!r}; expected {'an integer' if integer else 'a number'}"
                        f"{' or None' if optional else ''}")
    if not math.isfinite(v) or v < low:
        raise ValueError(f"{name}={v!r}; expected a finite value >= {low}")


def build_model(config: TrainConfig) -> nn.Module:
    """A fresh ``rankcore.models.create(config.arch)`` initialised from ``config.seed`` (in
    a forked RNG: identical weights in every process, the caller's random state untouched)."""
    from . import models
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return models.create(config.arch)


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step ``step`` (counted from 0 over the whole run)."""
    if config.schedule == "step":
        epoch = step // steps_per_epoch
        return config.lr * config.gamma ** sum(epoch >= m for m in config.milestones)
    # One cycle: linear warm-up from 0 to lr, then linear decay to 0 (airbench-style).
    total = config.epochs * steps_per_epoch
    warm = max(1, round(config.warmup * total))
    t = step + 1
    return config.lr * (t / warm if t <= warm else max(0.0, (total - t) / max(1, total - warm)))


def steps_per_epoch(n: int, config: TrainConfig, world: int = 1) -> int:
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


def _guard_accuracy(model, x, y, config, device, amp) -> float:
    """Accuracy under 10-step PGD of the training norm on the guard batch (eval mode)."""
    g = torch.Generator(device=device).manual_seed(config.seed + 99)
    with evaluating(model), autocast(device, amp):
        xa = adversarial(model, x, y, method="pgd", norm=config.adv_norm, eps=config.adv_eps,
                         steps=10, step_size=config.adv_eps / 4, generator=g)
        with torch.no_grad():
            return float((model(xa).argmax(1) == y).float().mean())


def train(model: nn.Module, train_data: tuple[Tensor, Tensor],
          test_data: tuple[Tensor, Tensor] | None, config: TrainConfig, *,
          checkpoint: str | os.PathLike | None = None, resume: bool = False,
          log: str | os.PathLike | None = None, progress: bool = True,
          stop_after: int | None = None, tag: str | None = None) -> nn.Module:
    """Train ``model`` (on its device, taking [0, 1] images) in place with SGD.

    ``train_data``/``test_data``: ``(x (N, C, H, W) float in [0, 1] or uint8, y (N,) int)``;
    the training images stay on the device as uint8 (float16 for signed high-rank
    residuals), ``config.transform`` applies to them only; ``test_data`` (or None) gives the
    per-epoch top-1. ``checkpoint`` is written atomically after every epoch; ``resume``
    continues from it to the same weights as an uninterrupted run; ``log`` (JSON lines, one
    per finished epoch) is rewritten whole each epoch, so a kill never leaves a duplicate;
    ``stop_after`` returns after that many epochs in total; ``tag`` names the transform's
    cache file (None: not cached). Returns the model in eval mode with ``train_history``:
    one dict per epoch (epoch, lr, train_loss, train_acc and test_top1 as fractions,
    seconds, cpu_seconds; adv_method and guard_pgd_acc for adversarial runs).

    Overfitting guard (``adv="fgsm-rs"``, ``adv_guard``): after every epoch, the accuracy
    under 10-step PGD on a held-out batch (``guard_n`` test images, else training images
    then not trained on, drawn by :func:`balanced_subset`: every class equally, seeded by
    ``config.seed``; listing order would give one class); if it falls ``guard_drop`` below its
    best, the epoch is undone and the run goes on with 2-step PGD (step eps / 2). Under
    ``torchrun``: DistributedDataParallel (SyncBatchNorm on CUDA), a shard of every batch
    per rank.
    """
    for name, v, kind in (("config", config, TrainConfig), ("model", model, nn.Module)):
        if not isinstance(v, kind):
            raise TypeError(f"{name} must be a {kind.__name__}; got {type(v).__name__}")
    x, y = _check_data(train_data, "train_data")
    xt, yt = _check_data(test_data, "test_data") if test_data is not None else (None, None)
    _check_number("stop_after", stop_after, True, 1, True)
    classes = getattr(model, "num_classes", None)
    for name, labels in (("train_data", y), ("test_data", yt)):
        if classes is not None and labels is not None and int(labels.max()) >= classes:
            raise ValueError(f"{name} labels must be < the model's {classes} classes; got "
                             f"{int(labels.max())}")
    if config.rank_transform is not None:
        config.rank_transform.check_side(min(x.shape[-2:]), "train_data")
    loop = _Loop.start(model, (x, y), (xt, yt) if xt is not None else None, config, tag)
    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, config, map_location=loop.device)
        model.load_state_dict(ckpt["model"])
        loop.opt.load_state_dict(ckpt["optimizer"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
    loop.net = wrap_distributed(model, loop.device, loop.world)
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    loop.bar = _progress(total=(end - start) * loop.steps, enabled=progress and loop.rank == 0,
                         desc=f"train {config.transform or config.adv or 'natural'}")
    for epoch in range(start, end):
        history.append(_epoch_row(loop, epoch, history))
        if loop.rank == 0:
            checkpoints.save(model, loop.opt, config, epoch + 1, history,
                             checkpoint=checkpoint, log=log)
        if loop.world > 1:
            torch.distributed.barrier()
    if loop.bar is not None:
        loop.bar.close()
    model.train_history = history
    return model.eval()


@dataclasses.dataclass
class _Loop:
    """What every epoch of one :func:`train` call shares: the epoch loop's state.

    ``xs``/``y``: the training images on the device (uint8, or float16 residuals) and
    labels; ``guard``/``test``: float images and labels of the guard batch and the test set
    (or None); ``steps``: optimiser steps per epoch; ``net``: ``model``, or its DDP wrapper.
    """
    model: nn.Module
    config: TrainConfig
    device: torch.device
    xs: Tensor
    y: Tensor
    guard: tuple[Tensor, Tensor] | None
    test: tuple[Tensor, Tensor] | None
    opt: torch.optim.SGD
    steps: int
    rank: int
    world: int
    net: nn.Module | None = None
    bar: object = None

    @classmethod
    def start(cls, model: nn.Module, train_data: tuple[Tensor, Tensor],
              test_data: tuple[Tensor, Tensor] | None, config: TrainConfig, tag: str | None):
        device = model_device(model)
        rank, world = distributed()
        x, y = train_data
        # On the training device first: the batched SVDs of the transform run there too.
        xs = transformed(x.to(device), config.transform, tag=tag or "data",
                         clamp_high=config.high_rank_clamp, cache=tag is not None)
        y = y.to(device)
        guard = None
        if config.adv == "fgsm-rs" and config.adv_guard:
            guard, xs, y = _guard_batch(xs, y, test_data, config, device)
        test = None if test_data is None else \
            (to_float(test_data[0]).to(device), test_data[1].to(device))
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        return cls(model, config, device, xs, y, guard, test, _make_optimizer(model, config),
                   steps_per_epoch(len(xs), config, world), rank, world)


def _guard_batch(xs: Tensor, y: Tensor, test_data, config: TrainConfig, device):
    """The overfitting guard's held-out batch (:func:`balanced_subset` of the test set,
    else of the training set, then not trained on) and the training set left."""
    if test_data is not None:
        xt, yt = test_data
        idx = balanced_subset(yt, config.guard_n, config.seed)
        return (to_float(xt[idx]).to(device), yt[idx].to(device)), xs, y
    if len(xs) <= config.guard_n:
        raise ValueError(f"train_data has {len(xs)} images; the overfitting guard holds "
                         f"out guard_n={config.guard_n} (pass test_data)")
    held = torch.zeros(len(xs), dtype=torch.bool)
    held[balanced_subset(y, config.guard_n, config.seed)] = True
    held = held.to(device)
    return (to_float(xs[held]), y[held]), xs[~held], y[~held]


def _epoch_row(loop: _Loop, epoch: int, history: list[dict]) -> dict:
    """Train epoch ``epoch`` (guarded: undone and redone with 2-step PGD on collapse) and
    return its history row."""
    config = loop.config
    t0, c0 = time.perf_counter(), time.process_time()
    fallback = any(r.get("adv_method") == "pgd2" for r in history)
    method = ("pgd2" if fallback else config.adv) if config.adv else None
    guard = loop.guard is not None
    snapshot = copy.deepcopy((loop.model.state_dict(), loop.opt.state_dict())) if guard else None
    stats = _train_epoch(loop, epoch, loop.bar, method)
    guard_acc = None
    if guard:
        guard_acc = _guard_accuracy(loop.model, *loop.guard, config, loop.device, config.amp)
        best = max((r["guard_pgd_acc"] for r in history if r.get("guard_pgd_acc") is not None),
                   default=None)
        if not fallback and best is not None and guard_acc < best - config.guard_drop:
            # Catastrophic overfitting: undo this epoch and go on with 2-step PGD.
            loop.model.load_state_dict(snapshot[0])
            loop.opt.load_state_dict(snapshot[1])
            method = "pgd2"
            stats = _train_epoch(loop, epoch, None, method)
            guard_acc = _guard_accuracy(loop.model, *loop.guard, config, loop.device, config.amp)
    top1 = accuracy(loop.model, *loop.test, 500, config.amp) if loop.test is not None else None
    # CPU seconds beside wall seconds: on a shared machine the wall clock says little.
    row = {"epoch": epoch + 1, **stats, "test_top1": top1,
           "seconds": round(time.perf_counter() - t0, 3),
           "cpu_seconds": round(time.process_time() - c0, 3)}
    if config.adv:
        row.update(adv_method=method, guard_pgd_acc=guard_acc)
    return row


def _train_epoch(loop: _Loop, epoch: int, bar, method: str | None) -> dict:
    """One pass over the training images with ``method`` (None, "fgsm-rs", "pgd" or
    "pgd2"): lr, mean train loss and accuracy."""
    config, device, xs, y = loop.config, loop.device, loop.xs, loop.y
    g = _epoch_generator(config, epoch, device)
    loop.net.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    steps, step_size = config.adv_steps, config.adv_step_size
    if method == "pgd2":
        method, steps, step_size = "pgd", 2, config.adv_eps / 2
    for i, idx in enumerate(_batches(len(xs), config, epoch, loop.rank, loop.world)):
        idx = idx.to(device)
        xb, yb = to_float(xs[idx]), y[idx]
        if config.augment:
            xb = augment(xb, config.crop_padding, g, config.pad_mode)
        if method is not None:  # the attack's passes under the same autocast
            with autocast(device, config.amp):
                xb = adversarial(loop.model, xb, yb, method=method, norm=config.adv_norm,
                                 eps=config.adv_eps, steps=steps, step_size=step_size,
                                 generator=g)
        if config.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = lr_at(config, epoch * loop.steps + i, loop.steps)
        for group in loop.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with autocast(device, config.amp):
            out = loop.net(xb)
        loss = F.cross_entropy(out.float(), yb, label_smoothing=config.label_smoothing)
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        loop.opt.step()
        # Accumulate on the device: a .item() per step would synchronise CUDA every batch.
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
        seen += len(yb)
        if bar is not None:
            bar.update(1)
    return {"lr": lr, "train_loss": loss_sum.item() / max(1, seen),
            "train_acc": correct.item() / max(1, seen)}


def _epoch_generator(config: TrainConfig, epoch: int, device: torch.device) -> torch.Generator:
    # Seeded from (seed, epoch): a resumed run draws the same shuffles, crops and starts.
    return torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)


def _batches(n: int, config: TrainConfig, epoch: int, rank: int, world: int) -> Iterator[Tensor]:
    g = torch.Generator().manual_seed(config.seed * 100_003 + epoch + 7)
    perm = torch.randperm(n, generator=g)
    per_rank = config.batch_size // world if world > 1 else config.batch_size
    # Each rank takes an interleaved shard of the same permutation; the last partial
    # batch is dropped so every rank makes the same number of steps (DDP needs that).
    usable = (n // (per_rank * world)) * per_rank * world
    shard = perm[:usable][rank::world] if world > 1 else perm
    for i in range(0, len(shard), per_rank):
        yield shard[i:i + per_rank]


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD; 1-d parameters (biases, batch-norm shifts) at lr * bias_lr_scale with the
    weight decay divided by it (airbench), so their decay per step is unchanged."""
    params, s = [p for p in model.parameters() if p.requires_grad], config.bias_lr_scale or 1.0
    groups = [dict(params=[p for p in params if p.ndim >= 2], lr_scale=1.0,
                   weight_decay=config.weight_decay),
              dict(params=[p for p in params if p.ndim < 2], lr_scale=s,
                   weight_decay=config.weight_decay / s)]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=config.lr,
                           momentum=config.momentum, nesterov=config.nesterov)


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None,
                    map_location="cpu") -> dict:
    """A training checkpoint, read without running code: :func:`rankcore.training.checkpoint.load`."""
    return checkpoints.load(path, config, map_location)


def _check_data(data, name: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (images, labels); got {type(data).__name__}")
    x, y = data
    if not (torch.is_tensor(x) and x.ndim == 4 and (x.is_floating_point()
                                                    or x.dtype == torch.uint8)):
        raise ValueError(f"{name} images must be a float or uint8 tensor (N, C, H, W); got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if len(x) == 0 or (x.is_floating_point() and not bool(((x >= 0) & (x <= 1)).all())):
        raise ValueError(f"{name} images must be at least one, float in [0, 1] (or uint8); "
                         f"got shape {tuple(x.shape)}, range [{x.min() if len(x) else '-'}, "
                         f"{x.max() if len(x) else '-'}]")
    if not (torch.is_tensor(y) and y.shape == (len(x),)) or y.is_floating_point() \
            or y.dtype == torch.bool:
        raise ValueError(f"{name} labels must be an int tensor of shape ({len(x)},); got "
                         f"{getattr(y, 'dtype', type(y).__name__)} "
                         f"{tuple(getattr(y, 'shape', ()))}")
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{name} labels must be >= 0; got {int(y.min())}")
    return x, y.long()


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False) if enabled else None
