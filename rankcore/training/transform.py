"""The rank transform of training images, as a value: ``Transform("low_rank", 5)``.

Training on rank-k images is the paper's Section 5.2 (``low_rank``: each channel keeps its k
largest singular values, equation 2, clamped to [0, 1]); training on the residual is Section
5.1's high-rank images (``high_rank``: the k largest removed, signed unless clamped). Both
trainers, the book's run names and its tables spell a transform ``"low_rank:K"`` or
``"high_rank:K"``; :meth:`Transform.parse` is the one place that reads that spelling.
"""
from __future__ import annotations

import dataclasses
import hashlib

import torch
from torch import Tensor

from .. import _io
from ..data import to_float  # the one uint8 -> float conversion (re-exported here)
from ..paths import cache_dir
from .checkpoint import CODE_VERSION

__all__ = ["Transform", "KINDS", "transform_rank", "transformed", "to_float"]

KINDS = ("low_rank", "high_rank")


@dataclasses.dataclass(frozen=True)
class Transform:
    """A rank transform: ``kind`` ``"low_rank"`` or ``"high_rank"``, rank ``k >= 0``.

    ``str(Transform("low_rank", 5))`` is ``"low_rank:5"``, the spelling configurations
    store (and their cache keys hash).

    Examples::

        >>> Transform.parse("low_rank:5")
        Transform(kind='low_rank', k=5)
        >>> str(Transform("high_rank", 3)), Transform.parse(None)
        ('high_rank:3', None)
    """
    kind: str
    k: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; expected one of {KINDS}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k={self.k!r}; expected an integer >= 0")

    def __str__(self) -> str:
        return f"{self.kind}:{self.k}"

    @classmethod
    def parse(cls, spec: "Transform | str | None", name: str = "transform") -> "Transform | None":
        """``"low_rank:K"`` / ``"high_rank:K"`` (or a Transform) -> Transform; None -> None.

        Raises:
            ValueError: anything else, naming ``name`` and the value.
        """
        if spec is None or isinstance(spec, Transform):
            return spec
        kind, sep, k = spec.partition(":") if isinstance(spec, str) else ("", "", "")
        if kind not in KINDS or not sep or not k.isdigit():
            raise ValueError(f"{name}={spec!r}; expected None, 'low_rank:K' or 'high_rank:K' "
                             "with K a non-negative integer")
        return cls(kind, int(k))

    def clamps(self, clamp_high: bool = False) -> bool:
        """Whether the result is clamped to [0, 1]: always for low-rank images; high-rank
        residuals are signed, clamped only with ``clamp_high``."""
        return self.kind == "low_rank" or clamp_high

    def check_side(self, side: int, what: str) -> None:
        """Refuse a rank above ``side`` (the images' smaller side, their largest rank):
        ``low_rank:999`` on 32 x 32 images would train on full images under a rank-999 name.

        Raises:
            ValueError: naming the transform, ``K`` and ``what`` the images are.
        """
        if self.k > side:
            raise ValueError(f"transform={str(self)!r}: K={self.k} exceeds the rank of the "
                             f"{side} x {side} images of {what} (K <= {side})")

    def __call__(self, x: Tensor, clamp_high: bool = False) -> Tensor:
        """The transformed float images ``(N, C, H, W)`` (same shape, dtype, device)."""
        from ..rank import high_rank, low_rank
        fn = low_rank if self.kind == "low_rank" else high_rank
        return fn(x, self.k, clamp=self.clamps(clamp_high))


def transform_rank(name: str, kind: str | None = None) -> int | None:
    """The K of a run name ``"low_rank:K"`` / ``"high_rank:K"`` (of ``kind``, when given);
    None for any other name (``"natural"``, ``"adv"``, ...).

    Examples::

        >>> transform_rank("low_rank:5"), transform_rank("high_rank:5", "low_rank"), transform_rank("adv")
        (5, None, None)
    """
    try:
        t = Transform.parse(name)
    except ValueError:
        return None
    return None if t is None or (kind is not None and t.kind != kind) else t.k


def transformed(x: Tensor, spec: Transform | str | None, *, tag: str = "data", clamp_high: bool = False,
                cache: bool = True, chunk: int = 2048) -> Tensor:
    """Rank-truncated copy of images ``x`` ``(N, C, H, W)`` (float in [0, 1] or uint8),
    computed once in chunks of ``chunk`` and cached under ``cache_dir("rank")`` (``cache``).

    ``spec``: ``"low_rank:K"`` (clamped to [0, 1]), ``"high_rank:K"`` (the K largest
    singular values removed, signed unless ``clamp_high``) or None. Returns x's shape on x's
    device, uint8 (x 255, rounded) for images in [0, 1], float16 for signed residuals
    (:func:`to_float` converts). The cache key hashes the images, the transform and the
    code version; a corrupt cache file is rebuilt with a warning naming it.
    """
    parsed = Transform.parse(spec)
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"x must be a tensor (N, C, H, W); got {getattr(x, 'shape', type(x))}")
    if parsed is None:
        return _compact(x, True)
    kind, k = parsed.kind, parsed.k
    clamp = parsed.clamps(clamp_high)
    path = None
    if cache:
        digest = hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes())
        digest.update(f"{kind}:{k}:{clamp}:{CODE_VERSION}:{x.dtype}".encode())
        path = cache_dir("rank") / f"{tag}-{kind}{k}-{digest.hexdigest()[:16]}.pt"
        out = _io.load_cache(path, "rank-transformed data")
        if torch.is_tensor(out) and out.shape == x.shape:
            return out.to(x.device)
    out = torch.cat([_compact(parsed(to_float(x[i:i + chunk]), clamp_high), clamp)
                     for i in range(0, len(x), chunk)])
    if path is not None:
        _io.torch_save(out.cpu(), path)
    return out


def _compact(x: Tensor, in_unit_range: bool) -> Tensor:
    if x.dtype == torch.uint8 or not in_unit_range:
        return x if x.dtype == torch.uint8 else x.to(torch.float16)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
