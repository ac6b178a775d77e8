"""Data sets of the paper (CIFAR-10, ImageNet) and an embedded offline default.

Two ways in, with the same images, order, subsets and preprocessing:

- :func:`load` returns ``(images, labels)`` tensors: images float ``(N, 3, H, W)`` in
  [0, 1], labels int64 ``(N,)`` or ``None``. For sets that fit in memory.
- :func:`dataset` returns a :class:`ImageDataset` whose items are ``(uint8 (3, H, W),
  label)``, decoded one at a time; :func:`loader` batches it with worker processes (pinned
  memory on CUDA) and :func:`to_float` turns a batch into floats on the device. Memory does
  not grow with the number of images; :func:`evaluate` scores a model this way.

Names (see :func:`names`):

- ``cifar10``: the official set (torchvision's ``cifar-10-batches-py`` under the data root,
  downloaded when missing and online) or a JPEG folder copy
  ``ROOT/cifar10-jpeg/{train,test}/<class name>/*.jpg``. Decoded once, cached as uint8.
- ``imagenet-val``: ImageNet validation JPEGs, resized (short side 256) and centre-cropped
  (224) as in the paper; the layouts of :mod:`rankcore.data_files`.
- ``imagenet``: ``split="train"`` is the training folder (``train/<wnid>/*.JPEG``),
  ``"test"``/``"val"`` the validation set as ``imagenet-val``.
- ``samples``: real photographs shipped inside installed packages (no download ever), see
  :data:`SAMPLES` for the list and licences. Labels ``None``: they have no ImageNet label.
- ``imagenet-auto``: ``imagenet-val`` when found under the data root, else ``samples``;
  ``.source`` of the result says which one ran.
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .data_files import (CIFAR10_CLASSES, SAMPLES, Sample, check_preprocessing,
                         cifar10_arrays, find_cifar10, find_imagenet, find_imagenet_train,
                         imagenet_missing, imagenet_train_missing, index_image_folder,
                         index_imagenet, open_rgb, resize_crop, sample_path, to_uint8_chw)
from .paths import data_root
from . import torch_utils
from .torch_utils import autocast, evaluating, model_device

__all__ = ["load", "dataset", "loader", "to_float", "evaluate", "default_workers", "names", "resolve",
           "class_names", "find_cifar10", "find_imagenet", "find_imagenet_train",
           "ImageDataset", "ShardSampler", "Loaded", "Sample", "SAMPLES", "CIFAR10_CLASSES"]

log = logging.getLogger(__name__)


class Loaded(tuple):
    """``(images, labels)`` plus where they came from.

    Attributes:
        source (str): the data set that was actually loaded, e.g. ``"samples"``.
        names (list[str]): one name per image (file name or photo name).
        classes (list[str] | None): class names indexed by label.
    """

    def __new__(cls, images, labels, source, names=None, classes=None):
        self = super().__new__(cls, (images, labels))
        self.source, self.names, self.classes = source, list(names or []), classes
        return self

    @property
    def images(self) -> torch.Tensor:
        return self[0]

    @property
    def labels(self) -> torch.Tensor | None:
        return self[1]


# ---------------------------------------------------------------------------- data sets

class ImageDataset(torch.utils.data.Dataset):
    """Images decoded on demand in one preprocessing setting: items ``(uint8 (3, H, W), label)``.

    Holds only a listing: file paths as one NumPy byte array (shared by worker processes
    without copying) or, for CIFAR-10, its uint8 array. Build it with :func:`dataset`.

    Attributes:
        source (str): the data set, e.g. ``"imagenet-val"``.
        labels (Tensor | None): int64 ``(N,)`` labels of the items, ``None`` without labels
            (items then carry label -1).
        classes (list[str] | None): class names indexed by label.
        size (int): side of the square images.
    """

    def __init__(self, source: str, keep: np.ndarray, labels: np.ndarray | None,
                 size: int, resize: int | None, interpolation: str = "bilinear", *,
                 files: np.ndarray | None = None, array: torch.Tensor | None = None,
                 names: list[str] | None = None, classes: list[str] | None = None,
                 transform: Callable | None = None):
        self.source, self.keep, self._labels = source, np.asarray(keep, dtype=np.int64), labels
        self.size, self.resize, self.interpolation = size, resize, interpolation
        self.files, self.array, self._names = files, array, names
        self.classes, self.transform = classes, transform
        #: With a seed, a random ``transform`` draws from ``(item_seed, item)`` alone, so an
        #: item's augmentation does not depend on workers, batches or processes.
        self.item_seed: int | None = None

    def __len__(self) -> int:
        return len(self.keep)

    @property
    def labels(self) -> torch.Tensor | None:
        return None if self._labels is None else \
            torch.from_numpy(np.asarray(self._labels)[self.keep].astype(np.int64))

    @property
    def names(self) -> list[str]:
        if self._names is not None:
            return [self._names[j] for j in self.keep]
        return [os.path.basename(os.fsdecode(self.files[j])) for j in self.keep]

    def fingerprint(self) -> str:
        """A digest of what the items are (source, preprocessing, subset, labels, and each
        file's path, size and modification time or the pixels): a cache key that changes
        when any of them does, without decoding a file."""
        h = hashlib.sha256(repr((self.source, self.size, self.resize, self.interpolation,
                                 repr(self.transform))).encode())
        h.update(self.keep.tobytes())
        if self._labels is not None:
            h.update(np.asarray(self._labels)[self.keep].astype(np.int64).tobytes())
        if self.array is not None:
            h.update(self.array[torch.from_numpy(self.keep)].numpy().tobytes())
        for j in self.keep if self.files is not None else ():
            st = os.stat(self.files[j])
            h.update(b"%s:%d:%d\n" % (self.files[j], st.st_size, st.st_mtime_ns))
        return h.hexdigest()[:16]

    def image(self, j: int) -> Image.Image | torch.Tensor:
        """Item ``j`` of the whole set (not of the subset), undecoded or native."""
        if self.array is not None:
            return self.array[j]  # (3, h, w) uint8
        return open_rgb(os.fsdecode(self.files[j]))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        j = int(self.keep[i])
        im = self.image(j)
        native = isinstance(im, torch.Tensor)  # CIFAR-10's uint8 rows
        if native and self.transform is None and tuple(im.shape[-2:]) == (self.size, self.size):
            x = im.clone()
        else:
            im = Image.fromarray(im.permute(1, 2, 0).numpy()) if native else im
            if self.transform is None:
                x = resize_crop(im, self.size, self.resize, self.interpolation)
            elif self.item_seed is None:
                x = self.transform(im)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed((self.item_seed * 1_000_003 + j) % 2**63)
                    x = self.transform(im)
            x = to_uint8_chw(x) if isinstance(x, Image.Image) else x
        label = -1 if self._labels is None else int(self._labels[j])
        return x, label


def _subset(total: int, n: int | None, seed: int) -> np.ndarray:
    """Seeded random subset of ``range(total)`` in ascending order (all when n is None)."""
    if n is None:
        return np.arange(total)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r}; expected a positive int or None (all images)")
    if n > total:
        raise ValueError(f"n={n} but the set has only {total} images")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values.numpy()


def _check_common(split: str, size, n, seed) -> str:
    if split not in ("train", "test", "val"):
        raise ValueError(f"split={split!r}; expected 'train' or 'test' ('val' = 'test')")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size={size!r}; expected a positive int or None")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed={seed!r}; expected an int")
    return "test" if split == "val" else split


def dataset(name: str, split: str = "test", n: int | None = None, seed: int = 0,
            root: str | os.PathLike | None = None, *, size: int | None = None,
            resize: int | None = None, interpolation: str = "bilinear",
            download: bool = True, progress: bool = True,
            transform: Callable | None = None) -> ImageDataset:
    """A data set of :func:`names` whose items ``(uint8 (3, H, W), label)`` decode one at a time.

    Args:
        name, split, n, seed, root, size, resize, interpolation, download, progress: as
            for :func:`load` (the same images in the same order and preprocessing).
        transform (callable, optional): replaces the resize and centre crop: maps the
            decoded RGB ``PIL.Image`` to a PIL image or a uint8 tensor ``(3, H, W)`` (e.g.
            training augmentation). Default: None.

    Returns:
        ImageDataset: label -1 for the unlabelled samples; ``.source`` names the set,
        ``.labels`` holds all labels at once.

    Examples::

        >>> import rankcore
        >>> ds = rankcore.data.dataset("samples", size=64)
        >>> x, label = ds[0]
        >>> x.dtype, tuple(x.shape), label
        (torch.uint8, (3, 64, 64), -1)
        >>> xb, yb = next(iter(rankcore.data.loader(ds, batch_size=4)))
        >>> rankcore.data.to_float(xb, "cpu").shape   # float32 in [0, 1] on the device
        torch.Size([4, 3, 64, 64])
    """
    source = resolve(name, root)
    split = _check_common(split, size, n, seed)
    base = data_root(root)
    if name == "imagenet-auto":
        log.info("imagenet-auto: using %s", source)
    if source == "cifar10":
        size = size or 32
        check_preprocessing(size, size, interpolation)
        blob = cifar10_arrays(split, base, download, progress)
        return ImageDataset("cifar10", _subset(len(blob["labels"]), n, seed),
                            blob["labels"].numpy(), size, size, interpolation,
                            array=blob["images"], names=blob["names"],
                            classes=list(CIFAR10_CLASSES), transform=transform)
    size = size or 224
    if source == "samples":
        if split == "train":
            raise ValueError("split='train': the samples have only one split ('test')")
        check_preprocessing(size, size, interpolation)
        files = np.array([os.fsencode(str(sample_path(s))) for s in SAMPLES], dtype=bytes)
        # Largest centred square, resized to size: a 256 -> 224 crop would cut the
        # subjects of these small photos.
        return ImageDataset("samples", _subset(len(SAMPLES), n, seed), None, size, size,
                            interpolation, files=files, names=[s.name for s in SAMPLES],
                            transform=transform)
    check_preprocessing(size, resize, interpolation)
    if split == "train":
        if source == "imagenet-val":
            raise ValueError("split='train' of 'imagenet-val': the ImageNet training set is "
                             "dataset('imagenet', split='train')")
        folder = find_imagenet_train(base)
        if folder is None:
            raise imagenet_train_missing(base)
        idx, source = index_image_folder(folder, "ImageFolder train"), "imagenet-train"
    else:
        folder = find_imagenet(base)
        if folder is None:
            raise imagenet_missing(base)
        idx, source = index_imagenet(folder), "imagenet-val"
    return ImageDataset(source, _subset(len(idx.files), n, seed), idx.labels, size, resize,
                        interpolation, files=idx.files, classes=class_names("imagenet", root),
                        transform=transform)


# ---------------------------------------------------------------------------- loaders

class ShardSampler(torch.utils.data.Sampler):
    """Indices of one process's share: ``order[rank::world]``, ``order`` a seeded
    permutation per epoch (``set_epoch``) or ``0..n-1``. With ``drop_last`` every process
    gets the same count (DDP needs it); without, no index is duplicated (evaluation)."""

    def __init__(self, n: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world: int = 1, drop_last: bool = False):
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world
        self.drop_last, self.epoch = drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.n)
        else:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        if self.drop_last:
            order = order[:self.n // self.world * self.world]
        return order[self.rank::self.world]

    def __iter__(self):
        return iter(self._order().tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.n // self.world * self.world if self.drop_last
                         else self.n, self.world))


def default_workers(n_items: int) -> int:
    """Worker processes for a loader: none for fewer than 64 items (starting them costs
    more than it saves), else the CPUs this process may use (shared among the torchrun
    processes of this machine), at most 8."""
    if n_items < 64:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, (cpus or 1) // max(1, local)))


def loader(data: torch.utils.data.Dataset, batch_size: int = 64, workers: int | None = None,
           device: str | torch.device | None = None, *, shuffle: bool = False, seed: int = 0,
           distributed: bool = False, drop_last: bool = False,
           persistent: bool = False) -> torch.utils.data.DataLoader:
    """Batches of a data set, decoded in worker processes.

    Args:
        data (Dataset): items ``(uint8 (3, H, W), label)``, e.g. from :func:`dataset`.
        batch_size (int, optional): images per batch. Default: 64.
        workers (int, optional): decoding processes; 0 decodes in this process. Default:
            :func:`default_workers`.
        device (str or torch.device, optional): where the batches will go; CUDA pins the
            host memory for asynchronous copies. Default: None (no pinning).
        shuffle (bool, optional): a seeded new order every epoch (call
            ``loader.sampler.set_epoch(epoch)``). Default: False.
        seed (int, optional): seed of the order and of the workers' random augmentation.
            Default: 0.
        distributed (bool, optional): under ``torchrun``, give this process only its share.
            Default: False.
        drop_last (bool, optional): drop the last partial batch (and equalise the shares).
            Default: False.
        persistent (bool, optional): keep the workers between epochs. Default: False.

    Returns:
        DataLoader yielding ``(uint8 (B, 3, H, W), int64 (B,))``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive int")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise ValueError(f"workers={workers!r}; expected an int >= 0 or None")
    workers = default_workers(len(data)) if workers is None else workers
    rank, world = torch_utils.distributed() if distributed else (0, 1)
    sampler = ShardSampler(len(data), shuffle, seed, rank, world, drop_last)
    pin = device is not None and torch.device(device).type == "cuda"
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
        drop_last=drop_last, persistent_workers=persistent and workers > 0,
        generator=torch.Generator().manual_seed(seed * 1009 + rank))


