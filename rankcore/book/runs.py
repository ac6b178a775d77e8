"""The book's named training runs, their cache and the ``train`` command
(``python -m rankcore.book train``, or ``rankcore train``).

A named run is a :class:`rankcore.train.TrainConfig` built from a profile's ``runs:``
block (``rankcore/book/profiles/<profile>.yml``): the profile *is* the training scale
(``smoke`` seconds, ``quick`` CPU minutes, ``gpu`` one GPU, ``paper`` Section 5's
ResNet-50 schedule). Names:

- ``natural``; ``adv`` (L-inf 8/255 adversarial training); ``adv_l2`` (L2, eps 0.5);
- ``low_rank:K`` (trained on rank-K images), ``high_rank:K`` (trained on images with their
  K largest singular values removed).

Each name exists per *family* of networks: ``airbench`` (the fast airbench-style net) and
``resnet`` (a residual net of the paper's family, for Table 2's targeted steering), where
the profile trains it (:func:`families`). :func:`get_or_train` trains a configuration once
(its result: the model, its history, whether it came from the cache) and keeps it under ``cache_dir("models")``, keyed by the configuration and the training code's
version; every chapter asking for the same run gets the same model. Checkpoints are read
without running code; a corrupt one is retrained with a warning naming it.

Several GPUs: ``python -m rankcore.book train --all --profile gpu`` (:func:`train_all`)
runs the independent trainings one per visible GPU, each in its own process; one training
spread over several GPUs runs under ``torchrun --nproc_per_node=N -m rankcore.book train
NAME`` (DistributedDataParallel, SyncBatchNorm, nccl).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankcore import train as T
from rankcore.models import WeightsError
from rankcore.training import KINDS, Run, RunResult, Transform, run_folder
from rankcore.torch_utils import distributed, resolve_device

from . import profiles

__all__ = ["NAMES", "preset", "names", "families", "table2_family", "run_dir", "get_or_train",
           "cached", "train_spec", "load_model", "LOAD_ERRORS", "skip_reason", "load_models",
           "curves", "summary", "history", "estimate", "passes_per_image", "train_all",
           "train_command"]

#: The run names (``K`` a rank).
NAMES = ("natural", "adv", "adv_l2", "low_rank:K", "high_rank:K")


def _kind(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}; expected a run name such as 'natural' or 'low_rank:5'")
    if name in ("natural", "adv", "adv_l2"):
        return name
    try:
        return Transform.parse(name, "name").kind
    except ValueError:
        raise ValueError(f"name={name!r}; expected one of {', '.join(NAMES)} (K a non-negative "
                         "int)") from None


def _block(profile: str) -> dict:
    block = profiles.runs(profile)
    if not block.get("families"):
        raise ValueError(f"profile={profile!r} has no runs: block with families (training "
                         "scales); see rankcore/book/profiles/quick.yml")
    return block


def families(profile: str) -> list[str]:
    """The network families profile ``profile`` trains, e.g. ``["airbench"]``."""
    return list(_block(profile)["families"])


def table2_family(profile: str) -> str:
    """The family Table 2 (targeted steering, chapters 05-06) rests on in ``profile``."""
    block = _block(profile)
    return block.get("table2_family", "resnet" if "resnet" in block["families"] else "airbench")


def preset(name: str, profile: str = "quick", family: str | None = None,
           **overrides) -> T.TrainConfig:
    """The configuration of named run ``name`` at profile ``profile``.

    Args:
        name (str): ``"natural"``, ``"adv"``, ``"adv_l2"``, ``"low_rank:K"``, ``"high_rank:K"``.
        profile (str, optional): ``"smoke"``, ``"quick"``, ``"gpu"`` or ``"paper"``.
        family (str, optional): ``"airbench"`` or ``"resnet"``. Default: the profile's first
            family (:func:`families`).
        **overrides: any :class:`~rankcore.train.TrainConfig` field, e.g. ``epochs=20``.

    Examples::

        >>> preset("low_rank:5", "smoke").transform
        'low_rank:5'
    """
    kind = _kind(name)
    fams = _block(profile)["families"]
    family = families(profile)[0] if family is None else family
    if family not in fams:
        raise ValueError(f"family={family!r}; profile {profile!r} trains {sorted(fams)}")
    fam = fams[family] or {}
    fields = dict(fam.get("base", {}))
    fields.update(fam.get(kind, {}) or {})
    if kind in KINDS:
        fields["transform"] = name
    fields.update(overrides)
    return T.TrainConfig().replace(**fields)


def names(profile: str, chapter: str | None = None) -> list[str]:
    """The run names of a profile's ``runs.names`` list (all the book trains)."""
    return list(_block(profile).get("names", ["natural", "adv", "adv_l2"]))


