"""rankcore.data: layouts, caching, subsets, preprocessing and every error message."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


@pytest.fixture(autouse=True)
def _caches_beside_the_data(monkeypatch):
    """These tests find a data set's cache under ``<root>/cache``; CI's ``$RANKCORE_CACHE``
    (or a developer's) would move it elsewhere."""
    monkeypatch.delenv("RANKCORE_CACHE", raising=False)


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


# ---------------------------------------------------------------------------- streaming

def _fake_imagenet(root: Path, n: int, distinct: int = 16, side=(400, 300)) -> Path:
    """An ``imagenet-val-1300`` layout of ``n`` JPEGs (``distinct`` real files, the rest hard
    links to them, so a large folder costs no disk) with labels ``i % 1000``."""
    folder = root / "imagenet-val-1300"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sources = []
    for i in range(distinct):
        f = folder / "images" / f"src_{i:02d}.JPEG"
        Image.fromarray(rng.integers(0, 256, (side[1], side[0], 3), dtype=np.uint8)).save(f)
        sources.append(f)
    lines = []
    for i in range(n):
        f = folder / "images" / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        os.link(sources[i % distinct], f)
        lines.append(f"images/{f.name}, {i % 1000}\n")
    (folder / "labels.txt").write_text("".join(lines))
    return folder


def test_dataset_items_equal_load_and_loader_batches(tmp_path):
    _fake_imagenet(tmp_path, 70, distinct=4, side=(120, 90))
    x, y = data.load("imagenet-val", root=tmp_path, n=40, seed=3, size=64, workers=0,
                     progress=False)
    ds = data.dataset("imagenet-val", root=tmp_path, n=40, seed=3, size=64)
    assert len(ds) == 40 and ds.source == "imagenet-val" and torch.equal(ds.labels, y)
    item, label = ds[5]
    assert item.dtype == torch.uint8 and item.shape == (3, 64, 64) and label == int(y[5])
    assert torch.equal(item.float() / 255, x[5])
    # two worker processes deliver the same batches, in order
    batches = list(data.loader(ds, batch_size=16, workers=2))
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    assert torch.equal(torch.cat([b[0] for b in batches]).float() / 255, x)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert torch.equal(data.to_float(batches[0][0], "cpu"), x[:16])


def test_training_data_are_the_decoded_bytes(tmp_path, monkeypatch):
    """What a run trains on (``training.load_data``) is the images as decoded, uint8, with
    no float copy on the way: item for item the data set's own bytes, and ``data.load``'s
    floats are those bytes / 255."""
    from rankcore.train import TrainConfig
    from rankcore.training import load_data
    _fake_imagenet(tmp_path, 30, distinct=3, side=(90, 70))
    monkeypatch.setenv("RANKCORE_DATA", str(tmp_path))
    ds = data.dataset("imagenet-val", n=12, seed=1)
    items = torch.stack([ds[i][0] for i in range(len(ds))])
    images = data.load("imagenet-val", n=12, seed=1, workers=0, progress=False, uint8=True).images
    assert images.dtype == torch.uint8 and torch.equal(images, items)
    x, y = load_data(TrainConfig(dataset="imagenet-val", n_test=12, data_seed=1), "test")
    assert x.dtype == torch.uint8 and torch.equal(x, items) and torch.equal(y, ds.labels)
    loaded = data.load("imagenet-val", n=12, seed=1, workers=0, progress=False)
    assert torch.equal(loaded.images, items.float() / 255)


def test_loader_settings(monkeypatch):
    ds = data.dataset("samples", size=16)
    assert data.loader(ds, workers=2).num_workers == 2
    assert data.loader(ds, device="cuda").pin_memory                 # pinned for CUDA copies
    assert not data.loader(ds, device="cpu").pin_memory
    assert data.default_workers(10) == 0                              # tiny sets: no processes
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert data.default_workers(1000) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")                       # 4 torchrun processes
    assert data.default_workers(1000) == 4


def test_shard_sampler_partitions_and_reshuffles():
    shares = [list(data.ShardSampler(10, rank=r, world=3)) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(10))            # evaluation: all, once
    eq = [list(data.ShardSampler(10, True, seed=1, rank=r, world=3, drop_last=True))
          for r in range(3)]
    assert {len(s) for s in eq} == {3} and len(set(sum(eq, []))) == 9
    s = data.ShardSampler(10, shuffle=True, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert sorted(first) == sorted(s) == list(range(10)) and first != list(s)
    assert first == list(data.ShardSampler(10, shuffle=True, seed=1))  # seeded


def test_evaluate_matches_accuracy_on_tensors(tmp_path):
    """Streaming top-1/top-5 equal a float64 NumPy count on the whole tensor set."""
    from rankcore.torch_utils import evaluating
    _fake_imagenet(tmp_path, 96, distinct=8, side=(80, 60))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(12, 1000))
    model.train()
    x, y = data.load("imagenet-val", root=tmp_path, size=32, progress=False)
    with evaluating(model), torch.no_grad():
        logits = model(x).double().numpy()
    order = np.argsort(-logits, axis=1)
    top1 = float(np.mean(order[:, 0] == y.numpy()))
    top5 = float(np.mean((order[:, :5] == y.numpy()[:, None]).any(1)))
    ds = data.dataset("imagenet-val", root=tmp_path, size=32)
    r = data.evaluate(model, ds, batch_size=20, workers=1, progress=False)
    assert r == {"top1": top1, "top5": top5, "n": 96}
    assert model.training  # the caller's mode is restored
    with pytest.raises(ValueError, match="labels outside 0..999"):
        data.evaluate(model, data.dataset("samples", n=2, size=32), progress=False)


_MEMORY_PROBE = r"""
import json, resource, sys, torch
from rankcore import data
root, n = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
                            torch.nn.Linear(48, 1000))
r = data.evaluate(model, data.dataset("imagenet-val", root=root, n=n), batch_size=32,
                  workers=1, progress=False)
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"n": r["n"], "self_mb": self_kb / 1024, "child_mb": child_kb / 1024}))
"""


@pytest.mark.slow
def test_evaluation_memory_does_not_grow_with_images(tmp_path):
    """Issue 11: 1,300 ImageNet images at 224x224 cost no more memory than 130.

    Held as float32 tensors, the 1,170 extra images alone would take 672 MiB; streamed
    (uint8 batches decoded in a worker process), peak RSS of the process and of its
    worker stay within 100 MiB of each other. Each count runs in a fresh interpreter.
    """
    import json
    import subprocess
    import sys
    _fake_imagenet(tmp_path, 1300)
    # MALLOC_ARENA_MAX: with glibc's default per-thread arenas, the batches received from
    # the worker (freed on another thread) sometimes leave 350-650 MB of malloc slack in the
    # main process at 1,300 images (measured 23:20 UTC on the busy 2-core machine; not seen
    # at 22:09; never with workers=0, nor with MALLOC_ARENA_MAX=1 or the file_system sharing
    # strategy). That is allocator slack, not pixels held: this test checks the latter.
    # Open: whether the slack stays bounded for 50,000 images (see the H-data report).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    peaks = {}
    for n in (130, 1300):
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), str(n)],
                             capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
        assert peaks[n]["n"] == n
    extra_float_mb = 1170 * 3 * 224 * 224 * 4 / 2**20
    assert extra_float_mb > 650
    print(peaks)
    for key in ("self_mb", "child_mb"):
        assert peaks[1300][key] - peaks[130][key] < 100, peaks


