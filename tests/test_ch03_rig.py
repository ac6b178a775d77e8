"""Chapter 03's module: verdict rules, generated summary, figures, per-model skips."""
from __future__ import annotations

import json
import math

import matplotlib
import pandas as pd
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from rankcore import attribution as A  # noqa: E402
from rankcore.book import ch03_rig as ch03  # noqa: E402


def small_cnn(seed=0, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, classes)).double().eval()


def images(n=3, size=12, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


def auc_rows(rig_del, rig_ins, van_del=0.2, van_ins=0.3, n=3):
    # per image i: a shared offset 0.01 i, and +-0.02 that alternates between RIG images
    return [{"image": i, "method": m, "target": 0,
             "deletion_auc": d + 0.01 * i + (0.02 * (-1) ** i if m == "rig" else 0),
             "insertion_auc": s + 0.01 * i + (0.02 * (-1) ** i if m == "rig" else 0),
             "seconds": 1.0}
            for i in range(n) for m, d, s in (("vanilla", van_del, van_ins),
                                              ("rig", rig_del, rig_ins),
                                              ("smoothgrad", 0.05, 0.9))]


def auc_table(rig_del, rig_ins, van_del=0.2, van_ins=0.3):
    return A.auc_summary(auc_rows(rig_del, rig_ins, van_del, van_ins))


def test_stride_is_a_parse_ranks_stride():
    from rankcore.rank import parse_ranks
    assert parse_ranks(ch03.stride(8), 32) == [8, 16, 24, 32]
    assert parse_ranks(ch03.stride(1), 4) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="stride"):
        ch03.stride(0)


@pytest.mark.parametrize("rig_del,rig_ins,expected,answer", [
    (0.1, 0.4, ("reproduced", "reproduced"), "Yes"),
    (0.1, 0.2, ("reproduced", "differs"), "Partly"),
    (0.195, 0.305, ("same trend", "same trend"), "Yes"),     # ahead, interval reaches 0
    (0.3, 0.2, ("differs", "differs"), "No"),
])
def test_auc_verdicts_are_paired_over_images(rig_del, rig_ins, expected, answer):
    rows = auc_rows(rig_del, rig_ins, n=24)
    v = ch03.auc_verdicts(rows)
    assert (v["deletion"][0], v["insertion"][0]) == expected
    assert v["deletion"][1] == pytest.approx(rig_del + 0.01 * 11.5)    # mean over 24 images
    d, lo, hi = v["insertion"][3]
    assert d == pytest.approx(rig_ins - 0.3) and lo <= d <= hi
    assert ch03.claim_answer(v) == answer


def test_paired_verdict_needs_images():
    v, diff = ch03.paired_verdict([0.5] * 6, [0.1] * 6)
    assert v == "not meaningful here" and "6 images" in v.reason and diff[0] == pytest.approx(0.4)


def _align(rob_edge, nat_edge, rob_coh, nat_coh, n=24):
    wob = [0.01 * (-1) ** i for i in range(n)]
    align = pd.DataFrame([
        {"model": "natural", "method": "RIG", "edge_alignment": nat_edge, "coherence": nat_coh},
        {"model": "robust", "method": "RIG", "edge_alignment": rob_edge, "coherence": rob_coh},
        {"model": "robust", "method": "vanilla", "edge_alignment": 0.9, "coherence": 0.9}])
    align.attrs["per_image"] = {
        "natural: RIG": {"edge_alignment": [nat_edge] * n, "coherence": [nat_coh] * n},
        "robust: RIG": {"edge_alignment": [rob_edge + w for w in wob],
                        "coherence": [rob_coh + w for w in wob]}}
    return align


def test_alignment_verdicts_are_paired():
    v = ch03.alignment_verdicts(_align(0.03, 0.10, 0.80, 0.45))
    assert v["edge_alignment"][:3] == ("differs", 0.03, 0.10)
    assert v["coherence"][:3] == ("reproduced", 0.80, 0.45)
    assert v["coherence"][3][1] > 0                               # the interval's lower bound


