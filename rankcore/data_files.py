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
from .paths import cache_dir, user_cache

log = logging.getLogger(__name__)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
IMAGENET_DIRS = ("imagenet-val-1300", "imagenet-val", "imagenet/val", "ILSVRC2012/val",
                 "ILSVRC2012_img_val", "val")
IMAGENET_CLASSES = 1000
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


# ---------------------------------------------------------------------------- ImageNet

@dataclass
class ImagenetIndex:
    """Files (one NumPy byte array, shared by worker processes without copying) and labels."""
    files: np.ndarray           # bytes paths, (N,)
    labels: np.ndarray          # int64 (N,)
    layout: str

    def path(self, i: int) -> str:
        return os.fsdecode(self.files[i])


def _index(files: list, labels: list, layout: str) -> ImagenetIndex:
    return ImagenetIndex(np.array([os.fsencode(str(f)) for f in files], dtype=bytes),
                         np.asarray(labels, dtype=np.int64).reshape(-1), layout)


def read_label_file(path: Path, base: Path, sep: str | None,
                    classes: int = IMAGENET_CLASSES) -> tuple[list[Path], list[int]]:
    """``<file><sep> <class index>`` lines -> files and labels.

    Raises ``ValueError`` naming the file and line for a malformed line, a label outside
    ``0..classes-1`` and a file listed twice.
    """
    files, labels, seen = [], [], {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.rsplit(sep, 1)] if sep else line.split()
        if len(parts) != 2 or not parts[1].lstrip("+-").isdigit():
            raise ValueError(f"{path}, line {line_no}: {line!r}; expected "
                             f"'<file>{sep or ''} <class index>'")
        label = int(parts[1])
        if not 0 <= label < classes:
            raise ValueError(f"{path}, line {line_no}: label {label} is outside the "
                             f"{classes} classes 0..{classes - 1}")
        name = os.path.normpath(parts[0])
        if name in seen:
            raise ValueError(f"{path}, line {line_no}: {parts[0]!r} is listed twice "
                             f"(first on line {seen[name]})")
        seen[name] = line_no
        files.append(base / parts[0])
        labels.append(label)
    if not files:
        raise ValueError(f"{path} lists no images; expected '<file>{sep or ''} <class index>' "
                         "lines")
    return files, labels


def synsets(folder: Path | None = None) -> list[str]:
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
    table = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in table
                  if int(s["ILSVRC2012_ID"]) <= 1000}  # ids above 1000: WordNet parents
    index = {w: i for i, w in enumerate(synsets(folder))}
    labels = []
    for line_no, line in enumerate(gt.read_text().splitlines(), 1):
        t = line.strip()
        if t and (not t.isdigit() or int(t) not in id_to_wnid):
            raise ValueError(f"{gt}, line {line_no}: {t!r} is not a devkit class id 1..1000")
        labels += [index[id_to_wnid[int(t)]]] if t else []
    return labels


def index_image_folder(folder: Path, layout: str = "ImageFolder") -> ImagenetIndex | None:
    """``folder/<wnid>/*.JPEG`` (ImageNet's ImageFolder layout, train or val) -> index;
    ``None`` when ``folder`` holds no synset folders. Labels follow the wnids' class order."""
    wnid_dirs = sorted(e.name for e in os.scandir(folder) if e.is_dir()
                       and e.name[:1] == "n" and e.name[1:].isdigit()) if folder.is_dir() else []
    if not wnid_dirs:
        return None
    index = {w: i for i, w in enumerate(synsets())}
    unknown = [w for w in wnid_dirs if w not in index]
    if unknown:
        raise ValueError(f"{folder} holds folders {unknown[:5]} that are not ImageNet-1k "
                         "synsets (wnids)")
    files, labels = [], []
    for w in wnid_dirs:
        names = sorted(e.name for e in os.scandir(folder / w)
                       if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES)
        files += [os.path.join(folder, w, n) for n in names]
        labels += [index[w]] * len(names)
    return _index(files, labels, layout)


