"""Data sets of the paper (CIFAR-10, ImageNet validation) and an embedded offline default.

``load(name)`` returns ``(images, labels)``: images float ``(N, 3, H, W)`` in [0, 1], labels
int64 ``(N,)`` or ``None``. Names (see :func:`names`):

- ``cifar10``: the official set (torchvision's ``cifar-10-batches-py`` under the data root,
  downloaded when missing and online) or a JPEG folder copy
  ``ROOT/cifar10-jpeg/{train,test}/<class name>/*.jpg``. Decoded once, cached as uint8.
- ``imagenet-val``: ImageNet validation JPEGs, resized (short side 256) and centre-cropped
  (224) as in the paper. Layouts: ``ROOT/imagenet-val-1300/{images/,labels.txt}``
  (``images/<file>, <class index>`` lines), a Caffe-style ``val.txt`` (``<file> <index>``),
  the ILSVRC2012 devkit ground truth (+ ``meta.mat``), or an ImageFolder of synset folders.
- ``samples``: real photographs shipped inside installed packages (no download ever), see
  :data:`SAMPLES` for the list and licences. Labels ``None``: they have no ImageNet label.
- ``imagenet-auto``: ``imagenet-val`` when found under the data root, else ``samples``;
  the returned pair's ``.source`` says which one ran.

The result is a :class:`Loaded` pair (a tuple, so ``x, y = load(...)`` works) that also
carries ``.source``, ``.names`` (file or photo names) and ``.classes``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import _io
from .paths import cache_dir, data_root

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_IMAGENET_DIRS = ("imagenet-val-1300", "imagenet-val", "imagenet/val", "ILSVRC2012/val",
                  "ILSVRC2012_img_val", "val")


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


# ---------------------------------------------------------------------------- helpers

def _validate_split(split: str) -> None:
    if split not in ("train", "test", "val"):
        raise ValueError(f"split={split!r}; expected 'train' or 'test' ('val' = 'test')")


def _subset_indices(total: int, n: int | None, seed: int) -> torch.Tensor:
    """Seeded random subset of ``range(total)`` in ascending order (all when n is None)."""
    if n is None:
        return torch.arange(total)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r}; expected a positive int or None (all images)")
    if n > total:
        raise ValueError(f"n={n} but the set has only {total} images")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values


def _open_rgb(path: Path) -> Image.Image:
    """Decode an image file to RGB; a file PIL cannot decode raises naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"corrupt or unreadable image {path}: {e}") from e


def _to_uint8_chw(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)


def _check_resize(size: int, resize: int | None, interpolation: str) -> int:
    """Validate the resize-then-crop arguments; returns the short side to resize to."""
    resize = resize or int(round(size / 0.875))
    if resize < size:
        raise ValueError(f"resize={resize} is smaller than the crop size={size}")
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation={interpolation!r}; expected 'bilinear' or 'bicubic'")
    return resize


def resize_crop(img: torch.Tensor, size: int = 224, resize: int | None = None,
                interpolation: str = "bilinear") -> torch.Tensor:
    """Resize the short side to ``resize``, then centre-crop ``size`` x ``size``.

    Args:
        img (Tensor): one image ``(3, H, W)`` or a batch ``(N, 3, H, W)``, uint8 or float.
        size (int, optional): side of the centre crop. Default: 224.
        resize (int, optional): short side after resizing. Default: ``round(size / 0.875)``
            (256 for 224, the paper's preprocessing).
        interpolation (str, optional): ``"bilinear"`` or ``"bicubic"`` (antialiased).
            Default: ``"bilinear"``.

    Returns:
        Tensor: float32 in [0, 1], ``(3, size, size)`` or ``(N, 3, size, size)``.
    """
    resize = _check_resize(size, resize, interpolation)
    single = img.dim() == 3
    x = img.unsqueeze(0) if single else img
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    h, w = x.shape[-2:]
    scale = resize / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode=interpolation, align_corners=False,
                          antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[..., top:top + size, left:left + size].clamp(0, 1)  # (N, 3, size, size)
    return x[0] if single else x


def _load_resized(path: Path, size: int, resize: int | None, interpolation: str) -> torch.Tensor:
    """Decode a file, resize its short side to ``resize`` and centre-crop ``size``.

    PIL resizes (antialiased, as torchvision's ImageNet evaluation does) on uint8, which is
    several times cheaper than a float resize; returns float32 ``(3, size, size)``.
    """
    resize = _check_resize(size, resize, interpolation)
    modes = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    im = _open_rgb(path)
    w, h = im.size
    scale = resize / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), modes[interpolation])
    left, top = (new_w - size) // 2, (new_h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return _to_uint8_chw(im).float() / 255  # (3, size, size)


