"""rankcore.data: layouts, caching, subsets, preprocessing and every error message."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rankcore import data, data_files

REAL = Path(os.environ["RANKCORE_DATA"]) if os.environ.get("RANKCORE_DATA") else None
# CI unpacks ../shared/data into $RANKCORE_DATA; locally these skip when it is absent.
needs_cifar = pytest.mark.skipif(REAL is None or data.find_cifar10() is None,
                                 reason="needs $RANKCORE_DATA with CIFAR-10")
needs_imagenet = pytest.mark.skipif(REAL is None or data.find_imagenet() is None,
                                    reason="needs $RANKCORE_DATA with ImageNet validation images")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a socket fails, as on a machine without network."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)  # format from the suffix


def _cifar_tree(root: Path, per_class: int = 2, seed: int = 0) -> np.ndarray:
    """A CIFAR-10 folder copy with ``per_class`` random images per class; returns them.

    Lossless PNG, so the decoded pixels can be compared exactly.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (10, per_class, 32, 32, 3), dtype=np.uint8)
    for c, cls in enumerate(data.CIFAR10_CLASSES):
        for j in range(per_class):
            _save(root / "cifar10-jpeg" / "test" / cls / f"{j:04d}.png", images[c, j])
    return images


# ---------------------------------------------------------------------------- samples

def test_samples_load_offline(offline):
    x, y = loaded = data.load("samples", progress=False)
    assert loaded.source == "samples" and y is None
    assert x.shape == (len(data.SAMPLES), 3, 224, 224) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert loaded.names[1] == "chelsea"
    # real photographs, not blank: every image has texture in every channel
    assert (x.flatten(2).std(dim=2) > 0.02).all()
    assert data.load("samples", size=32, n=3).images.shape == (3, 3, 32, 32)


def test_samples_match_source_file():
    """The chelsea crop equals a float64 NumPy centre crop + PIL resize of the file."""
    x = data.load("samples", size=300).images[1]  # chelsea is 451x300: crop only
    raw = np.asarray(Image.open(data_files.sample_path(data.SAMPLES[1])).convert("RGB"),
                     dtype=np.float64) / 255
    left = (raw.shape[1] - 300) // 2
    ref = raw[:, left:left + 300].transpose(2, 0, 1)
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-6)


def test_imagenet_auto_falls_back_to_samples(tmp_path, offline):
    loaded = data.load("imagenet-auto", root=tmp_path, n=2)
    assert loaded.source == "samples" and data.resolve("imagenet-auto", tmp_path) == "samples"


# ---------------------------------------------------------------------------- CIFAR-10

def test_cifar_jpeg_tree_loads_and_caches(tmp_path):
    images = _cifar_tree(tmp_path)
    x, y = data.load("cifar10", root=tmp_path, progress=False)
    assert x.shape == (20, 3, 32, 32)
    assert y.tolist() == [c for c in range(10) for _ in range(2)]
    ref = images.reshape(20, 32, 32, 3).transpose(0, 3, 1, 2)  # (N, 3, 32, 32)
    np.testing.assert_array_equal((x * 255).round().numpy(), ref)
    caches = list((tmp_path / "cache" / "data").glob("cifar10-jpeg-test-*.pt"))
    assert len(caches) == 1
    again = data.load("cifar10", root=tmp_path, progress=False)
    assert torch.equal(again.images, x) and torch.equal(again.labels, y)


def test_cifar_cache_never_stale(tmp_path):
    _cifar_tree(tmp_path)
    assert len(data.load("cifar10", root=tmp_path, progress=False).labels) == 20
    _save(tmp_path / "cifar10-jpeg" / "test" / "truck" / "9999.jpg",
          np.zeros((32, 32, 3), np.uint8))
    x, y = data.load("cifar10", root=tmp_path, progress=False)
    assert len(y) == 21 and y[-1] == 9 and float(x[-1].max()) < 0.05


def test_cifar_subset_is_seeded(tmp_path):
    _cifar_tree(tmp_path)
    a = data.load("cifar10", root=tmp_path, n=5, seed=1, progress=False)
    b = data.load("cifar10", root=tmp_path, n=5, seed=1, progress=False)
    c = data.load("cifar10", root=tmp_path, n=5, seed=2, progress=False)
    assert a.names == b.names and a.names != c.names and len(set(a.names)) == 5
    with pytest.raises(ValueError, match="n=21 but the set has only 20"):
        data.load("cifar10", root=tmp_path, n=21, progress=False)


def test_cifar_dataset_matches_load(tmp_path):
    _cifar_tree(tmp_path)
    x, y = data.load("cifar10", root=tmp_path, progress=False)
    ds = data.dataset("cifar10", root=tmp_path)
    assert len(ds) == 20
    img, label = ds[7]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    assert torch.equal(img.float() / 255, x[7]) and label == int(y[7])
    assert torch.equal(ds.labels, y) and ds.names == data.load("cifar10", root=tmp_path).names


def test_corrupt_image_named(tmp_path):
    _cifar_tree(tmp_path)
    bad = tmp_path / "cifar10-jpeg" / "test" / "cat" / "0005.jpg"  # sorts after 0001.png
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"corrupt or unreadable image .*cat/0005\.jpg"):
        data.load("cifar10", root=tmp_path, progress=False)


def _official_batch(path: Path, images: np.ndarray, labels: list, extra=None) -> None:
    """A batch in the layout of the official python pickles (protocol 2, as distributed)."""
    import pickle
    blob = {"data": images.reshape(len(images), -1), "labels": labels, **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(blob, protocol=2))


