"""rankcore.stats against published worked examples and scipy's own results."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from rankcore import stats


@pytest.mark.parametrize("k, n, lo, hi", [
    # Newcombe (1998a), "Two-sided confidence intervals for the single proportion",
    # Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no correction).
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998a(k, n, lo, hi):
    np.testing.assert_allclose(stats.wilson(k, n), (lo, hi), atol=5e-5)


def test_wilson_solves_the_score_equation():
    z = sps.norm.ppf(0.975)
    for k, n in ((3, 10), (437, 1000), (1, 10000)):
        for p in stats.wilson(k, n):
            assert math.isclose((k / n - p) ** 2, z * z * p * (1 - p) / n, abs_tol=1e-12)


@pytest.mark.parametrize("k1, n1, k2, n2, lo, hi", [
    # Newcombe (1998b), "Interval estimation for the difference between independent
    # proportions", Statistics in Medicine 17:873, Table II, method 10.
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
])
def test_newcombe_independent_matches_the_paper(k1, n1, k2, n2, lo, hi):
    d, l, u = stats.newcombe_independent(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    np.testing.assert_allclose((l, u), (lo, hi), atol=5e-5)


def test_newcombe_paired_matches_a_published_table():
    # Cavo et al. (2012), the paired 2 x 2 table of Fagerland, Lydersen & Laake,
    # "Statistical Analysis of Contingency Tables" (2017), Chapter 8: Newcombe's
    # square-and-add interval -0.0621 (-0.1186 to -0.0046).
    d, lo, hi = stats.newcombe_paired(59, 6, 16, 80)
    np.testing.assert_allclose((d, lo, hi), (-0.0621, -0.1186, -0.0046), atol=5e-5)


def test_paired_is_narrower_than_independent_for_correlated_outcomes():
    # 1,000 items; the second classifier is right wherever the first is, and on 30 more.
    first = np.zeros(1000, bool)
    first[:400] = True
    second = first.copy()
    second[400:430] = True
    a, b, c, d = stats.paired_counts(second, first)
    assert (a, b, c, d) == (400, 30, 0, 570)
    diff, lo, hi = stats.paired_difference(second, first)
    _, ilo, ihi = stats.newcombe_independent(430, 1000, 400, 1000)
    assert diff == pytest.approx(0.03) and lo > 0 > ilo and hi - lo < 0.5 * (ihi - ilo)
    # a table with no discordant pair says nothing about the difference's sign
    assert stats.newcombe_paired(5, 0, 0, 5)[0] == 0


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="n must"):
        stats.wilson(0, 0)
    with pytest.raises(ValueError, match="exceeds"):
        stats.wilson(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        stats.wilson(1, 4, confidence=95)
    with pytest.raises(ValueError, match="same items"):
        stats.paired_counts([True, False], [True])
    with pytest.raises(ValueError, match="booleans"):
        stats.paired_counts([0, 2], [1, 1])
    with pytest.raises(ValueError, match="method"):
        stats.rank_correlation([1, 2], [2, 1], "pearson")


def test_paired_bootstrap_is_seeded_and_agrees_with_the_t_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 0.1, 400)
    y = x - rng.normal(0.05, 0.1, 400)
    one, two = stats.paired_bootstrap(x, y, seed=3), stats.paired_bootstrap(x, y, seed=3)
    assert one == two
    d = x - y
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    assert one[0] == pytest.approx(d.mean())
    np.testing.assert_allclose(one[1:], (d.mean() - half, d.mean() + half), atol=0.004)
    # scipy's own bootstrap on the same data and seed
    ref = sps.bootstrap((x, y), lambda a, b, axis=-1: np.mean(a - b, axis=axis), paired=True,
                        vectorized=True, n_resamples=2000, method="BCa",
                        random_state=np.random.default_rng(3)).confidence_interval
    assert one[1:] == pytest.approx((ref.low, ref.high))
    assert math.isnan(stats.paired_bootstrap([1.0, 2.0], [0.0, 0.0])[1])
    assert stats.paired_bootstrap([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]) == (0.5, 0.5, 0.5)


def test_rank_correlation_is_scipys():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert stats.rank_correlation(x, y) == pytest.approx(
        (sps.spearmanr(x, y).statistic, sps.spearmanr(x, y).pvalue))
    assert stats.rank_correlation(x, y, "kendall")[0] == pytest.approx(0.6)   # (8 - 2) / 10
