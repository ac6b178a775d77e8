"""Weight files: safe reading, digests, where they are looked for, downloads.

A ``.pt``/``.pth``/``.th`` file is a pickle, and unpickling an untrusted pickle can run
arbitrary code. :func:`load_file` never does unless ``trust=True``:

1. the file must start like a checkpoint (zip or pickle magic), else it is not one
   (:class:`CorruptCheckpointError`, e.g. an HTML page saved as ``.pt``);
2. torch's own tensor-only reader, ``torch.load(weights_only=True)``, rebuilds tensors,
   containers and a few plain types; rankcore runs no unpickler of its own, so nothing in
   a file can reach a real object beyond what that reader allows (an earlier hand-written
   one let a file rewrite ``torch._utils._rebuild_tensor_v2`` for the whole process);
3. the ``robustness`` checkpoints carry dill-pickled functions from ``__main__``: under
   dill's few global names the reader gets placeholders that build nothing, and those
   functions are dropped with a warning naming them. Any other global refuses the file
   (:class:`UnsafeCheckpointError`, naming the globals), unless ``trust=True``.

Errors share one base class, :class:`WeightsError`, so callers can turn any per-model
failure into a "skipped: why" line.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import collections
import hashlib
import os
import pickle
import pickletools
import re
import urllib.error
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import safetensors.torch
import torch
from torch import nn


class WeightsError(Exception):
    """Base class: a model's weights are missing, mismatched, unsafe or corrupt."""


class WeightsMissingError(WeightsError, FileNotFoundError):
    """No weight file here and none could be downloaded (the message says how to get it)."""


class WeightsMismatchError(WeightsError, ValueError):
    """A checkpoint's keys or shapes do not match the architecture."""


class UnsafeCheckpointError(WeightsError, pickle.UnpicklingError):
    """The weights themselves are pickled code; only ``trust=True`` can load them."""


class CorruptCheckpointError(WeightsError, ValueError):
    """The file is not a checkpoint (HTML, text, truncated) or its SHA-256 is wrong."""


CheckpointMismatchError = WeightsMismatchError  # the name before the split


class DroppedObjectsWarning(UserWarning):
    """Parts of a checkpoint were pickled code and were dropped unread (never run)."""


# ============================================================================ digests, magic