# ---------------------------------------------------------------------------- CIFAR-10

def _cifar_listing(folder: Path) -> tuple[list[str], list[int], str]:
    """``<class>/<file>`` names, labels and a cache key of ``folder/<class name>/*.jpg``.

    The key digests every name, size and modification time, so a changed copy gets a new
    cache; one ``scandir`` pass keeps this cheap (50,000 files in about 0.2 s).
    """
    h = hashlib.sha256()
    names, labels = [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        d = folder / cls
        if not d.is_dir():
            raise FileNotFoundError(f"CIFAR-10 folder copy {folder} lacks the class folder "
                                    f"{cls!r}; expected {folder}/<class name>/*.jpg for "
                                    f"the 10 classes {CIFAR10_CLASSES}")
        entries = sorted((e for e in os.scandir(d)
                          if os.path.splitext(e.name)[1].lower() in _IMAGE_SUFFIXES),
                         key=lambda e: e.name)
        for e in entries:
            st = e.stat()
            h.update(f"{cls}/{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        names += [f"{cls}/{e.name}" for e in entries]
        labels += [label] * len(entries)
    return names, labels, h.hexdigest()[:16]


def _cache_file(root: Path, name: str) -> Path:
    # Decoded sets live under the data root (they are derived from it) unless
    # $RANKCORE_CACHE says otherwise.
    if os.environ.get("RANKCORE_CACHE"):
        return cache_dir("data") / name
    return root / "cache" / "data" / name


def _decode_cifar_jpeg(folder: Path, root: Path, progress: bool) -> dict:
    names, labels, key = _cifar_listing(folder)
    if not names:
        raise FileNotFoundError(f"no images under {folder}/<class name>/")
    cache = _cache_file(root, f"cifar10-jpeg-{folder.name}-{key}.pt")
    if cache.exists():
        return torch.load(cache, weights_only=True, mmap=True)
    from tqdm.auto import tqdm
    images = torch.empty(len(names), 3, 32, 32, dtype=torch.uint8)  # (N, 3, 32, 32)
    for i, name in enumerate(tqdm(names, desc=f"decoding CIFAR-10 {folder.name}",
                                  disable=not progress)):
        f = folder / name
        im = _open_rgb(f)
        if im.size != (32, 32):
            raise ValueError(f"image {f} is {im.size[0]}x{im.size[1]}; CIFAR-10 images "
                             "are 32x32")
        images[i] = _to_uint8_chw(im)
    blob = {"images": images, "labels": torch.tensor(labels, dtype=torch.int64),
            "names": names}
    try:
        _io.torch_save(blob, cache)
    except OSError as e:  # a read-only data root only costs the decoding time next time
        log.warning("could not write the CIFAR-10 cache %s: %s", cache, e)
    return blob


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists and dicts only: a tampered file cannot run code.

    ``_codecs.encode`` rebuilds bytes in protocol-2 pickles written by Python 3 (as
    ``torch.load(weights_only=True)`` also allows).
    """
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy", "dtype"),
                ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_cifar_official(folder: Path, split: str) -> dict:
    """torchvision's ``cifar-10-batches-py`` pickles, read with an allow-list unpickler."""
    batches = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train"
               else ["test_batch"])
    images, labels = [], []
    for b in batches:
        try:
            with open(folder / b, "rb") as fh:
                d = _ArrayUnpickler(fh, encoding="latin1").load()
            images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels += [int(v) for v in d["labels"]]
        except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
            raise ValueError(f"corrupt or unexpected CIFAR-10 batch {folder / b}: {e}") from e
    return {"images": torch.from_numpy(np.concatenate(images)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "names": [f"{split}/{i:05d}" for i in range(len(labels))]}


def _online(host: str = "www.cs.toronto.edu", timeout: float = 2.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def find_cifar10(root: str | os.PathLike | None = None, split: str = "test") -> Path | None:
    """The CIFAR-10 folder under the data root (official or JPEG copy), or ``None``."""
    base = data_root(root)
    split = "test" if split == "val" else split
    if (base / "cifar-10-batches-py" / "test_batch").exists():
        return base / "cifar-10-batches-py"
    return base / "cifar10-jpeg" / split if (base / "cifar10-jpeg" / split).is_dir() else None


def _cifar10(split: str, root: Path, download: bool, progress: bool) -> dict:
    split = "test" if split == "val" else split
    official = root / "cifar-10-batches-py"
    found = find_cifar10(root, split)
    if found is None and download and _online():
        import torchvision
        torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
        found = official
    if found == official:
        return _read_cifar_official(official, split)
    if found is not None:
        return _decode_cifar_jpeg(found, root, progress)
    jpeg = root / "cifar10-jpeg" / split
    raise FileNotFoundError(
        f"CIFAR-10 not found under the data root {root}: searched {official} (torchvision's "
        f"official 'cifar-10-batches-py') and {jpeg} (a JPEG copy laid out as "
        f"cifar10-jpeg/{{train,test}}/<class name>/*.jpg). Get it with "
        f"torchvision.datasets.CIFAR10({str(root)!r}, download=True) when online, or point "
        "$RANKCORE_DATA (or root=) at a folder holding either layout.")


# ---------------------------------------------------------------------------- ImageNet

@dataclass
class _ImagenetIndex:
    files: list[Path]
    labels: list[int] | None
    layout: str


def _read_pairs(path: Path, base: Path, sep: str | None) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.rsplit(sep, 1)] if sep else line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}, line {line_no}: {line!r}; expected "
                             f"'<file>{sep or ' '} <class index>'")
        files.append(base / parts[0])
        labels.append(int(parts[1]))
    return files, labels


