"""Safe checkpoint loading: pickles are only unpickled with code execution when asked.

A ``.pt``/``.pth``/``.th`` file is a pickle, and unpickling an untrusted pickle can run
arbitrary code. :func:`load_file` uses ``torch.load(weights_only=True)``, which rebuilds only
tensors, containers and an allow-list of plain types; anything else fails with an error
naming the file and the opt-in ``trust=True``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

#: Plain types some published checkpoints hold besides tensors (training arguments,
#: numpy scalars such as a best accuracy). Rebuilding them runs no user code.
SAFE_TYPES: list = [argparse.Namespace]
try:  # numpy scalars in older checkpoints
    import numpy as np
    SAFE_TYPES += [np.dtype, getattr(np, '_core', getattr(np, 'core', None)).multiarray.scalar]
    SAFE_TYPES += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
except (ImportError, AttributeError):  # pragma: no cover - numpy layout changes
    pass


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs arbitrary code to unpickle and ``trust=True`` was not given."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not match the architecture."""


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_file(path: str | os.PathLike, trust: bool = False, map_location: Any = "cpu") -> Any:
    """Load a checkpoint file safely.

    Args:
        path (path): the checkpoint.
        trust (bool, optional): allow arbitrary objects (full unpickling, which can run
            code from the file). Only for files whose origin you trust. Default: ``False``.
        map_location (optional): passed to ``torch.load``. Default: ``"cpu"``.

    Returns:
        Whatever the file holds (usually a dict of tensors).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs arbitrary code and ``trust`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if trust:
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_TYPES):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds objects beyond tensors and plain containers, which "
            f"could run code when unpickled ({first}). It was NOT loaded. If you trust "
            "where this file comes from, pass trust=True.") from e


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key, after checking that every key has it."""
    missing = [k for k in state if not k.startswith(prefix)]
    if missing:
        raise CheckpointMismatchError(f"expected every key to start with {prefix!r}; "
                       f"{len(missing)} do not, e.g. {missing[:3]}")
    return {k[len(prefix):]: v for k, v in state.items()}


def load_state(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``net.load_state_dict(state)``, failing with every missing/unexpected key listed.

    Args:
        net (nn.Module): the architecture.
        state (dict): the weights.
        source (str): where they came from (a file name), quoted in errors.
    """
    expected = net.state_dict()
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counter; it does not
    # affect eval-mode outputs and load_state_dict fills it in.
    missing = sorted(k for k in set(expected) - set(state)
                     if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
        parts = [f"the checkpoint {source} does not match {type(net).__name__}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if wrong:
            parts.append("shape mismatches: " + show(
                [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong]))
        raise CheckpointMismatchError("; ".join(parts))
    net.load_state_dict(state, strict=True)
