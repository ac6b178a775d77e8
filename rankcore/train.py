"""Training on natural, adversarial and rank-truncated images (paper Section 5).

:func:`train` runs one training described by a :class:`TrainConfig`, whose defaults are the
paper's CIFAR-10 ResNet-50 schedule (Section 5.1); low-rank images keep each channel's k
largest singular values (Section 5.2), high-rank images lose them (Section 5.1). One epoch
loop for every data set, fed by a batch source (:mod:`rankcore.training.sources`): CIFAR-10
as uint8 tensors resident on the device, ImageNet streamed from its folders by a
DataLoader (``dataset="imagenet"``; :mod:`rankcore.imagenet_training` holds its recipe,
its data sets and its command). The fast
airbench-style recipe is a set of fields: uint8-resident data, flip + translate on the
device, label smoothing, Nesterov SGD with warm-up and linear decay, larger rates for
batch-norm shifts, channels-last, bfloat16 autocast. Adversarial training: FGSM-RS (Wong
et al. 2020) guarded against catastrophic overfitting, or PGD (L-inf or L2), both by the
projected step of :func:`rankcore.attacks.pgd`. A run that owns its cache folder and
returns its result: :class:`rankcore.training.Run`. Example::

    config = TrainConfig(arch="airbench_cpu", epochs=2, schedule="onecycle", lr=0.4)
    model = train(build_model(config), (x, y), (x_test, y_test), config)
    # ImageNet: two Datasets instead of two pairs (from rankcore.imagenet_training)
    inet = imagenet_config(transform="low_rank:50")
    model = train(build_model(inet), train_data(inet), val_data(inet), inet, workers=8)
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._recipe import adversarial, augment
from .training import checkpoint as checkpoints
from .training import sources
from .training.sources import balanced_subset, steps_per_epoch
from .training.transform import Transform, to_float, transformed
from .torch_utils import autocast, distributed, evaluating, model_device, wrap_distributed

__all__ = ["TrainConfig", "Transform", "train", "build_model", "load_checkpoint", "transformed", "lr_at",
           "augment", "adversarial", "steps_per_epoch", "balanced_subset", "TRAIN_CODE_VERSION"]

TRAIN_CODE_VERSION, CHECKPOINT_FORMAT = checkpoints.CODE_VERSION, checkpoints.FORMAT
ADV_METHODS = ("pgd", "fgsm-rs")
SCHEDULES, PAD_MODES = ("step", "onecycle", "cosine"), ("zeros", "reflect")
#: The smaller image side of a data set: the largest rank a transform may name (ImageNet:
#: its ``crop``).
IMAGE_SIDE = {"cifar10": 32}
#: Fields added after the CIFAR-10 runs were cached, with the value that leaves them out of
#: :meth:`TrainConfig.key` (so those runs keep their keys and weights).
ADDED_FIELDS = {"warmup_epochs": 0, "crop": None, "val_size": None, "val_resize": None}
#: ImageNet's image sides when not given: RandomResizedCrop, centre crop, resize before it.
IMAGENET_SIDES = {"crop": 224, "val_size": 224, "val_resize": 256}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's weights (hashed for the model cache); the
    defaults are the paper's CIFAR-10 schedule (Section 5.1); ImageNet's (He et al., the
    paper's Figure 15) are :func:`rankcore.imagenet_training.imagenet_config`."""
    arch: str = "resnet50_cifar"        # name in rankcore.models
    dataset: str = "cifar10"            # "imagenet": streamed (rankcore.imagenet_training)
    n_train: int | None = None          # training subset size (None: all 50,000 images)
    n_test: int | None = None           # test (ImageNet: validation) subset (None: all)
    data_seed: int = 0                  # which subset (rankcore.data.load's seed)
    epochs: int = 350
    batch_size: int = 128
    lr: float = 0.1                     # peak lr for "onecycle"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"              # "step" (paper), "onecycle" (short runs), "cosine"
    milestones: tuple[int, ...] = (150, 250)  # "step": epochs after which lr *= gamma
    gamma: float = 0.1
    warmup: float = 0.2                 # "onecycle": fraction of steps spent warming up
    warmup_epochs: float = 0            # "step"/"cosine": linear warm-up epochs (big batches)
    bias_lr_scale: float = 1.0          # 1-d parameters (shifts): lr * this, wd / this
    label_smoothing: float = 0.0
    augment: bool = True                # random translation (ImageNet: resized crop) + flip
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
    crop: int | None = None             # ImageNet: RandomResizedCrop side (None: 224)
    val_size: int | None = None         # ImageNet: evaluation centre crop (None: 224)
    val_resize: int | None = None       # ImageNet: short side before that crop (None: 256)

    def __post_init__(self):
        self._sides()
        parsed = Transform.parse(self.transform)
        side = self.crop if self.dataset == "imagenet" else IMAGE_SIDE.get(self.dataset)
        if parsed is not None and side is not None:
            parsed.check_side(side, f"dataset={self.dataset!r}")
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
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}; expected a finite number > 0")
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

    def _sides(self) -> None:
        """ImageNet's image sides: filled in when not given (one spelling, one key) and
        checked; other data sets have their own size and take none."""
        given = {name: getattr(self, name) for name in IMAGENET_SIDES}
        if self.dataset != "imagenet":
            extra = {k: v for k, v in given.items() if v is not None}
            if extra:
                raise ValueError(f"{extra}: image sides are for dataset='imagenet', not "
                                 f"dataset={self.dataset!r}")
            return
        for name, default in IMAGENET_SIDES.items():
            v = default if given[name] is None else given[name]
            _check_number(name, v, True, 1, False)
            object.__setattr__(self, name, v)
        if self.val_resize < self.val_size:
            raise ValueError(f"val_resize={self.val_resize} is smaller than val_size="
                             f"{self.val_size}")

    def key(self) -> str:
        """A hex digest of the configuration and the training code's version (fields of
        :data:`ADDED_FIELDS` at their listed value are left out)."""
        return checkpoints.config_key(self, TRAIN_CODE_VERSION, ADDED_FIELDS)

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
              "label_smoothing", "adv_eps", "guard_drop", "warmup_epochs"), False, 0, False))


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
    """The learning rate for optimiser step ``step`` (counted from 0 over the whole run).

    "onecycle": linear warm-up over ``warmup`` of all steps, then linear decay to 0
    (airbench). "step" and "cosine": linear warm-up over ``warmup_epochs``, then ``lr`` times
    ``gamma`` per milestone passed, or a half cosine to 0 at the last epoch.
    """
    if config.schedule == "onecycle":
        total = config.epochs * steps_per_epoch
        warm = max(1, round(config.warmup * total))
        t = step + 1
        return config.lr * (t / warm if t <= warm else max(0.0, (total - t) / max(1, total - warm)))
    epoch = step / steps_per_epoch                      # fractional
    if epoch < config.warmup_epochs:
        return config.lr * (epoch + 1e-8) / config.warmup_epochs
    if config.schedule == "step":
        return config.lr * config.gamma ** sum(step // steps_per_epoch >= m
                                               for m in config.milestones)
    t = (epoch - config.warmup_epochs) / max(1e-8, config.epochs - config.warmup_epochs)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _guard_accuracy(model, x, y, config, device, amp) -> float:
    """Accuracy under 10-step PGD of the training norm on the guard batch (eval mode)."""
    g = torch.Generator(device=device).manual_seed(config.seed + 99)
    with evaluating(model), autocast(device, amp):
        xa = adversarial(model, x, y, method="pgd", norm=config.adv_norm, eps=config.adv_eps,
                         steps=10, step_size=config.adv_eps / 4, generator=g)
        with torch.no_grad():
            return float((model(xa).argmax(1) == y).float().mean())