def _synsets(folder: Path | None = None) -> list[str]:
    """The 1000 ImageNet wnids in class-index order (synset file if present, else timm's)."""
    if folder is not None and (folder / "synset_words.txt").exists():
        return [l.split()[0] for l in (folder / "synset_words.txt").read_text().splitlines()
                if l.strip()]
    spec = importlib.util.find_spec("timm")
    path = Path(spec.submodule_search_locations[0]) / "data" / "_info" / "imagenet_synsets.txt"
    return path.read_text().split()


def _devkit_labels(folder: Path, gt: Path) -> list[int]:
    """ILSVRC2012 devkit ids (1-1000, not in wnid order) -> class indices via meta.mat."""
    meta = next((p for p in (folder / "meta.mat", folder.parent / "meta.mat",
                             gt.parent / "meta.mat") if p.exists()), None)
    if meta is None:
        raise FileNotFoundError(f"{gt} holds devkit ids; their mapping to class indices "
                                f"needs the devkit's meta.mat beside it (searched {folder}, "
                                f"{folder.parent}, {gt.parent})")
    from scipy.io import loadmat
    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets
                  if int(s["ILSVRC2012_ID"]) <= 1000}  # ids above 1000: WordNet parents
    index = {w: i for i, w in enumerate(_synsets(folder))}
    return [index[id_to_wnid[int(t)]] for t in gt.read_text().split()]


def _index_imagenet(folder: Path) -> _ImagenetIndex | None:
    """Find the validation images and labels in ``folder``, whatever its layout."""
    if (folder / "labels.txt").exists():
        files, labels = _read_pairs(folder / "labels.txt", folder, ",")
        return _ImagenetIndex(files, labels, "labels.txt")
    if (folder / "val.txt").exists():
        base = folder / "images" if (folder / "images").is_dir() else folder
        files, labels = _read_pairs(folder / "val.txt", base, None)
        return _ImagenetIndex(files, labels, "val.txt")
    # The devkit usually sits beside the val folder: look two levels down from both.
    gt_name = "ILSVRC2012_validation_ground_truth.txt"
    gt = next((p for base in (folder, folder.parent)
               for pattern in (gt_name, f"*/{gt_name}", f"*/data/{gt_name}")
               for p in sorted(base.glob(pattern))), None)
    jpegs = sorted(f for f in folder.glob("ILSVRC2012_val_*")
                   if f.suffix.lower() in _IMAGE_SUFFIXES)
    if gt is not None and jpegs:
        labels = _devkit_labels(folder, gt)
        return _ImagenetIndex(jpegs, [labels[int(f.stem.split("_")[-1]) - 1] for f in jpegs],
                              "ILSVRC2012 devkit")
    wnid_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and d.name[:1] == "n"
                       and d.name[1:].isdigit()) if folder.is_dir() else []
    if wnid_dirs:
        index = {w: i for i, w in enumerate(_synsets())}
        files, labels = [], []
        for d in wnid_dirs:
            for f in sorted(d.iterdir()):
                if f.suffix.lower() in _IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(index[d.name])
        return _ImagenetIndex(files, labels, "ImageFolder")
    return None


