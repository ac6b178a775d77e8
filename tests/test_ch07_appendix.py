"""Chapter 07's findings and verdict rules: boundary cases and tables with known answers."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rankcore.book import ch07_appendix as ch07  # noqa: E402
from rankcore.book import fourier, timing  # noqa: E402


def test_bound_findings_on_a_generic_image():
    # A generic 20x24 image has rank 20; the even real-part window reaches k + 1 (the
    # mirrored frequency), everything else stays at k (see tests/test_appendix.py).
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = ch07.bound_findings(fourier.rank_bound_table(x, [2, 3, 6]))
    assert f == {"complex_holds": True, "odd_holds": True, "even_extra": 1, "at_bound": True,
                 "ks": [2, 3, 6]}
    assert ch07.bound_verdict(f) == "same trend"
    odd_only = ch07.bound_findings(fourier.rank_bound_table(x, [3, 5]))
    assert odd_only["even_extra"] == 0 and ch07.bound_verdict(odd_only) == "reproduced"


@pytest.mark.parametrize("complex_holds, odd_holds, extra, verdict", [
    (True, True, 0, "reproduced"), (True, True, 1, "same trend"),
    (False, True, 0, "differs"), (True, False, 0, "differs")])
def test_bound_verdict_rule(complex_holds, odd_holds, extra, verdict):
    f = dict(complex_holds=complex_holds, odd_holds=odd_holds, even_extra=extra)
    assert ch07.bound_verdict(f) == verdict


def test_budget_findings_pick_the_ranks_where_low_pass_wins():
    budget = pd.DataFrame([
        {"rank": 1, "method": "low-rank", "psnr": 10.0, "agreement": 0.5},
        {"rank": 1, "method": "low-pass", "psnr": 12.0, "agreement": 0.25},
        {"rank": 5, "method": "low-rank", "psnr": 20.0, "agreement": 0.75},
        {"rank": 5, "method": "low-pass", "psnr": 20.0, "agreement": 1.0}])
    f = ch07.budget_findings(budget)
    assert f == {"ranks": [1, 5], "psnr_low_pass_better": [1], "agreement_low_pass_better": [5]}
    assert ch07.budget_findings(budget.drop(columns="agreement"))["agreement_low_pass_better"] is None


def _times():
    # One device, two images, w = 8; per-k at k = 0, 2, 6, 8 (0 and 8 need no SVD), sweep 0..8.
    rows = []
    for img, (lo, hi) in enumerate([(1.0, 2.0), (3.0, 3.0)]):
        rows += [(img, timing.METHODS[0], 0, 0.0), (img, timing.METHODS[0], 2, lo),
                 (img, timing.METHODS[0], 6, hi), (img, timing.METHODS[0], 8, 0.0)]
        rows += [(img, timing.METHODS[1], k, 0.1) for k in range(9)]
    df = pd.DataFrame(rows, columns=["image", "method", "k", "seconds"])
    df["device"], df["max_rank"] = "cpu-x", 8
    return df


def test_timing_findings_against_hand_computed_numbers():
    times = _times()
    f = ch07.timing_findings(times, timing.summarise(times))["cpu-x"]
    # per image mean over k = 2, 6: 1.5 and 3.0 -> median 2.25
    assert f["per_image"] == pytest.approx(2.25)
    # upper half (k = 6): median(2, 3) = 2.5; lower half (k = 2): median(1, 3) = 2
    assert f["trend"] == pytest.approx(1.25)
    assert f["sweep_s"] == pytest.approx(0.1)
    # per-k for all 9 ranks: 2.25 * 9; sweep: 0.1 * 9
    assert f["speedup"] == pytest.approx(22.5)
    fig = timing.plot(times, rates={"cpu-x": 4.0})
    assert any(list(line.get_ydata()) == [0.25, 0.25] for line in fig.axes[1].lines)


def test_time_and_k_rules_at_their_boundaries():
    assert ch07.time_verdict(0.999, limit=1.0) == "reproduced"
    assert ch07.time_verdict(1.0, limit=1.0) == "same trend"          # slower, within 10x
    assert ch07.time_verdict(ch07.TIME_FACTOR, limit=1.0) == "differs"
    assert ch07.time_verdict(0.5) == "reproduced"           # the paper's 1 s
    lo, hi = ch07.K_TREND_BAND
    assert ch07.k_independence_verdict(1.0) == "reproduced"
    assert ch07.k_independence_verdict(lo) == "same trend"
    assert ch07.k_independence_verdict(hi) == "same trend"
    assert ch07.k_independence_verdict(ch07.K_WIDE_BAND[1]) == "differs"
    assert ch07.k_independence_verdict(hi * 0.999) == "reproduced"


def test_summary_quotes_this_runs_numbers():
    times = _times()
    t = ch07.timing_findings(times, timing.summarise(times))
    md = ch07.summary_markdown(
        dict(ks=[2, 3], complex_holds=True, odd_holds=True, even_extra=1, at_bound=True),
        "same trend", dict(ranks=[1, 5], psnr_low_pass_better=[1], agreement_low_pass_better=None),
        t, {"cpu-x": ("differs", "reproduced")}, {"cpu-x": 123.4}, 2, 8)
    assert "2.250 s per rank-k image (differs" in md and "k + 1" in md
    assert "123.4 images x ranks per second" in md and "1.25 (reproduced)" in md