def test_figure10_ranks_scale_the_papers():
    assert ch03.figure10_ranks(224) == [1, 5, 10, 25, 50, 100]
    assert ch03.figure10_ranks(32) == [1, 4, 7, 14]        # 32 * (1, 5, 10, 25, 50, 100) / 224, rounded
    assert all(1 <= k < 8 for k in ch03.figure10_ranks(8))


class FakeResults:
    def __init__(self):
        self.rows = []

    def score(self, ref, item, paper, ours, verdict, note="", kind="paper claim"):
        self.rows.append({"ref": ref, "item": item, "verdict": verdict, "note": note,
                          "kind": kind})


def test_scores_and_summary_follow_the_numbers():
    table = auc_table(0.1, 0.2)
    auc = ch03.auc_verdicts(auc_rows(0.1, 0.2, n=24))
    cifar = ch03.alignment_verdicts(_align(0.03, 0.10, 0.80, 0.45))
    res = FakeResults()
    ch03.record_scores(res, auc, [1, 5], 224, "pair", cifar, None, "weights absent", False, "n")
    got = {(r["ref"], r["verdict"]) for r in res.rows}
    assert ("fig1", "differs") in got and ("fig8", "reproduced") in got
    assert ("fig11", "differs") in got and ("fig11", "reproduced") in got
    assert ("fig18", "needs GPU or data") in got and ("fig17", "needs GPU or data") in got
    kinds = {r["ref"]: r["kind"] for r in res.rows}
    assert kinds["fig10"] == kinds["fig17"] == "illustration" and kinds["fig1"] == "paper claim"
    text = ch03.summary_markdown("smoke", table, auc, 3, "samples", "net", cifar, None,
                                 {"Figure 18 robust model": "WeightsMissingError: absent"})
    assert "**Partly**" in text and "(0.215 vs 0.315)" in text and "smoke" in text
    assert "Best of the 3 methods: smoothgrad (deletion), smoothgrad (insertion)" in text
    assert "0.03 against 0.10 (**differs**)" in text
    assert "Figure 18 robust model: skipped: WeightsMissingError: absent" in text


def test_pair_alignment_and_figures():
    pair = {"natural": small_cnn(0), "robust": small_cnn(1)}
    x = images()
    maps, align = ch03.pair_alignment(pair, x, torch.tensor([0, 1, 2]), 4, ranks=ch03.stride(3))
    assert set(maps) == {"natural: vanilla", "natural: RIG", "robust: vanilla", "robust: RIG"}
    assert len(align) == 4 and align.images.eq(3).all()
    ref = A.edge_alignment(x, maps["robust: RIG"]).mean().item()
    row = align[(align.model == "robust") & (align.method == "RIG")].iloc[0]
    assert row.edge_alignment == pytest.approx(ref)
    assert not math.isnan(row.coherence_sem)
    fig = ch03.plot_saliency(x, maps, titles=["a", "b", "c"])
    assert len(fig.axes) == 3 * 5
    fig, ks = ch03.figure10(pair["natural"], x[:1], torch.tensor([2]), 4)
    assert ks == ch03.figure10_ranks(12) and len(fig.axes) == 2 * (len(ks) + 1)
    fig = ch03.saliency_figure(pair["natural"], x[:2], torch.tensor([0, 1]), ch03.stride(4), 4)
    assert len(fig.axes) == 2 * 3
    fig = ch03.plot_auc(auc_table(0.1, 0.4), "t")
    assert fig.axes[0].get_title() == "t"


def test_notebook_uses_contract_parameter_names(repo):
    nb = json.loads((repo / "book" / "03_rig.ipynb").read_text())
    params = next("".join(c["source"]) for c in nb["cells"]
                  if "parameters" in c.get("metadata", {}).get("tags", []))
    for name in ("profile", "seed", "batch_size", "download", "imagenet_data", "imagenet_n",
                 "cifar_n"):
        assert f"\n{name}:" in f"\n{params}", name
    assert "cifar_scale" not in params and "n_auc" not in params
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert 'Results("03_rig", profile)' in code
