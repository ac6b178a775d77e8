"""``rankcore book check``: the pre-flight of a profile, offline, on files made in the test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rankcore import data_files, models
from rankcore.book import check, runner


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """An empty data root, a toy profile, no book notebooks, no network."""
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "big.yml").write_text(
        "settings: {needs_cuda: true}\n"
        "a: {model: resnet50, cifar: cifar10, imagenet_data: imagenet-val, n: 5}\n"
        "b: {zoo: {One: resnet50, Two: cifar_resnet20}, photos: samples,\n"
        "    mine: \"vgg19=" + str(tmp_path / "my_vgg.pth") + "\"}\n")
    for k, v in {"RANKCORE_DATA": root, "RANKCORE_PROFILES": tmp_path / "profiles",
                 "RANKCORE_BOOK_ROOT": tmp_path, "RANKCORE_MODELS": tmp_path / "downloads",
                 "RANKCORE_CACHE": tmp_path / "cache", "TORCH_HOME": tmp_path / "torch"}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setattr(data_files, "online", lambda *a, **k: False)
    monkeypatch.setattr(runner, "ROOT", tmp_path)  # a book without notebooks: profile values only
    return tmp_path


def _by_name(items):
    return {(n.chapter, n.name): n for n in items}


def test_offline_with_nothing_here_names_every_missing_need(machine, capsys):
    assert check.main("big") == 1
    out = capsys.readouterr().out
    items = _by_name(check.needs("big", online=False))
    assert items[("a", "resnet50")].status == "missing"
    assert "no network" in items[("a", "resnet50")].detail
    assert items[("a", "cifar10")].status == "missing"            # downloadable only online
    assert items[("a", "imagenet-val")].status == "missing"
    assert items[("a", "imagenet-val")].size == check.DATA_SIZES["imagenet-val"]
    assert items[("b", "samples")].status == "present"
    assert items[("b", "vgg19=" + str(machine / "my_vgg.pth"))].status == "missing"
    assert set(n.chapter for n in items.values()) == {"a", "b"}
    assert "profile 'big': no network" in out and "missing" in out


def test_fake_files_are_found_with_their_sizes(machine):
    root = machine / "data"
    (root / "cifar10-jpeg" / "test" / "cat").mkdir(parents=True)
    (root / "cifar10-jpeg" / "test" / "cat" / "0.jpg").write_bytes(b"x" * 1000)
    (root / "imagenet-val-1300" / "images").mkdir(parents=True)
    (root / "imagenet-val-1300" / "images" / "a.JPEG").write_bytes(b"y" * 500)
    (root / "imagenet-val-1300" / "labels.txt").write_text("images/a.JPEG, 3\n")
    (root / "models").mkdir()
    for name in ("resnet50", "cifar_resnet20"):
        (root / "models" / models.get_cfg(name).file).write_bytes(b"z" * 2000)
    (machine / "my_vgg.pth").write_bytes(b"w" * 300)
    items = _by_name(check.needs("big", online=False))
    assert (items[("a", "cifar10")].status, items[("a", "cifar10")].size) == ("present", 1000)
    assert items[("a", "imagenet-val")].size == len("images/a.JPEG, 3\n") + 500
    assert (items[("a", "resnet50")].status, items[("a", "resnet50")].size) == ("present", 2000)
    assert items[("b", "cifar_resnet20")].status == "present"
    assert items[("b", "vgg19=" + str(machine / "my_vgg.pth"))].size == 300
    assert check.main("big") == 0


def test_online_checkpoints_are_downloadable(machine, monkeypatch):
    monkeypatch.setattr(check, "_remote_size", lambda url, timeout=5.0: 1234)
    items = _by_name(check.needs("big", online=True))
    assert (items[("a", "resnet50")].status, items[("a", "resnet50")].size) == ("downloadable", 1234)
    assert items[("a", "cifar10")].status == "downloadable"
    assert items[("a", "imagenet-val")].status == "missing"        # never downloaded


def _trainings(machine, names: str, family: str) -> list:
    """The training needs of a profile ``big`` naming ``names`` under one ``family``."""
    (machine / "profiles" / "big.yml").write_text(
        "a: {model: 'train:natural'}\n"
        f"runs:\n  names: {names}\n  families:\n    {family}:\n"
        "      base: {arch: airbench94, epochs: 10}\n")
    return [n for n in check.needs("big", online=False) if n.kind == "training"]


def test_named_runs_of_the_runs_block_carry_gpu_hours(machine):
    trainings = _trainings(machine, "[natural, 'low_rank:5']", "airbench")
    assert {n.name for n in trainings} == {"natural@airbench", "low_rank:5@airbench"}
    assert all(n.status == "to train" and n.gpu_hours > 0 for n in trainings)


def test_a_run_without_family_is_the_profiles_first_family_and_counted_once(machine, capsys):
    trainings = _trainings(machine, "[natural]", "resnet")
    assert {n.name for n in trainings} == {"natural@resnet"} and len(trainings) == 2
    check.main("big")
    hours = trainings[0].gpu_hours
    assert f"~{hours:.1f} GPU hours of training" in capsys.readouterr().out


def test_the_real_paper_profile_runs_offline():
    """Acceptance: offline on a clean clone, the paper pre-flight runs and names what is missing."""
    proc = subprocess.run([sys.executable, "-m", "rankcore.book", "check", "--profile", "paper",
                           "--offline"], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    assert "profile 'paper': no network" in proc.stdout
    for chapter in ("02_rank_spectrum", "03_rig"):
        assert f"{chapter}:" in proc.stdout
    if proc.returncode == 1:
        assert " missing " in proc.stdout


def test_a_run_in_a_profile_without_a_runs_block_is_missing_and_says_why(machine):
    (machine / "profiles" / "big.yml").write_text("a: {one: 'train:natural', two: 'train:adv@resnet'}\n")
    needs = _by_name(n for n in check.needs("big", online=False) if n.kind == "training")
    assert set(needs) == {("a", "natural"), ("a", "adv@resnet")}
    assert all(n.status == "missing" and "has no runs: block" in n.detail for n in needs.values())


def _readme_hours() -> dict[str, int]:
    """The GPU-hour cells of the README's paper-profile table, by the row's first words."""
    import re
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = re.findall(r"^\| (the 11 CIFAR-10|the five ImageNet|all of it)[^|]*\| ~(\d+) h \|", text,
                      flags=re.M)
    return {k: int(v) for k, v in rows}


def test_the_readme_gpu_hours_are_checks_estimates():
    items = check.needs("paper", online=False)
    hours = {n.name: n.gpu_hours for n in items if n.kind == "training"}  # each run once
    cifar = sum(h for name, h in hours.items() if name.endswith("@resnet"))
    imagenet = [name for name in hours if name.endswith("@imagenet")]
    assert sorted(imagenet) == sorted(f"{r}@imagenet" for r in
                                      ["low_rank:30", "low_rank:40", "low_rank:50", "low_rank:100",
                                       "natural"])
    assert any(n.kind == "data" and n.name == "imagenet" and n.size == check.DATA_SIZES["imagenet"]
               for n in items)
    readme = _readme_hours()
    assert readme == {"the 11 CIFAR-10": round(cifar),
                      "the five ImageNet": round(sum(hours[n] for n in imagenet)),
                      "all of it": round(sum(hours.values()))}
    if all(n.status != "present" for n in items if n.kind == "training"):
        assert round(check.gpu_hours_to_train(items)) == readme["all of it"]


def test_to_train_is_not_counted_as_present_or_downloadable(machine, capsys):
    check.main("big")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "present or downloadable" not in last and " to train, " in last