def run_dir(config: T.TrainConfig) -> Path:
    """The cache folder of one configuration: ``cache_dir("models")/<...>-<key>``
    (:func:`rankcore.training.run_folder`)."""
    return run_folder(config)


def get_or_train(config: T.TrainConfig, progress: bool = True,
                 device: str | torch.device | None = None,
                 train_if_missing: bool = True) -> RunResult:
    """The run of ``config``: :meth:`rankcore.training.Run.get_or_train` (loaded from the
    cache, else trained and cached; an interrupted run resumes, a corrupt or code-bearing
    checkpoint is reported with a RuntimeWarning naming it and retrained).

    Args:
        config (TrainConfig): e.g. ``preset("low_rank:5", "quick")``.
        progress (bool, optional): show progress bars. Default: True.
        device (optional): where to train and return the model. Default: CUDA if present.
        train_if_missing (bool, optional): if False, raise FileNotFoundError instead of
            training. Default: True.

    Returns:
        RunResult: ``model`` (eval mode), ``history`` (per-epoch metrics, rates as
        fractions; what :func:`summary` and :func:`curves` read) and ``from_cache``.
    """
    return Run(config).get_or_train(device, progress=progress,
                                    train_if_missing=train_if_missing)


def cached(config: T.TrainConfig, progress: bool = True, device: str | torch.device | None = None,
           train_if_missing: bool = True) -> nn.Module:
    """The model of :func:`get_or_train` (in eval mode), for callers that need no history."""
    return get_or_train(config, progress, device, train_if_missing).model


# ------------------------------------------------------------------------- models

def train_spec(spec: str, profile: str) -> tuple[str, str]:
    """The run and family of a ``train:`` specification: ``"train:low_rank:5@resnet"`` ->
    ``("low_rank:5", "resnet")``; without ``@FAMILY``, the profile's first family (the
    default of :func:`preset`). Raises ``ValueError`` for a profile without a runs block."""
    name, _, family = spec[len("train:"):].strip().partition("@")
    return name, family or families(profile)[0]


def load_model(spec: str, profile: str = "quick", device: str | torch.device | None = None,
               download: bool = True, progress: bool = True) -> nn.Module:
    """A model from a short specification, as the book's parameters name them.

    Args:
        spec (str): ``"train:NAME"`` or ``"train:NAME@FAMILY"`` (the cached model of
            :func:`preset`, trained on first use, e.g. ``"train:adv"``,
            ``"train:low_rank:5@resnet"``), ``"NAME"`` (a :mod:`rankcore.models` name with
            its default weights) or ``"NAME=PATH"`` (with a weight file or folder).
        profile (str, optional): the profile whose ``runs:`` block sets the training scale.
        device (optional): Default: CUDA when available, else CPU.
        download (bool, optional): allow downloading missing zoo weights. Default: True.
        progress (bool, optional): progress bars while training. Default: True.

    Returns:
        nn.Module in eval mode on ``[0, 1]`` images.

    Raises:
        ValueError: a malformed spec or profile; ``rankcore.models.WeightsError`` (and its
        subclasses) for zoo weights that are missing, mismatched, unsafe or corrupt.
    """
    from rankcore import models
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"spec={spec!r}; expected 'train:NAME', 'NAME' or 'NAME=PATH'")
    device = resolve_device(device)
    if spec.startswith("train:"):
        name, family = train_spec(spec, profile)
        return cached(preset(name, profile, family), progress=progress, device=device)
    name, _, weights = spec.partition("=")
    return models.load(name.strip(), weights=weights.strip() or None, device=device,
                       download=download)


