"""Training on natural, adversarial and rank-truncated images (paper Section 5).

The paper trains CIFAR-10 ResNet-50s for 350 epochs (SGD, lr 0.1, momentum 0.9, weight
decay 5e-4, lr divided by 10 after epochs 150 and 250) on

- low-rank images: each channel keeps its k largest singular values (Section 5.2),
- high-rank images: each channel loses its k largest singular values (Section 5.1),

and compares them with natural and adversarially trained models (Section 5.3).
:func:`train` runs one such training; :func:`preset` names the runs the book uses at three
scales (``smoke``, ``quick``, ``paper``); :func:`cached` trains a preset once and keeps the
checkpoint, keyed by its configuration, so every chapter reuses the same model.

``rankcore.train`` is both this module and the function :func:`train`::

    model = rankcore.train(model, (x, y), (x_test, y_test), rankcore.TrainConfig(epochs=2))

Run a preset from the shell (``torchrun --nproc_per_node=N`` for data parallel)::

    python -m rankcore.train low_rank:5 --scale paper
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import types
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _io
from .torch_utils import model_device
from .paths import cache_dir

#: Bumped whenever a change here alters the weights a configuration produces, so cached
#: models and transformed data sets from older code are not silently reused.
TRAIN_CODE_VERSION = 1
#: Checkpoint format marker, checked on load.
CHECKPOINT_FORMAT = "rankcore.train/1"

TRANSFORMS = ("low_rank", "high_rank")
ADV_METHODS = ("pgd", "fgsm-rs")
SCHEDULES = ("step", "onecycle")


# ----------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run's weights (hashed for the model cache).

    Defaults are the paper's CIFAR-10 schedule (Section 5.1); :func:`preset` shortens it.
    """
    arch: str = "resnet50_cifar"        # name in rankcore.models (the paper's ResNet-50)
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
    augment: bool = True                # random crop (zero padding) + horizontal flip
    crop_padding: int = 4
    transform: str | None = None        # None, "low_rank:K" or "high_rank:K"
    # High-rank images (k largest singular values removed) are residuals with negative
    # values; the paper trains on them as they are, so they are not clamped by default.
    high_rank_clamp: bool = False
    adv: str | None = None              # None, "pgd" (Madry et al.) or "fgsm-rs" (Wong et al.)
    adv_norm: str = "linf"
    adv_eps: float = 8 / 255
    adv_steps: int = 7                  # "pgd" only
    adv_step_size: float | None = None  # None: 2.5 eps / steps (pgd), 1.25 eps (fgsm-rs)
    seed: int = 0
    amp: bool = True                    # bfloat16 autocast, CUDA only
    channels_last: bool = True          # CUDA only

    def __post_init__(self):
        _check_transform(self.transform)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {SCHEDULES}")
        if self.adv is not None and self.adv not in ADV_METHODS:
            raise ValueError(f"adv={self.adv!r}; expected None or one of {ADV_METHODS}")
        if self.adv_norm not in ("linf", "l2"):
            raise ValueError(f"adv_norm={self.adv_norm!r}; expected 'linf' or 'l2'")
        if self.adv == "fgsm-rs" and self.adv_norm != "linf":
            raise ValueError("adv='fgsm-rs' is an L-inf method; got adv_norm="
                             f"{self.adv_norm!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer >= 1")
        # Lists from YAML/JSON become tuples so the config stays hashable and its key stable.
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    def key(self) -> str:
        """A hex digest of the configuration and the training code's version."""
        blob = json.dumps({"config": dataclasses.asdict(self), "code": TRAIN_CODE_VERSION},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "TrainConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown TrainConfig fields {sorted(unknown)}; known: "
                            f"{sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)


def _check_transform(spec: str | None) -> tuple[str, int] | None:
    """``"low_rank:5"`` -> ``("low_rank", 5)``; ``None`` -> ``None``."""
    if spec is None:
        return None
    kind, _, k = str(spec).partition(":")
    if kind not in TRANSFORMS or not k.isdigit():
        raise ValueError(f"transform={spec!r}; expected None, 'low_rank:K' or 'high_rank:K' "
                         "with K a non-negative integer")
    return kind, int(k)


# Scales: "smoke" runs in seconds (CI), "quick" in CPU minutes (`make book`), "paper" is
# Section 5's ResNet-50 schedule (a GPU and days). Quick uses a 4,000-image subset, 5
# epochs and an 8-layer ResNet (about 1 ms per image and step on one idle core), so the
# ten models of chapters 04-06 (20k image passes each, twice that for FGSM-RS) train in
# about 5 minutes on 2 idle CPU cores, leaving room in the book's 30-minute budget.
_SCALES: dict[str, dict] = {
    "smoke": dict(arch="cifar_resnet8", n_train=512, n_test=256, epochs=2, batch_size=128,
                  schedule="onecycle", lr=0.2, nesterov=True),
    "quick": dict(arch="cifar_resnet8", n_train=4000, n_test=1000, epochs=5, batch_size=128,
                  schedule="onecycle", lr=0.2, nesterov=True),
    "paper": dict(),
}
# Adversarial training: FGSM with random start (Wong et al. 2020) where the budget is
# small, Madry et al.'s 7-step PGD at the paper's scale; both L-inf 8/255.
_ADV: dict[str, dict] = {
    "smoke": dict(adv="fgsm-rs", adv_eps=8 / 255),
    "quick": dict(adv="fgsm-rs", adv_eps=8 / 255),
    "paper": dict(adv="pgd", adv_eps=8 / 255, adv_steps=7, adv_step_size=2 / 255),
}


def preset(name: str, scale: str = "quick", **overrides) -> TrainConfig:
    """A named training configuration at a given scale.

    Args:
        name (str): ``"natural"``, ``"adv"`` (L-inf 8/255 adversarial training),
            ``"low_rank:K"`` (train on rank-K images) or ``"high_rank:K"`` (train on
            images with their K largest singular values removed).
        scale (str, optional): ``"smoke"`` (seconds), ``"quick"`` (CPU minutes) or
            ``"paper"`` (ResNet-50, 350 epochs, Section 5.1's schedule). Default: ``"quick"``.
        **overrides: any :class:`TrainConfig` field, e.g. ``epochs=20``.

    Returns:
        TrainConfig

    Examples::

        >>> preset("low_rank:5", "smoke").transform
        'low_rank:5'
    """
    if scale not in _SCALES:
        raise ValueError(f"scale={scale!r}; expected one of {sorted(_SCALES)}")
    fields = dict(_SCALES[scale])
    if name == "adv":
        fields.update(_ADV[scale])
    elif name != "natural":
        if _check_transform_name(name) is None:
            raise ValueError(f"name={name!r}; expected 'natural', 'adv', 'low_rank:K' or "
                             "'high_rank:K'")
        fields["transform"] = name
    fields.update(overrides)
    return TrainConfig().replace(**fields)


def _check_transform_name(name: str):
    try:
        return _check_transform(name)
    except ValueError:
        return None


# ----------------------------------------------------------------------- transforms

def transformed(x: Tensor, spec: str | None, *, tag: str = "data", clamp_high: bool = False,
                cache: bool = True, chunk: int = 2048) -> Tensor:
    """Rank-truncated copy of a data set, computed once in batches and cached on disk.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in [0, 1].
        spec (str or None): ``"low_rank:K"`` (low-rank images, clamped to [0, 1]),
            ``"high_rank:K"`` (K largest singular values removed) or ``None`` (returns x).
        tag (str, optional): readable prefix of the cache file, e.g. ``"cifar10-train"``.
            Default: ``"data"``.
        clamp_high (bool, optional): clamp high-rank images to [0, 1]. Default: False,
            since the residual is signed and the paper trains on it as it is.
        cache (bool, optional): read/write ``cache_dir("rank")``. Default: True.
        chunk (int, optional): images per SVD batch. Default: 2048.

    Returns:
        Tensor of x's shape, dtype and device.

    The cache key hashes the images' bytes, the transform and the code version, so a
    changed subset or changed code never reads a stale file.
    """
    parsed = _check_transform(spec)
    if parsed is None:
        return x
    kind, k = parsed
    clamp = kind == "low_rank" or clamp_high
    path = None
    if cache:
        digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
        digest.update(f"{kind}:{k}:{clamp}:{TRAIN_CODE_VERSION}:{x.dtype}".encode())
        path = cache_dir("rank") / f"{tag}-{kind}{k}-{digest.hexdigest()[:16]}.pt"
        if path.exists():
            out = torch.load(path, map_location=x.device, weights_only=True)
            if out.shape == x.shape:
                return out.to(x.dtype)
    from .rank import high_rank, low_rank
    fn = low_rank if kind == "low_rank" else high_rank
    out = torch.cat([fn(x[i:i + chunk], k, clamp=clamp) for i in range(0, len(x), chunk)])
    if path is not None:
        _io.torch_save(out.cpu(), path)
    return out


# ------------------------------------------------------------------------ schedules

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


# -------------------------------------------------------------------- augmentation

def augment(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Random crop with zero padding and random horizontal flip, per image.

    Args:
        x (Tensor): images ``(B, C, H, W)``.
        padding (int): pixels of zero padding on each side before cropping back to H x W.
        generator (torch.Generator): source of randomness (on x's device).
    """
    b, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        xp = F.pad(x, (padding,) * 4)                                   # (B, C, H+2p, W+2p)
        dy = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B, 1, 1, W)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]                                      # (B, C, H, W)
    flip = torch.rand(b, device=dev, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# ----------------------------------------------------------- adversarial training

def _adversarial(model: nn.Module, x: Tensor, y: Tensor, config: TrainConfig,
                 generator: torch.Generator) -> Tensor:
    """Training-time adversarial examples, made in the model's current (train) mode."""
    eps = config.adv_eps
    if config.adv == "fgsm-rs":
        # Wong, Rice, Kolter (2020): uniform start in the ball, one step of 1.25 eps.
        alpha = config.adv_step_size or 1.25 * eps
        delta = (torch.rand(x.shape, device=x.device, generator=generator) * 2 - 1) * eps
        delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        return (x + delta).clamp(0, 1).detach()
    from .attacks import _pgd_core
    step = config.adv_step_size or 2.5 * eps / config.adv_steps
    return _pgd_core(model, x, y, eps=eps, steps=config.adv_steps, step_size=step,
                     norm=config.adv_norm, targeted=False, target=None, random_start=True,
                     restarts=1, keep="last", generator=generator)


# ------------------------------------------------------------------------ training

def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _autocast(device: torch.device, config: TrainConfig):
    if device.type == "cuda" and config.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000,
             config: TrainConfig | None = None) -> float:
    """Top-1 accuracy in percent of ``model`` on ``(x, y)`` (eval mode, restored after)."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=device)
    rank, world = _distributed()
    idx = torch.arange(rank, len(x), world)
    ctx = _autocast(device, config) if config else nullcontext()
    for i in range(0, len(idx), batch_size):
        j = idx[i:i + batch_size]
        xb, yb = x[j].to(device, non_blocking=True), y[j].to(device, non_blocking=True)
        with ctx:
            correct += (model(xb).argmax(1) == yb).sum()
    if world > 1:
        torch.distributed.all_reduce(correct)
    model.train(was_training)
    return 100.0 * correct.item() / max(1, len(x))


def _epoch_generator(config: TrainConfig, epoch: int, device: torch.device) -> torch.Generator:
    # Seeding every epoch from (seed, epoch) makes a resumed run draw exactly the same
    # shuffles, crops and attack starts as an uninterrupted one.
    g = torch.Generator(device=device)
    g.manual_seed(config.seed * 100_003 + epoch)
    return g


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


def steps_per_epoch(n: int, config: TrainConfig, world: int = 1) -> int:
    per_rank = config.batch_size // world if world > 1 else config.batch_size
    return n // (per_rank * world) if world > 1 else math.ceil(n / per_rank)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.nesterov)


def _checkpoint_state(model, opt, config, epoch, history, finished) -> dict:
    return {"format": CHECKPOINT_FORMAT, "key": config.key(), "config": dataclasses.asdict(config),
            "code_version": TRAIN_CODE_VERSION, "epoch": epoch, "finished": finished,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": history}


def load_checkpoint(path: str | os.PathLike, config: TrainConfig | None = None,
                    map_location="cpu") -> dict:
    """Read a training checkpoint, checking its format and (if given) its configuration.

    Raises:
        ValueError: the file is unreadable or truncated, is not a rankcore checkpoint, or
            was written for a different configuration than ``config``.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for damaged files
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: "
                         f"{e}); delete it to train from scratch") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path} has format {found!r}; expected "
                         f"{CHECKPOINT_FORMAT!r}")
    if config is not None and ckpt.get("key") != config.key():
        diff = {k: (v, getattr(config, k)) for k, v in ckpt["config"].items()
                if hasattr(config, k) and _norm(v) != _norm(getattr(config, k))}
        raise ValueError(f"checkpoint {path} was written for a different configuration "
                         f"(key {ckpt.get('key')} vs {config.key()}; differing fields as "
                         f"(checkpoint, requested): {diff or 'code version'})")
    return ckpt


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def train(model: nn.Module, train_data: tuple[Tensor, Tensor],
          test_data: tuple[Tensor, Tensor] | None, config: TrainConfig, *,
          checkpoint: str | os.PathLike | None = None, resume: bool = False,
          log: str | os.PathLike | None = None, progress: bool = True,
          stop_after: int | None = None, tag: str | None = None) -> nn.Module:
    """Train ``model`` in place with SGD on (optionally rank-truncated or adversarial) data.

    Args:
        model (nn.Module): a classifier taking images in [0, 1] (it normalises its own
            inputs), already on the device to train on (CUDA if present).
        train_data (tuple): ``(x, y)``; x ``(N, C, H, W)`` float in [0, 1], y ``(N,)``
            int64. Kept on the model's device for the run (CIFAR-10 fits).
        test_data (tuple or None): full-rank ``(x, y)`` for the per-epoch top-1; None skips it.
        config (TrainConfig): the run; ``config.transform`` is applied to ``train_data``
            only (the paper tests on full-rank images).
        checkpoint (path, optional): file written atomically after every epoch (model,
            optimiser, epoch, RNG states, metrics). Default: None (no checkpoint).
        resume (bool, optional): continue from ``checkpoint`` if it exists. The run ends
            with the same weights as an uninterrupted one. Default: False.
        log (path, optional): JSON-lines file, one line of metrics per epoch.
        progress (bool, optional): show a tqdm bar (rank 0 only). Default: True.
        stop_after (int, optional): return after this many epochs in total (to simulate
            an interruption; the checkpoint is then resumable). Default: None.
        tag (str, optional): readable prefix for the transform cache. Default: None (no
            caching of the transformed training set).

    Returns:
        The trained model in eval mode. Its per-epoch metrics are in ``model.train_history``
        (list of dicts: epoch, lr, train_loss, train_acc, test_top1, seconds).

    Under ``torchrun`` (``torch.distributed`` initialised) the model is wrapped in
    DistributedDataParallel for the run and each rank trains on a shard of every batch;
    on CUDA the forward passes use bfloat16 autocast and channels-last memory.
    """
    x, y = _check_data(train_data, "train_data")
    if test_data is not None:
        xt, yt = _check_data(test_data, "test_data")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    device = model_device(model)
    rank, world = _distributed()
    # On the training device first: the batched SVDs of the transform run there too.
    x, y = x.to(device), y.to(device)
    x = transformed(x, config.transform, tag=tag or "data", clamp_high=config.high_rank_clamp,
                    cache=tag is not None)
    if device.type == "cuda" and config.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(model, config)
    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, config, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    spe = steps_per_epoch(len(x), config, world)
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    bar = _progress(total=(end - start) * spe, enabled=progress and rank == 0,
                    desc=f"train {config.transform or config.adv or 'natural'}")
    for epoch in range(start, end):
        t0, c0 = time.perf_counter(), time.process_time()
        stats = _train_epoch(net, opt, x, y, config, epoch, spe, rank, world, bar)
        top1 = accuracy(model, xt, yt, config=config) if test_data is not None else None
        # CPU seconds beside wall seconds: on a shared machine the wall clock says little.
        row = {"epoch": epoch + 1, **stats, "test_top1": top1,
               "seconds": round(time.perf_counter() - t0, 3),
               "cpu_seconds": round(time.process_time() - c0, 3)}
        history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{stats['train_loss']:.3f}",
                            test=f"{top1:.1f}" if top1 is not None else "-")
        if rank == 0:
            if log is not None:
                _append_jsonl(log, row)
            if checkpoint is not None:
                _io.torch_save(_checkpoint_state(model, opt, config, epoch + 1, history,
                                                 epoch + 1 == config.epochs), checkpoint)
        if world > 1:
            torch.distributed.barrier()
    if bar is not None:
        bar.close()
    model.train_history = history
    return model.eval()


