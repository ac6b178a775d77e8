"""Confidence intervals for the comparisons the paper makes: proportions of images, their
differences (independent and paired), seeded paired bootstraps and rank correlations.

The arithmetic is scipy's where scipy has it (Wilson intervals from
:meth:`scipy.stats.binomtest` results, :func:`scipy.stats.bootstrap`,
:func:`scipy.stats.spearmanr` / :func:`~scipy.stats.kendalltau`); Newcombe's differences
are built from scipy's Wilson limits by his formulas (method 10 of each paper, the one he
recommends):

* R. G. Newcombe, "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Statistics in Medicine 17:873-890 (1998).
* R. G. Newcombe, "Improved confidence intervals for the difference between binomial
  proportions based on paired data", Statistics in Medicine 17:2635-2650 (1998).

Two models evaluated on the same images are *paired*: their errors are correlated, and
the paired interval (which uses the images on which exactly one of them is right) is the
right one, usually narrower than the independent one.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["wilson", "newcombe_independent", "newcombe_paired", "paired_counts",
           "paired_difference", "paired_bootstrap", "rank_correlation"]


def _confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _count(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n`` (no continuity correction).

    Args:
        successes (int): in ``[0, n]``.
        n (int): trials, ``>= 1``.
        confidence (float, optional): Default: 0.95.

    Returns:
        (float, float): lower and upper bound, in ``[0, 1]``.

    Examples::

        >>> [round(v, 4) for v in wilson(81, 263)]   # Newcombe (1998a), Table I
        [0.2553, 0.3662]
    """
    from scipy.stats import binomtest

    n = _count("n", n, 1)
    k = _count("successes", successes)
    if k > n:
        raise ValueError(f"successes={k} exceeds n={n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=_confidence(confidence),
                                       method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_independent(k1: int, n1: int, k2: int, n2: int,
                         confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference ``k1/n1 - k2/n2`` of two independent proportions with Newcombe's hybrid
    score interval (method 10 of Newcombe 1998, from the two Wilson intervals).

    Returns:
        (float, float, float): the difference, its lower and upper bound.
    """
    p1, p2 = k1 / _count("n1", n1, 1), k2 / _count("n2", n2, 1)
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def newcombe_paired(a: int, b: int, c: int, d: int,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Difference of two paired proportions with Newcombe's interval (method 10 of the
    paired paper: Wilson limits of each margin, combined with the observed correlation).

    The 2 x 2 table of ``n = a + b + c + d`` pairs: ``a`` both right, ``b`` only the first
    right, ``c`` only the second right, ``d`` neither. The difference is
    ``(a + b)/n - (a + c)/n = (b - c)/n``.

    Returns:
        (float, float, float): the difference, its lower and upper bound.

    Examples::

        >>> [round(v, 4) for v in newcombe_paired(59, 6, 16, 80)]  # Cavo et al. 2012 table
        [-0.0621, -0.1186, -0.0046]
    """
    a, b, c, d = (_count(k, v) for k, v in zip("abcd", (a, b, c, d)))
    n = a + b + c + d
    if n < 1:
        raise ValueError("the table is empty (a + b + c + d = 0)")
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, confidence)
    l2, u2 = wilson(a + c, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = 0.0
    if margins > 0:
        # Newcombe's phi, shrunk towards 0 by n/2 when positive (his continuity correction
        # of the correlation, not of the limits).
        cross = a * d - b * c
        phi = (cross - n / 2 if cross > n / 2 else min(cross, 0)) / math.sqrt(margins)
    dl = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    du = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return diff, max(-1.0, diff - dl), min(1.0, diff + du)


def _bools(name: str, x) -> np.ndarray:
    v = np.asarray(x)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-item outcomes, got "
                         f"shape {v.shape}")
    if v.dtype != bool and not np.isin(v, (0, 1)).all():
        raise ValueError(f"{name} must hold booleans (or 0/1)")
    return v.astype(bool)


def paired_counts(first, second) -> tuple[int, int, int, int]:
    """The 2 x 2 table ``(a, b, c, d)`` of :func:`newcombe_paired` from per-item outcomes
    ``(N,)`` of two classifiers on the same items (True: right)."""
    x, y = _bools("first", first), _bools("second", second)
    if x.shape != y.shape:
        raise ValueError(f"first and second must be the same items: shapes {x.shape} and "
                         f"{y.shape}")
    return (int((x & y).sum()), int((x & ~y).sum()), int((~x & y).sum()),
            int((~x & ~y).sum()))


def paired_difference(first, second, confidence: float = 0.95) -> tuple[float, float, float]:
    """``mean(first) - mean(second)`` of per-item outcomes ``(N,)`` of two classifiers on
    the same items, with :func:`newcombe_paired`'s interval."""
    return newcombe_paired(*paired_counts(first, second), confidence=confidence)


def paired_bootstrap(first, second, statistic: Callable | None = None,
                     confidence: float = 0.95, n_resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """A seeded paired bootstrap (BCa) of a statistic of two paired samples.

    Args:
        first, second (array ``(N,)``): values measured on the same ``N`` items (e.g. an
            attribution score of RIG and of the vanilla gradient per image).
        statistic (callable, optional): ``f(first, second, axis) -> value`` on resampled
            pairs. Default: the mean difference ``mean(first - second)``.
        confidence (float, optional): Default: 0.95.
        n_resamples (int, optional): Default: 2000.
        seed (int, optional): seed of the resampling. Default: 0.

    Returns:
        (float, float, float): the statistic on the data, its lower and upper bound: NaN
        with fewer than 3 items, the value itself when every pair differs by the same
        amount and ``statistic`` is the default (no spread to resample).
    """
    from scipy.stats import bootstrap

    x, y = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"first and second must be 1-D arrays of the same items, got "
                         f"shapes {x.shape} and {y.shape}")
    _count("n_resamples", n_resamples, 1)
    _count("seed", seed)
    stat = statistic or (lambda a, b, axis=-1: np.mean(a - b, axis=axis))
    value = float(stat(x, y, axis=-1))
    if x.size < 3:
        return value, float("nan"), float("nan")
    if statistic is None and np.all(x - y == (x - y)[0]):
        return value, value, value
    res = bootstrap((x, y), stat, paired=True, vectorized=True, n_resamples=n_resamples,
                    confidence_level=_confidence(confidence), method="BCa",
                    random_state=np.random.default_rng(seed))
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def rank_correlation(x, y, method: str = "spearman") -> tuple[float, float]:
    """Spearman's rho or Kendall's tau-b of two samples, with its two-sided p-value.

    Returns:
        (float, float): the correlation and the p-value (scipy's).
    """
    from scipy.stats import kendalltau, spearmanr

    fns = {"spearman": spearmanr, "kendall": kendalltau}
    if method not in fns:
        raise ValueError(f"method={method!r}; expected 'spearman' or 'kendall'")
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {a.shape}, "
                         f"{b.shape}")
    r = fns[method](a, b)
    return float(r.statistic), float(r.pvalue)
