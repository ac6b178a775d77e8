"""The rank parser of rankcore: :func:`parse_ranks` (re-exported by :mod:`rankcore.rank`)
turns every accepted spelling of a set of ranks into a bounded, sorted list.
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Sequence, Union

import torch
from torch import Tensor

from ._checks import is_int_like

#: Accepted forms of a set of ranks.
Ranks = Union[int, Sequence[int], range, Tensor, str, None]


def parse_ranks(spec: Ranks | str, max_rank: int, name: str = "ranks") -> list[int]:
    """Turn a rank specification into a sorted list of distinct ranks in ``[0, max_rank]``.

    The one rank parser of rankcore: every function that takes ``ranks`` accepts these
    forms, and an int is always a single rank, never a stride.

    Args:
        spec (int, sequence of int, range, Tensor, str or None): ``None`` or ``"all"``
            for every rank ``0..max_rank``; an int for that one rank; a sequence, ``range``
            or integer tensor of ranks; or a string of comma-separated items, each a rank
            (``"10"``), an inclusive range ``"start:stop"`` or ``"start:stop:step"``. The
            word ``max`` stands for ``max_rank`` anywhere, so ``"0:20:2,24:max:8,max"``
            fits images of any size. Strides exist only as ``range`` or ``"a:b:s"``.
        max_rank (int): the images' largest rank, ``min(H, W)``.
        name (str, optional): the argument's name in error messages. Default: ``"ranks"``.

    Returns:
        list[int]: distinct ranks, ascending.

    Raises:
        TypeError: a float, bool or other non-integer rank (``3.7`` is never truncated).
        ValueError: a malformed string item, an empty result or a rank outside
            ``[0, max_rank]``.

    Examples::

        >>> parse_ranks("1:224:4", 224)[:3]
        [1, 5, 9]
        >>> parse_ranks("0:8:4,max", 32)
        [0, 4, 8, 32]
        >>> parse_ranks(range(0, 33, 16), 32)
        [0, 16, 32]
    """
    if isinstance(max_rank, bool) or not isinstance(max_rank, int) or max_rank < 0:
        raise ValueError(f"max_rank must be an int >= 0, got {max_rank!r}")
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return list(range(max_rank + 1))
    # Every form is bounds-checked before it is materialised, so the list built never
    # exceeds max_rank + 1 entries (range(0, 10**12) and "0:10**20" are refused at once).
    bounds = _Bounds(spec, max_rank, name)
    if isinstance(spec, str):
        for item in _parse_rank_string(spec, max_rank, name):
            bounds.add(item)
    elif is_int_like(spec):
        bounds.add(int(spec))
    elif isinstance(spec, Tensor):
        if spec.is_floating_point() or spec.is_complex() or spec.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got a tensor of dtype {spec.dtype}")
        if spec.numel():
            bounds.add(range(int(spec.min()), int(spec.max()) + 1, 1), ends_only=True)
            bounds.add(torch.unique(spec).tolist())
    elif isinstance(spec, range):
        bounds.add(spec)
    elif isinstance(spec, Sequence) or hasattr(spec, "__iter__"):
        for r in spec:
            if not is_int_like(r):
                raise TypeError(f"{name} must hold integer ranks, got {r!r} "
                                f"({type(r).__name__}) in {name}={_short(spec)}")
            bounds.add(int(r))
    else:
        raise TypeError(f"{name} must be an int, a sequence or range of ints, a rank string "
                        f"such as '0:32:4,max', or None; got {type(spec).__name__} {_short(spec)}")
    return bounds.result()


def _short(spec: Any) -> str:
    text = repr(spec)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


class _Bounds:
    """The ranks of a spec, gathered with their extremes: an int, a list or a ``range``
    whose ends lie outside ``[0, max_rank]`` is refused without being expanded."""

    def __init__(self, spec: Any, max_rank: int, name: str):
        self.spec, self.max_rank, self.name = spec, max_rank, name
        self.ranks: set[int] = set()
        self.lo = self.hi = None

    def add(self, ranks: int | range | list[int], ends_only: bool = False) -> None:
        if isinstance(ranks, int):
            ranks = range(ranks, ranks + 1)
        if isinstance(ranks, range):
            if not ranks:
                return
            lo, hi = min(ranks[0], ranks[-1]), max(ranks[0], ranks[-1])
        else:
            lo, hi = min(ranks, default=None), max(ranks, default=None)
            if lo is None:
                return
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        if self.lo < 0 or self.hi > self.max_rank:
            raise ValueError(f"{self.name}={_short(self.spec)}: every rank must lie in "
                             f"[0, {self.max_rank}] (min(H, W) of the images), got min "
                             f"{self.lo}, max {self.hi}")
        if not ends_only:
            self.ranks.update(ranks)

    def result(self) -> list[int]:
        if not self.ranks:
            raise ValueError(f"{self.name}={_short(self.spec)} selects no rank")
        return sorted(self.ranks)


def _parse_rank_string(spec: str, max_rank: int, name: str) -> Iterator[int | range]:
    """The items of a rank string: each a rank or an (unexpanded) inclusive ``range``."""
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = [_rank_token(p, max_rank, spec, name) for p in item.split(":")]
        if len(parts) == 1:
            yield parts[0]
        elif len(parts) in (2, 3):
            start, stop, step = (*parts, 1)[:3]
            if step < 1:
                raise ValueError(f"{name}={_short(spec)}: step must be >= 1 in {item!r}")
            yield range(start, stop + 1, step)
        else:
            raise ValueError(f"{name}={_short(spec)}: {item!r} is not 'k', 'start:stop' or "
                             "'start:stop:step'")


def _rank_token(token: str, max_rank: int, spec: str, name: str) -> int:
    token = token.strip().lower()
    if token == "max":
        return max_rank
    if not re.fullmatch(r"-?\d+", token):
        raise ValueError(f"{name}={_short(spec)}: {token[:40]!r} is not an integer or 'max'")
    if len(token.lstrip("-").lstrip("0")) > 30:  # beyond any image (and int()'s digit limit)
        raise ValueError(f"{name}={_short(spec)}: {token[:20]}... ({len(token)} digits) is "
                         f"outside [0, {max_rank}]")
    return int(token)