def train(model: nn.Module, train_data, test_data, config: TrainConfig, *,
          checkpoint: str | os.PathLike | None = None, resume: bool = False,
          log: str | os.PathLike | None = None, progress: bool = True,
          stop_after: int | None = None, tag: str | None = None,
          workers: int | None = None) -> nn.Module:
    """Train ``model`` (on its device, taking [0, 1] images) in place with SGD.

    ``train_data``/``test_data``: in memory, ``(x (N, C, H, W) float in [0, 1] or uint8, y
    (N,) int)``: the training images stay on the device as uint8 (float16 for signed
    high-rank residuals), transformed once, augmented per batch there; or streamed, a
    Dataset of ``(uint8 (3, H, W), label)`` items (e.g.
    :func:`rankcore.imagenet_training.train_data`), decoded and augmented by ``workers``
    DataLoader processes and transformed per batch on the device
    (:mod:`rankcore.training.sources`). ``config.transform`` applies to the training images
    only; ``test_data`` (or None) gives the per-epoch top-1. ``checkpoint`` is written
    atomically after every epoch; ``resume`` continues from it to the same weights as an
    uninterrupted run; ``log`` (JSON lines, one per finished epoch) is rewritten whole each
    epoch, so a kill never leaves a duplicate; ``stop_after`` returns after that many epochs
    in total; ``tag`` names the in-memory transform's cache file (None: not cached). Returns
    the model in eval mode with ``train_history``: one dict per epoch (epoch, lr,
    train_loss, train_acc and test_top1 as fractions, train_images, seconds, cpu_seconds;
    test_top5 and test_images for a streamed test set; adv_method and guard_pgd_acc for
    adversarial runs).

    Overfitting guard (``adv="fgsm-rs"``, ``adv_guard``): after every epoch, the accuracy
    under 10-step PGD on a held-out batch (``guard_n`` test images, else training images
    then not trained on, drawn by :func:`balanced_subset`: every class equally, seeded by
    ``config.seed``; listing order would give one class); if it falls ``guard_drop`` below its
    best, the epoch is undone and the run goes on with 2-step PGD (step eps / 2). Under
    ``torchrun``: DistributedDataParallel (SyncBatchNorm on CUDA), a shard of every batch
    per rank, the epoch's counts summed over the ranks.
    """
    train_data, test_data = _check_train(model, train_data, test_data, config, stop_after)
    loop = _Loop.start(model, train_data, test_data, config, tag, workers)
    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ckpt = load_checkpoint(checkpoint, config, map_location=loop.device)
        model.load_state_dict(ckpt["model"])
        loop.opt.load_state_dict(ckpt["optimizer"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
    loop.net = wrap_distributed(model, loop.device, loop.world)
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    loop.bar = _progress(total=(end - start) * loop.source.steps,
                         enabled=progress and loop.rank == 0 and end > start,
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


def _check_train(model, train_data, test_data, config, stop_after) -> tuple:
    """The arguments of :func:`train`, refused with the argument's name and value; returns
    ``(train_data, test_data)``, pairs with int64 labels (Datasets as they are)."""
    for name, v, kind in (("config", config, TrainConfig), ("model", model, nn.Module)):
        if not isinstance(v, kind):
            raise TypeError(f"{name} must be a {kind.__name__}; got {type(v).__name__}")
    _check_number("stop_after", stop_after, True, 1, True)
    if sources.streamed(train_data):   # its items are checked as they stream
        return train_data, test_data
    x, y = _check_data(train_data, "train_data")
    in_memory = test_data is not None and not sources.streamed(test_data)
    if in_memory:
        test_data = _check_data(test_data, "test_data")
    yt = test_data[1] if in_memory else None
    classes = getattr(model, "num_classes", None)
    for name, labels in (("train_data", y), ("test_data", yt)):
        if classes is not None and labels is not None and int(labels.max()) >= classes:
            raise ValueError(f"{name} labels must be < the model's {classes} classes; got "
                             f"{int(labels.max())}")
    if config.rank_transform is not None:
        config.rank_transform.check_side(min(x.shape[-2:]), "train_data")
    return (x, y), test_data


@dataclasses.dataclass
class _Loop:
    """What every epoch of one :func:`train` call shares: the epoch loop's state.

    ``source``: the training batches (:mod:`rankcore.training.sources`; its ``guard`` is the
    overfitting guard's batch, or None); ``test``: the test set (a pair on the device, a
    Dataset, or None); ``net``: ``model``, or its DDP wrapper.
    """
    model: nn.Module
    config: TrainConfig
    device: torch.device
    source: sources.InMemory | sources.Streamed
    test: object
    opt: torch.optim.SGD
    rank: int
    world: int
    workers: int | None = None
    net: nn.Module | None = None
    bar: object = None

    @classmethod
    def start(cls, model: nn.Module, train_data, test_data, config: TrainConfig,
              tag: str | None, workers: int | None) -> "_Loop":
        device = model_device(model)
        rank, world = distributed()
        source = sources.make(train_data, test_data, config, device, tag, workers, (rank, world))
        test = test_data
        if test_data is not None and not sources.streamed(test_data):
            test = (to_float(test_data[0]).to(device), test_data[1].to(device))
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        return cls(model, config, device, source, test, _make_optimizer(model, config),
                   rank, world, workers)


def _epoch_row(loop: _Loop, epoch: int, history: list[dict]) -> dict:
    """Train epoch ``epoch`` (guarded: undone and redone with 2-step PGD on collapse) and
    return its history row."""
    config, guard = loop.config, loop.source.guard
    t0, c0 = time.perf_counter(), time.process_time()
    fallback = any(r.get("adv_method") == "pgd2" for r in history)
    method = ("pgd2" if fallback else config.adv) if config.adv else None
    snapshot = copy.deepcopy((loop.model.state_dict(), loop.opt.state_dict())) if guard else None
    stats = _train_epoch(loop, epoch, loop.bar, method)
    guard_acc = None
    if guard is not None:
        guard_acc = _guard_accuracy(loop.model, *guard, config, loop.device, config.amp)
        best = max((r["guard_pgd_acc"] for r in history if r.get("guard_pgd_acc") is not None),
                   default=None)
        if not fallback and best is not None and guard_acc < best - config.guard_drop:
            # Catastrophic overfitting: undo this epoch and go on with 2-step PGD.
            loop.model.load_state_dict(snapshot[0])
            loop.opt.load_state_dict(snapshot[1])
            method = "pgd2"
            stats = _train_epoch(loop, epoch, None, method)
            guard_acc = _guard_accuracy(loop.model, *guard, config, loop.device, config.amp)
    per_rank = config.batch_size // loop.world
    scores = sources.evaluate(loop.model, loop.test, config, per_rank, loop.workers)
    # CPU seconds beside wall seconds: on a shared machine the wall clock says little.
    row = {"epoch": epoch + 1, **stats, **scores,
           "seconds": round(time.perf_counter() - t0, 3),
           "cpu_seconds": round(time.process_time() - c0, 3)}
    if config.adv:
        row.update(adv_method=method, guard_pgd_acc=guard_acc)
    return row


def _train_epoch(loop: _Loop, epoch: int, bar, method: str | None) -> dict:
    """One pass over the source's batches with ``method`` (None, "fgsm-rs", "pgd" or
    "pgd2"): lr, mean train loss and accuracy, images (summed over ``torchrun`` ranks)."""
    config, device, steps_per = loop.config, loop.device, loop.source.steps
    g = _epoch_generator(config, epoch, device)
    loop.net.train()
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    steps, step_size = config.adv_steps, config.adv_step_size
    if method == "pgd2":
        method, steps, step_size = "pgd", 2, config.adv_eps / 2
    lr = lr_at(config, epoch * steps_per, steps_per)
    for i, (xb, yb) in enumerate(loop.source.batches(epoch, g)):
        if method is not None:  # the attack's passes under the same autocast
            with autocast(device, config.amp):
                xb = adversarial(loop.model, xb, yb, method=method, norm=config.adv_norm,
                                 eps=config.adv_eps, steps=steps, step_size=step_size,
                                 generator=g)
        if config.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = lr_at(config, epoch * steps_per + i, steps_per)
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
    totals = torch.stack([loss_sum, correct.float(), torch.tensor(float(seen), device=device)])
    if loop.world > 1:
        torch.distributed.all_reduce(totals)
    n = max(1.0, float(totals[2]))
    return {"lr": lr, "train_loss": float(totals[0]) / n, "train_acc": float(totals[1]) / n,
            "train_images": int(totals[2])}


def _epoch_generator(config: TrainConfig, epoch: int, device: torch.device) -> torch.Generator:
    # Seeded from (seed, epoch): a resumed run draws the same shuffles, crops and starts.
    return torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)


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
