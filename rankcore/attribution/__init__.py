"""Saliency maps: Rank Integrated Gradients (equation 3 of the paper), its baselines, and their scores.

Every method takes a model that maps ``[0, 1]`` images ``(N, C, H, W)`` to class logits,
an optional ``target`` (default: the top class on the full-rank image) and returns
attributions, computed in bounded batches (``internal_batch_size`` images per
forward/backward pass). Images follow the model's device; the model is evaluated in eval
mode and the caller's mode restored::

    rankcore.rig(model, x)                       # equation 3, (N, H, W)
    rankcore.rank_ig(model, x)                   # IG along the rank path, (N, C, H, W)
    attribution.RankIntegratedGradients(model)   # RIG as a captum Attribution
    attribution.vanilla_gradient(model, x)       # Simonyan et al. 2014, (N, H, W)
    attribution.integrated_gradients(model, x)   # Sundararajan et al. 2017, (N, C, H, W)
    attribution.smoothgrad(model, x)             # Smilkov et al. 2017, (N, H, W)
    attribution.blur_ig(model, x)                # Xu et al. 2020, (N, C, H, W)
    attribution.deletion_insertion(model, x, s)  # Petsiuk et al. 2018 curves and areas

Modules: :mod:`.rig` (RIG, rank-path IG, the captum class), :mod:`.baselines`,
:mod:`.evaluation` (deletion/insertion, method comparison, edge alignment, coherence),
:mod:`.common` (input checks, targets, the method registry).
"""
from __future__ import annotations

from . import baselines, common, evaluation  # noqa: F401  (submodules as attributes)
from .baselines import blur_ig, gaussian_blur, integrated_gradients, smoothgrad, vanilla_gradient
from .common import METHODS, OUTPUTS, REDUCTIONS, Method, reduce_channels, register
from .evaluation import (DeletionInsertion, auc_summary, compare_methods, deletion_insertion,
                         edge_alignment, saliency_map, spatial_coherence)
from .rig import (RankIntegratedGradients, RankPathIntegratedGradients, rank_ig, rig, rig_ranks,
                  rig_terms)

__all__ = ["rig", "rig_terms", "rig_ranks", "rank_ig", "RankIntegratedGradients",
           "RankPathIntegratedGradients",
           "vanilla_gradient", "integrated_gradients", "smoothgrad", "blur_ig", "gaussian_blur",
           "deletion_insertion", "DeletionInsertion", "saliency_map", "compare_methods",
           "auc_summary", "edge_alignment", "spatial_coherence", "reduce_channels",
           "METHODS", "Method", "register", "OUTPUTS", "REDUCTIONS"]
