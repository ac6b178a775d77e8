"""The data sets on disk: where they are, how their folders are laid out, how a file decodes.

:mod:`rankcore.data` builds data sets and loaders on top of these readers. Everything here
works on one file or one folder listing at a time and returns plain Python/NumPy/torch
values; nothing is held beyond the listing (file names are kept as one NumPy byte array,
which worker processes share without copying).

Layouts understood:

- CIFAR-10: torchvision's ``cifar-10-batches-py`` pickles (read with an allow-list
  unpickler, so a tampered batch cannot run code) or a folder copy
  ``cifar10-jpeg/{train,test}/<class name>/*.jpg``.
- ImageNet validation: ``labels.txt`` (``images/<file>, <class index>`` lines), a
  Caffe-style ``val.txt`` (``<file> <index>``), the ILSVRC2012 devkit ground truth (+
  ``meta.mat``), or an ImageFolder of synset folders (``n01440764/*.JPEG``).
- Photographs shipped inside installed packages (:data:`SAMPLES`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import _io
# the ImageNet layouts live in their own module; rankcore.data_files is where callers find them
from ._imagenet_files import (IMAGE_SUFFIXES, IMAGENET_CLASSES, IMAGENET_DIRS, IMAGENET_TRAIN_DIRS,
                              ImagenetIndex, find_imagenet, find_imagenet_train, imagenet_missing,
                              imagenet_train_missing, index_image_folder, index_imagenet,
                              read_label_file, synsets)
from .paths import cache_dir, user_cache

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


# ---------------------------------------------------------------------------- decoding

def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to RGB; a file PIL cannot decode raises naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"corrupt or unreadable image {path}: {e}") from e


def to_uint8_chw(im: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a uint8 tensor ``(3, H, W)``."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def check_preprocessing(size: int, resize: int | None, interpolation: str) -> int:
    """Validate the resize-then-crop arguments; returns the short side to resize to."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r}; expected a positive int")
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int)
                               or resize < 1):
        raise ValueError(f"resize={resize!r}; expected a positive int or None")
    resize = resize or int(round(size / 0.875))
    if resize < size:
        raise ValueError(f"resize={resize} is smaller than the crop size={size}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation={interpolation!r}; expected 'bilinear' or 'bicubic'")
    return resize


def resize_crop(im: Image.Image, size: int, resize: int | None,
                interpolation: str = "bilinear") -> torch.Tensor:
    """Resize the short side to ``resize`` (antialiased, on uint8, as torchvision's ImageNet
    evaluation does), then centre-crop ``size`` x ``size``; returns uint8 ``(3, size, size)``.

    ``resize`` None means ``round(size / 0.875)`` (256 for 224, the paper's preprocessing).
    """
    resize = check_preprocessing(size, resize, interpolation)
    w, h = im.size
    scale = resize / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        im = im.resize((new_w, new_h), INTERPOLATIONS[interpolation])
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return to_uint8_chw(im.crop((left, top, left + size, top + size)))  # (3, size, size)


# ---------------------------------------------------------------------------- caches

