"""Fast CIFAR-10 networks in the style of Keller Jordan's airbench94.

A small stem (2x2 convolution, GELU), three stages of conv -> max-pool -> batch-norm ->
GELU -> conv -> batch-norm -> GELU, a global max-pool and a bias-free linear head whose
logits are scaled by 1/9. The batch-norms have no trainable scale (only a shift), so the
convolutions are scale-invariant and the recipe in :mod:`rankcore.train` trains them with a
large learning rate for the weights and a larger one for the shifts.

Widths per scale: ``airbench_cpu`` (32/64/128, 0.3M parameters, about 3,500 images/s
for a training step on two CPU cores in bfloat16) for the CPU book; ``airbench94``
(64/256/256, 1.9M parameters, airbench94's widths) for a GPU. Like every zoo model they
take images in [0, 1] and normalise them themselves (:class:`~rankcore.models.Normalized`).
"""
from __future__ import annotations

from torch import Tensor, nn

from .registry import CIFAR_MEAN, register_model

__all__ = ["AirbenchNet", "airbench_cpu", "airbench94"]

# CIFAR-10 channel std over the training set (airbench uses these, not the 0.2023 variant).
_STD = (0.2470, 0.2435, 0.2616)
_CFG = dict(dataset="cifar10", num_classes=10, input_size=(3, 32, 32), mean=CIFAR_MEAN,
            std=_STD, weights="none", licence="MIT (architecture after KellerJordan/airbench)")


class _BatchNorm(nn.BatchNorm2d):
    """Batch-norm with a frozen unit scale and a trainable shift (airbench)."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12):
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class _ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _BatchNorm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _BatchNorm(c_out)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))   # (N, c_out, H/2, W/2)
        return self.act(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """The airbench94 layout (without its whitening initialisation) at given widths.

    Args:
        widths (tuple of 3 ints): channels of the three stages.
        stem (int, optional): channels of the 2x2 stem convolution. Default: 24.
        num_classes (int, optional): Default: 10.
        scale (float, optional): multiplies the logits. Default: 1/9 (airbench).

    Input: normalised images ``(N, 3, 32, 32)``; output logits ``(N, num_classes)``.
    """

    def __init__(self, widths: tuple[int, int, int], stem: int = 24, num_classes: int = 10,
                 scale: float = 1 / 9):
        super().__init__()
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths={widths!r}; expected three positive ints")
        self.stem = nn.Conv2d(3, stem, 2, padding=0, bias=True)
        self.act = nn.GELU()
        chans = (stem, *widths)
        self.layers = nn.Sequential(*[_ConvGroup(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(self.act(self.stem(x)))                 # (N, widths[2], 3, 3)
        return self.head(self.pool(x).flatten(1)) * self.scale


@register_model(**_CFG)
def airbench_cpu(num_classes: int = 10) -> nn.Module:
    """airbench layout at widths 32/64/128 (0.3M parameters): the CPU book's network."""
    return AirbenchNet((32, 64, 128), num_classes=num_classes)


@register_model(**_CFG)
def airbench94(num_classes: int = 10) -> nn.Module:
    """airbench94's widths 64/256/256 (1.9M parameters): the GPU profile's network."""
    return AirbenchNet((64, 256, 256), num_classes=num_classes)
