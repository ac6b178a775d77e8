"""The book's profiles: ``rankcore/book/profiles/<name>.yml`` (package data).

A profile is one YAML file with one block per chapter (``CHAPTER: {parameter: value}``,
checked against the chapter's parameters cell) and two reserved top-level blocks:

* ``settings`` (the runner's): ``needs_cuda: true`` makes ``run`` refuse to start without
  CUDA unless ``--allow-cpu``; ``offline: true`` says the profile never downloads.
* ``runs`` (:mod:`rankcore.book.runs`): the training scales of the named runs.

The profile *is* the training scale: chapters receive ``profile`` and nothing else names a
scale.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

#: Folder of the shipped profiles (``$RANKCORE_PROFILES`` replaces it, e.g. in tests).
PROFILES = Path(__file__).with_name("profiles")
#: Top-level keys that are not chapters.
RESERVED = ("settings", "runs")


class ProfileError(ValueError):
    """An unknown profile or a malformed profile file."""


def folder() -> Path:
    env = os.environ.get("RANKCORE_PROFILES")
    return Path(env) if env else PROFILES


def names() -> list[str]:
    """The known profiles, e.g. ``["gpu", "paper", "quick", "smoke"]``."""
    return sorted(p.stem for p in folder().glob("*.yml"))


def load(name: str) -> dict[str, dict[str, Any]]:
    """The whole profile file as ``{block: dict}`` (chapters, ``settings``, ``runs``)."""
    if not isinstance(name, str):
        raise TypeError(f"profile must be a str, got {type(name).__name__}")
    # a name, never a path: nothing outside the profiles folder is read
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or ".." in name:
        raise ProfileError(f"profile={name!r} is not a profile name (letters, digits, '_', "
                           f"'-', '.'); known profiles: {', '.join(names())}")
    path = folder() / f"{name}.yml"
    if not path.exists():
        raise ProfileError(f"unknown profile {name!r}; known profiles: {', '.join(names())}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping of chapter -> parameters")
    out = {}
    for key, value in raw.items():
        if value is not None and not isinstance(value, dict):
            raise ProfileError(f"{path}: block {key!r} must be a mapping, got {value!r}")
        out[str(key)] = dict(value or {})
    return out


def chapters(name: str) -> dict[str, dict[str, Any]]:
    """Chapter name -> its parameters in profile ``name`` (reserved blocks left out)."""
    return {k: v for k, v in load(name).items() if k not in RESERVED}


def settings(name: str) -> dict[str, Any]:
    """The runner's settings of profile ``name`` (``needs_cuda``, ``offline``); ``{}`` if none."""
    return load(name).get("settings", {})


def runs(name: str) -> dict[str, Any]:
    """The ``runs:`` block (training scales of the named runs); ``{}`` if none."""
    return load(name).get("runs", {})
