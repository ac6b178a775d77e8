"""Pre-flight of a profile: what each chapter needs and whether this machine has it.

``python -m rankcore.book check --profile paper`` (or ``rankcore book check``) lists, per
chapter, every data set, checkpoint and training run the profile's parameters name, each
``present`` (with its size on disk), ``downloadable`` (with its download size when the
server says), ``to train`` (a named run not cached yet, with its estimated GPU hours) or
``missing`` (with how to get it). It exits with status 1 when something needed is missing, including anything
downloadable while no network is reachable.

What a chapter needs is read from its parameters (the notebook's defaults overlaid with
the profile's values): every string that names a model (``rankcore.models.names()``,
``timm:``/``torchvision:`` architectures, ``NAME=PATH``), a data set
(``rankcore.data.names()``) or a named run (``train:NAME[@FAMILY]``); the profile's
``runs:`` block adds every named run the book trains.
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

#: Download sizes of data sets, in bytes (torchvision's CIFAR-10 archive; ILSVRC2012 tars,
#: which are never downloaded automatically).
DATA_SIZES = {"cifar10": 170_498_071, "imagenet-val": 6_744_924_160,
              "imagenet": 147_897_477_120}
#: Host probed to decide whether downloads can work.
PROBE_HOST = "download.pytorch.org"
#: Pseudo-chapter of the trainings the profile's ``runs:`` block lists.
RUNS = "runs (04-06)"


@dataclass
class Need:
    chapter: str
    kind: str           # "data", "checkpoint" or "training"
    name: str
    status: str         # "present", "downloadable", "to train" or "missing"
    size: int | None    # bytes on disk (present) or to download; None when unknown
    gpu_hours: float | None = None
    detail: str = ""


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for d, _, files in os.walk(path, followlinks=True):
        for f in files:
            try:
                total += (Path(d) / f).stat().st_size
            except OSError:
                pass
    return total


def _remote_size(url: str, timeout: float = 5.0) -> int | None:
    """Content-Length of ``url`` (HEAD, through ``$HTTPS_PROXY``); None when unknown."""
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 (https URLs of the registry)
            length = r.headers.get("Content-Length")
            return int(length) if length else None
    except (OSError, ValueError):
        return None


def _data_need(chapter: str, name: str, online: bool) -> Need:
    from .. import data
    resolved = data.resolve(name)
    finders = {"cifar10": data.find_cifar10, "imagenet-val": data.find_imagenet,
               "imagenet": data.find_imagenet_train}
    label = name if resolved == name else f"{name} -> {resolved}"
    if resolved not in finders:  # samples: photos shipped with installed packages
        return Need(chapter, "data", label, "present", None, detail="shipped sample photos")
    where = finders[resolved]()
    if where is not None:
        return Need(chapter, "data", label, "present", _folder_size(Path(where)), detail=str(where))
    size = DATA_SIZES.get(resolved)
    if resolved == "cifar10":
        return Need(chapter, "data", label, "downloadable" if online else "missing", size,
                    detail="torchvision downloads it" + ("" if online else "; no network"))
    return Need(chapter, "data", label, "missing", size,
                detail="put it under the data root (see data/README.md)")


def _checkpoint_need(chapter: str, spec: str, online: bool) -> Need:
    from .. import models
    name, _, path = spec.partition("=")
    if path:
        p = Path(path).expanduser()
        return Need(chapter, "checkpoint", spec, "present" if p.exists() else "missing",
                    _folder_size(p) if p.exists() else None, detail=str(p))
    cfg = models.get_cfg(name)
    if cfg.weights == "none":
        return Need(chapter, "checkpoint", name, "missing", None,
                    detail="no published weights: " + models.how_to_get(cfg))
    found = None if name.partition(":")[1] else models.find_weights(name)
    if found is not None:
        return Need(chapter, "checkpoint", name, "present", found.stat().st_size, detail=str(found))
    if cfg.url and online:
        return Need(chapter, "checkpoint", name, "downloadable", _remote_size(cfg.url), detail=cfg.url)
    return Need(chapter, "checkpoint", name, "missing", None,
                detail=(f"{cfg.url} (no network)" if cfg.url else models.how_to_get(cfg)))


def _training_need(chapter: str, name: str, family: str, profile: str) -> Need:
    from . import runs
    try:
        est = runs.estimate(name, profile, family)
    except (ValueError, TypeError) as err:
        return Need(chapter, "training", f"{name}@{family}", "missing", None, detail=str(err))
    status = "present" if est.get("cached") else "to train"
    return Need(chapter, "training", f"{name}@{family}", status, None, est.get("gpu_hours"),
                detail=est.get("dir", "") if est.get("cached") else "trained when its chapter runs")


def _imagenet_needs(chapter: str, ranks: Any, online: bool) -> list[Need]:
    """Chapter 05's ImageNet runs (Figure 15, Table 2: one per training rank and the full-rank
    model), with the GPU hours of :func:`rankcore.imagenet_training.resources`, and the
    ImageNet training set they read."""
    from .. import imagenet_training as it
    from . import ch05_low_rank_training as ch05
    out = [_data_need(chapter, "imagenet", online)]
    for name in ch05.run_names(list(ranks)):
        hours = it.resources(ch05.imagenet_config(name))["gpu_hours"]
        done = ch05.imagenet_status([name])["ready"]
        out.append(Need(chapter, "training", f"{name}@imagenet", "present" if done else "to train",
                        None, hours, detail=str(ch05.imagenet_dir(name)) if done else
                        "ResNet-50, 90 epochs: torchrun -m rankcore.imagenet_training"))
    return out


def needs(profile: str, online: bool) -> list[Need]:
    """Every need of ``profile``, in chapter order (see the module docstring)."""
    from .. import data, models
    from . import profiles, runs, runner

    chapter_values = profiles.chapters(profile)
    pages = {c.name: c for c in runner.chapters(strict=False) if c.is_notebook} \
        if (runner.ROOT / "_toc.yml").exists() else {}
    order = list(pages) + [c for c in chapter_values if c not in pages]
    model_names, data_names = set(models.names()), set(data.names())
    out: list[Need] = []
    for chapter in order:
        values = chapter_values.get(chapter, {})
        if chapter in pages:
            values = runner.effective_parameters(pages[chapter], values)
        seen: set[str] = set()
        for s in _strings(values):
            s = s.strip()
            if s in seen:
                continue
            seen.add(s)
            base = s.partition("=")[0]
            if s.startswith("train:"):
                try:
                    name, family = runs.train_spec(s, profile)
                except ValueError as err:  # no runs: block to train it with
                    out.append(Need(chapter, "training", s[len("train:"):], "missing", None,
                                    detail=str(err)))
                    continue
                out.append(_training_need(chapter, name, family, profile))
            elif base in model_names or base.startswith(("timm:", "torchvision:")):
                out.append(_checkpoint_need(chapter, s, online))
            elif s in data_names:
                out.append(_data_need(chapter, s, online))
        if chapter == "05_low_rank_training" and values.get("imagenet_ranks"):
            out += _imagenet_needs(chapter, values["imagenet_ranks"], online)
    block = profiles.runs(profile)
    if block.get("families"):
        for family in runs.families(profile):
            for name in runs.names(profile):
                out.append(_training_need(RUNS, name, family, profile))
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "?"


def report(items: list[Need], profile: str, online: bool) -> str:
    lines = [f"profile {profile!r}: {'network reachable' if online else 'no network'}"]
    chapter = None
    for n in items:
        if n.chapter != chapter:
            chapter = n.chapter
            lines.append(f"{chapter}:")
        gpu = f"  ~{n.gpu_hours:.2f} GPU h" if n.gpu_hours is not None else ""
        lines.append(f"  {n.kind:10s} {n.name:34s} {n.status:12s} {_size(n.size):>9s}{gpu}"
                     + (f"  {n.detail}" if n.detail else ""))
    count = {s: sum(n.status == s for n in items)
             for s in ("present", "downloadable", "to train", "missing")}
    download = sum(n.size or 0 for n in items if n.status == "downloadable")
    absent = sum(n.size or 0 for n in items if n.status == "missing")
    lines.append(f"{len(items)} needs: {count['present']} present, {count['downloadable']} "
                 f"downloadable ({_size(download)}), {count['to train']} to train, "
                 f"{count['missing']} missing ({_size(absent)} of known size); "
                 f"~{gpu_hours_to_train(items):.1f} GPU hours of training to do")
    return "\n".join(lines)


def gpu_hours_to_train(items: list[Need]) -> float:
    """GPU hours of the trainings not done yet; a run named by several chapters (and the
    ``runs:`` block) is trained once."""
    return sum({n.name: n.gpu_hours or 0 for n in items
                if n.kind == "training" and n.status != "present"}.values())


def main(profile: str = "paper", offline: bool = False) -> int:
    """Print the pre-flight of ``profile``; 1 when something needed is missing, else 0."""
    from ..data_files import online as reachable
    online = not offline and reachable(PROBE_HOST)
    items = needs(profile, online)
    print(report(items, profile, online))
    return 1 if any(n.status == "missing" for n in items) else 0
