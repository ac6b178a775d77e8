"""ResNet-50 on rank-k ImageNet (paper Table 2, ImageNet half; Figure 15): the recipe, the
data sets and the command of an ImageNet run of :func:`rankcore.train.train`.

The paper trains ResNet-50 "using the same hyperparameters as described in the original
ResNet-50 paper" on rank-30, 40, 50 and 100 ImageNet and reports full-rank validation
top-1 (Figure 15; Table 2 adds the attack results). ImageNet is one more batch source of
the one trainer (:mod:`rankcore.training.sources`): the images stream from the training
folder (``train/<wnid>/*.JPEG``) through worker processes as uint8, and the rank-k
transform runs on the device inside the training loop, on the crop the network sees: no
1.2-million-image copy is stored (the paper stored low-rank copies instead). Config,
schedule, checkpoint and code version are CIFAR-10's (:class:`rankcore.train.TrainConfig`
with ``dataset="imagenet"``).

Recipe (:func:`imagenet_config`; torchvision's ResNet-50 reference,
``references/classification``): SGD, lr 0.1 x batch/256, momentum 0.9, weight decay 1e-4,
90 epochs with lr/10 every 30 (or cosine), RandomResizedCrop(224) + horizontal flip;
evaluation at resize 256, centre crop 224, on full-rank images. Under ``torchrun`` the
model runs in DistributedDataParallel with SyncBatchNorm, ``nccl`` on CUDA; the batch size
is global, split over the processes.

Every epoch a checkpoint (``checkpoint.pt``, loaded with ``weights_only=True``) and the log
(``log.jsonl``, rewritten from the checkpoint's history) are written atomically; a re-run
with the same configuration resumes where the last finished epoch ended::

    torchrun --nproc_per_node=8 -m rankcore.imagenet_training --transform low_rank:50 \\
        --out runs/imagenet-rank50
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import torch
from torch import nn

from . import data, torch_utils
from .data_files import find_imagenet, find_imagenet_train, to_uint8_chw
from .paths import data_root
from .train import TrainConfig, build_model, train

__all__ = ["imagenet_config", "TrainAugment", "train_data", "val_data", "resources", "main",
           "IMAGENET_RECIPE"]

#: ILSVRC2012: training images and the size of the unpacked folders (GB), for the pre-flight.
TRAIN_IMAGES, TRAIN_GB, VAL_IMAGES, VAL_GB = 1_281_167, 147.0, 50_000, 6.4
#: He et al.'s recipe in :class:`rankcore.train.TrainConfig` fields (``lr`` and
#: ``milestones`` follow from ``batch_size`` and ``step_epochs`` in :func:`imagenet_config`).
IMAGENET_RECIPE = dict(dataset="imagenet", arch="resnet50", epochs=90, batch_size=256,
                       momentum=0.9, weight_decay=1e-4, schedule="step", gamma=0.1,
                       augment=True)


def imagenet_config(step_epochs: int = 30, **fields) -> TrainConfig:
    """The :class:`rankcore.train.TrainConfig` of an ImageNet run: :data:`IMAGENET_RECIPE`
    with ``fields`` over it; ``lr`` (when not given or None) is 0.1 x batch_size / 256 (the
    linear scaling rule), ``milestones`` (when not given) every ``step_epochs`` epochs.

    Examples::

        >>> c = imagenet_config(transform="low_rank:50", batch_size=512)
        >>> c.dataset, c.lr, c.milestones, c.crop
        ('imagenet', 0.2, (30, 60), 224)
    """
    if isinstance(step_epochs, bool) or not isinstance(step_epochs, int) or step_epochs < 1:
        raise ValueError(f"step_epochs={step_epochs!r}; expected an integer >= 1")
    merged = {**IMAGENET_RECIPE, **fields}
    if merged.get("lr") is None:
        batch = merged["batch_size"]
        merged["lr"] = 0.1 * batch / 256 if isinstance(batch, int) else batch
    if "milestones" not in fields:
        epochs = merged["epochs"]
        merged["milestones"] = tuple(range(step_epochs, epochs, step_epochs)) \
            if isinstance(epochs, int) else ()
    return TrainConfig(**merged)


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


def train_data(config: TrainConfig, root: str | os.PathLike | None = None):
    """The training folder as a data set of uint8 crops (``data.dataset("imagenet",
    split="train")``): :class:`TrainAugment` when ``config.augment``, else the
    evaluation's resize and centre crop at ``config.crop``."""
    augment = TrainAugment(config.crop) if config.augment else None
    resize = None if config.augment else round(config.crop * config.val_resize / config.val_size)
    return data.dataset("imagenet", split="train", n=config.n_train, seed=config.data_seed,
                        root=root, size=config.crop, transform=augment, resize=resize)


