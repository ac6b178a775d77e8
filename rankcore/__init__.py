"""rankcore: the reproducible companion to *A Singular Value Perspective on Model Robustness*.

The public face of the library; every name below is an attribute after ``import rankcore``::

    rankcore.low_rank(x, k)             # keep the k largest singular values per channel
    rankcore.high_rank(x, k)            # remove them (the paper's reverse truncation)
    rankcore.rank_sweep(x)              # every rank-k image from one SVD
    rankcore.rank_spectrum(model, x)    # Algorithm 1: predictions against input rank
    rankcore.rig(model, x)              # Rank Integrated Gradients (equation 3)
    rankcore.pgd(model, x, y, eps)      # projected gradient descent attack
    rankcore.train.train(model, data, test, config)  # natural, adversarial, low/high-rank training

Submodules: ``rank`` (SVD truncation), ``spectrum`` (Algorithm 1), ``attribution`` (RIG and
baselines), ``attacks`` (PGD), ``train`` (the trainer), ``imagenet_training`` (training from an
ImageNet folder), ``models`` (the zoo and safe checkpoint loading), ``data`` and ``data_files``
(data sets), ``torch_utils`` (device, batched prediction, accuracy), ``paths``, ``cli``.
The book that regenerates the paper's figures lives in ``rankcore.book`` and is not imported here.

Why the names are loaded on first use (PEP 562 ``__getattr__``, the scheme of Scientific
Python's SPEC 1 that numpy, scipy and scikit-image use): the ``rankcore`` command is this
package's ``cli`` module, and Python runs this file before it. Imported eagerly, the
submodules cost every ``rankcore --version`` or ``--help`` about 2.6 s (torch, torchvision,
timm, captum, pandas) before argparse has read a word. The table :data:`_LAZY` below is the
whole list (name -> module), ``dir(rankcore)`` shows it, and type checkers read the plain
imports under ``TYPE_CHECKING``. ``import rankcore.rank`` and ``from rankcore import low_rank``
work as always.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_SUBMODULES = ("attacks", "attribution", "cli", "data", "data_files", "imagenet_training",
               "models", "paths", "rank", "spectrum", "stats", "torch_utils", "train",
               "training")

#: Public name -> the submodule that defines it.
_LAZY: dict[str, str] = {
    "low_rank": "rank", "high_rank": "rank", "rank_sweep": "rank", "rank_blocks": "rank",
    "singular_values": "rank", "parse_ranks": "rank",
    "rank_spectrum": "spectrum",
    "rig": "attribution", "rank_ig": "attribution", "RankIntegratedGradients": "attribution",
    "pgd": "attacks",
    "TrainConfig": "train",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from . import (attacks, attribution, cli, data, data_files, imagenet_training, models,
                   paths, rank, spectrum, stats, torch_utils, train, training)
    from .attacks import pgd
    from .attribution import RankIntegratedGradients, rank_ig, rig
    from .rank import high_rank, low_rank, parse_ranks, rank_blocks, rank_sweep, singular_values
    from .spectrum import rank_spectrum
    from .train import TrainConfig


def __getattr__(name: str) -> Any:
    """Import the submodule that holds ``name`` on first use (then it is a plain attribute)."""
    if name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'rankcore' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    # functions and classes
    "low_rank", "high_rank", "rank_sweep", "rank_blocks", "singular_values", "parse_ranks",
    "rank_spectrum", "rig", "rank_ig", "RankIntegratedGradients", "pgd", "TrainConfig",
    # submodules
    "rank", "spectrum", "attribution", "attacks", "train", "imagenet_training", "models",
    "data", "data_files", "torch_utils", "paths", "cli", "stats", "training",
]
