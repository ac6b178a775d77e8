"""Training from a data loader: ResNet-50 on rank-k ImageNet (paper Table 2, ImageNet half;
Figure 15).

The paper trains ResNet-50 "using the same hyperparameters as described in the original
ResNet-50 paper" on rank-30, 40, 50 and 100 ImageNet and reports full-rank validation
top-1 (Figure 15; Table 2 adds the attack results). Here the images stream from the
training folder (``train/<wnid>/*.JPEG``) through worker processes as uint8, and the rank-k
transform runs on the device inside the training loop, on the crop the network sees: no
1.2-million-image copy is stored (the paper stored low-rank copies instead).

Recipe (torchvision's ResNet-50 reference, ``references/classification``): SGD, lr
0.1 x batch/256, momentum 0.9, weight decay 1e-4, 90 epochs with lr/10 every 30 (or
cosine), RandomResizedCrop(224) + horizontal flip; evaluation at resize 256, centre crop
224, on full-rank images. Under ``torchrun`` the model runs in DistributedDataParallel with
SyncBatchNorm, ``nccl`` on CUDA; the batch size is global, split over the processes.

Every epoch a checkpoint (``checkpoint.pt``, loaded with ``weights_only=True``) and the log
(``log.jsonl``, rewritten from the checkpoint's history) are written atomically; a re-run
with the same configuration resumes where the last finished epoch ended::

    torchrun --nproc_per_node=8 -m rankcore.imagenet_training --transform low_rank:50 \\
        --out runs/imagenet-rank50
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data, torch_utils
from .data_files import IMAGENET_CLASSES, find_imagenet, find_imagenet_train, to_uint8_chw
from .paths import data_root
from .training import checkpoint as checkpoints
from .training.transform import Transform

__all__ = ["ImageNetTrainConfig", "TrainAugment", "train", "train_data", "val_data",
           "build_model", "load_checkpoint", "rank_transform", "lr_at", "resources", "main"]

#: Bumped when a change here alters the weights a configuration produces.
CODE_VERSION = 1
CHECKPOINT_FORMAT = checkpoints.FORMAT
SCHEDULES = ("step", "cosine")
#: ILSVRC2012: training images and the size of the unpacked folders (GB), for the pre-flight.
TRAIN_IMAGES, TRAIN_GB, VAL_IMAGES, VAL_GB = 1_281_167, 147.0, 50_000, 6.4


# ---------------------------------------------------------------------------- config

@dataclasses.dataclass(frozen=True)
class ImageNetTrainConfig:
    """Everything that determines a run's weights (hashed into :meth:`key`)."""
    arch: str = "resnet50"            # rankcore.models name ("torchvision:NAME" also works)
    transform: str | None = None      # None, "low_rank:K" or "high_rank:K" (on the device)
    high_rank_clamp: bool = False     # high-rank residuals are signed; not clamped (paper)
    epochs: int = 90
    batch_size: int = 256             # global, over all processes
    lr: float | None = None           # None: 0.1 * batch_size / 256 (linear scaling rule)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"            # "step": lr * gamma every step_epochs; or "cosine"
    step_epochs: int = 30
    gamma: float = 0.1
    warmup_epochs: int = 0            # linear warm-up (large batches want ~5)
    label_smoothing: float = 0.0
    crop: int = 224                   # RandomResizedCrop side (training)
    val_size: int = 224               # centre crop (evaluation)
    val_resize: int = 256             # short side before that crop
    n_train: int | None = None        # seeded training subset (None: all)
    n_val: int | None = None          # seeded validation subset (None: all)
    data_seed: int = 0
    seed: int = 0
    amp: bool | None = None           # bfloat16 autocast; None: on CUDA only
    channels_last: bool = True        # CUDA only

    def __post_init__(self):
        parsed = Transform.parse(self.transform)
        object.__setattr__(self, "transform", None if parsed is None else str(parsed))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; expected one of {SCHEDULES}")
        for name in ("epochs", "batch_size", "step_epochs", "crop", "val_size", "val_resize"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an integer >= 1")
        for name in ("n_train", "n_val"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name}={v!r}; expected None or an integer >= 1")
        for name in ("momentum", "weight_decay", "gamma", "label_smoothing", "warmup_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{name}={v!r}; expected a number >= 0")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not self.lr > 0 or not math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r}; expected None or a finite number > 0")
        if self.val_resize < self.val_size:
            raise ValueError(f"val_resize={self.val_resize} is smaller than val_size={self.val_size}")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 256

    def key(self) -> str:
        """A hex digest of the configuration and the code version."""
        return checkpoints.config_key(self, CODE_VERSION)


