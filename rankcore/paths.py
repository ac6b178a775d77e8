"""Where rankcore looks for data, keeps caches and writes results.

=================  ==========================================  ===============================
what               in a source checkout                        installed (a wheel)
=================  ==========================================  ===============================
data root          ``$RANKCORE_DATA``, else ``<checkout>/data``  ``$RANKCORE_DATA``, else
                                                               ``<user cache>/data``
caches             ``$RANKCORE_CACHE``, else ``<data root>/cache``  ``$RANKCORE_CACHE``, else
                   (``<user cache>`` if the data root is          ``<user cache>``
                   read-only)
results            ``$RANKCORE_RESULTS``, else                  ``$RANKCORE_RESULTS`` (e.g.
                   ``<checkout>/results``                       ``.``), else
                                                               ``<user cache>/results``
=================  ==========================================  ===============================

``<user cache>`` is ``~/.cache/rankcore`` (``$XDG_CACHE_HOME/rankcore`` when that is set).
Nothing is written to the current directory unless asked for.
"""
from __future__ import annotations

import os
from pathlib import Path

#: The source checkout this package lives in (``None`` when installed elsewhere).
REPO_ROOT: Path | None = Path(__file__).resolve().parents[1]
if not ((REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "rankcore").is_dir()):
    REPO_ROOT = None


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/rankcore``, else ``~/.cache/rankcore``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rankcore"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$RANKCORE_DATA``, else the default.

    The default is the checkout's own ``data/`` folder when rankcore runs from a source
    checkout (so notebooks executed from ``book/`` find the same folder), else
    ``~/.cache/rankcore/data``.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root={root!r}; expected a folder path")
        return Path(root).expanduser()
    env = os.environ.get("RANKCORE_DATA")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "data" if REPO_ROOT else user_cache() / "data"


def _writable(folder: Path) -> bool:
    """Whether ``folder`` (or its nearest existing parent) can be written."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return os.access(candidate, os.W_OK)
    return False


def cache_dir(name: str = "") -> Path:
    """A writable cache folder (created): ``$RANKCORE_CACHE``, else ``<data root>/cache`` in a
    checkout with a writable data root, else ``~/.cache/rankcore``.

    Caches (decoded data sets, rank-truncated copies, trained quick models) are keyed by
    everything that determines their content, so deleting this folder only costs time.
    """
    env = os.environ.get("RANKCORE_CACHE")
    if env:
        base = Path(env).expanduser()
    else:
        local = data_root() / "cache"
        in_checkout = REPO_ROOT is not None or os.environ.get("RANKCORE_DATA")
        base = local if in_checkout and _writable(local) else user_cache()
    path = base / name if name else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_root() -> Path:
    """Where chapters save figures and tables: ``$RANKCORE_RESULTS``, else ``results/`` of the
    checkout, else ``~/.cache/rankcore/results`` (set ``RANKCORE_RESULTS=.`` for the current
    directory)."""
    env = os.environ.get("RANKCORE_RESULTS")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "results" if REPO_ROOT else user_cache() / "results"
