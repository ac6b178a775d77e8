"""CIFAR-10 architectures and their registry entries.

- :class:`CifarResNet`: He et al.'s CIFAR ResNet (depth 6n+2, option-A shortcuts), named as
  in akamaster/pytorch_resnet_cifar10 so its published checkpoints load directly.
- :class:`RobustnessCifarResNet`: the CIFAR ResNet-50 of MadryLab's ``robustness`` library,
  the architecture of its natural and adversarially trained CIFAR-10 checkpoints.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import CIFAR_MEAN, CIFAR_STD, register, register_model

AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
AKAMASTER_README = ("https://github.com/akamaster/pytorch_resnet_cifar10#results "
                    "(README table, test error {err}%)")
ROBUSTNESS_README = "https://github.com/MadryLab/robustness#pretrained-models"


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

_CIFAR = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32))


def _robust_cifar(num_classes: int = 10) -> nn.Module:
    return RobustnessCifarResNet((3, 4, 6, 3), num_classes)


# MadryLab/robustness README.rst (a954124), tables "CIFAR L2-robust accuracy" and "CIFAR10
# Linf-robust accuracy": the clean accuracy (row ε-test 0) of each checkpoint.
_ROBUST_C = dict(mean=CIFAR_MEAN, std=CIFAR_STD, weights="file", fmt="robustness",
                 in_paper=True, licence="MIT (MadryLab/robustness)", **_CIFAR)
for _name, _file, _dbx, _training, _top1 in (
        ("resnet50_cifar", "cifar_nat.pt", "yhpp4yws7sgi6lj", "natural", 0.9525),
        ("robust_resnet50_cifar_linf8", "cifar_linf_8.pt", "c9qlt1lbdnu9tlo", "Linf 8/255",
         0.8703),
        ("robust_resnet50_cifar_l2_0.25", "cifar_l2_0_25.pt", "2qsp7pt6t7uo71w", "L2 0.25",
         0.9277),
        ("robust_resnet50_cifar_l2_0.5", "cifar_l2_0_5.pt", "1zazwjfzee7c8i4", "L2 0.5", 0.9083),
        ("robust_resnet50_cifar_l2_1.0", "cifar_l2_1_0.pt", "s2x7thisiqxz095", "L2 1.0", 0.8162)):
    register(_name, _robust_cifar, file=_file, training=_training,
             url=f"https://www.dropbox.com/s/{_dbx}/{_file}?dl=1", published_top1=_top1,
             published_source=f"{ROBUSTNESS_README} (README.rst at a954124, table "
                              f"'{'CIFAR10 Linf' if 'Linf' in _training else 'CIFAR L2'}"
                              f"-robust accuracy', row ε-test 0, column {_training})",
             **_ROBUST_C)

# akamaster/pytorch_resnet_cifar10: published checkpoints with full SHA-256 digests.
_AKA = dict(weights="file", fmt="akamaster",
            licence="BSD-2-Clause (akamaster/pytorch_resnet_cifar10)", **_CIFAR)
for _depth, _file, _sha, _err in (
        (20, "resnet20-12fca82f.th",
         "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", "8.27"),
        (32, "resnet32-d509ac18.th",
         "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", "7.37"),
        (44, "resnet44-014dd654.th",
         "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", "6.90"),
        (56, "resnet56-4bfd9763.th",
         "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", "6.61")):
    def _build(num_classes: int = 10, _n=(_depth - 2) // 6) -> nn.Module:
        return CifarResNet(_n, num_classes)
    register(f"cifar_resnet{_depth}", _build, file=_file, sha256=_sha, url=AKAMASTER + _file,
             published_top1=round(1 - float(_err) / 100, 4),
             published_source=AKAMASTER_README.format(err=_err), **_AKA)


@register_model(**_CIFAR)
def cifar_resnet8(num_classes: int = 10) -> nn.Module:
    """ResNet-8 (n=1): 78k parameters, trains to ~80% on CIFAR-10 in minutes on a CPU."""
    return CifarResNet(1, num_classes)