def rank_transform(x: torch.Tensor, spec: str | None, clamp_high: bool = False) -> torch.Tensor:
    """The rank-k images of a float batch ``(B, 3, H, W)`` on its own device (equation 2):
    low-rank keeps the k largest singular values per channel (clamped to [0, 1]),
    high-rank removes them."""
    parsed = Transform.parse(spec)
    return x if parsed is None else parsed(x, clamp_high)


def lr_at(config: ImageNetTrainConfig, epoch: float) -> float:
    """Learning rate at a fractional epoch (steps done / steps per epoch)."""
    peak = config.peak_lr
    if epoch < config.warmup_epochs:
        return peak * (epoch + 1e-8) / config.warmup_epochs
    if config.schedule == "step":
        return peak * config.gamma ** int(epoch // config.step_epochs)
    t = (epoch - config.warmup_epochs) / max(1e-8, config.epochs - config.warmup_epochs)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


# ---------------------------------------------------------------------------- data

class TrainAugment:
    """RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bilinear, antialiased) and a random
    horizontal flip of a PIL image -> uint8 ``(3, size, size)``; randomness from torch's
    generator, which :class:`rankcore.data.ImageDataset` seeds per item and epoch."""

    def __init__(self, size: int = 224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)

    def __call__(self, im):
        from PIL import Image
        from torchvision.transforms import RandomResizedCrop
        top, left, h, w = RandomResizedCrop.get_params(im, list(self.scale), list(self.ratio))
        im = im.resize((self.size, self.size), Image.BILINEAR,
                       box=(left, top, left + w, top + h))
        if torch.rand(()) < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return to_uint8_chw(im)

    def __repr__(self) -> str:
        return f"TrainAugment(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def train_data(config: ImageNetTrainConfig, root: str | os.PathLike | None = None):
    """The training folder as a data set of augmented uint8 crops (``data.dataset("imagenet",
    split="train")`` with :class:`TrainAugment`)."""
    return data.dataset("imagenet", split="train", n=config.n_train, seed=config.data_seed,
                        root=root, size=config.crop, transform=TrainAugment(config.crop))


def val_data(config: ImageNetTrainConfig, root: str | os.PathLike | None = None):
    """The validation set at ``val_resize`` -> ``val_size`` centre crop, full rank."""
    return data.dataset("imagenet-val", n=config.n_val, seed=config.data_seed, root=root,
                        size=config.val_size, resize=config.val_resize)


def build_model(config: ImageNetTrainConfig, num_classes: int = IMAGENET_CLASSES) -> nn.Module:
    """An untrained ``config.arch`` that normalises its own [0, 1] inputs."""
    from . import models
    return models.create(config.arch, num_classes=num_classes)


# ---------------------------------------------------------------------------- checkpoints

def load_checkpoint(path: str | os.PathLike,
                    config: ImageNetTrainConfig | None = None, map_location="cpu") -> dict:
    """Read a checkpoint of :func:`train` without running any pickled code (the trainers'
    one format, :func:`rankcore.training.checkpoint.load`).

    Raises:
        ValueError: the file is corrupt, holds code, is not such a checkpoint, or (with
            ``config``) was written by another configuration; the message names the file.
    """
    return checkpoints.load(path, config, map_location)


# ---------------------------------------------------------------------------- training

def _optimizer(model: nn.Module, config: ImageNetTrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                           lr=config.peak_lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _epoch(net, opt, batches, config, epoch, device, bar) -> dict:
    net.train()
    steps = len(batches)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    lr = lr_at(config, epoch)
    for i, (x, y) in enumerate(batches):
        x = rank_transform(data.to_float(x, device), config.transform, config.high_rank_clamp)
        if config.channels_last and device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        lr = lr_at(config, epoch + i / steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch_utils.autocast(device, config.amp):
            out = net(x)  # (B, classes)
        loss = F.cross_entropy(out.float(), y, label_smoothing=config.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * len(y)   # on the device: no sync per step
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update(1)
    stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device,
                                                         dtype=torch.float64)])
    if torch_utils.distributed()[1] > 1:
        torch.distributed.all_reduce(stats)
    return {"lr": lr, "train_loss": float(stats[0] / stats[2]),
            "train_top1": float(stats[1] / stats[2]), "train_images": int(stats[2])}


def _check_train(model, config, train_set, stop_after) -> None:
    if not isinstance(config, ImageNetTrainConfig):
        raise TypeError(f"config must be an ImageNetTrainConfig; got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or stop_after < 1):
        raise ValueError(f"stop_after={stop_after!r}; expected None or an integer >= 1")
    if len(train_set) < config.batch_size:
        raise ValueError(f"train_set has {len(train_set)} images, fewer than one batch "
                         f"(batch_size={config.batch_size})")


def train(model: nn.Module, config: ImageNetTrainConfig, train_set, val_set=None, *,
          out_dir: str | os.PathLike | None = None, resume: bool = True,
          workers: int | None = None, progress: bool = True,
          stop_after: int | None = None) -> nn.Module:
    """Train ``model`` on ``train_set`` with the rank-k transform on its device.

    Args:
        model (nn.Module): a classifier of [0, 1] images, on the device to train on (under
            ``torchrun``: this process's GPU, with the process group initialised, e.g.
            by :func:`rankcore.torch_utils.init_distributed`).
        config (ImageNetTrainConfig): the recipe.
        train_set (Dataset): items ``(uint8 (3, H, W), label)``, e.g. :func:`train_data`.
        val_set (Dataset, optional): scored (full rank) after every epoch, e.g.
            :func:`val_data`. Default: None.
        out_dir (path, optional): where ``checkpoint.pt`` and ``log.jsonl`` go; with
            ``resume`` a finished epoch there is not trained again. Default: None.
        resume (bool, optional): continue from ``out_dir/checkpoint.pt``. Default: True.
        workers (int, optional): decoding processes per training process. Default:
            :func:`rankcore.data.default_workers`.
        progress (bool, optional): a tqdm bar on process 0. Default: True.
        stop_after (int, optional): return after this many epochs in total (an
            interruption; the run stays resumable). Default: None.

    Returns:
        The model in eval mode; ``model.train_history`` lists one dict per epoch: epoch,
        lr, train_loss, train_top1, val_top1, val_top5 (fractions), seconds, images_per_s.
    """
    _check_train(model, config, train_set, stop_after)
    device = torch_utils.model_device(model)
    rank, world = torch_utils.distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} does not split over {world} processes")
    per_rank = config.batch_size // world
    out = Path(out_dir) if out_dir is not None else None
    if config.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, config)
    history, start = [], 0
    if resume and out is not None and (out / "checkpoint.pt").exists():
        ckpt = load_checkpoint(out / "checkpoint.pt", config, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history, start = list(ckpt["history"]), int(ckpt["epoch"])
    net = torch_utils.wrap_distributed(model, device, world)
    batches = data.loader(train_set, per_rank, workers, device=device, shuffle=True,
                          seed=config.seed, distributed=True, drop_last=True)
    end = config.epochs if stop_after is None else min(config.epochs, stop_after)
    from tqdm.auto import tqdm
    bar = tqdm(total=(end - start) * len(batches), desc=f"train {config.transform or 'natural'}",
               disable=not progress or rank != 0) if end > start else None
    for epoch in range(start, end):
        t0 = time.perf_counter()
        # Order, crops and flips are drawn from (seed, epoch, item) alone, so a resumed
        # run (with any number of workers) sees the same images as an uninterrupted one.
        batches.sampler.set_epoch(epoch)
        if hasattr(train_set, "item_seed"):
            train_set.item_seed = config.seed * 100_003 + epoch
        row = {"epoch": epoch + 1, **_epoch(net, opt, batches, config, epoch, device, bar)}
        if val_set is not None:
            scores = data.evaluate(model, val_set, per_rank, workers, progress=False)
            row.update(val_top1=scores["top1"], val_top5=scores["top5"], val_images=scores["n"])
        row["seconds"] = round(time.perf_counter() - t0, 3)
        row["images_per_s"] = round(row["train_images"] / row["seconds"], 1)
        history.append(row)
        if bar is not None:
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row.get('val_top1', 0):.3f}")
        if rank == 0 and out is not None:
            checkpoints.save(model, opt, config, epoch + 1, history, code_version=CODE_VERSION,
                             checkpoint=out / "checkpoint.pt", log=out / "log.jsonl")
        if world > 1:
            torch.distributed.barrier()
    if bar is not None:
        bar.close()
    model.train_history = history
    return model.eval()


