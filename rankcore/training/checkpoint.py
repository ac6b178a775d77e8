"""The trainers' one checkpoint format: a self-describing dict that only the trainer writes.

``{"format", "key", "config", "code_version", "epoch", "finished", "model", "optimizer",
"history"}``: the configuration that produced it (and its cache key), how far it got, the
weights and optimiser state to resume from, and one history row per finished epoch. Read
with ``weights_only=True``, so a file holding pickled code is refused, never run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import _io

__all__ = ["CODE_VERSION", "FORMAT", "OLD_FORMATS", "REFUSED_FORMATS", "config_key", "state", "save", "load"]

#: Bumped whenever a change alters the weights a configuration produces (it is hashed into
#: the cache keys of :class:`rankcore.train.TrainConfig`, CIFAR-10 and ImageNet alike).
CODE_VERSION = 2
FORMAT = "rankcore.train/3"
#: Older formats that still load. /2 (a6b537f) differs only in the overfitting guard's
#: batch (the first guard_n test images, one class in CIFAR-10's listing order): the same
#: weights unless the old or the new guard fires, so such a checkpoint of a guarded run
#: loads with a warning.
OLD_FORMATS = ("rankcore.train/2",)
#: Formats refused with a message saying why: the ImageNet trainer's own (a6b537f and
#: before), whose configuration class, schedule and optimiser groups are gone.
REFUSED_FORMATS = {"rankcore.imagenet_training/1": (
    "was written by the former ImageNet trainer (ImageNetTrainConfig, before ImageNet became "
    "a batch source of rankcore.train); it cannot be resumed or matched to a TrainConfig "
    "(another key, another optimiser layout). Its weights are torch.load(path, "
    "weights_only=True)['model']; retrain with python -m rankcore.imagenet_training to "
    "get a checkpoint of this trainer")}


def config_key(config: Any, code_version: int = CODE_VERSION, added: dict | None = None) -> str:
    """The cache key of a configuration (a dataclass) and the code version that trains it:
    16 hex digits of the SHA-256 of both, as JSON with sorted keys.

    ``added``: field -> value of fields hashed only when they differ from that value (fields
    added after keys were in use: a configuration that leaves them alone keeps its key, and
    its cached weights stay valid).
    """
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if not (added and k in added and v == added[k])}
    blob = json.dumps({"config": fields, "code": code_version}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def state(model: nn.Module, opt: torch.optim.Optimizer, config: Any, epoch: int,
          history: list[dict]) -> dict:
    """The checkpoint of ``model`` after ``epoch`` epochs of ``config`` (a frozen dataclass
    with ``key()`` and ``epochs``)."""
    return {"format": FORMAT, "key": config.key(), "config": dataclasses.asdict(config),
            "code_version": CODE_VERSION, "epoch": epoch, "finished": epoch == config.epochs,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "history": history}


def save(model: nn.Module, opt: torch.optim.Optimizer, config: Any, epoch: int,
         history: list[dict], *, checkpoint: str | os.PathLike | None = None,
         log: str | os.PathLike | None = None) -> None:
    """Write the run's log (``log.jsonl``, one JSON line per epoch of ``history``) and then
    its checkpoint (:func:`state`), each atomically; either may be None (not written).

    The log first: a kill in between leaves the log one epoch ahead of the checkpoint, and
    the resumed run trains that epoch again and rewrites the log from the checkpoint's
    history. The other order could leave a finished checkpoint (loaded, never resumed)
    beside a log missing its last line.
    """
    if log is not None:
        _io.write_text(log, "".join(json.dumps(r) + "\n" for r in history))
    if checkpoint is not None:
        _io.torch_save(state(model, opt, config, epoch, history), checkpoint)


def load(path: str | os.PathLike, config: Any = None, map_location="cpu") -> dict:
    """A training checkpoint, read without running code (``weights_only=True``).

    Args:
        path: the file. config (optional): the configuration it must have been written
            for (compared by ``key()``). map_location: as for ``torch.load``.

    Raises:
        ValueError: the file is unreadable, truncated, holds pickled code, is no rankcore
            checkpoint, is of a refused old format (:data:`REFUSED_FORMATS`), or (with
            ``config``) was written for another configuration; the message names the file
            (and the differing fields).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for damaged or code-bearing files
        raise ValueError(f"checkpoint {path} is corrupt, unreadable or holds code: it cannot "
                         f"be read safely ({type(e).__name__}: {str(e)[:200]}); delete it to "
                         "train from scratch") from e
    found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
    if found in REFUSED_FORMATS:
        raise ValueError(f"checkpoint {path} has format {found!r}: it {REFUSED_FORMATS[found]}")
    if found not in (FORMAT, *OLD_FORMATS):
        raise ValueError(f"checkpoint {path} has format {found!r}; expected {FORMAT!r}")
    if config is not None and ckpt.get("key") != config.key():
        saved = ckpt.get("config") or {}
        diff = {k: (v, getattr(config, k)) for k, v in saved.items()
                if hasattr(config, k) and _listed(v) != _listed(getattr(config, k))}
        raise ValueError(f"checkpoint {path} was written for another configuration "
                         f"(key {ckpt.get('key')} vs {config.key()}; differing fields as "
                         f"(checkpoint, requested): {diff or 'code version'}); move it away "
                         "or use another folder")
    cfg = ckpt.get("config") or {}
    if found == "rankcore.train/2" and cfg.get("adv") == "fgsm-rs" and cfg.get("adv_guard", True):
        warnings.warn(f"checkpoint {path} ({found}) was trained with the old overfitting guard "
                      f"batch (the first guard_n={cfg.get('guard_n')} test images, one class); "
                      "its weights match a retrain unless the old or the new guard fires "
                      "(its history's adv_method says whether the old one did); delete it to "
                      "retrain with the class-balanced guard", RuntimeWarning, stacklevel=3)
    return ckpt


def _listed(v):
    return list(v) if isinstance(v, (list, tuple)) else v