def to_float(x: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
    """A uint8 batch ``(B, 3, H, W)`` as float32 in [0, 1] on ``device``: the bytes travel,
    the division runs there (channels-last on CUDA). Float input is only moved."""
    device = torch.device(device) if device is not None else x.device
    x = x.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, batch_size: int = 64, workers: int | None = None,
             topk: tuple[int, ...] = (1, 5), amp: bool | None = None,
             progress: bool = True) -> dict:
    """Top-k accuracy of ``model`` over a data set of any size in bounded memory.

    Args:
        model (nn.Module): a classifier of ``[0, 1]`` images; inputs follow its device; it
            runs in eval mode and the caller's modes are restored.
        data (Dataset or DataLoader): items ``(uint8 or float (3, H, W), label)``; a
            Dataset is batched with :func:`loader` (each ``torchrun`` process scores its
            share and the counts are summed).
        batch_size, workers: for :func:`loader`. Defaults: 64, :func:`default_workers`.
        topk (tuple of int, optional): the k of each rate. Default: ``(1, 5)``.
        amp (bool, optional): bfloat16 autocast; default on CUDA only.
        progress (bool, optional): a tqdm bar. Default: True.

    Returns:
        dict: ``{"top1": fraction, "top5": fraction, "n": images}``.
    """
    from tqdm.auto import tqdm
    if not topk or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in topk):
        raise ValueError(f"topk={topk!r}; expected a tuple of positive ints")
    device = model_device(model)
    batches = data if isinstance(data, torch.utils.data.DataLoader) else loader(
        data, batch_size, workers, device=device, distributed=True)
    correct, n = torch.zeros(len(topk), dtype=torch.float64, device=device), 0
    with evaluating(model), autocast(device, amp):
        for x, y in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
            logits = model(to_float(x, device)).float()  # (B, classes)
            y = torch.as_tensor(y)
            bad = y[(y < 0) | (y >= logits.shape[1])]  # checked on the host: no device sync
            if len(bad):
                raise ValueError(f"data has labels outside 0..{logits.shape[1] - 1} (e.g. "
                                 f"{int(bad[0])}); unlabelled data (samples, label -1) "
                                 "cannot be scored")
            top = logits.topk(min(max(topk), logits.shape[1]), dim=1).indices  # (B, k)
            hit = top == y.to(device, non_blocking=True)[:, None]
            correct += torch.stack([hit[:, :k].any(1).sum() for k in topk]).double()
            n += len(y)
    if torch_utils.distributed()[1] > 1 and not isinstance(data, torch.utils.data.DataLoader):
        counts = torch.cat([correct, torch.tensor([float(n)], dtype=torch.float64, device=device)])
        torch.distributed.all_reduce(counts)
        correct, n = counts[:-1], int(counts[-1])
    correct = correct.cpu()
    if n == 0:
        raise ValueError("data holds no images")
    return {**{f"top{k}": float(c) / n for k, c in zip(topk, correct)}, "n": n}