# ---------------------------------------------------------------------------- caches, network

def test_corrupt_cache_warns_naming_it_and_rebuilds(tmp_path):
    _cifar_tree(tmp_path)
    x = data.load("cifar10", root=tmp_path, progress=False).images
    (cache,) = (tmp_path / "cache" / "data").glob("cifar10-jpeg-test-*.pt")
    cache.write_bytes(cache.read_bytes()[:100])                  # truncated
    with pytest.warns(RuntimeWarning, match=cache.name):
        again = data.load("cifar10", root=tmp_path, progress=False).images
    assert torch.equal(again, x)
    assert torch.load(cache, weights_only=True)["images"].shape == (20, 3, 32, 32)


class _Payload:
    """Unpickling this runs ``open(path, 'w')``: a stand-in for arbitrary code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cache_with_pickled_code_never_runs_it(tmp_path):
    _cifar_tree(tmp_path)
    x = data.load("cifar10", root=tmp_path, progress=False).images
    (cache,) = (tmp_path / "cache" / "data").glob("cifar10-jpeg-test-*.pt")
    marker = tmp_path / "payload-ran"
    blob = torch.load(cache, weights_only=True)
    torch.save({**blob, "x": _Payload(marker)}, cache)
    with pytest.warns(RuntimeWarning, match=cache.name):
        again = data.load("cifar10", root=tmp_path, progress=False).images
    assert not marker.exists() and torch.equal(again, x)


def test_read_only_data_root_caches_in_home(tmp_path, monkeypatch):
    monkeypatch.delenv("RANKCORE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _cifar_tree(tmp_path / "root")
    monkeypatch.setattr(os, "access", lambda path, mode: False)   # as a read-only mount
    data.load("cifar10", root=tmp_path / "root", progress=False)
    assert list((tmp_path / "home" / ".cache" / "rankcore" / "data").glob("cifar10-jpeg-*.pt"))
    assert not (tmp_path / "root" / "cache").exists()


def _fake_proxy(answer: bytes):
    """A one-connection proxy on localhost answering ``answer``; returns (url, requests)."""
    import threading
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen = []

    def serve():
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(1024).decode())
            conn.sendall(answer)
        server.close()
    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", seen


@pytest.fixture
def no_proxy_env(monkeypatch):
    for var in ("NO_PROXY", "no_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("answer, expected", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
    (b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n", True),  # HEAD refused: reached
    (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", False)])
def test_online_asks_through_the_proxy_with_urllib(monkeypatch, no_proxy_env, answer, expected):
    from rankcore import data_files
    url, seen = _fake_proxy(answer)
    monkeypatch.setenv("HTTP_PROXY", url)
    assert data_files.online("http://example.invalid/cifar.tar.gz", timeout=5) is expected
    assert seen and seen[0].startswith("HEAD http://example.invalid/cifar.tar.gz HTTP/1.1")


def test_online_sends_the_proxys_credentials(monkeypatch, no_proxy_env):
    import base64
    from rankcore import data_files
    url, seen = _fake_proxy(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    monkeypatch.setenv("HTTP_PROXY", url.replace("http://", "http://ann:s%40cret@"))
    assert data_files.online("http://example.invalid/", timeout=5)
    token = base64.b64encode(b"ann:s@cret").decode()
    assert f"Proxy-Authorization: Basic {token}" in seen[0]


def test_online_false_when_offline(offline, no_proxy_env):
    from rankcore import data_files
    assert data_files.online() is False


def test_cifar_download_is_attempted_and_its_error_reported(tmp_path, offline, no_proxy_env):
    with pytest.raises(FileNotFoundError) as e:
        data.load("cifar10", root=tmp_path)
    assert "The download failed: URLError" in str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in str(e.value)
    assert not list(tmp_path.glob("*.tar.gz"))            # nothing half-written left behind


def test_fingerprint_follows_files_labels_and_settings(tmp_path):
    folder = _fake_imagenet(tmp_path, 6, distinct=3, side=(60, 50))
    fp = lambda **kw: data.dataset("imagenet-val", root=tmp_path, **kw).fingerprint()
    first = fp()
    assert fp() == first and fp(size=32) != first and fp(n=3) != first
    assert fp(interpolation="bicubic") != first
    labels = (folder / "labels.txt").read_text()
    (folder / "labels.txt").write_text(labels.replace(", 5\n", ", 7\n"))
    assert fp() != first
    (folder / "labels.txt").write_text(labels)
    assert fp() == first
    f = folder / "images" / "ILSVRC2012_val_00000002.JPEG"
    os.unlink(f)
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(f)     # same name, new content
    assert fp() != first
    _cifar_tree(tmp_path)
    a = data.dataset("cifar10", root=tmp_path).fingerprint()
    assert a == data.dataset("cifar10", root=tmp_path).fingerprint()
    assert a != data.dataset("cifar10", root=tmp_path, n=5).fingerprint()


@pytest.fixture(scope="module")
def small_imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small-imagenet")
    _fake_imagenet(root, 12, distinct=4, side=(70, 50))
    return root


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.one_of(st.none(), st.integers(1, 12)), seed=st.integers(0, 2**31),
       size=st.integers(8, 40), interpolation=st.sampled_from(["bilinear", "bicubic"]))
def test_dataset_and_load_agree_for_any_subset_and_size(small_imagenet, n, seed, size,
                                                        interpolation):
    kw = dict(root=small_imagenet, n=n, seed=seed, size=size, interpolation=interpolation)
    x, y = data.load("imagenet-val", progress=False, workers=0, **kw)
    ds = data.dataset("imagenet-val", **kw)
    assert len(ds) == len(x) == (n or 12) and torch.equal(ds.labels, y)
    i = len(ds) - 1
    assert torch.equal(ds[i][0].float() / 255, x[i]) and ds[i][1] == int(y[i])


@needs_imagenet
def test_real_imagenet_streamed_equals_loaded():
    x, y = data.load("imagenet-val", n=24, seed=5, progress=False)
    batches = list(data.loader(data.dataset("imagenet-val", n=24, seed=5), 10, workers=2))
    assert torch.equal(torch.cat([b[0] for b in batches]).float() / 255, x)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
