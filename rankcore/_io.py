"""Atomic file writes: a reader (or a resumed run) never sees half a file."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX, so an interruption leaves either the old file or the
    new one, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file as 0600; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch  # here, not on top: the command line's parser uses this module without torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_cache(path: str | os.PathLike, what: str = "cache file") -> Any | None:
    """Read back a cache file written by :func:`torch_save`, without running any code.

    Returns ``None`` when the file is missing, and also (with a warning naming the file)
    when it is corrupt or holds anything but tensors and plain containers: the caller then
    rebuilds it. Cache files are never unpickled with code execution.
    """
    import warnings

    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated, corrupt or code-bearing file: rebuild it
        warnings.warn(f"{what} {path} is unreadable ({type(e).__name__}: {str(e)[:200]}); "
                      "rebuilding it", RuntimeWarning, stacklevel=2)
        return None
