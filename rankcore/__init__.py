"""rankcore: the reproducible companion to *A Singular Value Perspective on Model Robustness*.

The public face of the library; every submodule below is an attribute after ``import rankcore``::

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
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import (attacks, attribution, cli, data, data_files, imagenet_training, models, paths,  # noqa: E402
               rank, spectrum, torch_utils, train)
from .attacks import pgd  # noqa: E402
from .attribution import RankIntegratedGradients, rank_ig, rig  # noqa: E402
from .rank import high_rank, low_rank, parse_ranks, rank_blocks, rank_sweep, singular_values  # noqa: E402
from .spectrum import rank_spectrum  # noqa: E402
from .train import TrainConfig  # noqa: E402

__all__ = [
    "__version__",
    # functions and classes
    "low_rank", "high_rank", "rank_sweep", "rank_blocks", "singular_values", "parse_ranks",
    "rank_spectrum", "rig", "rank_ig", "RankIntegratedGradients", "pgd", "TrainConfig",
    # submodules
    "rank", "spectrum", "attribution", "attacks", "train", "imagenet_training", "models",
    "data", "data_files", "torch_utils", "paths", "cli",
]
