"""Chapter 08's correlation code against scipy, its bootstrap, its scores against
rank_spectrum, and its verdict rules, on made-up data and models."""
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from rankcore import spectrum
from rankcore.book import ch08_rank_as_a_metric as ch08


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=12)
    b = a + rng.normal(size=12)
    b[:3] = b[3]                                 # ties, which tau-b and average ranks handle
    a[5] = a[6]
    assert ch08.correlation(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert ch08.correlation(a, b, "kendall") == pytest.approx(stats.kendalltau(a, b).statistic,
                                                              abs=1e-12)


def test_constant_or_nan_gives_nan_and_bad_lengths_raise():
    assert np.isnan(ch08.correlation([1, 1, 1], [1, 2, 3]))
    assert np.isnan(ch08.correlation([1, 2, np.nan], [1, 2, 3], "kendall"))
    with pytest.raises(ValueError, match="same length"):
        ch08.correlation([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="method='pearson'"):
        ch08.correlation([1, 2, 3], [1, 2, 4], "pearson")


def test_blocks_resample_each_nested_block_within_itself():
    for idx in ch08.blocks([100, 20, 50], n_boot=20, seed=0):
        assert len(idx) == 100
        assert (idx[:20] < 20).all() and ((idx[20:50] >= 20) & (idx[20:50] < 50)).all()
        assert (idx[50:] >= 50).all()
    assert all(np.array_equal(a, b) for a, b in zip(ch08.blocks([10], 3, 1), ch08.blocks([10], 3, 1)))


def _made_up(n, models=8, seed=0):
    """Per-image arrays of models whose robust accuracy rises with their rank-1..5 top-1."""
    rng = np.random.default_rng(seed)
    ranks = [1, 2, 3, 4, 5, 8, 16, 32]
    out = {}
    for m in range(models):
        p = 0.2 + 0.07 * m
        correct = rng.random((n, len(ranks))) < np.linspace(p, 0.9, len(ranks))
        out[f"m{m}"] = {"correct": correct, "agree": correct,
                        **{k: rng.random(n) < 0.5 + 0.04 * m
                           for k in ("clean", "lowpass", "noise", "blur")},
                        "pgd": rng.random(n // 2) < p / 2}
    return out, ranks


def test_bootstrap_interval_holds_the_estimate_and_shrinks_with_more_images():
    widths = []
    for n in (40, 640):
        per_model, ranks = _made_up(n)
        corr = ch08.bootstrap_correlations(per_model, ranks, ["top1_rank1_5", "clean_top1"],
                                           ["pgd"], n_boot=100, seed=0)
        r = corr.set_index("score").loc["top1_rank1_5"]
        assert r.spearman_lo <= r.spearman <= r.spearman_hi
        assert r.kendall_lo <= r.kendall <= r.kendall_hi
        widths.append(r.spearman_hi - r.spearman_lo)
        # the point estimate is that of the full-sample score table
        t = ch08.score_table(per_model, ranks)
        assert r.spearman == pytest.approx(stats.spearmanr(t.top1_rank1_5, t.pgd).statistic)
    assert widths[1] < widths[0] / 2
    assert r.spearman > 0.8                      # the made-up trend is found


def test_score_row_matches_rank_spectrum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = torch.rand(24, 3, 8, 8), torch.randint(0, 10, (24,))
    ranks = [0, 1, 2, 3, 4, 5, 6, 8]
    d = ch08.per_image_scores(model, x, y, ranks, window=3, noise_std=0.1, blur_sigma=1.0,
                              seed=0)
    df = spectrum.rank_spectrum(model, x, y, ranks=ranks, progress=False)
    assert np.allclose(d["correct"].mean(0), df["top1"]) and np.allclose(d["agree"].mean(0),
                                                                         df["agreement"])
    row = ch08.score_row(d, ranks)
    assert row["agreement_auc"] == pytest.approx(spectrum.summary(df)["auc"])
    assert row["saturation_rank"] == spectrum.saturation_rank(df)
    assert row["top1_rank1_5"] == pytest.approx(df.set_index("rank").top1.loc[1:5].mean())


def test_matched_window_and_blur():
    x = torch.rand(6, 3, 16, 16)
    k = ch08.matched_window(x, 16)
    assert k == 15                               # full rank keeps all energy: the widest window
    flat = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(ch08.gaussian_blur(flat, 1.0), flat)
    assert ch08.gaussian_noise(x, 0.1, seed=0).equal(ch08.gaussian_noise(x, 0.1, seed=0))


def test_best_score_sentence_and_verdict():
    import pandas as pd
    corr = pd.DataFrame([
        {"score": "agreement_auc", "target": "t", "models": 9, "spearman": 0.3,
         "spearman_lo": -0.2, "spearman_hi": 0.7, "kendall": 0.2, "kendall_lo": -0.1,
         "kendall_hi": 0.5},
        {"score": "clean_top1", "target": "t", "models": 9, "spearman": -0.8,
         "spearman_lo": -0.9, "spearman_hi": -0.6, "kendall": -0.6, "kendall_lo": -0.8,
         "kendall_hi": -0.4}])
    s = ch08.best_markdown(corr, "t", "robust accuracy")
    assert "clean top-1" in s and "not a rank score" in s and "agreement AUC" in s


def test_min_models_is_the_fewest_where_a_perfect_order_beats_chance():
    import math
    alpha = 0.05 / len(ch08.RANK_SCORES + ch08.PROXIES)       # Bonferroni over the scores
    fewest = next(n for n in range(2, 20) if 2 / math.factorial(n) < alpha)
    assert ch08.MIN_MODELS == fewest == 6
    # the exact permutation p-value of rho = 1 is 2/n!: scipy's exact test agrees at n = 6
    r = stats.permutation_test((np.arange(6.0),), lambda x: stats.spearmanr(x, np.arange(6)).statistic,
                               permutation_type="pairings", n_resamples=np.inf)
    assert r.pvalue == pytest.approx(2 / math.factorial(6))


@pytest.mark.parametrize("rho, lo, hi, models, best_other, verdict", [
    (0.3, -0.2, 0.7, 11, None, "differs"),          # the interval reaches 0
    (0.3, 0.0, 0.7, 11, None, "differs"),           # ... touching it is reaching it
    (-0.8, -0.9, -0.6, 11, None, "reproduced"),     # a negative order is an order
    (0.6, 0.3, 0.8, 11, 0.61, "same trend"),        # a proxy predicts better
    (0.6, 0.3, 0.8, 11, -0.6, "reproduced"),        # a tie is not better
    (0.95, 0.9, 1.0, 5, None, "not meaningful here"),
    (0.1, -0.5, 0.6, 5, None, "not meaningful here"),  # too few models: not "differs"
    (0.95, 0.9, 1.0, 6, None, "reproduced"),
])
def test_metric_verdict_boundaries(rho, lo, hi, models, best_other, verdict):
    assert ch08.metric_verdict(rho, lo, hi, models, best_other) == verdict


def test_metric_rule_is_registered_beyond_the_paper():
    from rankcore.book import verdicts
    r = verdicts.all_rules()[f"{ch08.__name__}.metric_verdict"]
    assert r.kind == "beyond the paper"
    assert set(verdicts.OUTCOMES) <= set(r.examples())
    v = ch08.metric_verdict(0.9, 0.8, 1.0, 3)
    assert verdicts.reason(v) == "3 models; the rule needs 6 (MIN_MODELS)"


def test_missing_runs_are_skipped_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path))
    models, skipped = ch08.load_models(["natural", "low_rank:5"], "smoke")
    assert models == {} and set(skipped) == {"natural", "low_rank:5"}
    assert all("not trained yet" in v for v in skipped.values())
    assert not any(tmp_path.rglob("checkpoint.pt"))


def test_models_at_chance_are_left_out_of_the_correlations_with_their_reason():
    """A model answering one class "agrees" with itself at every rank (agreement AUC ~1):
    it must not enter the correlations. 10 classes, floor 2x chance = 20% clean top-1."""
    rng = np.random.default_rng(0)
    per_model = {"learned": {"clean": rng.random(500) < 0.60},
                 "at_floor": {"clean": np.arange(500) < 100},          # exactly 20%: kept
                 "at_chance": {"clean": rng.random(500) < 0.11}}
    kept, dropped = ch08.learned(per_model)
    assert list(kept) == ["learned", "at_floor"] and list(dropped) == ["at_chance"]
    assert "below 2x chance (20%)" in dropped["at_chance"]
    kept, dropped = ch08.learned(per_model, over_chance=6.5)            # 65%: all three out
    assert not kept and len(dropped) == 3
    with pytest.raises(ValueError, match="classes=1"):
        ch08.learned(per_model, classes=1)


def test_every_model_table_sets_the_learned_correlation_beside_all_models():
    per_model, ranks = _made_up(200)
    kept = {k: v for k, v in per_model.items() if k != "m0"}
    corr = ch08.bootstrap_correlations(kept, ranks, ["top1_rank1_5"], ["pgd"], n_boot=50)
    corr_all = ch08.bootstrap_correlations(per_model, ranks, ["top1_rank1_5"], ["pgd"], n_boot=50)
    t = ch08.with_every_model(corr, corr_all, "pgd")
    assert list(t.columns) == ["score", "learned", "every model"] and len(t) == 1
    every = ch08.score_table(per_model, ranks)
    rho = stats.spearmanr(every.top1_rank1_5, every.pgd).statistic
    assert t["every model"].iloc[0].startswith(f"{rho:+.2f} [") and "8 models" in t["every model"].iloc[0]
    assert "7 models" in t["learned"].iloc[0]


def test_scatter_shows_left_out_models_as_a_second_series():
    import matplotlib
    matplotlib.use("Agg")
    per_model, ranks = _made_up(50, models=4)
    table = ch08.score_table(per_model, ranks)
    fig = ch08.scatter_figure(table, ["top1_rank1_5"], "pgd", "PGD", left_out=["m0"])
    ax = fig.axes[0]
    sizes = [len(c.get_offsets()) for c in ax.collections]
    assert sizes == [3, 1]                         # correlated models, then the one left out
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["correlated", "left out (at chance)"]
