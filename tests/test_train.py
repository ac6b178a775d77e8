"""Trainer: learning on real CIFAR-10, exact resume, checkpoint errors, transform cache."""
import dataclasses
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

import rankcore
from rankcore import train as T


def _net(seed=0):
    torch.manual_seed(seed)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(3, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def _synthetic(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _cfg(**kw):
    base = dict(arch="test-net", epochs=4, batch_size=64, schedule="onecycle", lr=0.05)
    base.update(kw)
    return T.TrainConfig(**base)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _cifar(split, n):
    if not os.environ.get("RANKCORE_DATA"):
        pytest.skip("needs RANKCORE_DATA with CIFAR-10")
    return rankcore.data.load("cifar10", split=split, n=n, seed=1)


@pytest.mark.data
def test_learns_real_cifar10_subset():
    train_data, test_data = _cifar("train", 1500), _cifar("test", 500)
    model = rankcore.train(_net(), train_data, test_data,
                           _cfg(epochs=4, lr=0.1, batch_size=100), progress=False)
    h = model.train_history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert h[-1]["train_loss"] < h[0]["train_loss"] - 0.1
    # Chance is 10%; 500 test images put 18% more than 8 standard deviations above it.
    assert h[-1]["test_top1"] > 18, h
    assert not model.training


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("extra", [dict(), dict(adv="fgsm-rs", transform="low_rank:4")])
def test_resume_after_interruption_gives_same_weights(tmp_cache, extra):
    data = _synthetic(256)
    cfg = _cfg(epochs=4, **extra)
    ref = rankcore.train(_net(), data, None, cfg, progress=False)
    ckpt = tmp_cache / "run.pt"
    # Interrupted after epoch 2 of 4 ...
    rankcore.train(_net(), data, None, cfg, checkpoint=ckpt, stop_after=2, progress=False)
    assert T.load_checkpoint(ckpt, cfg)["epoch"] == 2
    # ... and resumed in a fresh model with a different initialisation and RNG state.
    torch.manual_seed(123)
    resumed = rankcore.train(_net(seed=7), data, None, cfg, checkpoint=ckpt, resume=True,
                             progress=False)
    assert len(resumed.train_history) == 4
    for k, v in _state(ref).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert T.load_checkpoint(ckpt, cfg)["finished"]


def test_resume_after_kill_in_subprocess(tmp_cache):
    """A real SIGKILL between epochs (not a clean return) also resumes exactly."""
    import subprocess
    import sys
    import textwrap
    ckpt = tmp_cache / "killed.pt"
    script = textwrap.dedent(f"""
        import os, signal, torch, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_train import _net, _synthetic, _cfg
        import rankcore
        from rankcore import train as T
        real_save = T._io.torch_save
        def save_then_die(obj, path):
            real_save(obj, path)
            if obj["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        T._io.torch_save = save_then_die
        rankcore.train(_net(), _synthetic(128), None, _cfg(epochs=4), checkpoint={str(ckpt)!r},
                       progress=False)
    """)
    # Same thread count as this process: CPU reductions are only bitwise-reproducible then.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert T.load_checkpoint(ckpt, _cfg(epochs=4))["epoch"] == 2
    resumed = rankcore.train(_net(3), _synthetic(128), None, _cfg(epochs=4), checkpoint=ckpt,
                             resume=True, progress=False)
    ref = rankcore.train(_net(), _synthetic(128), None, _cfg(epochs=4), progress=False)
    for k, v in _state(ref).items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_cache):
    data = _synthetic(64)
    ckpt = tmp_cache / "run.pt"
    rankcore.train(_net(), data, None, _cfg(epochs=1), checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"different configuration.*'lr': \(0.05, 0.2\)"):
        rankcore.train(_net(), data, None, _cfg(epochs=1, lr=0.2), checkpoint=ckpt,
                       resume=True, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        rankcore.train(_net(), data, None, _cfg(epochs=1), checkpoint=ckpt, resume=True,
                       progress=False)
    torch.save({"weights": 1}, ckpt)
    with pytest.raises(ValueError, match="has format None"):
        T.load_checkpoint(ckpt)


def _low_rank_reference(x, k):
    """float64 NumPy truncated SVD per image and channel."""
    u, s, vt = np.linalg.svd(x.double().numpy(), full_matrices=False)
    s[..., k:] = 0
    return torch.from_numpy((u * s[..., None, :]) @ vt)


def test_transform_cache_matches_fresh_and_is_never_stale(tmp_cache):
    x, _ = _synthetic(40)
    fresh = T.transformed(x, "low_rank:3", cache=False)
    torch.testing.assert_close(fresh.double(), _low_rank_reference(x, 3).clamp(0, 1), atol=1e-5, rtol=0)
    first = T.transformed(x, "low_rank:3", tag="t")
    files = list((tmp_cache / "cache" / "rank").glob("t-low_rank3-*.pt"))
    assert len(files) == 1
    second = T.transformed(x, "low_rank:3", tag="t")
    assert torch.equal(first, fresh) and torch.equal(second, fresh)
    # Changed images (same tag, transform and k) must not read the old file.
    y = x.clone()
    y[0, 0, 0, 0] = 1 - y[0, 0, 0, 0]
    assert torch.equal(T.transformed(y, "low_rank:3", tag="t"),
                       T.transformed(y, "low_rank:3", cache=False))
    assert len(list((tmp_cache / "cache" / "rank").glob("t-low_rank3-*.pt"))) == 2
    # High-rank images are the signed residual, unclamped unless asked.
    high = T.transformed(x, "high_rank:3", tag="t")
    torch.testing.assert_close(high.double(), x.double() - _low_rank_reference(x, 3), atol=1e-5, rtol=0)
    assert high.min() < 0
    assert T.transformed(x, "high_rank:3", tag="t", clamp_high=True).min() >= 0


def test_augment_is_a_padded_crop_or_its_mirror():
    x = torch.rand(6, 3, 8, 8)
    out = T.augment(x, 2, torch.Generator().manual_seed(0))
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        crops = [c for dy in range(5) for dx in range(5) for c in
                 (xp[i, :, dy:dy + 8, dx:dx + 8], xp[i, :, dy:dy + 8, dx:dx + 8].flip(-1))]
        assert any(torch.equal(out[i], c) for c in crops)


def test_schedules():
    paper = T.preset("natural", "paper")
    spe = 391
    lrs = [T.lr_at(paper, e * spe, spe) for e in (0, 149, 150, 249, 250, 349)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    one = _cfg(epochs=3, lr=0.4, warmup=0.25)
    lrs = [T.lr_at(one, s, 10) for s in range(30)]
    assert max(lrs) == pytest.approx(0.4) and lrs[-1] == 0 and lrs[0] < 0.1


def test_presets_and_keys():
    assert T.preset("low_rank:5", "smoke").transform == "low_rank:5"
    assert T.preset("adv", "quick").adv == "fgsm-rs"
    paper = T.preset("high_rank:3", "paper")
    assert (paper.arch, paper.epochs, paper.lr, paper.momentum, paper.weight_decay,
            paper.milestones) == ("resnet50_cifar", 350, 0.1, 0.9, 5e-4, (150, 250))
    a, b = T.preset("natural", "quick"), T.preset("natural", "quick")
    assert a.key() == b.key() and a.key() != T.preset("natural", "quick", seed=1).key()
    assert T.preset("natural", "quick", milestones=[1, 2]).key() == \
        T.preset("natural", "quick", milestones=(1, 2)).key()
    with pytest.raises(ValueError, match="name='low_rank'"):
        T.preset("low_rank")
    with pytest.raises(ValueError, match="scale='huge'"):
        T.preset("natural", "huge")
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        T.preset("natural", epoch=3)
    assert callable(rankcore.train) and rankcore.TrainConfig is T.TrainConfig


def test_adversarial_examples_stay_in_ball():
    x, y = _synthetic(32)
    model = _net()
    for cfg in (_cfg(adv="fgsm-rs"), _cfg(adv="pgd", adv_steps=3)):
        xa = T._adversarial(model, x, y, cfg, torch.Generator().manual_seed(0))
        assert (xa - x).abs().max() <= cfg.adv_eps + 1e-6
        assert xa.min() >= 0 and xa.max() <= 1 and (xa != x).any()


def test_cached_trains_once_then_loads(tmp_cache, monkeypatch):
    calls = []
    data = _synthetic(128)
    monkeypatch.setattr(rankcore.models, "create", lambda name: _net())
    monkeypatch.setattr(T, "load_data", lambda cfg, split: (calls.append(split), data)[1])
    cfg = _cfg(epochs=2, arch="test-net")
    first = T.cached(cfg, progress=False, device="cpu")
    assert calls == ["train", "test"]
    second = T.cached(cfg, progress=False, device="cpu")
    assert calls == ["train", "test"]  # no second training
    for k, v in first.state_dict().items():
        assert torch.equal(v, second.state_dict()[k])
    assert [r["epoch"] for r in T.history(cfg)] == [1, 2]
    assert (T.run_dir(cfg) / "log.jsonl").read_text().count("\n") == 2
    with pytest.raises(FileNotFoundError):
        T.cached(cfg.replace(seed=5), train_if_missing=False, device="cpu")


def _ddp_worker(rank, world, init_file, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        model = rankcore.train(_plain_net(), _synthetic(128), None,
                               _cfg(epochs=2, batch_size=32, augment=False), progress=False)
        if rank == 0:
            torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def _plain_net():
    """No BatchNorm: its per-rank statistics are the one thing DDP does not average."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def test_distributed_two_ranks_match_one_process(tmp_path):
    """Two gloo ranks, each on half of every batch, end where one process ends."""
    import torch.multiprocessing as mp
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    single = rankcore.train(_plain_net(), _synthetic(128), None,
                            _cfg(epochs=2, batch_size=32, augment=False), progress=False)
    ddp = torch.load(out)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-5, rtol=1e-4)