def cache_file(root: Path, name: str) -> Path:
    """Where a decoded copy of data under ``root`` is kept.

    ``$RANKCORE_CACHE/data`` when set; else ``<root>/cache/data`` (derived data beside its
    source); a read-only data root gets ``<user cache>/data`` (``~/.cache/rankcore/data``).
    """
    if os.environ.get("RANKCORE_CACHE"):
        return cache_dir("data") / name
    local = root / "cache" / "data"
    existing = next((p for p in (local, *local.parents) if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK):
        return local / name
    return user_cache() / "data" / name


# ---------------------------------------------------------------------------- CIFAR-10

def cifar_listing(folder: Path) -> tuple[list[str], list[int], str]:
    """``<class>/<file>`` names, labels and a cache key of ``folder/<class name>/*.jpg``.

    The key digests every name, size and modification time, so a changed copy gets a new
    cache; one ``scandir`` pass keeps this cheap (50,000 files in about 0.2 s).
    """
    h = hashlib.sha256()
    names, labels, empty = [], [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        d = folder / cls
        if not d.is_dir():
            raise FileNotFoundError(f"CIFAR-10 folder copy {folder} lacks the class folder "
                                    f"{cls!r}; expected {folder}/<class name>/*.jpg for "
                                    f"the 10 classes {CIFAR10_CLASSES}")
        entries = sorted((e for e in os.scandir(d)
                          if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES),
                         key=lambda e: e.name)
        empty += [cls] if not entries else []
        for e in entries:
            st = e.stat()
            h.update(f"{cls}/{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        names += [f"{cls}/{e.name}" for e in entries]
        labels += [label] * len(entries)
    if empty:  # a class with no images would bias every accuracy silently
        raise FileNotFoundError(f"CIFAR-10 folder copy {folder}: the class folder(s) "
                                f"{', '.join(map(repr, empty))} hold no images "
                                f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return names, labels, h.hexdigest()[:16]


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


def read_cifar_official(folder: Path, split: str) -> dict:
    """torchvision's ``cifar-10-batches-py`` pickles -> ``{"images": uint8 (N, 3, 32, 32),
    "labels": int64 (N,), "names": [...]}``, read with an allow-list unpickler."""
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
    bad = [v for v in labels if not 0 <= v < 10]
    if bad:
        raise ValueError(f"CIFAR-10 batch in {folder} holds labels {bad[:5]} outside 0..9")
    return {"images": torch.from_numpy(np.concatenate(images)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "names": [f"{split}/{i:05d}" for i in range(len(labels))]}


def find_cifar10(root: str | os.PathLike | None = None, split: str = "test") -> Path | None:
    """The CIFAR-10 folder under the data root (official or JPEG copy), or ``None``."""
    from .paths import data_root
    base = data_root(root)
    split = "test" if split == "val" else split
    if (base / "cifar-10-batches-py" / "test_batch").exists():
        return base / "cifar-10-batches-py"
    return base / "cifar10-jpeg" / split if (base / "cifar10-jpeg" / split).is_dir() else None


def cifar_missing(root: Path, split: str) -> FileNotFoundError:
    official, jpeg = root / "cifar-10-batches-py", root / "cifar10-jpeg" / split
    return FileNotFoundError(
        f"CIFAR-10 not found under the data root {root}: searched {official} (torchvision's "
        f"official 'cifar-10-batches-py') and {jpeg} (a JPEG copy laid out as "
        f"cifar10-jpeg/{{train,test}}/<class name>/*.jpg). Get it with "
        f"torchvision.datasets.CIFAR10({str(root)!r}, download=True) when online, or point "
        "$RANKCORE_DATA (or root=) at a folder holding either layout.")


def _decode_cifar_jpeg(folder: Path, root: Path, progress: bool) -> dict:
    """A CIFAR-10 JPEG folder as uint8 arrays, decoded once and cached (keyed by listing)."""
    names, labels, key = cifar_listing(folder)
    if not names:
        raise FileNotFoundError(f"no images under {folder}/<class name>/")
    cache = cache_file(root, f"cifar10-jpeg-{folder.name}-{key}.pt")
    blob = _io.load_cache(cache, "decoded CIFAR-10 cache")
    if isinstance(blob, dict) and {"images", "labels", "names"} <= set(blob) \
            and len(blob["names"]) == len(names):
        return blob
    from tqdm.auto import tqdm
    images = torch.empty(len(names), 3, 32, 32, dtype=torch.uint8)  # (N, 3, 32, 32)
    for i, name in enumerate(tqdm(names, desc=f"decoding CIFAR-10 {folder.name}",
                                  disable=not progress)):
        im = open_rgb(folder / name)
        if im.size != (32, 32):
            raise ValueError(f"image {folder / name} is {im.size[0]}x{im.size[1]}; CIFAR-10 "
                             "images are 32x32")
        images[i] = to_uint8_chw(im)
    blob = {"images": images, "labels": torch.tensor(labels, dtype=torch.int64),
            "names": names}
    try:
        _io.torch_save(blob, cache)
    except OSError as e:  # an unwritable cache only costs the decoding time next time
        log.warning("could not write the CIFAR-10 cache %s: %s", cache, e)
    return blob


def cifar10_arrays(split: str, root: Path, download: bool = True, progress: bool = True) -> dict:
    """CIFAR-10 ``split`` under ``root`` as ``{"images": uint8 (N, 3, 32, 32), "labels": int64
    (N,), "names": [...]}``: the official pickles, else the JPEG copy (decoded once and
    cached), else a torchvision download when ``download`` and online."""
    official = root / "cifar-10-batches-py"
    found = find_cifar10(root, split)
    if found is None and download:
        # Try the download itself (no reachability probe first): torchvision fetches through
        # urllib, which honours $HTTPS_PROXY, and checks the archive's MD5.
        import torchvision
        try:
            torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; a bad archive: RuntimeError
            missing = cifar_missing(root, split)
            raise FileNotFoundError(f"{missing} The download failed: {type(err).__name__}: "
                                    f"{str(err)[:200]}") from err
        found = official
    if found == official:
        return read_cifar_official(official, split)
    if found is not None:
        return _decode_cifar_jpeg(found, root, progress)
    raise cifar_missing(root, split)


# ---------------------------------------------------------------------------- network

def online(url: str = "https://www.cs.toronto.edu/", timeout: float = 5.0) -> bool:
    """Whether a request for ``url`` gets an answer: one ``HEAD`` through :mod:`urllib`
    (which honours ``$HTTPS_PROXY``/``$HTTP_PROXY``, their credentials and ``$NO_PROXY``).

    Downloads never ask this first: they attempt the download and report its error. It
    serves a pre-flight (``rankcore book check``) that must say "downloadable" without
    downloading. Any HTTP answer of the server counts (a 403 or 405 to ``HEAD`` still proves
    the way is open), a proxy's 407 (credentials refused) does not; a bare host name means
    ``https://HOST/``.
    """
    if "://" not in url:
        url = f"https://{url}/"
    try:
        # a fresh opener: urlopen's shared one keeps the proxy settings of its first call
        urllib.request.build_opener().open(urllib.request.Request(url, method="HEAD"),
                                           timeout=timeout).close()
    except urllib.error.HTTPError as err:
        return err.code != 407
    except (OSError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------- samples

@dataclass(frozen=True)
class Sample:
    """A photograph shipped inside an installed package."""
    name: str
    package: str
    path: str       # relative to the package folder
    licence: str


#: The embedded default: real photographs that ship with scikit-image, matplotlib and
#: scikit-learn, so ``load("samples")`` works offline with no download. Those packages are
#: the ``samples`` extra (``pip install 'rankcore[samples]'``), not core dependencies.
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


def sample_path(s: Sample) -> Path:
    """The file of a sample photo (found without importing its package: skimage is slow)."""
    spec = importlib.util.find_spec(s.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"sample {s.name!r} ships with the package {s.package!r}, "
                                "which is not installed: pip install 'rankcore[samples]' "
                                "(scikit-image, scikit-learn and matplotlib)")
    return Path(spec.submodule_search_locations[0]) / s.path
