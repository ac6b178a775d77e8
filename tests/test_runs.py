"""Named runs: presets from the profiles' runs: block, the cache of trained runs (trains
once, never runs code from a cached file, retrains a corrupt one), load_model, the CLI,
and identical weights from two fresh processes."""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from rankcore import train as T
from rankcore.book.cli import register_train
from rankcore.training import checkpoint, run as training_run
from rankcore.book import runs


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def synthetic_data(monkeypatch):
    """The runs' data (rankcore.training.load_data) -> 160 random 32x32 uint8 images; records
    the splits asked for."""
    calls = []
    g = torch.Generator().manual_seed(0)
    data = {"train": ((torch.rand(160, 3, 32, 32, generator=g) * 255).to(torch.uint8),
                      torch.randint(0, 10, (160,), generator=g)),
            "test": ((torch.rand(64, 3, 32, 32, generator=g) * 255).to(torch.uint8),
                     torch.randint(0, 10, (64,), generator=g))}
    monkeypatch.setattr(training_run, "load_data",
                        lambda cfg, split, progress=False: (calls.append(split), data[split])[1])
    return calls


def _tiny(name="natural", **kw):
    return runs.preset(name, "smoke", **{"epochs": 1, "batch_size": 64, "guard_n": 16, **kw})


def test_presets_come_from_the_profile():
    assert runs.preset("low_rank:5", "smoke").transform == "low_rank:5"
    assert runs.preset("high_rank:2", "quick").transform == "high_rank:2"
    adv, l2 = runs.preset("adv", "quick"), runs.preset("adv_l2", "quick")
    assert (adv.adv, adv.adv_norm, adv.adv_eps) == ("fgsm-rs", "linf", pytest.approx(8 / 255))
    assert (l2.adv, l2.adv_norm, l2.adv_eps) == ("pgd", "l2", 0.5)
    quick = runs.preset("natural", "quick")
    assert quick.arch == "airbench_cpu" and quick.n_train is None  # all 50,000 images
    a, b = runs.preset("natural", "quick"), runs.preset("natural", "quick")
    assert a.key() == b.key() and a.key() != runs.preset("natural", "quick", seed=1).key()
    assert runs.preset("natural", "quick", milestones=[1, 2]).key() == \
        runs.preset("natural", "quick", milestones=(1, 2)).key()
    assert runs.families("quick") == ["airbench"]
    assert runs.table2_family("quick") in runs.families("quick")
    assert "natural" in runs.names("quick") and "low_rank:5" in runs.names("quick")


@pytest.mark.parametrize("args,error,match", [
    (("low_rank", "smoke"), ValueError, "name='low_rank'"),
    (("low_rank:x", "smoke"), ValueError, "name='low_rank:x'"),
    ((5, "smoke"), TypeError, "name=5"),
    (("natural", "huge"), ValueError, "huge"),
])
def test_bad_presets(args, error, match):
    with pytest.raises(error, match=match):
        runs.preset(*args)


def test_bad_preset_family_and_field():
    with pytest.raises(ValueError, match="family='resnet'"):
        runs.preset("natural", "quick", family="resnet")
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        runs.preset("natural", "smoke", epoch=3)


def test_profile_without_runs_block(tmp_path, monkeypatch):
    (tmp_path / "bare.yml").write_text("00_setup: {cifar_n: 2}\n")
    monkeypatch.setenv("RANKCORE_PROFILES", str(tmp_path))
    with pytest.raises(ValueError, match="profile='bare' has no runs: block"):
        runs.preset("natural", "bare")


