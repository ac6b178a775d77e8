"""The ImageNet folders on disk: where the validation and training sets are, and the
validation layouts (``labels.txt``, Caffe's ``val.txt``, the ILSVRC2012 devkit, an
ImageFolder of synsets) read into one :class:`ImagenetIndex`.

Re-exported by :mod:`rankcore.data_files`, the data sets' file readers.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
IMAGENET_DIRS = ("imagenet-val-1300", "imagenet-val", "imagenet/val", "ILSVRC2012/val",
                 "ILSVRC2012_img_val", "val")
IMAGENET_CLASSES = 1000


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