# ---------------------------------------------------------------------------- pre-flight

#: Training images per second of one GPU for the estimate: ResNet-50, AMP, channels-last
#: on one A100 runs at about 2,600 (huggingface/pytorch-image-models issue #1491). Not
#: measured here; the per-batch SVD of the rank-k transform comes on top of it.
IMAGES_PER_GPU_S = 2500.0


def resources(config: ImageNetTrainConfig = ImageNetTrainConfig(),
              root: str | os.PathLike | None = None,
              images_per_s: float = IMAGES_PER_GPU_S) -> dict:
    """What a run needs, for a pre-flight check (offline, nothing is read but listings).

    Args:
        config (ImageNetTrainConfig): the run.
        root (path, optional): data root. Default: ``$RANKCORE_DATA``, else ``data/``.
        images_per_s (float, optional): training throughput of one GPU, for the time
            estimate. Default: :data:`IMAGES_PER_GPU_S`.

    Returns:
        dict: ``data`` (list of ``{"name", "path" (or None), "present", "images", "gb",
        "how"}``) and ``gpu_hours`` (epochs x images / throughput, evaluation excluded).
    """
    base = data_root(root)
    train_dir, val_dir = find_imagenet_train(base), find_imagenet(base)
    n = config.n_train or TRAIN_IMAGES
    how = "https://image-net.org (ILSVRC2012, non-commercial research terms); cannot be downloaded automatically"
    return {
        "data": [
            {"name": "imagenet-train", "path": str(train_dir) if train_dir else None,
             "present": train_dir is not None, "images": n,
             "gb": round(TRAIN_GB * n / TRAIN_IMAGES, 1), "how": how},
            {"name": "imagenet-val", "path": str(val_dir) if val_dir else None,
             "present": val_dir is not None, "images": config.n_val or VAL_IMAGES,
             "gb": round(VAL_GB * (config.n_val or VAL_IMAGES) / VAL_IMAGES, 1), "how": how}],
        "gpu_hours": round(config.epochs * n / images_per_s / 3600, 1),
    }


# ---------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> nn.Module:
    """``python -m rankcore.imagenet_training`` (or under ``torchrun``): one training run."""
    p = argparse.ArgumentParser(prog="python -m rankcore.imagenet_training",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for checkpoint.pt and log.jsonl")
    p.add_argument("--root", default=None, help="data root (default: $RANKCORE_DATA or data/)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes per GPU")
    p.add_argument("--no-resume", action="store_true", help="start again even if a checkpoint exists")
    for f in dataclasses.fields(ImageNetTrainConfig):
        kind = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}
        base = str(f.type).split(" ")[0]
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=f.default,
                       type=kind.get(base, str), help=f"default: {f.default}")
    args = p.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(ImageNetTrainConfig)}
    config = ImageNetTrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    device = torch_utils.resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_utils.init_distributed(device)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    model = train(model, config, train_data(config, args.root), val_data(config, args.root),
                  out_dir=args.out, resume=not args.no_resume, workers=args.workers)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return model


if __name__ == "__main__":
    main()