def test_cached_trains_once_then_loads(tmp_cache, synthetic_data):
    """get_or_train returns a result value (issue 23): the model, its history and whether
    it came from the cache, with nothing stamped on the model."""
    cfg = _tiny(epochs=2)
    first = runs.get_or_train(cfg, progress=False, device="cpu")
    assert synthetic_data == ["train", "test"] and first.from_cache is False
    second = runs.get_or_train(cfg, progress=False, device="cpu")
    assert synthetic_data == ["train", "test"] and second.from_cache  # no second training
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k])
    assert second.history == first.history and [r["epoch"] for r in first.history] == [1, 2]
    for r in (first, second):
        assert not {"train_history", "from_cache"} & set(vars(r.model))
    again = runs.cached(cfg, progress=False, device="cpu")
    for k, v in first.model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    assert [r["epoch"] for r in runs.history(cfg)] == [1, 2]
    assert (runs.run_dir(cfg) / "log.jsonl").read_text().count("\n") == 2
    with pytest.raises(FileNotFoundError):
        runs.cached(cfg.replace(seed=5), train_if_missing=False, device="cpu")
    table = runs.summary({"natural": second, "first": first})
    assert list(table.columns[:3]) == ["run", "epochs", "test_top1"]
    assert 0 <= table.test_top1[0] <= 1 and list(table.from_cache) == [True, False]
    assert table.test_top1[0] == first.history[-1]["test_top1"]
    assert set(runs.curves({"natural": second}).run) == {"natural"}


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plant_payload(cfg, marker):
    """A finished-looking checkpoint of cfg in the cache, with a code payload inside."""
    model = T.build_model(cfg)
    state = checkpoint.state(model, torch.optim.SGD(model.parameters(), lr=0.1), cfg,
                             cfg.epochs, [_Payload(marker)])
    path = runs.run_dir(cfg) / "checkpoint.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _cli(argv):
    p = argparse.ArgumentParser()
    register_train(p.add_subparsers(dest="command"))
    args = p.parse_args(argv)
    return args.run(args)


@pytest.mark.parametrize("route", ["cached", "load_model", "cli"])
def test_payload_in_cache_never_runs_and_is_retrained(tmp_cache, synthetic_data, route):
    cfg = runs.preset("natural", "smoke")  # what "train:natural" and the CLI ask for
    marker = tmp_cache / "pwned"
    path = _plant_payload(cfg, marker)
    with pytest.warns(RuntimeWarning, match=f"cached run {path}"):
        if route == "cached":
            from_cache = runs.get_or_train(cfg, progress=False, device="cpu").from_cache
        elif route == "load_model":
            model = runs.load_model("train:natural", "smoke", device="cpu", progress=False)
            from_cache = not isinstance(model, torch.nn.Module)   # trained: the data says so
        else:
            assert _cli(["train", "natural", "--profile", "smoke", "--no-progress",
                         "--device", "cpu"]) == 0
            from_cache = runs.get_or_train(cfg, device="cpu").from_cache
    assert not marker.exists()
    assert synthetic_data == ["train", "test"]  # retrained
    assert from_cache is (route == "cli") and T.load_checkpoint(path, cfg)["finished"]


def test_corrupt_cached_run_is_named_and_retrained(tmp_cache, synthetic_data):
    cfg = _tiny()
    runs.cached(cfg, progress=False, device="cpu")
    path = runs.run_dir(cfg) / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.warns(RuntimeWarning, match=str(path)):
        result = runs.get_or_train(cfg, progress=False, device="cpu")
    assert synthetic_data == ["train", "test", "train", "test"] and not result.from_cache


def test_load_model_specs(tmp_cache, synthetic_data):
    with pytest.raises(ValueError, match="spec=''"):
        runs.load_model("", "smoke")
    with pytest.raises(ValueError, match="name='bogus'"):
        runs.load_model("train:bogus", "smoke")
    with pytest.raises(ValueError, match="family='resnet'"):
        runs.load_model("train:natural@resnet", "smoke")
    with pytest.raises(ValueError, match="no published weights"):
        runs.load_model("airbench_cpu", "smoke", device="cpu")
    trained = runs.cached(_tiny(), progress=False, device="cpu")
    torch.save(trained.state_dict(), tmp_cache / "w.pt")
    model = runs.load_model(f"airbench_cpu={tmp_cache / 'w.pt'}", "smoke", device="cpu")
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(model(x), trained(x))


