"""rankcore: the reproducible companion to *A Singular Value Perspective on Model Robustness*.

The public API, loaded lazily so ``import rankcore`` stays fast and a missing optional
dependency only matters for the function that needs it::

    rankcore.low_rank(x, k)          # keep the k largest singular values per channel
    rankcore.high_rank(x, k)         # remove them (the paper's reverse truncation)
    rankcore.rank_sweep(x)           # every rank-k image from one SVD
    rankcore.rank_spectrum(model, x) # Algorithm 1: predictions against input rank
    rankcore.rig(model, x)           # Rank Integrated Gradients (equation 3)
    rankcore.pgd(model, x, y, eps)   # projected gradient descent attack
    rankcore.train(model, ...)       # natural, adversarial, low/high-rank training
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; submodules are importable as attributes too.
_EXPORTS = {
    "low_rank": "rank",
    "high_rank": "rank",
    "rank_sweep": "rank",
    "rank_blocks": "rank",
    "singular_values": "rank",
    "rank_spectrum": "spectrum",
    "rig": "attribution",
    "rank_ig": "attribution",
    "pgd": "attacks",
    "TrainConfig": "train",
}
# ``rankcore.train`` is the training module, made callable (``rankcore.train(model, ...)``)
# so the function and the module of the same name never shadow each other.
_SUBMODULES = {
    "rank", "spectrum", "attribution", "attacks", "train", "models", "data",
    "widgets", "book", "results", "paper", "paths",
}

__all__ = sorted(_EXPORTS) + sorted(_SUBMODULES)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rankcore' has no attribute {name!r}")


def __dir__():
    return __all__