def val_data(config: TrainConfig, root: str | os.PathLike | None = None):
    """The validation set at ``val_resize`` -> ``val_size`` centre crop, full rank
    (``n_test`` images, seeded by ``data_seed``)."""
    return data.dataset("imagenet-val", n=config.n_test, seed=config.data_seed, root=root,
                        size=config.val_size, resize=config.val_resize)


# ---------------------------------------------------------------------------- pre-flight

#: Training images per second of one GPU for the estimate: ResNet-50, AMP, channels-last
#: on one A100 runs at about 2,600 (huggingface/pytorch-image-models issue #1491). Not
#: measured here; the per-batch SVD of the rank-k transform comes on top of it.
IMAGES_PER_GPU_S = 2500.0


def resources(config: TrainConfig | None = None,
              root: str | os.PathLike | None = None,
              images_per_s: float = IMAGES_PER_GPU_S) -> dict:
    """What a run needs, for a pre-flight check (offline, nothing is read but listings).

    Args:
        config (TrainConfig, optional): the run. Default: :func:`imagenet_config`.
        root (path, optional): data root. Default: ``$RANKCORE_DATA``, else ``data/``.
        images_per_s (float, optional): training throughput of one GPU, for the time
            estimate. Default: :data:`IMAGES_PER_GPU_S`.

    Returns:
        dict: ``data`` (list of ``{"name", "path" (or None), "present", "images", "gb",
        "how"}``) and ``gpu_hours`` (epochs x images / throughput, evaluation excluded).
    """
    config = imagenet_config() if config is None else config
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
             "present": val_dir is not None, "images": config.n_test or VAL_IMAGES,
             "gb": round(VAL_GB * (config.n_test or VAL_IMAGES) / VAL_IMAGES, 1), "how": how}],
        "gpu_hours": round(config.epochs * n / images_per_s / 3600, 1),
    }


# ---------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rankcore.imagenet_training",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for checkpoint.pt and log.jsonl")
    p.add_argument("--root", default=None, help="data root (default: $RANKCORE_DATA or data/)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes per GPU")
    p.add_argument("--no-resume", action="store_true", help="start again even if a checkpoint exists")
    p.add_argument("--step-epochs", type=int, default=30, help="step schedule: lr/10 this often")
    p.add_argument("--n-val", dest="n_test", type=int, default=None, help="validation subset")
    kinds = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}
    defaults = imagenet_config()
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("dataset", "n_test", "milestones"):
            continue
        base = str(f.type).split(" ")[0]
        default = None if f.name == "lr" else getattr(defaults, f.name)
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=default,
                       type=kinds.get(base, str), help=f"default: {default}")
    return p


def main(argv: list[str] | None = None) -> nn.Module:
    """``python -m rankcore.imagenet_training`` (or under ``torchrun``): one training run
    of :func:`imagenet_config` (the flags are its fields) by :func:`rankcore.train.train`."""
    args = _parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = imagenet_config(args.step_epochs,
                             **{k: v for k, v in vars(args).items() if k in fields})
    device = torch_utils.resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_utils.init_distributed(device)
    out = Path(args.out)
    model = train(build_model(config).to(device), train_data(config, args.root),
                  val_data(config, args.root), config, checkpoint=out / "checkpoint.pt",
                  resume=not args.no_resume, log=out / "log.jsonl", workers=args.workers)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return model


if __name__ == "__main__":
    main()