_DIGESTS: dict[tuple, str] = {}


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (remembered per path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def check_sha256(path: str | os.PathLike, expected: str | None, origin: str = "") -> None:
    """Raise :class:`CorruptCheckpointError` when the file's SHA-256 does not start with
    ``expected`` (a full digest, or the prefix a file name carries); no-op for ``None``."""
    if not expected:
        return
    got = sha256(path)
    if not got.startswith(expected.lower()):
        raise CorruptCheckpointError(
            f"checkpoint {path} has SHA-256 {got[:16]}..., but {origin or 'its source'} "
            f"publishes {expected[:16]}...: the file is damaged or a different file. "
            "Delete it and download it again.")


def _magic_problem(head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) is not a torch checkpoint, or ``None`` if it is."""
    if head.startswith(b"PK\x03\x04"):           # torch >= 1.6 zip
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # legacy pickle
        return None
    if len(head) > 262 and head[257:262] == b"ustar":               # torch < 0.4 tar
        return None
    if not head:
        return "it is empty"
    text = head.lstrip()[:15].lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head")):
        return "it is an HTML/XML page (a download that returned a web page?)"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head[:256])
    if printable > 0.95 * min(len(head), 256):
        return f"it is a text file starting with {head[:40].decode('ascii', 'replace')!r}"
    return f"it starts with bytes {head[:8].hex()}, neither zip nor pickle"


def check_magic(path: str | os.PathLike, origin: str = "") -> None:
    """Raise :class:`CorruptCheckpointError` when ``path`` does not start like a checkpoint."""
    with open(path, "rb") as f:
        problem = _magic_problem(f.read(512))
    if problem:
        raise CorruptCheckpointError(f"{path} is not a checkpoint: {problem}"
                                     + (f" (from {origin})" if origin else ""))


# ============================================================================ tensor-only reading

class _Dropped:
    """Stands for an object the file would need code to rebuild. It is never called and
    accepts no state, so a file can neither run it nor change anything through it."""
    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __setstate__(self, state: Any) -> None:  # BUILD on a placeholder: ignored
        return None

    def __repr__(self) -> str:
        return f"<dropped {self.what}>"

    def __reduce__(self):  # pragma: no cover - never pickled back
        raise TypeError("a dropped checkpoint object cannot be pickled")


def _placeholder(name: str):
    """A stand-in for the global ``name``: calling it builds a :class:`_Dropped`, nothing else."""
    def build(*args: Any, **kwargs: Any) -> _Dropped:
        return _Dropped(name)
    build.__qualname__ = build.__name__ = f"placeholder for {name}"
    return build


#: Plain types some published checkpoints hold besides tensors (training arguments, numpy
#: scalars such as a best accuracy), allowed in ``torch.load(weights_only=True)``.
SAFE_TYPES: list = [argparse.Namespace]
try:
    _np_core = getattr(np, "_core", None) or np.core
    SAFE_TYPES += [np.dtype, _np_core.multiarray.scalar]
    SAFE_TYPES += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
except AttributeError:  # pragma: no cover - numpy layout changes
    pass

#: The globals with which dill pickles a ``__main__`` function by value (the ``robustness``
#: checkpoints' schedules and arguments). torch's tensor-only unpickler hands out
#: placeholders under these names, so such a function is read as a :class:`_Dropped` and
#: never built; every other global outside torch's own allow-list refuses the file.
_DILL_FUNCTION_GLOBALS = ("dill._dill._create_function", "dill._dill._create_code",
                          "dill._dill._create_cell", "dill._dill._load_type",
                          "dill._dill._import_module")
_PLACEHOLDERS: list = [(_Dropped, f"{__name__}._Dropped")]
_PLACEHOLDERS += [(_placeholder(g), g) for g in _DILL_FUNCTION_GLOBALS]
# dill writes a __main__ function's globals as a reference to __main__'s namespace
_PLACEHOLDERS += [(_Dropped("__main__ globals"), g)
                  for g in ("__builtin__.__main__", "builtins.__main__", "__main__.__dict__")]


def _blocking_globals(path: Path, reason: str) -> list[str]:
    """The globals of ``path`` that torch's tensor-only reader refuses: a static scan of
    the pickle opcodes, nothing built. ``reason`` (torch's error) names one if all else fails."""
    with torch.serialization.safe_globals(SAFE_TYPES + _PLACEHOLDERS):
        try:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except ValueError:  # not a zip: the legacy format, read below
            pass
        except Exception:
            return re.findall(r"GLOBAL (\S+) was not an allowed global", reason)[:1]
        try:
            from torch import _weights_only_unpickler as wo
            allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
            found = set()
            with open(path, "rb") as f:
                for _ in range(4):  # magic number, protocol, system info, then the object
                    for op, arg, _ in pickletools.genops(f):
                        if op.name in ("GLOBAL", "INST"):  # protocol 2 writes Python 2 names
                            module, name = arg.split(" ", 1)
                            module, name = _compat_pickle.NAME_MAPPING.get((module, name),
                                                                           (module, name))
                            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
                            found.add(f"{module}.{name}")
            return sorted(found - allowed)
        except Exception:  # pragma: no cover - torch's private layout changed
            return re.findall(r"GLOBAL (\S+) was not an allowed global", reason)[:1]


def _read_tensors_only(path: Path, map_location: Any) -> Any:
    """``torch.load(weights_only=True)`` with the placeholders; refuse anything else."""
    try:
        with torch.serialization.safe_globals(SAFE_TYPES + _PLACEHOLDERS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e)
        blocking = _blocking_globals(path, reason)
        detail = (f"it needs {', '.join(blocking)}" if blocking else
                  "torch's tensor-only reader refused it: "
                  + (re.findall(r"WeightsUnpickler error:\s*([^\n]+)", reason) or [reason])[0][:200])
        raise UnsafeCheckpointError(
            f"checkpoint {path} holds pickled code, not only tensors ({detail}); reading it "
            "means running code from the file. It was NOT loaded; if you trust where it comes "
            "from, pass trust=True.") from None
    except Exception as e:  # truncated zip, bad pickle stream, ...
        raise CorruptCheckpointError(f"checkpoint {path} is unreadable ({type(e).__name__}: "
                                     f"{str(e).strip()[:200]})") from e


def _prune(obj: Any, where: str, dropped: list[str]) -> Any:
    """``obj`` without the placeholders inside dicts/lists (their paths go to ``dropped``)."""
    if isinstance(obj, _Dropped):
        dropped.append(f"{where or '<file>'} ({obj.what})")
        return obj
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            v = _prune(v, f"{where}.{k}" if where else str(k), dropped)
            if not isinstance(v, _Dropped):
                out[k] = v
        return out
    if isinstance(obj, (list, tuple)):
        items = [_prune(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        if any(isinstance(v, _Dropped) for v in items):
            return _Dropped(f"a {type(obj).__name__} holding pickled code")
        return type(obj)(items) if isinstance(obj, list) else tuple(items)
    return obj


#: Top-level keys that hold the network's weights: dropping one of them is not an option.
_WEIGHT_KEYS = ("model", "state_dict", "net", "module", "weights")


def _drop_placeholders(blob: Any, path: Path) -> Any:
    """``blob`` without the placeholders of dill functions, which are named in a warning."""
    dropped: list[str] = []
    blob = _prune(blob, "", dropped)
    if isinstance(blob, _Dropped):
        raise UnsafeCheckpointError(
            f"checkpoint {path} is a pickled {blob.what} object, not tensors: reading it "
            "means running code from the file. It was NOT loaded; if you trust where it "
            "comes from, pass trust=True.")
    needed = [d for d in dropped if d.split(" ")[0] in _WEIGHT_KEYS]
    if needed or (dropped and not blob):
        raise UnsafeCheckpointError(
            f"checkpoint {path}: the weights themselves are pickled objects "
            f"({', '.join(needed or dropped)}), not tensors; reading them means running code "
            "from the file. It was NOT loaded; if you trust where it comes from, pass "
            "trust=True.")
    if dropped:
        warnings.warn(f"checkpoint {path}: dropped {len(dropped)} pickled function(s) that "
                      f"would need code to rebuild, without running them: "
                      f"{', '.join(dropped[:8])}" + (" ..." if len(dropped) > 8 else ""),
                      DroppedObjectsWarning, stacklevel=3)
    return blob


def load_file(path: str | os.PathLike, trust: bool = False, map_location: Any = "cpu") -> Any:
    """Read a checkpoint file without running code from it (unless ``trust=True``).

    Args:
        path (path): the checkpoint.
        trust (bool, optional): full unpickling, which can run code from the file. Only
            for files whose origin you trust. Default: ``False``.
        map_location (optional): passed to ``torch.load``. Default: ``"cpu"``.

    Returns:
        What the file holds (usually a dict of tensors), minus dill-pickled functions
        (dropped with a :class:`DroppedObjectsWarning` naming them).

    Raises:
        WeightsMissingError: no such file. CorruptCheckpointError: not a checkpoint, or
        unreadable. UnsafeCheckpointError: the file needs globals beyond tensors and
        dill's function constructors (named), or its weights are pickled objects.
    """
    if not isinstance(trust, bool):
        raise TypeError(f"trust={trust!r}; expected True or False")
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":  # a tensor-only format: nothing to unpickle
        try:
            return safetensors.torch.load_file(str(path), device=str(map_location))
        except Exception as e:
            raise CorruptCheckpointError(f"checkpoint {path} is unreadable ({e})") from e
    check_magic(path)
    if trust:
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except (ModuleNotFoundError, AttributeError) as e:  # e.g. dill, or a script's class
            raise UnsafeCheckpointError(
                f"checkpoint {path}: trust=True unpickles its code, which needs what the "
                f"file was saved with ({type(e).__name__}: {e}). Install that, or load "
                "without trust=True: the tensors are then read and the code dropped.") from e
    return _drop_placeholders(_read_tensors_only(path, map_location), path)


# ============================================================================ state dicts

def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key, after checking that every key has it."""
    missing = [k for k in state if not k.startswith(prefix)]
    if missing:
        raise WeightsMismatchError(f"expected every key to start with {prefix!r}; "
                                   f"{len(missing)} do not, e.g. {missing[:3]}")
    return {k[len(prefix):]: v for k, v in state.items()}


def load_state(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``net.load_state_dict(state)``, failing with every missing/unexpected key listed.

    Args:
        net (nn.Module): the architecture. state (dict): the weights.
        source (str): where they came from (a file name), quoted in errors.

    Raises:
        WeightsMismatchError: keys or shapes differ (all listed, up to 12 of each).
    """
    expected = net.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    # Checkpoints from before PyTorch 0.4.1 lack BatchNorm's step counter; it does not
    # affect eval-mode outputs and load_state_dict fills it in.
    missing = sorted(k for k in set(expected) - set(state)
                     if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if k not in bad
                   and tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong or bad:
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
        if bad:
            parts.append(f"not tensors: {show(sorted(bad))}")
        raise WeightsMismatchError("; ".join(parts))
    net.load_state_dict(state, strict=True)


# ============================================================================ where, download

def models_dir() -> Path:
    """The download folder: ``$RANKCORE_MODELS``, else ``~/.cache/rankcore/models``."""
    env = os.environ.get("RANKCORE_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rankcore" / "models"


def search(file: str, dirs: Iterable[Path]) -> Path | None:
    """The first ``dir/file`` or ``dir/<subfolder>/file`` that exists, else ``None``."""
    for d in dirs:
        if not d.is_dir():
            continue
        for candidate in [d / file, *(s / file for s in sorted(d.iterdir()) if s.is_dir())]:
            if candidate.is_file():
                return candidate
    return None


def download(url: str, target: str | os.PathLike, sha: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``target``, which appears only complete and checked.

    ``torch.hub.download_url_to_file`` does the transfer (a temporary file, a progress bar,
    the SHA-256 prefix ``sha`` checked), into ``target.part``; the file must then start like
    a checkpoint before it is renamed to ``target``. The request goes through ``urllib``,
    which honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (as set when the process first
    opens a URL).

    Raises:
        WeightsMissingError: the server could not be reached or refused (names the URL).
        CorruptCheckpointError: it sent something else (e.g. an HTML page) or a file with
            the wrong SHA-256; nothing is left at ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        torch.hub.download_url_to_file(url, str(part), hash_prefix=sha.lower() if sha else None,
                                       progress=progress)
    except RuntimeError as e:  # torch.hub's "invalid hash value"
        part.unlink(missing_ok=True)
        raise CorruptCheckpointError(
            f"{url} sent a file whose SHA-256 does not start with {sha[:16] if sha else ''}...: "
            f"the download is damaged or a different file ({e}). {target} was not "
            "written.") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise WeightsMissingError(f"could not download {url} to {target} ({e})") from e
    with open(part, "rb") as f:
        problem = _magic_problem(f.read(512))
    if problem:
        part.unlink(missing_ok=True)
        raise CorruptCheckpointError(
            f"{url} did not send a checkpoint: {problem}. {target} was not written; "
            "download the file in a browser and pass weights=PATH.")
    os.replace(part, target)
    return target
