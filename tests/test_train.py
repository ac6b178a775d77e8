"""Trainer: learning on real CIFAR-10, exact resume (also after kills), safe checkpoints,
transform cache, augmentation, attacks, the overfitting guard, data parallel."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import rankcore
from rankcore import train as T
from rankcore.training import checkpoint


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
    base = dict(arch="test-net", epochs=4, batch_size=64, schedule="onecycle", lr=0.05,
                guard_n=32)
    base.update(kw)
    return T.TrainConfig(**base)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _cifar(split, n):
    if not os.environ.get("RANKCORE_DATA"):
        pytest.skip("needs RANKCORE_DATA with CIFAR-10")
    return rankcore.data.load("cifar10", split=split, n=n, seed=1, progress=False)[:2]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.data
def test_airbench_learns_real_cifar10_subset():
    train_data, test_data = _cifar("train", 1500), _cifar("test", 500)
    cfg = T.TrainConfig(arch="airbench_cpu", epochs=4, batch_size=100, schedule="onecycle",
                        lr=0.4, momentum=0.85, nesterov=True, bias_lr_scale=64.0,
                        weight_decay=0.00133, label_smoothing=0.2, crop_padding=2,
                        pad_mode="reflect")
    model = T.train(T.build_model(cfg), train_data, test_data, cfg, progress=False)
    h = model.train_history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert h[-1]["train_loss"] < h[0]["train_loss"] - 0.1
    # Chance is 0.10; with 500 test images 0.18 is more than 8 standard deviations above.
    assert h[-1]["test_top1"] > 0.18, h
    assert 0 <= h[-1]["train_acc"] <= 1 and not model.training


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    cfg = T.TrainConfig(arch="airbench_cpu")
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a, b = T.build_model(cfg), T.build_model(cfg)
    assert torch.equal(torch.rand(1), before)
    _assert_same(a, b)
    c = T.build_model(cfg.replace(seed=1))
    assert not torch.equal(a.state_dict()["net.stem.weight"], c.state_dict()["net.stem.weight"])


@pytest.mark.parametrize("extra", [dict(), dict(adv="fgsm-rs", transform="low_rank:4"),
                                   dict(adv="pgd", adv_norm="l2", adv_eps=0.5, adv_steps=2,
                                        transform="high_rank:2", amp=True)])
def test_resume_after_interruption_gives_same_weights(tmp_cache, extra):
    data = _synthetic(256)
    cfg = _cfg(epochs=4, **extra)
    ref = T.train(_net(), data, None, cfg, progress=False)
    ckpt = tmp_cache / "run.pt"
    # Interrupted after epoch 2 of 4 ...
    T.train(_net(), data, None, cfg, checkpoint=ckpt, stop_after=2, progress=False)
    assert T.load_checkpoint(ckpt, cfg)["epoch"] == 2
    # ... and resumed in a fresh model with a different initialisation and RNG state.
    torch.manual_seed(123)
    resumed = T.train(_net(seed=7), data, None, cfg, checkpoint=ckpt, resume=True,
                      progress=False)
    assert len(resumed.train_history) == 4
    _assert_same(ref, resumed)
    assert T.load_checkpoint(ckpt, cfg)["finished"]


# Each kill point: (where, what the killed run left behind).
_KILLS = {
    # right after epoch 2's checkpoint was written
    "after_checkpoint": """
        real = _io.torch_save
        def hook(obj, path):
            real(obj, path)
            if obj["epoch"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        _io.torch_save = hook
    """,
    # between the log write of epoch 2 and its checkpoint save
    "between_log_and_checkpoint": """
        real = _io.write_text
        def hook(path, text):
            real(path, text)
            if text.count("\\n") == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        _io.write_text = hook
    """,
    # in the middle of epoch 3, between two optimiser steps
    "mid_epoch": """
        real = torch.optim.SGD.step
        n = [0]
        def hook(self, *a, **k):
            n[0] += 1
            if n[0] == 2 * 4 + 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *a, **k)
        torch.optim.SGD.step = hook
    """,
}


@pytest.mark.parametrize("point", sorted(_KILLS))
def test_resume_after_kill_in_subprocess(tmp_cache, point):
    """A real SIGKILL at three points resumes to the uninterrupted weights and a log with
    one line per epoch."""
    ckpt, log = tmp_cache / "killed.pt", tmp_cache / "log.jsonl"
    script = textwrap.dedent("""
        import os, signal, sys, torch
        sys.path.insert(0, {here!r})
        from test_train import _net, _synthetic, _cfg
        from rankcore import _io, train as T
    """).format(here=os.path.dirname(__file__)) + textwrap.dedent(_KILLS[point]) + \
        textwrap.dedent(f"""
        T.train(_net(), _synthetic(256), None, _cfg(epochs=4), checkpoint={str(ckpt)!r},
                log={str(log)!r}, progress=False)
    """)
    # Same thread count as this process: CPU reductions are only bitwise-reproducible then.
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert proc.returncode == -9, proc.stderr[-2000:]
    done = T.load_checkpoint(ckpt, _cfg(epochs=4))
    # The log is written before the checkpoint: a kill in between leaves it one epoch ahead.
    assert not done["finished"] and done["epoch"] == (1 if point.startswith("between") else 2)
    assert log.read_text().count("\n") == 2
    resumed = T.train(_net(3), _synthetic(256), None, _cfg(epochs=4), checkpoint=ckpt,
                      log=log, resume=True, progress=False)
    ref = T.train(_net(), _synthetic(256), None, _cfg(epochs=4), progress=False)
    _assert_same(ref, resumed)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert T.load_checkpoint(ckpt, _cfg(epochs=4))["finished"]


class _Payload:
    """Unpickling this runs ``open(path, "w")``: a checkpoint that would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def payload_checkpoint(path, marker, config):
    """A valid-looking training checkpoint of ``config`` with a code payload inside."""
    state = checkpoint.state(_net(), torch.optim.SGD(_net().parameters(), lr=0.1), config,
                             config.epochs, [])
    state["history"] = [_Payload(marker)]
    torch.save(state, path)


