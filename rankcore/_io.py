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


# ---------------------------------------------------------------------------- files of ours

class NotOurFileError(ValueError):
    """A path given for a rankcore resume/cache file holds something else; it is left as is."""


def check_writable(path: str | os.PathLike, name: str) -> Path:
    """Raise ``ValueError`` naming ``name`` when ``path`` cannot be written as a file.

    Called before a long computation, so that a directory, a read-only folder or a missing
    parent is reported at once instead of after the work (the write itself stays atomic).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a directory; expected a file path in it, "
                         f"e.g. {str(path / 'out')!r}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # created on writing
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name}={str(path)!r}: {str(parent)!r} is not a directory")
    try:  # a real probe: permissions, read-only mounts and root all answer truthfully
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{name}={str(path)!r} cannot be written: {str(parent)!r} refuses "
                         f"new files ({e.strerror or e})") from None
    return path


def save_own(obj: dict, path: str | os.PathLike, tag: str) -> Path:
    """:func:`torch_save` of ``obj`` with ``tag`` as its first entry, so that the file says
    what wrote it even when damaged (torch stores the pickle uncompressed near the start)."""
    return torch_save({"format": tag, **obj}, path)


def _tagged(path: Path, tag: str) -> bool:
    with open(path, "rb") as f:
        return tag.encode() in f.read(4096)


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``path.corrupt-<UTC time>`` (never over an existing file)."""
    import time

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for i in range(1000):
        aside = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{i}" if i else ""))
        if not aside.exists():
            os.replace(path, aside)
            return aside
    raise FileExistsError(f"could not move {path} aside: too many corrupt copies beside it")


def load_own(path: str | os.PathLike, tag: str, what: str, legacy_keys: tuple[str, ...],
             valid: Callable[[dict], bool] = lambda blob: True) -> dict | None:
    """Read back a file written by :func:`save_own`, without running any code.

    Returns:
        The dict, or ``None`` when the file is missing or was damaged: a damaged file of ours
        (it carries ``tag``, or is an older one with ``legacy_keys``) is moved aside to
        ``FILE.corrupt-<time>`` with a warning, never overwritten.

    Raises:
        NotOurFileError: the file exists but is something else (the model's weights passed
            by mistake, a text file, a directory): it is left untouched.
    """
    import warnings

    path = Path(path)
    if not path.exists():
        if path.is_symlink():  # writing would replace the link, not fill its target
            raise NotOurFileError(f"{what} {str(path)!r} is a symbolic link to "
                                  f"{os.readlink(path)!r}, which does not exist; pass a file path")
        return None
    if path.is_dir():
        raise NotOurFileError(f"{what} {str(path)!r} is a directory; pass a file path")
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        reason = None
    except Exception as e:  # truncated, corrupt, code-bearing or not torch at all
        blob, reason = None, f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    ours = isinstance(blob, dict) and (blob.get("format") == tag or (
        "format" not in blob and set(legacy_keys) <= set(blob)))
    if ours and valid(blob):
        return blob
    if ours or (reason is not None and _tagged(path, tag)):
        aside = move_aside(path)
        warnings.warn(f"{what} {path} is damaged ({reason or 'unexpected contents'}); moved it "
                      f"to {aside} and starting afresh", RuntimeWarning, stacklevel=3)
        return None
    held = reason or (f"a {type(blob).__name__}" + (
        f" with keys {sorted(map(str, blob))[:6]}" if isinstance(blob, dict) else ""))
    raise NotOurFileError(f"{what} {str(path)!r} is not a {what} written by rankcore ({held}); "
                          "it was left untouched: pass another path")
