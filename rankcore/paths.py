"""Where rankcore looks for data, keeps caches and writes results."""
from __future__ import annotations

import os
from pathlib import Path

#: The source checkout this package lives in (``None`` when installed elsewhere).
REPO_ROOT: Path | None = Path(__file__).resolve().parents[1]
if not (REPO_ROOT / "pyproject.toml").exists():
    REPO_ROOT = None


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$RANKCORE_DATA``, else ``data/``.

    ``data/`` is the checkout's own ``data/`` folder when rankcore runs from a source
    checkout (so notebooks executed from ``book/`` find the same folder), else ``./data``.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("RANKCORE_DATA")
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT or Path.cwd()) / "data"


def cache_dir(name: str = "") -> Path:
    """A writable cache folder: ``$RANKCORE_CACHE``, else ``<data root>/cache``.

    Caches (decoded data sets, rank-truncated copies, trained quick models) are keyed by
    everything that determines their content, so deleting this folder only costs time.
    """
    env = os.environ.get("RANKCORE_CACHE")
    base = Path(env).expanduser() if env else data_root() / "cache"
    path = base / name if name else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root() -> Path:
    """Where chapters save figures and tables: ``$RANKCORE_RESULTS``, else ``results/``."""
    env = os.environ.get("RANKCORE_RESULTS")
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT or Path.cwd()) / "results"