def _train_epoch(net, opt, x, y, config, epoch, spe, rank, world, bar) -> dict:
    device = x.device
    g = _epoch_generator(config, epoch, device)
    net.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    for i, idx in enumerate(_batches(len(x), config, epoch, rank, world)):
        idx = idx.to(device)
        xb, yb = x[idx], y[idx]
        if config.augment:
            xb = augment(xb, config.crop_padding, g)
        if config.adv is not None:
            with _autocast(device, config):  # the attack's passes in bfloat16 too (CUDA)
                xb = _adversarial(net, xb, yb, config, g)
        if device.type == "cuda" and config.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = lr_at(config, epoch * spe + i, spe)
        with _autocast(device, config):
            out = net(xb)
            loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # Accumulate on the device: a .item() per step would synchronise CUDA every batch.
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
        seen += len(yb)
        if bar is not None:
            bar.update(1)
    return {"lr": opt.param_groups[0]["lr"], "train_loss": loss_sum.item() / max(1, seen),
            "train_acc": 100.0 * correct.item() / max(1, seen)}


def _check_data(data, name: str) -> tuple[Tensor, Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (images, labels); got {type(data).__name__}")
    x, y = data
    if not (torch.is_tensor(x) and x.ndim == 4 and x.is_floating_point()):
        raise ValueError(f"{name} images must be a float tensor (N, C, H, W); got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not (torch.is_tensor(y) and y.shape == (len(x),)):
        raise ValueError(f"{name} labels must be a tensor of shape ({len(x)},); got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    return x, y.long()


def _append_jsonl(path, row: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


# ------------------------------------------------------------------------- caching

def run_dir(config: TrainConfig) -> Path:
    """The cache folder of one configuration: ``cache_dir("models")/<transform>-<key>``."""
    name = config.transform or config.adv or "natural"
    return cache_dir("models") / f"{config.dataset}-{config.arch}-{name.replace(':', '')}-{config.key()}"


def load_data(config: TrainConfig, split: str) -> tuple[Tensor, Tensor]:
    """The (untransformed) train or test images a configuration uses."""
    from . import data
    n = config.n_train if split == "train" else config.n_test
    return data.load(config.dataset, split=split, n=n, seed=config.data_seed)


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    return torch.device("cpu")


def cached(config: TrainConfig, progress: bool = True, device: str | torch.device | None = None,
           train_if_missing: bool = True) -> nn.Module:
    """The model trained with ``config``: loaded from the cache, else trained and cached.

    The checkpoint lives in :func:`run_dir` (keyed by the configuration and the training
    code's version), so every chapter asking for the same configuration gets the same
    model; an interrupted run resumes from its last finished epoch.

    Args:
        config (TrainConfig): e.g. ``preset("low_rank:5", "quick")``.
        progress (bool, optional): show progress bars. Default: True.
        device (optional): where to train and return the model. Default: CUDA if present.
        train_if_missing (bool, optional): if False, raise FileNotFoundError instead of
            training. Default: True.

    Returns:
        nn.Module in eval mode, with ``train_history`` (per-epoch metrics).
    """
    from . import models
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    device = torch.device(device) if device is not None else _default_device()
    folder = run_dir(config)
    ckpt_path = folder / "checkpoint.pt"
    model = models.create(config.arch).to(device)
    if _load_finished(model, ckpt_path, config, device):
        return model
    if not train_if_missing:
        raise FileNotFoundError(f"no finished model for {config} in {folder}")
    # One trainer per configuration: a second process (another chapter, another user of
    # the same cache) waits for the first and then loads its model instead of training.
    # Not under torchrun, where every rank must enter training together.
    with _lock(folder / ".lock") if _distributed()[1] == 1 else nullcontext():
        if _load_finished(model, ckpt_path, config, device):
            return model
        _io.write_json(folder / "config.json", {"config": dataclasses.asdict(config),
                                                "code_version": TRAIN_CODE_VERSION})
        train_data = load_data(config, "train")
        test_data = load_data(config, "test")
        return train(model, train_data, test_data, config, checkpoint=ckpt_path, resume=True,
                     log=folder / "log.jsonl", progress=progress, tag=f"{config.dataset}-train")


def _load_finished(model: nn.Module, path: Path, config: TrainConfig, device) -> bool:
    if not path.exists():
        return False
    ckpt = load_checkpoint(path, config, map_location=device)
    if not ckpt["finished"]:
        return False
    model.load_state_dict(ckpt["model"])
    model.train_history = ckpt["history"]
    model.from_cache = True
    model.eval()
    return True


class _lock:
    """An exclusive advisory file lock (POSIX ``flock``; a no-op where unavailable)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        try:
            import fcntl
            fcntl.flock(self.f, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.f.close()  # closing releases the lock


def cached_runs(names, scale: str = "quick", progress: bool = True, **overrides) -> dict:
    """:func:`cached` for several presets in order: ``{name: model}``.

    Args:
        names (iterable of str): preset names, e.g. ``["natural", "low_rank:5"]``.
        scale (str, optional): preset scale. Default: ``"quick"``.
        progress (bool, optional): progress bars. Default: True.
        **overrides: :class:`TrainConfig` fields applied to every preset.
    """
    return {name: cached(preset(name, scale, **overrides), progress=progress) for name in names}


def curves(models: dict) -> "pd.DataFrame":
    """Per-epoch metrics of trained models, long format.

    Args:
        models (dict): ``{run name: model}`` from :func:`cached` / :func:`cached_runs`.

    Returns:
        DataFrame with columns ``run, epoch, test_top1, train_loss, train_acc, lr, seconds``.
    """
    import pandas as pd
    return pd.DataFrame([{"run": name, **row} for name, m in models.items()
                         for row in m.train_history])


def summary(models: dict) -> "pd.DataFrame":
    """One row per model: final and best full-rank test top-1, epochs, training minutes."""
    import pandas as pd
    rows = []
    for name, m in models.items():
        h = m.train_history
        rows.append({"run": name, "epochs": len(h), "test_top1": h[-1]["test_top1"],
                     "best_test_top1": max(r["test_top1"] for r in h),
                     "train_loss": h[-1]["train_loss"],
                     "train_minutes": round(sum(r["seconds"] for r in h) / 60, 2),
                     "cpu_minutes": round(sum(r.get("cpu_seconds", math.nan) for r in h) / 60, 2),
                     "from_cache": getattr(m, "from_cache", False)})
    return pd.DataFrame(rows)


def history(config: TrainConfig) -> list[dict]:
    """Per-epoch metrics of a cached, finished run (train loss, test top-1, ...)."""
    return cached(config, progress=False, train_if_missing=False).train_history


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> None:
    """``python -m rankcore.train NAME [--scale S] [--set field=value ...]``; torchrun-aware."""
    p = argparse.ArgumentParser(prog="python -m rankcore.train", description=__doc__.split("\n")[0])
    p.add_argument("name", help="natural, adv, low_rank:K or high_rank:K")
    p.add_argument("--scale", default="quick", choices=sorted(_SCALES))
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override TrainConfig fields (values parsed as YAML)")
    args = p.parse_args(argv)
    import yaml
    overrides = {}
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}; expected FIELD=VALUE")
        overrides[k] = yaml.safe_load(v)
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        import torch.distributed as dist
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(_default_device())
    config = preset(args.name, args.scale, **overrides)
    model = cached(config)
    if _distributed()[0] == 0:
        last = model.train_history[-1] if model.train_history else {}
        print(json.dumps({"dir": str(run_dir(config)), "last_epoch": last}))


# ``rankcore.train`` is this module *and* the function ``train``: calling the module
# forwards to :func:`train`.
class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
