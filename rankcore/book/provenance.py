"""Provenance of a chapter run: its fingerprint, ``meta.json`` facts and the results swap.

The fingerprint covers what can change a chapter's output: its code cells (not its
Markdown), parameters, the library's source with ``paper_values.yml``, the data sources'
listings and the versions of :data:`VERSIONED`. Results are written to a staging folder
and swapped in by :func:`swap_in` only after the chapter succeeded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def recover(final: Path) -> None:
    """Undo a swap interrupted between its two renames; drop stale staging folders."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, final)
    for stale in final.parent.glob(f".{final.name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


def swap_in(stage: Path, final: Path) -> None:
    """Replace ``final`` by ``stage``; a kill at any point leaves one complete folder."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        os.rename(final, old)
    os.rename(stage, final)
    if old.exists():
        shutil.rmtree(old)
