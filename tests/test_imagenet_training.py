"""rankcore.imagenet_training: ImageNet-folder training with the rank-k transform on the
device, as the streamed batch source of the one trainer (rankcore.train.train).

The smoke run stands the ImageNet validation images in for a training set (an ImageFolder
``train/<wnid>/`` of links made in the test); without ``$RANKCORE_DATA`` it uses generated
JPEGs in the same layout. Small crops and ResNet-18 keep it to seconds on one CPU core.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rankcore import data, data_files
from rankcore import imagenet_training as it
from rankcore import train as T
from rankcore.training import checkpoint as checkpoints
from rankcore.training import sources

REAL = Path(os.environ["RANKCORE_DATA"]) if os.environ.get("RANKCORE_DATA") else None


def _val_listing(tmp: Path) -> tuple[list[Path], list[int], Path]:
    """Validation files and labels: the real 1,300 when present, else 60 generated JPEGs."""
    real = data.find_imagenet(REAL) if REAL is not None else None
    if real is not None and (real / "labels.txt").exists():
        files, labels = data_files.read_label_file(real / "labels.txt", real, ",")
        return files, labels, real
    folder = tmp / "generated-val"
    if (folder / "labels.txt").exists():  # made by an earlier call on the same root
        files, labels = data_files.read_label_file(folder / "labels.txt", folder, ",")
        return files, labels, folder
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        f = folder / "images" / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(f)
        lines.append(f"images/{f.name}, {i % 7}\n")
    (folder / "labels.txt").write_text("".join(lines))
    files, labels = data_files.read_label_file(folder / "labels.txt", folder, ",")
    return files, labels, folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A data root with ``imagenet/train/<wnid>/*`` (links to the validation images) and
    ``imagenet-val-1300`` (a link to the validation folder)."""
    tmp = tmp_path_factory.mktemp("imagenet")
    files, labels, val = _val_listing(tmp)
    wnids = data_files.synsets()
    for f, label in zip(files, labels):
        d = tmp / "imagenet" / "train" / wnids[label]
        d.mkdir(parents=True, exist_ok=True)
        (d / f.name).symlink_to(f)
    (tmp / "imagenet-val-1300").symlink_to(val, target_is_directory=True)
    return tmp


CONFIG = it.imagenet_config(arch="torchvision:resnet18", transform="low_rank:8", epochs=2,
                            batch_size=8, crop=48, val_size=48, val_resize=56, n_train=32,
                            n_test=16, lr=0.05)


def _model(config=CONFIG):
    return T.build_model(config)


def _train(config, train, val, out, **kw):
    """rankcore.train.train with the ImageNet command's folder layout."""
    return T.train(_model(config), train, val, config, checkpoint=out / "checkpoint.pt",
                   log=out / "log.jsonl", resume=True, progress=False, **kw)


# ---------------------------------------------------------------------------- data

def test_training_folder_is_an_imagefolder_of_the_validation_images(root):
    ds = it.train_data(dataclasses.replace(CONFIG, n_train=None), root)
    files, labels, _ = _val_listing(root)
    assert ds.source == "imagenet-train" and len(ds) == len(files)
    assert sorted(ds.labels.tolist()) == sorted(labels)
    x, label = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 48, 48) and 0 <= label < 1000
    assert data.find_imagenet_train(root) == root / "imagenet" / "train"


def test_train_augment_is_random_resized_crop_and_flip():
    im = Image.fromarray(np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3)))
    aug = it.TrainAugment(32)
    torch.manual_seed(1)
    a = [aug(im) for _ in range(6)]
    torch.manual_seed(1)
    b = [aug(im) for _ in range(6)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))                  # seeded by torch
    assert all(x.dtype == torch.uint8 and x.shape == (3, 32, 32) for x in a)
    assert len({x.float().mean().round().item() for x in a}) > 1          # crops differ
    # columns increase left to right in the source: a flipped crop decreases
    slopes = {int(np.sign(float(x[0, 0, -1]) - float(x[0, 0, 0]))) for x in a}
    assert slopes == {-1, 1}