def test_cli_dry_run_trains_nothing(tmp_cache, synthetic_data, capsys):
    assert _cli(["train", "natural", "low_rank:3", "--profile", "quick", "--dry-run"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["run"] for r in rows] == ["natural", "low_rank:3"]
    assert rows[1]["config"]["transform"] == "low_rank:3" and rows[0]["cached"] is False
    assert rows[0]["gpu_hours"] > 0 and synthetic_data == []
    with pytest.raises(ValueError, match="--set 'epochs'"):
        _cli(["train", "natural", "--profile", "smoke", "--set", "epochs", "--dry-run"])
    with pytest.raises(ValueError, match="names"):
        _cli(["train", "--profile", "smoke", "--dry-run"])


def _weights_digest_in_fresh_process(cache):
    script = textwrap.dedent("""
        import hashlib, torch
        from rankcore.book import runs
        model = runs.cached(runs.preset("natural", "smoke"), progress=False, device="cpu")
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode()); h.update(v.cpu().contiguous().numpy().tobytes())
        print(h.hexdigest())
    """)
    env = {**os.environ, "RANKCORE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-1]


@pytest.mark.data
def test_smoke_scale_twice_in_fresh_processes_gives_identical_weights(tmp_path):
    if not os.environ.get("RANKCORE_DATA"):
        pytest.skip("needs RANKCORE_DATA with CIFAR-10")
    a = _weights_digest_in_fresh_process(tmp_path / "a")
    b = _weights_digest_in_fresh_process(tmp_path / "b")
    assert a == b


def test_load_models_turns_weight_errors_into_skips(monkeypatch):
    from rankcore import models

    def fake(spec, profile, device=None, download=False, progress=True):
        if spec == "missing":
            raise models.WeightsMissingError("no weights for 'missing' here")
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(runs, "load_model", fake)
    loaded, skipped = runs.load_models({"a": "fine", "b": "missing"}, "smoke")
    assert list(loaded) == ["a"]
    assert skipped == {"b": "WeightsMissingError: no weights for 'missing' here"}


# The cache folders of a6b537f (the commit the quick book's models were trained at): a
# change to TrainConfig, its key or run_dir that renames them would retrain every run.
PINNED_A6B537F = [("natural", "quick", "cifar10-airbench_cpu-natural-f6d0190e6c7b1a1c"),
                  ("adv", "quick", "cifar10-airbench_cpu-adv_linf-e4092eae784bdbf9"),
                  ("low_rank:5", "smoke", "cifar10-airbench_cpu-low_rank5-becd2ce34e1b994d"),
                  ("adv_l2", "smoke", "cifar10-airbench_cpu-adv_l2-cb58bcbad9f8faf4")]


@pytest.mark.parametrize("name,profile,folder", PINNED_A6B537F)
def test_cache_keys_of_the_trained_runs_are_pinned(name, profile, folder):
    assert runs.run_dir(runs.preset(name, profile)).name == folder


#: The cache keys of the quick profile's eleven runs at a6b537f (before the trainer moved
#: into rankcore/training/ and ImageNet became its second batch source), printed there by
#: ``runs.preset(name, "quick").key()``. Their cached weights stay valid only while these hold.
QUICK_KEYS_A6B537F = {
    "natural": "f6d0190e6c7b1a1c", "adv": "e4092eae784bdbf9", "adv_l2": "5c62c91bc9b551c9",
    "low_rank:3": "26b5b319a068744b", "low_rank:5": "e1a3ad7e4be215aa",
    "low_rank:10": "7fcbb8706c32d578", "low_rank:20": "750aa8ceedc918c1",
    "high_rank:2": "d59ff1792410d0bb", "high_rank:3": "c55a7e597a67d07d",
    "high_rank:5": "6a41722976b638fc", "high_rank:10": "5721460e25c020a5"}


def test_the_quick_runs_keep_their_cache_keys():
    """Fields added to TrainConfig since (ImageNet's sides, warm-up epochs) are left out of
    the key at their defaults; setting one gives another key."""
    keys = {name: runs.preset(name, "quick").key() for name in runs.names("quick")}
    assert keys == QUICK_KEYS_A6B537F
    natural = runs.preset("natural", "quick")
    assert natural.replace(warmup_epochs=1).key() != QUICK_KEYS_A6B537F["natural"]