# ---------------------------------------------------------------------------- public API

def names() -> tuple[str, ...]:
    """Names accepted by :func:`load` and :func:`dataset`."""
    return ("cifar10", "imagenet-val", "imagenet", "imagenet-auto", "samples")


def resolve(name: str, root: str | os.PathLike | None = None) -> str:
    """The set ``name`` stands for here: ``imagenet-auto`` -> ``imagenet-val`` or ``samples``."""
    if not isinstance(name, str) or name not in names():
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())}")
    if name == "imagenet-auto":
        return "imagenet-val" if find_imagenet(root) is not None else "samples"
    return name


def load(name: str, split: str = "test", n: int | None = None, seed: int = 0,
         root: str | os.PathLike | None = None, *, size: int | None = None,
         resize: int | None = None, interpolation: str = "bilinear",
         download: bool = True, progress: bool = True, workers: int | None = None,
         uint8: bool = False) -> Loaded:
    """Load a data set as tensors (for sets that fit in memory; else :func:`dataset`).

    Args:
        name (str): one of :func:`names`: ``"cifar10"``, ``"imagenet-val"``, ``"imagenet"``,
            ``"samples"``, ``"imagenet-auto"`` (``imagenet-val`` if present, else ``samples``).
        split (str, optional): ``"test"`` (= ``"val"``) or ``"train"`` (CIFAR-10 and
            ``"imagenet"``). Default: ``"test"``.
        n (int, optional): draw a seeded random subset of ``n`` images (kept in data-set
            order). Default: ``None``, all images.
        seed (int, optional): seed of that subset. Default: 0.
        root (path, optional): data root. Default: ``$RANKCORE_DATA``, else ``data/``.
        size (int, optional): output side. Default: 32 for CIFAR-10 (native, no resizing),
            224 for ImageNet and samples.
        resize (int, optional): short side before the centre crop (ImageNet only).
            Default: ``round(size / 0.875)``, 256 for 224.
        interpolation (str, optional): ``"bilinear"`` or ``"bicubic"``. Default: bilinear.
        download (bool, optional): let torchvision download CIFAR-10 when it is absent and
            the network is up. Default: ``True``.
        progress (bool, optional): show tqdm bars while decoding. Default: ``True``.
        workers (int, optional): decoding processes (:func:`loader`). Default: automatic.
        uint8 (bool, optional): the decoded bytes, not floats (the trainer's). Default: False.

    Returns:
        Loaded: ``(images, labels)``; images float32 ``(N, 3, size, size)`` in [0, 1] (or
        uint8),
        labels int64 ``(N,)`` or ``None`` (samples). ``.source`` names the set loaded.

    Examples::

        CIFAR-10 (under the data root, or downloaded when online), then the embedded photos:

        >>> import rankcore
        >>> x, y = rankcore.data.load("cifar10", n=100)  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        (torch.Size([100, 3, 32, 32]), torch.Size([100]))
        >>> x, y = rankcore.data.load("samples", n=2, size=64)  # embedded: unlabelled photos
        >>> tuple(x.shape), y
        ((2, 3, 64, 64), None)
    """
    ds = dataset(name, split, n, seed, root, size=size, resize=resize,
                 interpolation=interpolation, download=download, progress=progress)
    if ds.array is not None and ds.array.shape[-1] == ds.size:
        images = ds.array[torch.from_numpy(ds.keep)]  # (N, 3, 32, 32) uint8
    else:
        from tqdm.auto import tqdm
        images = torch.empty(len(ds), 3, ds.size, ds.size, dtype=torch.uint8)
        i = 0
        for x, _ in tqdm(loader(ds, 64, workers), desc=f"decoding {ds.source}",
                         disable=not progress or len(ds) < 64, leave=False):
            images[i:i + len(x)] = x
            i += len(x)
    images = images if uint8 else images.float() / 255
    return Loaded(images, ds.labels, ds.source, ds.names, ds.classes)


def class_names(dataset: str, root: str | os.PathLike | None = None) -> list[str]:
    """Human-readable class names indexed by label, offline.

    Args:
        dataset (str): ``"imagenet"`` (1000 names: the data root's ``synset_words.txt`` when
            present, else torchvision's metadata) or ``"cifar10"`` (10 names).
        root (path, optional): data root searched for ``synset_words.txt``.

    Returns:
        list[str]
    """
    if dataset == "cifar10":
        return list(CIFAR10_CLASSES)
    if dataset in ("imagenet", "imagenet-val"):
        folder = find_imagenet(root)
        if folder is not None and (folder / "synset_words.txt").exists():
            lines = (folder / "synset_words.txt").read_text().splitlines()
            return [l.split(" ", 1)[1].split(",")[0].strip() for l in lines if l.strip()]
        from torchvision.models import ResNet50_Weights
        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    raise ValueError(f"dataset={dataset!r}; expected 'imagenet' or 'cifar10'")