class _Tensors(torch.utils.data.Dataset):
    """uint8 images (N, 3, H, W) and labels as a Dataset: the streamed source's input."""

    def __init__(self, x, y):
        self.x, self.y, self.labels = x, y, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def test_streamed_batches_are_rank_k_on_the_batch_device():
    """Every batch of the streamed source is the rank-k image of the loader's uint8 crop,
    per channel (float64 NumPy SVD as the reference); each image once per epoch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8, generator=g)
    ds = _Tensors(x, torch.arange(12))            # the label names the image
    for spec in ("high_rank:3", "low_rank:3"):
        config = it.imagenet_config(transform=spec, batch_size=4, crop=20, val_size=20,
                                    val_resize=24, epochs=1)
        source = sources.Streamed(ds, None, config, torch.device("cpu"), 0)
        assert source.steps == 3 and source.guard is None
        seen = []
        for xb, yb in source.batches(0, torch.Generator()):
            assert xb.dtype == torch.float32 and xb.shape == (4, 3, 20, 24)
            full = x[yb].double().numpy() / 255
            u, sv, vh = np.linalg.svd(full, full_matrices=False)
            top = (u[..., :3] * sv[..., None, :3]) @ vh[..., :3, :]
            ref = full - top if spec.startswith("high") else np.clip(top, 0, 1)
            np.testing.assert_allclose(xb.double().numpy(), ref, atol=1e-4)
            seen += yb.tolist()
        assert sorted(seen) == list(range(12))


def test_imagenet_recipe_and_its_schedules():
    c = it.imagenet_config(batch_size=512)
    assert isinstance(c, T.TrainConfig) and c.dataset == "imagenet"
    assert c.lr == pytest.approx(0.2) and c.milestones == (30, 60) and c.weight_decay == 1e-4
    assert (c.crop, c.val_size, c.val_resize) == (224, 224, 256)
    spe = 100
    assert [T.lr_at(c, round(e * spe), spe) for e in (0, 29.99, 30, 60, 89.9)] == pytest.approx(
        [0.2, 0.2, 0.02, 0.002, 0.002])
    cos = it.imagenet_config(schedule="cosine", warmup_epochs=5)
    lr = lambda e: T.lr_at(cos, round(e * spe), spe)
    assert lr(2.5) == pytest.approx(0.05)          # half-way up the linear warm-up
    assert lr(5) == pytest.approx(0.1) and lr(90) == pytest.approx(0, abs=1e-9)
    assert lr(47.5) == pytest.approx(0.05)         # half-way down the cosine: 0.1 (1 + 0) / 2
    assert it.imagenet_config(step_epochs=20).milestones == (20, 40, 60, 80)
    # the same configuration however it is spelled, hence the same key
    assert it.imagenet_config().key() == T.TrainConfig(**{
        **it.IMAGENET_RECIPE, "lr": 0.1, "milestones": (30, 60)}).key()
    assert it.imagenet_config().key() != it.imagenet_config(crop=192).key()


# ---------------------------------------------------------------------------- training

@pytest.mark.slow
def test_smoke_training_resumes_bit_identically(root, tmp_path, monkeypatch):
    seen = []
    original = T.Transform.__call__

    def spy(self, x, clamp_high=False):
        seen.append((tuple(x.shape), x.dtype, str(x.device), str(self)))
        return original(self, x, clamp_high)
    monkeypatch.setattr(T.Transform, "__call__", spy)
    train, val = it.train_data(CONFIG, root), it.val_data(CONFIG, root)
    full = _train(CONFIG, train, val, tmp_path / "a", workers=1)
    assert seen[0] == ((8, 3, 48, 48), torch.float32, "cpu", "low_rank:8")
    assert len(seen) == 2 * 32 // 8                      # every training batch, no val batch
    hist = full.train_history
    assert [r["epoch"] for r in hist] == [1, 2] and all(r["test_images"] == 16 for r in hist)
    assert all(r["train_images"] == 32 for r in hist)
    assert all(0 <= r["test_top1"] <= r["test_top5"] <= 1 for r in hist)
    assert all(np.isfinite(r["train_loss"]) for r in hist)
    # interrupted after one epoch, then resumed in a new model: the same weights
    _train(CONFIG, train, val, tmp_path / "b", workers=1, stop_after=1)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1]
    resumed = _train(CONFIG, train, val, tmp_path / "b", workers=0)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")}
                       for r in h]
    assert strip(resumed.train_history) == strip(hist)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1, 2]
    ckpt = T.load_checkpoint(tmp_path / "b" / "checkpoint.pt", CONFIG)
    assert ckpt["finished"] and ckpt["epoch"] == 2 and ckpt["format"] == checkpoints.FORMAT
    # a finished run trains nothing more
    again = _train(CONFIG, train, None, tmp_path / "b")
    assert all(torch.equal(a[k], again.state_dict()[k]) for k in a)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


_ZEROS = _Tensors(torch.zeros(8, 3, 48, 48, dtype=torch.uint8), torch.zeros(8, dtype=torch.long))


def test_checkpoint_with_code_or_another_config_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": checkpoints.FORMAT, "key": CONFIG.key(), "x": _Payload(marker)}, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt, unreadable or holds code: it cannot be read safely"):
        _train(CONFIG, _ZEROS, None, tmp_path)
    assert not marker.exists()
    torch.save({"format": checkpoints.FORMAT, "key": "0" * 16}, path)
    with pytest.raises(ValueError, match="another configuration"):
        T.load_checkpoint(path, CONFIG)
    path.write_text("<html>not a checkpoint</html>")
    with pytest.raises(ValueError, match=str(path)):
        T.load_checkpoint(path)


def test_a_checkpoint_of_the_former_imagenet_trainer_is_refused_saying_why(tmp_path):
    """``rankcore.imagenet_training/1`` (a6b537f's own format: ImageNetTrainConfig, one
    optimiser group, CODE_VERSION 1) is neither resumed nor matched to a TrainConfig."""
    path = tmp_path / "checkpoint.pt"
    model = _model()
    torch.save({"format": "rankcore.imagenet_training/1", "key": CONFIG.key(),
                "config": {"arch": "torchvision:resnet18", "transform": "low_rank:8"},
                "code_version": 1, "epoch": 2, "finished": True, "model": model.state_dict(),
                "optimizer": {}, "history": []}, path)
    for call in (lambda: T.load_checkpoint(path), lambda: T.load_checkpoint(path, CONFIG),
                 lambda: _train(CONFIG, _ZEROS,
                                None, tmp_path)):
        with pytest.raises(ValueError) as e:
            call()
        assert str(path) in str(e.value) and "'rankcore.imagenet_training/1'" in str(e.value)
        assert "former ImageNet trainer" in str(e.value) and "weights_only=True)['model']" in str(e.value)
    # what the message promises: the weights are there
    saved = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_resources_for_the_preflight(root, tmp_path):
    r = it.resources(it.imagenet_config(), root)
    train, val = r["data"]
    assert train["present"] and train["path"] == str(root / "imagenet" / "train")
    assert val["present"] and train["images"] == 1_281_167 and train["gb"] == 147.0
    assert r["gpu_hours"] == pytest.approx(90 * 1_281_167 / it.IMAGES_PER_GPU_S / 3600, abs=0.1)
    assert it.resources(None, root) == r
    missing = it.resources(it.imagenet_config(epochs=9), tmp_path)
    assert not any(d["present"] for d in missing["data"])
    assert all("image-net.org" in d["how"] for d in missing["data"])


@pytest.mark.slow
def test_command_line_runs_one_epoch(root, tmp_path):
    model = it.main(["--out", str(tmp_path / "cli"), "--root", str(root), "--device", "cpu",
                     "--arch", "torchvision:resnet18", "--epochs", "1", "--batch-size", "8",
                     "--crop", "32", "--val-size", "32", "--val-resize", "36", "--n-train", "8",
                     "--n-val", "8", "--transform", "high_rank:4", "--workers", "0"])
    assert len(model.train_history) == 1
    ckpt = T.load_checkpoint(tmp_path / "cli" / "checkpoint.pt")
    assert ckpt["config"]["transform"] == "high_rank:4" and ckpt["config"]["dataset"] == "imagenet"
    assert ckpt["config"]["n_test"] == 8 and ckpt["config"]["crop"] == 32


@pytest.mark.slow
def test_two_process_ddp_on_cpu(root, tmp_path):
    """``torchrun --nproc_per_node=2`` (gloo on the CPU): each process trains on its share,
    the validation counts of both are summed, process 0 writes the checkpoint."""
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--rdzv-endpoint=127.0.0.1:0", "--rdzv-backend=c10d",
           "-m", "rankcore.imagenet_training", "--out", str(tmp_path / "ddp"),
           "--root", str(root), "--device", "cpu", "--arch", "torchvision:resnet18",
           "--epochs", "1", "--batch-size", "8", "--crop", "32", "--val-size", "32",
           "--val-resize", "36", "--n-train", "16", "--n-val", "10", "--transform", "low_rank:4",
           "--workers", "0"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    ckpt = T.load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    (row,) = ckpt["history"]
    assert row["test_images"] == 10 and row["train_images"] == 16
    assert not any(k.startswith("module.") for k in ckpt["model"])


@pytest.mark.slow
def test_a_run_streams_imagenet_and_a_second_call_loads(root, tmp_path, monkeypatch):
    """The library's run object takes an ImageNet config like a CIFAR-10 one: its default
    data are the folders under the data root, streamed; the second call loads."""
    from rankcore.training import Run
    monkeypatch.setenv("RANKCORE_DATA", str(root))
    config = CONFIG.replace(epochs=1, n_train=16, n_test=8)
    run = Run(config, folder=tmp_path / "run")
    first = run.get_or_train(device="cpu", progress=False)
    (row,) = first.history
    assert not first.from_cache and row["train_images"] == 16 and row["test_images"] == 8
    second = run.get_or_train(device="cpu", progress=False)
    assert second.from_cache and second.history == first.history
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