def index_imagenet(folder: Path) -> ImagenetIndex | None:
    """Find the validation images and labels in ``folder``, whatever its layout."""
    if (folder / "labels.txt").exists():
        return _index(*read_label_file(folder / "labels.txt", folder, ","), "labels.txt")
    if (folder / "val.txt").exists():
        base = folder / "images" if (folder / "images").is_dir() else folder
        return _index(*read_label_file(folder / "val.txt", base, None), "val.txt")
    # The devkit usually sits beside the val folder: look two levels down from both.
    gt_name = "ILSVRC2012_validation_ground_truth.txt"
    gt = next((p for base in (folder, folder.parent)
               for pattern in (gt_name, f"*/{gt_name}", f"*/data/{gt_name}")
               for p in sorted(base.glob(pattern))), None)
    jpegs = sorted(f for f in folder.glob("ILSVRC2012_val_*")
                   if f.suffix.lower() in IMAGE_SUFFIXES)
    if gt is not None and jpegs:
        labels = _devkit_labels(folder, gt)
        number = {f: f.stem.split("_")[-1] for f in jpegs}   # ILSVRC2012_val_00000001 -> 1
        beyond = [f for f in jpegs if not number[f].isdigit()
                  or not 1 <= int(number[f]) <= len(labels)]
        if beyond:
            raise ValueError(f"{beyond[0]} has no line in {gt} ({len(labels)} labels)")
        return _index(jpegs, [labels[int(number[f]) - 1] for f in jpegs], "ILSVRC2012 devkit")
    return index_image_folder(folder)


def find_imagenet(root: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet validation folder under the data root, or ``None`` when absent."""
    from .paths import data_root
    base = data_root(root)
    for sub in IMAGENET_DIRS:
        folder = base / sub
        if not folder.is_dir():
            continue
        # Cheap tests first: a label file, or one synset folder (without listing 50,000 files).
        if any((folder / f).exists() for f in ("labels.txt", "val.txt")) or any(
                e.is_dir() and e.name[:1] == "n" and e.name[1:].isdigit()
                for e in os.scandir(folder)) or index_imagenet(folder) is not None:
            return folder
    return None


IMAGENET_TRAIN_DIRS = ("imagenet-train", "imagenet/train", "ILSVRC2012/train",
                       "ILSVRC2012_img_train", "train")


def find_imagenet_train(root: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet training folder (ImageFolder layout ``<wnid>/*.JPEG``) under the data
    root, or ``None`` when absent."""
    from .paths import data_root
    base = data_root(root)
    for sub in IMAGENET_TRAIN_DIRS:
        folder = base / sub
        if folder.is_dir() and any(e.is_dir() and e.name[:1] == "n" and e.name[1:].isdigit()
                                   for e in os.scandir(folder)):
            return folder
    return None


def imagenet_train_missing(base: Path) -> FileNotFoundError:
    searched = ", ".join(str(base / s) for s in IMAGENET_TRAIN_DIRS)
    return FileNotFoundError(
        f"ImageNet training images not found; searched {searched}. Expected an ImageFolder "
        "of synset folders (train/n01440764/*.JPEG, as ILSVRC2012_img_train.tar unpacks "
        "with its per-class tars extracted). Get it from https://image-net.org "
        "(non-commercial research terms) and set $RANKCORE_DATA (or root=) to its parent.")


def imagenet_missing(base: Path) -> FileNotFoundError:
    searched = ", ".join(str(base / s) for s in IMAGENET_DIRS)
    return FileNotFoundError(
        f"ImageNet validation images not found; searched {searched}. Expected one of: "
        "imagenet-val-1300/{images/*.JPEG, labels.txt with '<images/file>, <class index>' "
        "lines}; a folder of JPEGs with a Caffe-style val.txt ('<file> <index>'); "
        "ILSVRC2012_val_*.JPEG with the devkit's ILSVRC2012_validation_ground_truth.txt and "
        "meta.mat; or an ImageFolder of synset folders (n01440764/...). ImageNet cannot be "
        "downloaded automatically: get the validation set from https://image-net.org "
        "(non-commercial research terms) and set $RANKCORE_DATA (or root=) to its parent. "
        "The embedded offline default is load('samples').")


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