class _Tampered:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_official_layout_and_tampered_batch(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    _official_batch(batch, images, [3, 1, 4, 1])
    x, y = data.load("cifar10", root=tmp_path, download=False)
    assert y.tolist() == [3, 1, 4, 1]
    np.testing.assert_array_equal((x * 255).round().numpy(), images)
    _official_batch(batch, images, [3, 1, 4, 1], extra={"x": _Tampered()})
    with pytest.raises(ValueError, match=r"corrupt or unexpected CIFAR-10 batch .*test_batch"):
        data.load("cifar10", root=tmp_path, download=False)


def test_cifar_missing_says_where_and_how(tmp_path, offline):
    with pytest.raises(FileNotFoundError) as e:
        data.load("cifar10", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert str(tmp_path / "cifar10-jpeg" / "test") in msg
    assert "<class name>/*.jpg" in msg and "download=True" in msg and "RANKCORE_DATA" in msg


def test_cifar_missing_class_folder(tmp_path):
    (tmp_path / "cifar10-jpeg" / "test" / "airplane").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="lacks the class folder 'automobile'"):
        data.load("cifar10", root=tmp_path, download=False)


# ---------------------------------------------------------------------------- ImageNet

def _imagenet_images(folder: Path, sizes=((300, 240), (200, 260), (227, 227))) -> list:
    rng = np.random.default_rng(0)
    arrays = []
    for i, (w, h) in enumerate(sizes):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"ILSVRC2012_val_{i + 1:08d}.png")
        arrays.append(a)
    return arrays


def test_imagenet_labels_txt_layout_and_preprocessing(tmp_path):
    folder = tmp_path / "imagenet-val-1300"
    (folder / "images").mkdir(parents=True)
    arrays = _imagenet_images(folder / "images")
    (folder / "labels.txt").write_text(
        "".join(f"images/ILSVRC2012_val_{i + 1:08d}.png, {lab}\n"
                for i, lab in enumerate([5, 999, 0])))
    x, y = loaded = data.load("imagenet-val", root=tmp_path, progress=False)
    assert loaded.source == "imagenet-val" and y.tolist() == [5, 999, 0]
    assert x.shape == (3, 3, 224, 224)
    # independent reference: PIL resizes the short side to 256, NumPy crops the centre
    a = Image.fromarray(arrays[0])  # 300x240 -> 320x256
    ref = np.asarray(a.resize((320, 256), Image.BILINEAR), dtype=np.float64) / 255
    ref = ref[16:240, 48:272].transpose(2, 0, 1)
    assert np.abs(x[0].numpy() - ref).mean() < 0.02
    assert data.load("imagenet-val", root=tmp_path, size=32, progress=False)[0].shape[-1] == 32


def test_imagenet_caffe_and_imagefolder_layouts(tmp_path):
    caffe = tmp_path / "imagenet-val"
    caffe.mkdir()
    _imagenet_images(caffe)
    (caffe / "val.txt").write_text("ILSVRC2012_val_00000001.png 7\n"
                                   "ILSVRC2012_val_00000002.png 8\n")
    assert data.load("imagenet-val", root=tmp_path, size=64).labels.tolist() == [7, 8]
    tree = tmp_path / "other" / "val"
    for wnid in ("n01443537", "n01440764"):  # goldfish = 1, tench = 0
        (tree / wnid).mkdir(parents=True)
        _imagenet_images(tree / wnid, sizes=((64, 64),))
    y = data.load("imagenet-val", root=tmp_path / "other", size=32).labels
    assert y.tolist() == [0, 1]


def test_imagenet_devkit_layout(tmp_path):
    """ILSVRC2012 ground truth holds devkit ids, mapped to class indices through meta.mat."""
    from scipy.io import savemat
    folder = tmp_path / "ILSVRC2012" / "val"
    folder.mkdir(parents=True)
    _imagenet_images(folder, sizes=((64, 64), (64, 80)))
    wnids = data_files.synsets()                       # class index order (sorted wnids)
    order = np.random.default_rng(0).permutation(1000)
    synsets = np.zeros(1001, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets["ILSVRC2012_ID"] = list(range(1, 1002))  # id 1001: a WordNet parent node
    synsets["WNID"] = [wnids[i] for i in order] + ["n00001740"]
    devkit = folder.parent / "devkit" / "data"
    devkit.mkdir(parents=True)
    savemat(folder.parent / "meta.mat", {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("3\n1000\n")
    y = data.load("imagenet-val", root=tmp_path, size=32, progress=False).labels
    assert y.tolist() == [int(order[2]), int(order[999])]


def test_imagenet_missing_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load("imagenet-val", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "imagenet-val-1300") in msg and "labels.txt" in msg
    assert "image-net.org" in msg and "RANKCORE_DATA" in msg and "samples" in msg


# ---------------------------------------------------------------------------- names, errors

def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as e:
        data.load("cifar100")
    for name in data.names():
        assert name in str(e.value)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="split='validation'"):
        data.load("samples", split="validation")
    with pytest.raises(ValueError, match="n=0"):
        data.load("samples", n=0)


def test_class_names(tmp_path):
    assert data.class_names("cifar10")[3] == "cat"
    names = data.class_names("imagenet", root=tmp_path)  # torchvision's metadata
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby"


# ---------------------------------------------------------------------------- real data

@needs_cifar
def test_real_cifar10_test_set():
    x, y = loaded = data.load("cifar10", progress=False)
    assert x.shape == (10000, 3, 32, 32) and loaded.source == "cifar10"
    assert torch.bincount(y).tolist() == [1000] * 10


@needs_imagenet
def test_real_imagenet_labels_match_synsets():
    loaded = data.load("imagenet-val", n=4, progress=False)
    assert loaded.images.shape == (4, 3, 224, 224)
    assert loaded.classes == data.class_names("imagenet") and len(loaded.classes) == 1000
    assert data.resolve("imagenet-auto") == "imagenet-val"