def test_payload_checkpoint_never_runs(tmp_cache):
    cfg = _cfg(epochs=1)
    ckpt, marker = tmp_cache / "evil.pt", tmp_cache / "pwned"
    payload_checkpoint(ckpt, marker, cfg)
    with pytest.raises(ValueError, match="holds code"):
        T.load_checkpoint(ckpt, cfg)
    with pytest.raises(ValueError, match="holds code"):
        T.train(_net(), _synthetic(64), None, cfg, checkpoint=ckpt, resume=True, progress=False)
    assert not marker.exists()


def test_corrupt_or_mismatched_checkpoint_fails_clearly(tmp_cache):
    data = _synthetic(64)
    ckpt = tmp_cache / "run.pt"
    T.train(_net(), data, None, _cfg(epochs=1), checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"another configuration.*'lr': \(0.05, 0.2\)"):
        T.train(_net(), data, None, _cfg(epochs=1, lr=0.2), checkpoint=ckpt,
                resume=True, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as by a full disk
    with pytest.raises(ValueError, match=f"checkpoint {ckpt} is corrupt"):
        T.train(_net(), data, None, _cfg(epochs=1), checkpoint=ckpt, resume=True,
                progress=False)
    torch.save({"weights": 1}, ckpt)
    with pytest.raises(ValueError, match="has format None"):
        T.load_checkpoint(ckpt)


@pytest.mark.parametrize("adv", [None, "fgsm-rs"])
def test_old_format_checkpoint_loads_and_warns_only_where_the_guard_changed(tmp_cache, adv):
    """A ``rankcore.train/2`` checkpoint (a6b537f) holds the same fields; it loads, and one
    of a guarded FGSM-RS run says its guard watched the old one-class batch."""
    import warnings
    cfg = _cfg(epochs=1, adv=adv)
    ckpt = tmp_cache / "run.pt"
    model = T.train(_net(), _synthetic(128), _synthetic(64, seed=1), cfg, checkpoint=ckpt,
                    progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert state["format"] == T.CHECKPOINT_FORMAT
    torch.save({**state, "format": "rankcore.train/2"}, ckpt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = T.load_checkpoint(ckpt, cfg)
    said = [w for w in caught if "old overfitting guard" in str(w.message)]
    assert len(said) == (adv is not None) and all(str(ckpt) in str(w.message) for w in said)
    for k, v in model.state_dict().items():
        assert torch.equal(v, old["model"][k]), k


def _low_rank_reference(x, k):
    """float64 NumPy truncated SVD per image and channel."""
    u, s, vt = np.linalg.svd(x.double().numpy(), full_matrices=False)
    s[..., k:] = 0
    return torch.from_numpy((u * s[..., None, :]) @ vt)


def test_transform_cache_matches_fresh_and_is_never_stale(tmp_cache):
    x, _ = _synthetic(40)
    fresh = T.transformed(x, "low_rank:3", cache=False)
    assert fresh.dtype == torch.uint8  # clamped images are stored as uint8
    ref = _low_rank_reference(x, 3).clamp(0, 1)
    torch.testing.assert_close(T.to_float(fresh).double(), ref, atol=0.5 / 255 + 1e-5, rtol=0)
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
    # High-rank images are the signed residual (float16), unclamped unless asked.
    high = T.transformed(x, "high_rank:3", tag="t")
    assert high.dtype == torch.float16
    torch.testing.assert_close(high.double(), x.double() - _low_rank_reference(x, 3),
                               atol=1e-3, rtol=0)
    assert high.min() < 0
    assert T.transformed(x, "high_rank:3", tag="t", clamp_high=True).min() >= 0
    # A corrupt cache file: a warning naming it, then rebuilt.
    files[0].write_bytes(b"not a tensor")
    with pytest.warns(RuntimeWarning, match=str(files[0].name)):
        again = T.transformed(x, "low_rank:3", tag="t")
    assert torch.equal(again, fresh)
    assert torch.equal(T.transformed(x, "low_rank:3", tag="t"), fresh)  # rewritten


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_augment_is_a_translation_or_its_mirror(mode):
    x = torch.rand(6, 3, 8, 8)
    out = T.augment(x, 2, torch.Generator().manual_seed(0), mode)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="constant" if mode == "zeros" else mode)
    for i in range(len(x)):
        crops = [c for dy in range(5) for dx in range(5) for c in
                 (xp[i, :, dy:dy + 8, dx:dx + 8], xp[i, :, dy:dy + 8, dx:dx + 8].flip(-1))]
        assert any(torch.equal(out[i], c) for c in crops)


def test_schedules():
    paper = T.TrainConfig()
    spe = 391
    lrs = [T.lr_at(paper, e * spe, spe) for e in (0, 149, 150, 249, 250, 349)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    one = _cfg(epochs=3, lr=0.4, warmup=0.25)
    lrs = [T.lr_at(one, s, 10) for s in range(30)]
    assert max(lrs) == pytest.approx(0.4) and lrs[-1] == 0 and lrs[0] < 0.1


def test_optimizer_gives_shifts_their_own_rate():
    cfg = _cfg(lr=0.5, bias_lr_scale=64.0, weight_decay=1e-3)
    opt = T._make_optimizer(T.build_model(cfg.replace(arch="airbench_cpu")), cfg)
    weights, shifts = opt.param_groups
    assert all(p.ndim >= 2 for p in weights["params"]) and all(p.ndim < 2 for p in shifts["params"])
    assert shifts["lr_scale"] == 64.0 and shifts["weight_decay"] == pytest.approx(1e-3 / 64)


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_adversarial_examples_stay_in_ball(norm, eps):
    x, y = _synthetic(32)
    model = _net()
    g = torch.Generator().manual_seed(0)
    for method, steps in (("fgsm-rs", 1), ("pgd", 3)):
        if method == "fgsm-rs" and norm == "l2":
            continue
        xa = T.adversarial(model, x, y, method=method, norm=norm, eps=eps, steps=steps,
                           step_size=None, generator=g)
        d = (xa - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps + 1e-5).all()
        assert xa.min() >= 0 and xa.max() <= 1 and (xa != x).any()


def test_guard_falls_back_to_two_step_pgd_on_collapse(monkeypatch):
    """When the guard's PGD accuracy collapses, the epoch is redone with 2-step PGD."""
    values = iter([0.5, 0.55, 0.1, 0.5, 0.52])  # epoch 3 collapses, its redo recovers
    monkeypatch.setattr(T, "_guard_accuracy", lambda *a: next(values))
    methods = []
    real = T._train_epoch
    monkeypatch.setattr(T, "_train_epoch", lambda *a: (methods.append(a[-1]), real(*a))[1])
    model = T.train(_net(), _synthetic(128), _synthetic(64, seed=1), _cfg(epochs=4, adv="fgsm-rs"),
                    progress=False)
    h = model.train_history
    assert methods == ["fgsm-rs", "fgsm-rs", "fgsm-rs", "pgd2", "pgd2"]
    assert [r["adv_method"] for r in h] == ["fgsm-rs", "fgsm-rs", "pgd2", "pgd2"]
    assert [r["guard_pgd_acc"] for r in h] == [0.5, 0.55, 0.5, 0.52]


def test_balanced_subset_takes_every_class_alike_and_is_seeded():
    y = torch.arange(10).repeat_interleave(100)  # sorted by class, as CIFAR-10's test listing
    idx = T.balanced_subset(y, 256, seed=0)
    counts = torch.bincount(y[idx], minlength=10)
    assert len(idx) == 256 == len(set(idx.tolist())) and counts.min() == 25 and counts.max() == 26
    assert torch.equal(idx, T.balanced_subset(y, 256, seed=0))
    assert not torch.equal(idx, T.balanced_subset(y, 256, seed=1))
    rare = torch.cat([torch.zeros(5), torch.ones(95)]).long()  # class 0 runs out: 5 + 35
    assert torch.bincount(rare[T.balanced_subset(rare, 40, 0)]).tolist() == [5, 35]
    assert len(T.balanced_subset(y[:30], 256, 0)) == 30


@pytest.mark.parametrize("with_test", [True, False])
def test_guard_watches_a_seeded_class_balanced_held_out_batch(monkeypatch, with_test):
    """Issue 23: the guard took the first guard_n test images, in CIFAR-10's listing order
    all airplanes. Now it sees every class alike, the same batch every epoch, and (without
    test data) training images that are then not trained on."""
    seen, trained_on = [], []
    monkeypatch.setattr(T, "_guard_accuracy", lambda m, xg, yg, *a: (seen.append((xg, yg)), 0.5)[1])
    real = T._train_epoch
    monkeypatch.setattr(T, "_train_epoch",
                        lambda *a: (trained_on.append(a[0].source.xs.clone()), real(*a))[1])
    x, _ = _synthetic(320)
    y = torch.arange(10).repeat_interleave(32)  # sorted by class
    test = (x[:200], torch.arange(10).repeat_interleave(20)) if with_test else None
    T.train(_net(), (x, y), test, _cfg(epochs=2, adv="fgsm-rs", guard_n=40), progress=False)
    (xg, yg), (xg2, yg2) = seen
    assert torch.bincount(yg, minlength=10).tolist() == [4] * 10
    assert torch.equal(xg, xg2) and torch.equal(yg, yg2)
    if not with_test:  # held out: 280 images left to train on, the guard's not among them
        xs = trained_on[0]
        assert len(xs) == 280
        rows = {tuple(v.flatten()[:8].tolist()) for v in xs.float()}
        assert not any(tuple((v * 255).round().flatten()[:8].tolist()) in rows for v in xg)


def test_train_module_is_plain():
    assert isinstance(rankcore.train, type(T)) and not callable(rankcore.train)
    assert callable(T.train) and not hasattr(T, "cached_runs") and not hasattr(T, "preset")


def _ddp_worker(rank, world, init_file, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        model = T.train(_plain_net(), _synthetic(128), None,
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
    single = T.train(_plain_net(), _synthetic(128), None,
                     _cfg(epochs=2, batch_size=32, augment=False), progress=False)
    ddp = torch.load(out, weights_only=True)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-5, rtol=1e-4)


def test_run_owns_its_folder_and_returns_a_result(tmp_cache):
    """rankcore.training.Run: config.json, checkpoint, log and lock in one folder; a
    result value (model, history, from_cache) instead of attributes stamped by the caller."""
    from rankcore.training import Run, RunResult
    cfg = _cfg(epochs=2, arch="airbench_cpu", batch_size=32)
    data = {"train": _synthetic(64, seed=2), "test": _synthetic(32, seed=3)}
    data = {k: (torch.nn.functional.interpolate(x, size=32), y) for k, (x, y) in data.items()}
    asked = []
    run = Run(cfg, folder=tmp_cache / "run", data=lambda split: (asked.append(split), data[split])[1])
    assert not run.finished()
    first = run.get_or_train(device="cpu", progress=False)
    assert isinstance(first, RunResult) and first.from_cache is False and asked == ["train", "test"]
    assert "train_history" not in vars(first.model)   # the history is in the result only
    assert sorted(p.name for p in run.folder.iterdir()) == [".lock", "checkpoint.pt", "config.json",
                                                           "log.jsonl"]
    assert json.loads((run.folder / "config.json").read_text())["config"]["epochs"] == 2
    second = Run(cfg, folder=run.folder, data=lambda split: pytest.fail("trained again")) \
        .get_or_train(device="cpu")
    assert second.from_cache and second.history == first.history and run.finished()
    assert [r["epoch"] for r in second.history] == [1, 2] and not second.model.training
    _assert_same(first.model, second.model)
    with pytest.raises(FileNotFoundError):
        Run(cfg.replace(seed=4), folder=tmp_cache / "other").get_or_train(train_if_missing=False)
