"""Chapter 02's module: verdict rules on made-up tables, skipped models, figures, the summary."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from rankcore import spectrum  # noqa: E402
from rankcore.book import ch02_rank_spectrum as ch02  # noqa: E402
from rankcore.book import runs  # noqa: E402


def table(top1, n=10000, ranks=None, agreement=None):
    ranks = list(range(len(top1))) if ranks is None else ranks
    df = pd.DataFrame({"rank": ranks, "agreement": agreement or top1, "top1": top1,
                       "top5": top1, "mean_true_prob": top1, "n": n})
    return spectrum.with_intervals(df)


def test_gap_verdict_follows_the_interval_not_the_point():
    natural = table([0.10] * 11 + [0.90])
    far_ahead = table([0.40] * 11 + [0.80])          # +30 points at every low rank
    g = spectrum.gap(far_ahead, natural)
    verdict, ev = ch02.gap_verdict(g, paper_points=20)
    assert verdict == "reproduced" and ev["lo"] > 20
    # +21 points on 10,000 images: interval above 20? not on 100 images.
    g_small = spectrum.gap(table([0.31] * 11 + [0.8], n=100), table([0.10] * 11 + [0.9], n=100))
    assert ch02.gap_verdict(g_small, 20)[0] == "same trend"        # point 21 > 20, bound not
    g_tiny = spectrum.gap(table([0.12] * 11 + [0.8], n=50), table([0.10] * 11 + [0.9], n=50))
    assert ch02.gap_verdict(g_tiny, 20)[0] == "differs"            # +2 points within noise
    behind = spectrum.gap(table([0.05] * 11 + [0.8]), natural)
    assert ch02.gap_verdict(behind, 20)[0] == "differs"
    with pytest.raises(ValueError, match="no rank"):
        ch02.gap_verdict(g[g["rank"] > 10], 20)


def test_full_rank_verdict():
    natural = table([0.1, 0.9])
    assert ch02.full_rank_verdict(spectrum.gap(table([0.2, 0.8]), natural))[0] == "reproduced"
    assert ch02.full_rank_verdict(spectrum.gap(table([0.2, 0.95]), natural))[0] == "differs"
    level = spectrum.gap(table([0.2, 0.9], n=100), table([0.1, 0.9], n=100))
    verdict, ev = ch02.full_rank_verdict(level)
    assert verdict == "differs" and ev["lo"] < 0 < ev["hi"]       # not resolved: not shown


def test_saturation_verdict_bands_and_evidence():
    grid, inet = list(range(33)), [0, 16, 40, 64, 96, 128, 180, 224]
    assert ch02.saturation_verdict(80, 100, inet, "imagenet") == "reproduced"
    assert ch02.saturation_verdict(180, 100, inet, "imagenet") == "same trend"
    assert ch02.saturation_verdict(40, 100, inet, "imagenet") == "differs"     # 0.4x
    assert ch02.saturation_verdict(224, 100, inet, "imagenet") == "differs"
    assert ch02.saturation_verdict(12, 15, grid, "cifar10") == "reproduced"
    assert ch02.saturation_verdict(8, 15, grid, "cifar10") == "same trend"
    # saturation at rank 3 does not agree with the paper's 15 (the old rule said it did)
    assert ch02.saturation_verdict(3, 15, grid, "cifar10") == "differs"
    assert ch02.saturation_verdict(float("nan"), 15, grid, "cifar10") == "differs"
    # a grid with no rank near the paper's cannot place it; too few images say so
    v = ch02.saturation_verdict(8, 15, [0, 4, 8, 32], "cifar10")
    assert v == "not meaningful here" and "no evaluated rank between 10 and 20" in v.reason
    assert ch02.saturation_verdict(12, 15, grid, "cifar10", why="40 images") == \
        "not meaningful here"


def test_evidence_gap_needs_images_and_accuracy_above_chance():
    assert ch02.evidence_gap(table([0.1, 0.9], n=40), "cifar10").startswith("40 images")
    assert "above chance" in ch02.evidence_gap(table([0.1, 0.15], n=10000), "cifar10")
    assert ch02.evidence_gap(table([0.1, 0.9], n=10000), "cifar10") == ""


def test_robust_saturation_is_judged_against_the_natural_model():
    grid = list(range(33))
    assert ch02.robust_saturation_verdict(5, 15, grid) == "reproduced"     # half or less
    assert ch02.robust_saturation_verdict(12, 15, grid) == "same trend"    # earlier
    assert ch02.robust_saturation_verdict(15, 15, grid) == "differs"       # not earlier
    assert ch02.robust_saturation_verdict(0, 0, grid) == "not meaningful here"


def test_lowest_auc_verdict():
    tables = {"VGG-19": table([0.0, 0.2, 1.0]), "ResNet-50": table([0.0, 0.8, 1.0]),
              "DenseNet-201": table([0.0, 0.5, 1.0]), "robust ResNet-50": table([0.0, 0.0, 1.0])}
    assert ch02.lowest_auc_verdict(tables, "VGG") == ("reproduced", "VGG-19")
    tables["GoogLeNet"] = table([0.0, 0.1, 1.0])
    assert ch02.lowest_auc_verdict(tables, "VGG") == ("same trend", "GoogLeNet")
    tables["VGG-19"] = table([0.0, 0.9, 1.0])
    assert ch02.lowest_auc_verdict(tables, "VGG")[0] == "differs"
    two = {"VGG-19": tables["VGG-19"], "ResNet-50": tables["ResNet-50"]}
    assert ch02.lowest_auc_verdict(two, "VGG")[0] == "not meaningful here"


def test_paired_gap_is_narrower_than_the_unpaired_one_on_the_same_images():
    # Two models on the same 1,000 images; the robust one is right wherever the natural
    # one is, and on 150 more: strongly correlated errors, so the paired interval is tight.
    rng = np.random.default_rng(0)
    nat = rng.random(1000) < 0.3
    rob = nat | (rng.random(1000) < 0.22)
    correct_nat, correct_rob = np.stack([nat, nat]), np.stack([rob, rob])
    mk = lambda c: table(list(c.mean(axis=1)), n=1000, ranks=[2, 32])  # noqa: E731
    g = spectrum.gap(mk(correct_rob), mk(correct_nat), correct=(correct_rob, correct_nat))
    row = g.iloc[0]
    assert row["paired"] and row["gap_lo"] > row["gap_lo_unpaired"]
    assert row["gap_hi"] - row["gap_lo"] < 0.7 * (row["gap_hi_unpaired"] - row["gap_lo_unpaired"])
    v, ev = ch02.gap_verdict(g, 10)
    assert "lo_unpaired" in ev and "unpaired [" in ch02._fmt(ev)


def _paper(key):
    return {"text.imagenet_saturation_rank.value": 100, "text.cifar10_saturation_rank.value": 15,
            "text.robust_low_rank_advantage.value": 20}[key]


def test_paper_comparison_rows_and_summary():
    cifar = {"natural": table([0.1] * 16 + [0.9] * 17), "L-inf": table([0.4] * 16 + [0.8] * 17)}
    rows = ch02.paper_comparison(
        _paper, imagenet={}, cifar=cifar, archs={}, natural=None, robust=None,
        imagenet_has_labels=False, cifar_pairs={"L-inf": ("L-inf", "natural"),
                                                "L2": ("L2", "natural")},
        skipped={"L2": "WeightsMissingError: no file"}, notes={"cifar": "10,000 images"})
    by = {(r["ref"], r["item"][:19]): r for r in rows}
    verdicts = [r["verdict"] for r in rows]
    assert set(verdicts) <= {"reproduced", "same trend", "differs", "needs GPU or data"}
    fig7c = [r for r in rows if r["ref"] == "fig7c"]
    assert fig7c[0]["verdict"] == "reproduced" and fig7c[1]["verdict"] == "needs GPU or data"
    assert "WeightsMissingError" in fig7c[1]["note"]
    assert by[("fig6", "ImageNet saturation")]["verdict"] == "needs GPU or data"
    assert by[("fig7b", "ImageNet saturation")]["verdict"] == "needs GPU or data"
    md = ch02.summary_markdown("quick", {"CIFAR-10": cifar}, rows, {"L2": "WeightsMissingError: x"})
    assert "**quick**" in md and "L2: skipped: WeightsMissingError" in md
    assert "reproduced" in md and "[" in md                 # intervals printed


def test_imagenet_rows_compare_the_natural_and_the_robust_saturation_ranks():
    # Figure 6 for the natural model, Figure 7b for the robust one, each against rank ~100;
    # a robust model that could not be loaded says why.
    ranks = [0, 25, 50, 75, 100, 150, 224]
    imagenet = {"natural": table([0.0, 0.1, 0.3, 0.6, 0.75, 0.76, 0.76], ranks=ranks),
                "robust": table([0.0, 0.3, 0.5, 0.55, 0.56, 0.56, 0.56], ranks=ranks)}
    rows = ch02.paper_comparison(
        _paper, imagenet=imagenet, cifar={}, archs={}, natural="natural", robust="robust",
        imagenet_has_labels=True, cifar_pairs={}, skipped={}, notes={})
    by = {r["ref"]: r for r in rows}
    assert by["fig6"]["ours"] == ch02.saturation_rank(imagenet["natural"])
    assert by["fig7b"]["ours"] == ch02.saturation_rank(imagenet["robust"])
    assert by["fig7b"]["item"] == "ImageNet: robust (robust) saturates earlier than natural"
    # 10,000 images in the made-up tables: judged against the natural model's rank (100),
    # not the paper's natural number; the robust curve saturates at 75 (earlier, not half)
    assert (by["fig6"]["ours"], by["fig7b"]["ours"]) == (100, 75)
    assert by["fig7b"]["verdict"] == ch02.robust_saturation_verdict(75, 100, ranks) == \
        "same trend"
    rows = ch02.paper_comparison(
        _paper, imagenet={"natural": imagenet["natural"]}, cifar={}, archs={}, natural="natural",
        robust="robust", imagenet_has_labels=True, cifar_pairs={},
        skipped={"robust": "WeightsMissingError: no file"}, notes={})
    fig7b = next(r for r in rows if r["ref"] == "fig7b")
    assert fig7b["verdict"] == "needs GPU or data" and "WeightsMissingError" in fig7b["note"]


def test_spectra_skips_models_that_cannot_be_loaded(monkeypatch):
    from rankcore import models

    class Missing(getattr(models, "WeightsError", FileNotFoundError)):
        pass

    def fake_load(spec, profile="quick", device=None, download=False, progress=True):
        if spec == "absent":
            raise Missing("no weights for 'absent'")
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()
        net.input_size = (3, 32, 32)
        return net

    monkeypatch.setattr(runs, "load_model", fake_load)
    tables, skipped = ch02.spectra({"ok": "toy", "gone": "absent"}, "cifar10", n=6,
                                   ranks=[0, 8, 32], progress=False, cache=False)
    assert list(tables) == ["ok"] and skipped["gone"].startswith("Missing: no weights")
    df = tables["ok"]
    assert {"top1_lo", "top1_hi", "agreement_lo"} <= set(df.columns) and (df["n"] == 6).all()
    assert df.attrs["source"] == "cifar10"


def test_figures_draw():
    tables = {"a": table([0.1, 0.5, 0.9], n=50), "b": table([0.3, 0.6, 0.8], n=50)}
    ax = ch02.plot(tables, "top1", title="t")
    assert len(ax.collections) == 2                          # one interval band per curve
    ax = ch02.plot_gap(spectrum.gap(tables["b"], tables["a"]))
    assert len(ax.lines) >= 2
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 7)).eval()
    fig, top = ch02.figure_top5({"net": net}, torch.rand(3, 8, 8), rank=2, k=3)
    assert len(top) == 6 and set(top["input"]) == {"full rank", "rank 2"}
    np.testing.assert_allclose(top.groupby("input")["prob"].max().to_numpy() <= 1, True)


def test_seed_scatter_widens_the_gap_interval():
    g = pd.DataFrame({"rank": [2, 32], "gap": [0.25, -0.05], "gap_lo": [0.22, -0.07],
                      "gap_hi": [0.28, -0.03]})
    assert ch02.gap_verdict(g, 20)[0] == "reproduced"
    v, ev = ch02.gap_verdict(g, 20, seed_sd=3.0)
    # half-width 1.96 sqrt((3 / 1.96)^2 + 2 * 3^2) = 9.1 points: lower bound 15.9
    assert v == "same trend" and ev["lo"] == pytest.approx(25 - 1.96 * np.sqrt((3 / 1.96) ** 2 + 18), abs=1e-3)
    assert ev["seed_sd"] == 3.0 and ev["hi"] > 28


def test_per_image_outcomes_average_to_the_table():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    x, y = torch.rand(10, 3, 8, 8), torch.arange(10) % 4
    df, out = spectrum.rank_spectrum(net, x, y, ranks=[0, 2, 8], progress=False, per_image=True)
    assert out["correct"].shape == out["agree"].shape == (3, 10)
    np.testing.assert_allclose(out["correct"].mean(axis=1), df["top1"])
    np.testing.assert_allclose(out["agree"].mean(axis=1), df["agreement"])
    assert out["agree"][-1].all()                       # full rank agrees with itself
    _, unlabelled = spectrum.rank_spectrum(net, x, ranks=[0, 8], progress=False, per_image=True)
    assert unlabelled["correct"] is None
