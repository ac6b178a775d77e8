"""rankcore.imagenet_training: ImageNet-folder training with the rank-k transform on the device.

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


CONFIG = it.ImageNetTrainConfig(arch="torchvision:resnet18", transform="low_rank:8", epochs=2,
                                batch_size=8, crop=48, val_size=48, val_resize=56, n_train=32,
                                n_val=16, lr=0.05)


def _model(config=CONFIG):
    torch.manual_seed(0)
    return it.build_model(config)


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


def test_rank_transform_is_rank_k_on_the_batch_device():
    x = torch.rand(2, 3, 20, 24)
    y = it.rank_transform(x, "low_rank:3")
    s = np.linalg.svd(y.double().numpy(), compute_uv=False)  # (2, 3, 20)
    assert y.device == x.device and float(y.min()) >= 0 and float(y.max()) <= 1
    # clamping to [0, 1] adds little energy beyond rank 3
    assert (s[..., 3:].sum(-1) < 0.02 * s.sum(-1)).all()
    ref = x.double().numpy()
    u, sv, vh = np.linalg.svd(ref, full_matrices=False)
    high = ref - (u[..., :3] * sv[..., None, :3]) @ vh[..., :3, :]
    np.testing.assert_allclose(it.rank_transform(x, "high_rank:3").double().numpy(), high, atol=1e-5)
    assert it.rank_transform(x, None) is x


def test_lr_schedules():
    c = it.ImageNetTrainConfig(batch_size=512)
    assert c.peak_lr == pytest.approx(0.2)
    assert [it.lr_at(c, e) for e in (0, 29.99, 30, 60, 89.9)] == pytest.approx(
        [0.2, 0.2, 0.02, 0.002, 0.002])
    cos = it.ImageNetTrainConfig(schedule="cosine", warmup_epochs=5)
    assert it.lr_at(cos, 2.5) == pytest.approx(0.05)
    assert it.lr_at(cos, 5) == pytest.approx(0.1) and it.lr_at(cos, 90) == pytest.approx(0, abs=1e-9)
    assert it.lr_at(cos, 47.5) == pytest.approx(0.05)


# ---------------------------------------------------------------------------- training

@pytest.mark.slow
def test_smoke_training_resumes_bit_identically(root, tmp_path, monkeypatch):
    seen = []
    original = it.rank_transform

    def spy(x, spec, clamp_high=False):
        seen.append((tuple(x.shape), x.dtype, str(x.device), spec))
        return original(x, spec, clamp_high)
    monkeypatch.setattr(it, "rank_transform", spy)
    train, val = it.train_data(CONFIG, root), it.val_data(CONFIG, root)
    full = it.train(_model(), CONFIG, train, val, out_dir=tmp_path / "a", workers=1,
                    progress=False)
    assert seen[0] == ((8, 3, 48, 48), torch.float32, "cpu", "low_rank:8")
    assert len(seen) == 2 * 32 // 8                      # every training batch, no val batch
    hist = full.train_history
    assert [r["epoch"] for r in hist] == [1, 2] and all(r["val_images"] == 16 for r in hist)
    assert all(0 <= r["val_top1"] <= r["val_top5"] <= 1 for r in hist)
    assert all(np.isfinite(r["train_loss"]) for r in hist)
    # interrupted after one epoch, then resumed in a new model: the same weights
    it.train(_model(), CONFIG, train, val, out_dir=tmp_path / "b", workers=1, progress=False,
             stop_after=1)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1]
    resumed = it.train(_model(), CONFIG, train, val, out_dir=tmp_path / "b", workers=0,
                       progress=False)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                       for r in h]
    assert strip(resumed.train_history) == strip(hist)
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in log] == [1, 2]
    ckpt = it.load_checkpoint(tmp_path / "b" / "checkpoint.pt", CONFIG)
    assert ckpt["finished"] and ckpt["epoch"] == 2
    # a finished run trains nothing more
    again = it.train(_model(), CONFIG, train, out_dir=tmp_path / "b", progress=False)
    assert all(torch.equal(a[k], again.state_dict()[k]) for k in a)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_checkpoint_with_code_or_another_config_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": it.CHECKPOINT_FORMAT, "key": CONFIG.key(), "x": _Payload(marker)}, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} is corrupt, unreadable or holds code: it cannot be read safely"):
        it.train(_model(), CONFIG, [(torch.zeros(3, 48, 48, dtype=torch.uint8), 0)] * 8,
                 out_dir=tmp_path, progress=False)
    assert not marker.exists()
    torch.save({"format": it.CHECKPOINT_FORMAT, "key": "0" * 16}, path)
    with pytest.raises(ValueError, match="another configuration"):
        it.load_checkpoint(path, CONFIG)
    path.write_text("<html>not a checkpoint</html>")
    with pytest.raises(ValueError, match=str(path)):
        it.load_checkpoint(path)


def test_resources_for_the_preflight(root, tmp_path):
    r = it.resources(it.ImageNetTrainConfig(), root)
    train, val = r["data"]
    assert train["present"] and train["path"] == str(root / "imagenet" / "train")
    assert val["present"] and train["images"] == 1_281_167 and train["gb"] == 147.0
    assert r["gpu_hours"] == pytest.approx(90 * 1_281_167 / it.IMAGES_PER_GPU_S / 3600, abs=0.1)
    missing = it.resources(it.ImageNetTrainConfig(epochs=9), tmp_path)
    assert not any(d["present"] for d in missing["data"])
    assert all("image-net.org" in d["how"] for d in missing["data"])


@pytest.mark.slow
def test_command_line_runs_one_epoch(root, tmp_path):
    model = it.main(["--out", str(tmp_path / "cli"), "--root", str(root), "--device", "cpu",
                     "--arch", "torchvision:resnet18", "--epochs", "1", "--batch-size", "8",
                     "--crop", "32", "--val-size", "32", "--val-resize", "36", "--n-train", "8",
                     "--n-val", "8", "--transform", "high_rank:4", "--workers", "0"])
    assert len(model.train_history) == 1
    assert it.load_checkpoint(tmp_path / "cli" / "checkpoint.pt")["config"]["transform"] == "high_rank:4"


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
    ckpt = it.load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    (row,) = ckpt["history"]
    assert row["val_images"] == 10 and row["train_images"] == 16
    assert not any(k.startswith("module.") for k in ckpt["model"])