#: Load failures of :func:`load_model` that a chapter shows as a "skipped: why" line
#: instead of stopping (zoo weights missing, mismatched, unsafe or corrupt; a missing file).
LOAD_ERRORS: tuple[type[BaseException], ...] = (WeightsError, FileNotFoundError)


def skip_reason(e: BaseException) -> str:
    """Why a model was skipped, in one line: ``"ExceptionClass: first line of the message"``."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def load_models(specs: dict[str, str], profile: str, device: Any = None,
                download: bool = False) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Models by label from :func:`load_model` specifications, skipping those that fail
    with one of :data:`LOAD_ERRORS`.

    Returns:
        (dict, dict): label -> model for those that loaded, label -> :func:`skip_reason`.
    """
    loaded, skipped = {}, {}
    for label, spec in specs.items():
        try:
            loaded[label] = load_model(spec, profile=profile, device=device, download=download,
                                       progress=False)
        except LOAD_ERRORS as e:
            skipped[label] = skip_reason(e)
    return loaded, skipped


def curves(results: dict[str, RunResult]) -> "pd.DataFrame":
    """Per-epoch metrics of trained runs, long format.

    Args:
        results (dict): ``{run name: RunResult}`` from :func:`get_or_train`.

    Returns:
        DataFrame with columns ``run, epoch, test_top1, train_loss, train_acc, lr, seconds``
        (rates as fractions) and, for adversarial runs, ``adv_method, guard_pgd_acc``.
    """
    import pandas as pd
    return pd.DataFrame([{"run": name, **row} for name, r in results.items()
                         for row in r.history])


def summary(results: dict[str, RunResult]) -> "pd.DataFrame":
    """One row per run (``{run name: RunResult}`` of :func:`get_or_train`): final and best
    full-rank test top-1 (fractions), epochs, minutes, whether it came from the cache."""
    import pandas as pd
    rows = []
    for name, r in results.items():
        h = r.history
        tops = [row["test_top1"] for row in h if row.get("test_top1") is not None]
        rows.append({"run": name, "epochs": len(h), "test_top1": tops[-1] if tops else None,
                     "best_test_top1": max(tops) if tops else None,
                     "train_loss": h[-1]["train_loss"] if h else None,
                     "train_minutes": round(sum(row["seconds"] for row in h) / 60, 2),
                     "cpu_minutes": round(sum(row.get("cpu_seconds", math.nan) for row in h) / 60, 2),
                     "from_cache": r.from_cache})
    return pd.DataFrame(rows)


def history(config: T.TrainConfig) -> list[dict]:
    """Per-epoch metrics of a cached, finished run (raises FileNotFoundError if none)."""
    return get_or_train(config, progress=False, train_if_missing=False, device="cpu").history


def _finished(config: T.TrainConfig) -> bool:
    return Run(config).finished()


#: Assumed image passes per second of one training step (forward + backward) on one
#: H100 in bfloat16: rough planning figures for :func:`estimate`, not measurements
#: (``bench/train_bench.py --gpu-rows`` prints each beside the measured rate).
GPU_IMAGES_PER_S = {"airbench_cpu": 150_000, "airbench94": 60_000, "cifar_resnet20": 40_000,
                     "resnet50_cifar": 5_000}


def passes_per_image(config: T.TrainConfig) -> int:
    """Forward-backward passes one training image costs: 1, plus one per attack step
    (FGSM-RS takes one)."""
    return {None: 1, "fgsm-rs": 2}.get(config.adv, 1 + config.adv_steps)


def estimate(name: str, profile: str, family: str | None = None) -> dict:
    """Rough GPU hours of a named run and whether it is cached already.

    Returns:
        dict: ``gpu_hours`` (float, image passes x attack steps over an assumed H100
        rate), ``cached`` (bool), ``dir`` (str).
    """
    c = preset(name, profile, family)
    n = c.n_train or 50_000
    rate = GPU_IMAGES_PER_S.get(c.arch, 5_000)
    return {"gpu_hours": round(n * c.epochs * passes_per_image(c) / rate / 3600, 4),
            "cached": _finished(c), "dir": str(run_dir(c))}


