"""The paper's own numbers (``rankcore/book/paper_values.yml``, package data), for setting ours
beside them."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from ..training import transform_rank


CITATION = ("M. Jere, M. Kumar, F. Koushanfar. A Singular Value Perspective on Model "
            "Robustness. arXiv:2012.03516.")


def values_path() -> Path:
    """``paper_values.yml`` shipped inside the package (works from a wheel too)."""
    return Path(__file__).with_name("paper_values.yml")


@functools.lru_cache(maxsize=1)
def values() -> dict[str, Any]:
    """All of ``paper_values.yml`` as nested dicts."""
    return yaml.safe_load(values_path().read_text())


def get(key: str) -> Any:
    """One value by dotted key, e.g. ``get("table2.cifar10.5.top1")`` -> 91.54."""
    node: Any = values()
    for part in key.split("."):
        if isinstance(node, dict):
            candidates = [part] + ([int(part)] if part.lstrip("-").isdigit() else [])
            for c in candidates:
                if c in node:
                    node = node[c]
                    break
            else:
                raise KeyError(f"{key!r}: no {part!r} among {sorted(map(str, node))}")
        else:
            raise KeyError(f"{key!r}: {part!r} below a leaf value")
    return node


def describe(ref: str) -> str:
    """A one-line description of a figure or table, e.g. ``describe("fig3")``."""
    group = "tables" if ref.startswith("table") else "figures"
    entry = values()[group].get(ref)
    if entry is None:
        raise KeyError(f"unknown {group[:-1]} {ref!r}; known: {sorted(values()[group])}")
    return f"Paper {ref.replace('fig', 'Figure ').replace('table', 'Table ')}: {entry['what']}"


def table2_row(run: str, dataset: str = "cifar10") -> dict[str, float]:
    """The paper's Table 2 row for a training run name, ``{}`` when the paper has none.

    ``"natural"`` is the full-rank row; ``"low_rank:K"`` is the row of models trained on
    rank-K images; anything else (e.g. ``"adv"``) has no row in Table 2.

    Examples::

        >>> table2_row("low_rank:5")["top1"]
        91.54
    """
    if run == "natural":
        key = "full"
    elif transform_rank(run, "low_rank") is not None:
        key = str(transform_rank(run, "low_rank"))
    else:
        return {}
    try:
        return dict(get(f"table2.{dataset}.{key}"))
    except KeyError:
        return {}