def find_imagenet(root: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet validation folder under the data root, or ``None`` when absent."""
    base = data_root(root)
    for sub in _IMAGENET_DIRS:
        folder = base / sub
        if folder.is_dir() and _index_imagenet(folder) is not None:
            return folder
    return None


def _imagenet_missing(base: Path) -> FileNotFoundError:
    searched = ", ".join(str(base / s) for s in _IMAGENET_DIRS)
    return FileNotFoundError(
        f"ImageNet validation images not found; searched {searched}. Expected one of: "
        "imagenet-val-1300/{images/*.JPEG, labels.txt with '<images/file>, <class index>' "
        "lines}; a folder of JPEGs with a Caffe-style val.txt ('<file> <index>'); "
        "ILSVRC2012_val_*.JPEG with the devkit's ILSVRC2012_validation_ground_truth.txt and "
        "meta.mat; or an ImageFolder of synset folders (n01440764/...). ImageNet cannot be "
        "downloaded automatically: get the validation set from https://image-net.org "
        "(non-commercial research terms) and set $RANKCORE_DATA (or root=) to its parent. "
        "The embedded offline default is load('samples').")


def _imagenet(split: str, root: Path, n: int | None, seed: int, size: int,
              resize: int | None, interpolation: str, progress: bool) -> Loaded:
    if split == "train":
        raise ValueError("split='train': only the ImageNet validation set is supported "
                         "('test' or 'val')")
    folder = find_imagenet(root)
    if folder is None:
        raise _imagenet_missing(root)
    idx = _index_imagenet(folder)
    keep = _subset_indices(len(idx.files), n, seed).tolist()
    from tqdm.auto import tqdm
    images = torch.empty(len(keep), 3, size, size)  # (N, 3, size, size)
    for j, i in enumerate(tqdm(keep, desc="decoding ImageNet", disable=not progress)):
        images[j] = _load_resized(idx.files[i], size, resize, interpolation)
    labels = torch.tensor([idx.labels[i] for i in keep], dtype=torch.int64)
    return Loaded(images, labels, "imagenet-val", [idx.files[i].name for i in keep],
                  class_names("imagenet", root))


# ---------------------------------------------------------------------------- samples

@dataclass(frozen=True)
class Sample:
    """A photograph shipped inside an installed package."""
    name: str
    package: str
    path: str       # relative to the package folder
    licence: str


#: The embedded default: real photographs that ship with scikit-image, matplotlib and
#: scikit-learn, so ``load("samples")`` works offline with no download.
SAMPLES: tuple[Sample, ...] = (
    Sample("astronaut", "skimage", "data/astronaut.png", "public domain (NASA)"),
    Sample("chelsea", "skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    Sample("coffee", "skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    Sample("rocket", "skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    Sample("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg",
           "public domain (NASA/ESA)"),
    Sample("camera", "skimage", "data/camera.png", "CC0 (Lav Varshney); grey, replicated"),
    Sample("coins", "skimage", "data/coins.png",
           "no known copyright restrictions (Brooklyn Museum); grey, replicated"),
    Sample("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
           "public domain (US Navy)"),
    Sample("china", "sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele)"),
    Sample("flower", "sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion)"),
)


def _sample_path(s: Sample) -> Path:
    # find_spec locates the package without importing it (skimage's import is slow).
    spec = importlib.util.find_spec(s.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"sample {s.name!r} ships with the package {s.package!r}, "
                                f"which is not installed (pip install {s.package})")
    return Path(spec.submodule_search_locations[0]) / s.path


def _samples(n: int | None, seed: int, size: int, interpolation: str) -> Loaded:
    keep = _subset_indices(len(SAMPLES), n, seed).tolist()
    # Centre crop of the largest square, then resize to size (no further crop: the
    # photos are small enough that a 256 -> 224 crop would lose their subjects' edges).
    images = torch.stack([_load_resized(_sample_path(SAMPLES[i]), size, size, interpolation)
                          for i in keep])
    return Loaded(images, None, "samples", [SAMPLES[i].name for i in keep], None)


# ---------------------------------------------------------------------------- public API

def names() -> tuple[str, ...]:
    """Names accepted by :func:`load`."""
    return ("cifar10", "imagenet-val", "imagenet-auto", "samples")


def resolve(name: str, root: str | os.PathLike | None = None) -> str:
    """The set ``name`` stands for here: ``imagenet-auto`` -> ``imagenet-val`` or ``samples``."""
    if name not in names():
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())}")
    if name == "imagenet-auto":
        return "imagenet-val" if find_imagenet(root) is not None else "samples"
    return name


def load(name: str, split: str = "test", n: int | None = None, seed: int = 0,
         root: str | os.PathLike | None = None, size: int | None = None,
         resize: int | None = None, interpolation: str = "bilinear",
         download: bool = True, progress: bool = True) -> Loaded:
    """Load a data set as tensors.

    Args:
        name (str): one of :func:`names`: ``"cifar10"``, ``"imagenet-val"``, ``"samples"``,
            ``"imagenet-auto"`` (``imagenet-val`` if present, else ``samples``).
        split (str, optional): ``"test"`` (= ``"val"``) or ``"train"`` (CIFAR-10 only).
            Default: ``"test"``.
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

    Returns:
        Loaded: ``(images, labels)``; images float32 ``(N, 3, size, size)`` in [0, 1],
        labels int64 ``(N,)`` or ``None`` (samples). ``.source`` names the set loaded.

    Examples::

        >>> x, y = rankcore.data.load("cifar10", n=100)
        >>> x.shape, y.shape
        (torch.Size([100, 3, 32, 32]), torch.Size([100]))
    """
    source = resolve(name, root)
    _validate_split(split)
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size={size!r}; expected a positive int or None")
    base = data_root(root)
    if name == "imagenet-auto":
        log.info("imagenet-auto: using %s", source)
    if source == "cifar10":
        blob = _cifar10(split, base, download, progress)
        keep = _subset_indices(len(blob["labels"]), n, seed)
        images = blob["images"][keep].float() / 255  # (N, 3, 32, 32)
        if size is not None and size != 32:
            images = F.interpolate(images, size=(size, size), mode=interpolation,
                                   align_corners=False).clamp(0, 1)
        return Loaded(images, blob["labels"][keep].clone(), "cifar10",
                      [blob["names"][i] for i in keep.tolist()], list(CIFAR10_CLASSES))
    if source == "imagenet-val":
        return _imagenet(split, base, n, seed, size or 224, resize, interpolation, progress)
    if split == "train":
        raise ValueError("split='train': the samples have only one split ('test')")
    return _samples(n, seed, size or 224, interpolation)


class _ItemDataset(torch.utils.data.Dataset):
    """Items ``(image (3, H, W) float in [0, 1], label)`` made on demand by ``get(i)``."""

    def __init__(self, length: int, get: Callable[[int], tuple], source: str,
                 transform: Callable | None):
        self.length, self.get, self.source, self.transform = length, get, source, transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} items")
        image, label = self.get(i % self.length)
        return (self.transform(image) if self.transform else image), label


def dataset(name: str, split: str = "test", root: str | os.PathLike | None = None,
            transform: Callable | None = None, size: int | None = None,
            resize: int | None = None, interpolation: str = "bilinear",
            progress: bool = True) -> torch.utils.data.Dataset:
    """The items of :func:`load` as a ``Dataset``, decoded one at a time.

    For sets too large to hold as float tensors (CIFAR-10 train: 600 MB as float32).

    Args:
        name, split, root, size, resize, interpolation: as for :func:`load`.
        transform (callable, optional): applied to each float image ``(3, H, W)``.

    Returns:
        Dataset of ``(image, label)``; label is -1 for the unlabelled samples. ``.source``
        names the set.
    """
    source = resolve(name, root)
    _validate_split(split)
    base = data_root(root)
    if source == "cifar10":
        blob = _cifar10(split, base, True, progress)
        images, labels = blob["images"], blob["labels"]

        def get(i):
            x = images[i].float() / 255  # (3, 32, 32)
            if size is not None and size != 32:
                x = F.interpolate(x[None], size=(size, size), mode=interpolation,
                                  align_corners=False)[0].clamp(0, 1)
            return x, int(labels[i])
        return _ItemDataset(len(labels), get, source, transform)
    if source == "imagenet-val":
        if split == "train":
            raise ValueError("split='train': only the ImageNet validation set is supported")
        folder = find_imagenet(root)
        if folder is None:
            raise _imagenet_missing(base)
        idx = _index_imagenet(folder)
        return _ItemDataset(len(idx.files), lambda i: (
            _load_resized(idx.files[i], size or 224, resize, interpolation), idx.labels[i]),
            source, transform)
    x, _ = load("samples", split=split, size=size, interpolation=interpolation)
    return _ItemDataset(len(x), lambda i: (x[i], -1), source, transform)


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
