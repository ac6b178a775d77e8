"""Provenance of a chapter run: its fingerprint, ``meta.json`` facts and the results swap.

The fingerprint covers what can change a chapter's output: its code cells (not its
Markdown), parameters, the library's source with ``paper_values.yml``, the data sources'
listings and the versions of :data:`VERSIONED`. Results are written to a staging folder
and swapped in by :func:`swap_in` only after the chapter succeeded; one runner at a time
works on a results folder (:func:`runner_lock`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import __version__, _io
from ..paths import REPO_ROOT, data_root, results_root

#: Packages whose version is part of every chapter's fingerprint and ``meta.json``.
VERSIONED = ("torch", "torchvision", "timm", "captum", "numpy")


def code_digest(source: Path) -> str:
    """Hash of a notebook's code cells only: Markdown edits do not re-execute a chapter."""
    if source.suffix != ".ipynb":
        return hashlib.sha256(source.read_bytes()).hexdigest()
    nb = json.loads(source.read_text())
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            h.update(("".join(src) if isinstance(src, list) else src).encode())
            h.update(b"\0")
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name", "")
    h.update(kernel.encode())
    return h.hexdigest()


def library_digest() -> str:
    """Hash of the rankcore sources and ``paper_values.yml``: a change re-runs the chapters."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(__version__.encode())
    files = sorted(package.rglob("*.py")) + [Path(__file__).with_name("paper_values.yml")]
    for path in files:
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Installed versions of the packages in :data:`VERSIONED` (``"missing"`` if absent)."""
    from importlib import metadata
    out = {"rankcore": __version__, "python": sys.version.split()[0]}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def data_sources() -> dict[str, str]:
    """Each top-level entry of the data root (caches left out) -> digest of its listing.

    The listing is every file's relative path and size, so new or replaced data under the
    same folder name (or a different ``$RANKCORE_DATA``) changes the fingerprint.
    """
    root = data_root()
    skip = {"cache"}
    cache = os.environ.get("RANKCORE_CACHE")
    out: dict[str, str] = {}
    if not root.is_dir():
        return {str(root): "missing"}
    for entry in sorted(root.iterdir()):
        if entry.name in skip or entry.name.startswith(".") or (cache and entry == Path(cache)):
            continue
        h = hashlib.sha256()
        for d, dirs, files in os.walk(entry, followlinks=True):
            dirs.sort()
            for f in sorted(files):
                p = Path(d) / f
                try:
                    size = p.stat().st_size
                except OSError:
                    size = -1
                h.update(f"{p.relative_to(entry)}\0{size}\n".encode())
        out[str(entry.resolve())] = h.hexdigest()[:16]
    models = os.environ.get("RANKCORE_MODELS")
    if models and Path(models).is_dir():
        h = hashlib.sha256()
        for p in sorted(Path(models).iterdir()):
            h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        out[str(Path(models).resolve())] = h.hexdigest()[:16]
    return out


def fingerprint(source: Path, params: dict[str, Any], library: str, upstream: str = "",
                environment: dict[str, Any] | None = None) -> str:
    h = hashlib.sha256()
    h.update(code_digest(source).encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library.encode())
    h.update(json.dumps(environment or {}, sort_keys=True).encode())
    h.update(upstream.encode())
    return h.hexdigest()


def git_state(root: Path | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout (None outside one)."""
    root = root or REPO_ROOT
    if root is None or not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=30).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=30).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def device_info() -> dict[str, Any]:
    import platform

    import torch
    if torch.cuda.is_available():
        return {"device": "cuda", "name": torch.cuda.get_device_name(0),
                "count": torch.cuda.device_count()}
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "count": 1}


class RunState:
    """``state.json`` beside the executed notebooks: the fingerprint of each chapter's last success."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def unchanged(self, name: str, fp: str, output: Path) -> bool:
        return output.exists() and self.data.get(name, {}).get("fingerprint") == fp

    def record(self, name: str, fp: str, seconds: float) -> None:
        self.data[name] = {"fingerprint": fp, "seconds": round(seconds, 1),
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _io.write_json(self.path, self.data)


# ---------------------------------------------------------------------------- results folders

def results_dir(profile: str, chapter: str) -> Path:
    return results_root() / profile / chapter


class ResultsFolderError(ValueError):
    """The results folder is in use by another runner, or cannot be written (exit status 2)."""


_LOCK = ".runner.lock"


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        h = {}
    return (f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
            if h else "a runner that is just starting")


@contextmanager
def runner_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.runner.lock`` for the duration: one book runner per results folder.

    The lock is an ``flock`` (released by the kernel when its process dies, even by
    SIGKILL) on a file that names its holder (pid, host, start time) for the refusal.

    Raises:
        ResultsFolderError: another runner holds it (named), or ``folder`` cannot be written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise ResultsFolderError(f"results folder {folder} cannot be written ({e.strerror or e}); "
                                 "set RANKCORE_RESULTS to a writable folder") from None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock, no lock
        fcntl = None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ResultsFolderError(
                    f"results folder {folder} is in use by another book runner "
                    f"({_holder(folder / _LOCK)}); wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def one_runner_per_results_folder(run: Callable) -> Callable:
    """Decorate the runner's ``run(profile, ...)`` to hold :func:`runner_lock` on
    ``results_root() / profile`` while it runs."""
    @functools.wraps(run)
    def locked(profile: str = "quick", *args: Any, **kwargs: Any):
        if not isinstance(profile, str) or not profile or "/" in profile or profile[0] == ".":
            return run(profile, *args, **kwargs)  # run's own validation names the mistake
        with runner_lock(results_root() / profile):
            return run(profile, *args, **kwargs)
    return locked


def staging_dir(final: Path) -> Path:
    """This process's staging folder for ``final``: ``.<name>.staging-<pid>@<host>``."""
    return final.with_name(f".{final.name}.staging-{os.getpid()}@{socket.gethostname()}")


def _owner_alive(stage: Path) -> bool:
    """Whether the process that made ``stage`` may still be writing it (unknown: yes)."""
    owner = stage.name.rsplit(".staging-", 1)[-1]
    pid_text, _, host = owner.partition("@")
    if host and host != socket.gethostname():
        return True  # another machine's runner: cannot tell, so keep it
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, OverflowError):
        return False  # not a name a runner writes
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a pid reused by a process started after the folder was made is not its owner
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in
                    Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK") <= stage.stat().st_mtime + 1
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def recover(final: Path) -> None:
    """Undo a swap interrupted between its two renames; drop the staging folders of runners
    that are dead (a live runner's folder is its work in progress: never touched)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, final)
    for stale in final.parent.glob(f".{final.name}.staging-*"):
        if not _owner_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)


def swap_in(stage: Path, final: Path) -> None:
    """Replace ``final`` by ``stage``; a kill at any point leaves one complete folder."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        os.rename(final, old)
    os.rename(stage, final)
    if old.exists():
        shutil.rmtree(old)