# ----------------------------------------------------------------- command line

def train_all(names_: list[str], profile: str, family: str | None = None,
              overrides: dict | None = None, devices: list[str] | None = None,
              progress: bool = True) -> list[dict]:
    """Train several named runs; with several GPUs, one run per GPU at a time.

    Args:
        names_ (list of str): run names. profile (str). family (str).
        overrides (dict, optional): TrainConfig fields applied to every run.
        devices (list of str, optional): e.g. ``["cuda:0", "cuda:1"]``. Default: every
            visible GPU, else the CPU. With two or more devices each run is a separate
            process (``python -m rankcore.book train NAME --device cuda:i``) and each device
            works through its share of the runs in order; the cache's file lock keeps two
            processes from training the same configuration.

    Returns:
        list of dicts, one per run (``run``, ``dir``, ``test_top1`` or ``returncode``).
    """
    overrides = dict(overrides or {})
    configs = [preset(n, profile, family, **overrides) for n in names_]  # validate first
    if devices is None:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    if len(devices) < 2 or len(names_) < 2:
        out = []
        for n, c in zip(names_, configs):
            out.append(_report(n, c, get_or_train(c, progress=progress, device=devices[0])))
        return out
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    sets = [f"{k}={v}" for k, v in overrides.items()]

    def worker(i: int) -> list[dict]:
        done = []
        for n in names_[i::len(devices)]:
            cmd = [sys.executable, "-m", "rankcore.book", "train", n, "--profile", profile,
                   "--device", devices[i], "--no-progress"] + (["--family", family] if family else [])
            if sets:
                cmd += ["--set", *sets]
            rc = subprocess.run(cmd).returncode
            done.append({"run": n, "device": devices[i], "returncode": rc})
        return done

    with ThreadPoolExecutor(len(devices)) as pool:
        return [r for part in pool.map(worker, range(len(devices))) for r in part]


def _report(name: str, config: T.TrainConfig, result: RunResult) -> dict:
    last = result.history[-1] if result.history else {}
    return {"run": name, "dir": str(run_dir(config)), "epochs": last.get("epoch"),
            "test_top1": last.get("test_top1"), "from_cache": result.from_cache}


def _parse_sets(items: list[str]) -> dict:
    import yaml
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"--set {item!r}; expected FIELD=VALUE")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:  # e.g. a !!python/object tag: refused, nothing built
            raise ValueError(f"--set {item!r}: the value is not plain YAML "
                             f"({' '.join(str(e).split())[:120]})") from None
    return out


def train_command(names_: list[str], profile: str = "quick", family: str | None = None,
                  sets: list[str] | None = None, device=None, dry_run: bool = False,
                  all_runs: bool = False, progress: bool = True) -> list[dict]:
    """What ``rankcore train`` does: validate, then train (or, ``dry_run``, only describe)
    the named runs; under ``torchrun`` one run spread over the processes' GPUs."""
    import json
    if all_runs:
        names_ = list(names_) + [n for n in names(profile) if n not in names_]
    if not names_:
        raise ValueError("names: give at least one run name (or --all)")
    overrides = _parse_sets(sets)
    configs = [preset(n, profile, family, **overrides) for n in names_]
    if dry_run:
        out = [{"run": n, "dir": str(run_dir(c)), "config": dataclasses.asdict(c),
                **estimate(n, profile, family)} for n, c in zip(names_, configs)]
        for r in out:
            print(json.dumps(r, default=str))
        return out
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        from rankcore.torch_utils import init_distributed
        dev = resolve_device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        init_distributed(dev)
        out = [_report(n, c, get_or_train(c, progress=progress, device=dev))
               for n, c in zip(names_, configs)]
    else:
        devices = None if device is None else [str(resolve_device(device))]
        out = train_all(names_, profile, family, overrides, devices, progress)
    if distributed()[0] == 0:
        for r in out:
            print(json.dumps(r, default=str))
    return out


