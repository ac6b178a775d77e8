"""Chapter 06's Table 2 rules at their boundaries; the attack table in percent; the summary."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from rankcore.book import runs
from rankcore.book import ch06_low_rank_robustness as ch06
from rankcore.book import paper


def _paper_cifar():
    return yaml.safe_load(paper.values_path().read_text())["table2"]["cifar10"]


def test_run_names_and_labels():
    assert ch06.run_names([5, 20, 10]) == ["natural", "low_rank:20", "low_rank:10", "low_rank:5", "adv"]
    assert ch06.run_names([5], include_adv=False) == ["natural", "low_rank:5"]
    assert [ch06.run_label(n) for n in ("natural", "adv", "low_rank:5")] == [
        "full rank", "full rank, adversarial", "rank 5"]


def _band_edge(what, paper_value):
    return ch06.rate_band(what, paper_value)[0 if what == "success" else 1]


@pytest.mark.parametrize("what, ours, paper_value, n, verdict", [
    # the paper's rate inside our 95% Wilson interval
    ("success", 99.0, 99.27, 2000, "reproduced"),
    ("recovery", 0.5, 0.34, 2000, "reproduced"),
    # outside it, but the interval reaches a few times the paper's failure / recovery rate
    ("success", 97.0, 99.27, 2000, "same trend"),
    ("recovery", 1.2, 0.34, 2000, "same trend"),
    # a network steered on 90% of the images, or recovering 5%, does not pass
    ("success", 90.0, 99.27, 2000, "differs"),
    ("recovery", 5.0, 0.34, 2000, "differs"),
    # ... and 500 images are enough to say so, though not to resolve 0.03% (below)
    ("success", 55.0, 99.93, 500, "differs"),
    # 500 images cannot tell 0.03% recovered from 5 times that
    ("recovery", 0.0, 0.03, 500, "not meaningful here"),
    ("success", 100.0, 99.93, 500, "not meaningful here"),
])
def test_rate_verdict_boundaries(what, ours, paper_value, n, verdict):
    assert ch06.rate_verdict(what, ours, paper_value, n) == verdict


def test_rate_band_is_a_few_times_the_papers_rate():
    assert ch06.rate_band("success", 99.27) == pytest.approx((100 - 5 * 0.73, 100))
    assert ch06.rate_band("recovery", 0.34) == pytest.approx((0, 5 * 0.34))
    # the old rule's 80% success / 10% recovery are far outside every band
    for row in _paper_cifar().values():
        assert ch06.rate_band("success", row["success"])[0] > 95
        assert ch06.rate_band("recovery", row["recovery"])[1] < 2


def test_rate_verdict_rejects_other_rates():
    with pytest.raises(ValueError, match="what='top1'"):
        ch06.rate_verdict("top1", 1.0, 1.0, 100)
    with pytest.raises(ValueError, match="n must be"):
        ch06.rate_verdict("success", 1.0, 1.0, 0)


def test_adv_verdict_boundary():
    assert ch06.adv_verdict(49.99, 50.0 + ch06.ADV_MARGIN) == "same trend"
    assert ch06.adv_verdict(50.0, 50.0 + ch06.ADV_MARGIN) == "differs"      # strictly more
    # by the intervals on the same 500 images: far apart -> reproduced; 40 images: not
    assert ch06.adv_verdict(20.0, 99.0, n=500) == "reproduced"
    assert ch06.adv_verdict(80.0, 95.0, n=40) == "same trend"


class _Const(nn.Module):
    """Predicts class ``c`` everywhere: no attack can move it."""

    def __init__(self, c):
        super().__init__()
        self.c, self.w = c, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(x.shape[0], 10) + 0 * self.w
        out[:, self.c] = 1.0
        return out + 0 * x.sum(dim=(1, 2, 3), keepdim=False)[:, None]


def test_attack_table_in_percent_against_a_model_nothing_can_move():
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(8, dtype=torch.long)
    ours = ch06.attack({"natural": _Const(0), "low_rank:5": _Const(1)}, x, y, eps=4 / 255,
                       steps=2, restarts=1, seed=0)
    row = ours.set_index("run")
    # constant predictions: every label is 0, every target another class, so the class-0
    # model keeps all images (top-1 = recovery = 100%, success 0%), the class-1 model none
    assert row.loc["natural", ["top1", "recovery", "success"]].tolist() == [100.0, 100.0, 0.0]
    assert row.loc["low_rank:5", ["top1", "recovery"]].tolist() == [0.0, 0.0]
    t2 = ch06.table2(ours)
    ref = _paper_cifar()
    assert t2["paper_success"].tolist() == [ref["full"]["success"], ref[5]["success"]]
    assert t2["trained_on"].tolist() == ["full rank", "rank 5"]
    assert t2["n"].tolist() == [8, 8]
    v = ch06.table2_verdicts(t2)
    # the unmovable model differs even on 8 images (0% success, 100% recovered); a 0 of 8
    # recovery cannot be told from the paper's 0.34% on 8 images
    assert v[("natural", "success")] == "differs" and v[("natural", "recovery")] == "differs"
    assert v[("low_rank:5", "recovery")] == "not meaningful here"


@dataclasses.dataclass
class _Config:
    arch: str = "toynet"
    epochs: int = 2


@dataclasses.dataclass
class _Trained:
    configs: dict
    family: str


def test_summary_and_architecture_note_from_the_run():
    ours = pd.DataFrame({"run": ["natural", "low_rank:5", "adv"], "success": [99.9, 99.2, 20.0],
                         "recovery": [0.05, 0.4, 60.0], "top1": [90.0, 88.0, 70.0],
                         "n": 10000})
    t2 = ch06.table2(ours)
    v = ch06.table2_verdicts(t2)
    assert set(v) == {("natural", "success"), ("natural", "recovery"),
                      ("low_rank:5", "success"), ("low_rank:5", "recovery")}
    trained = _Trained({"natural": _Config(), "low_rank:5": _Config()}, "resnet")
    md = ch06.summary_markdown(t2, v, {"top1": 0.9, "recovery": 0.05}, "same trend", 100, 4 / 255,
                               20, trained, "smoke", families=["airbench", "resnet"])
    assert "4 of 4 rates follow the paper" in md and "90.0% -> 5.0%" in md
    assert "success 20.0% against at least 99.2%" in md and "`toynet`" in md
    assert "`resnet` family" in md and "also trains the `airbench` family" in md
    assert "trains no other family" in ch06.architecture_markdown(trained, ["resnet"])
    assert "not a test of" not in md                      # resnet: the paper's family
    md2 = ch06.summary_markdown(t2, v, {"top1": 0.9, "recovery": 0.05}, None, 100, 4 / 255, 20,
                                trained, "smoke", ["airbench", "resnet"], others={"airbench": t2})
    assert "**The `airbench` family**, attacked the same way (not scored): full rank: success 99.9%" in md2
    other = ch06.architecture_markdown(_Trained({"natural": _Config()}, "airbench"), ["airbench"])
    assert "Without a `resnet` run" in other and "about the `airbench` network" in other


def test_imagenet_rule_needs_the_drop_from_full_to_lowest_rank():
    def t2(full, lowest):
        ours = pd.DataFrame({"run": ["natural", "low_rank:100", "low_rank:30"],
                             "success": [full, 90.0, lowest], "recovery": [0.0] * 3,
                             "top1": [70.0] * 3, "n": 1000})
        return ch06.table2(ours, "imagenet")
    ref = yaml.safe_load(paper.values_path().read_text())["table2"]["imagenet"]
    table = t2(60.0, 60.0 - ch06.IMAGENET_DROP)
    assert table["paper_success"].tolist() == [ref["full"]["success"], ref[100]["success"],
                                               ref[30]["success"]]
    assert ch06.imagenet_verdicts(table) == {"natural": "same trend", "low_rank:100": "same trend",
                                             "low_rank:30": "same trend"}
    assert set(ch06.imagenet_verdicts(t2(60.0, 50.01)).values()) == {"differs"}
    # within RATE_CLOSE of the paper's number: reproduced whatever the trend
    close = t2(ref["full"]["success"] - ch06.RATE_CLOSE, 90.0)
    assert ch06.imagenet_verdicts(close)["natural"] == "reproduced"


class _Steep(nn.Module):
    """Two classes split at mean brightness 0.5 with a steep margin: any 8/255 push across
    flips the class, so untargeted PGD must take every image."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), 100 * (m - 0.5)], dim=1)


class _Constant(nn.Module):
    """Always class 0, whatever the input: no attack can change an answer."""

    def forward(self, x):
        return torch.tensor([5.0, 0.0]).expand(len(x), 2) + 0 * x.sum(dim=(1, 2, 3))[:, None]


def test_robust_accuracy_untargeted_at_the_training_radius():
    y = torch.tensor([1, 0] * 5)
    x = (0.5 + 0.01 * (2 * y - 1).float()).view(10, 1, 1, 1).expand(10, 3, 4, 4).clone()
    rob = ch06.robust_accuracy({"natural": _Steep(), "adv": _Constant()}, x, y,
                               eps=8 / 255, steps=20, restarts=1, seed=0)
    steep, const = rob.set_index("run").loc["natural"], rob.set_index("run").loc["adv"]
    assert (steep.top1, steep.pgd_top1) == (100.0, 0.0)       # every 0.01 margin is crossed
    assert (const.top1, const.pgd_top1) == (50.0, 50.0)       # nothing to move
    z2 = 1.959963984540054 ** 2                               # Wilson at p = 0: [0, z^2/(n+z^2)]
    assert steep.pgd_lo == 0.0 and steep.pgd_hi == pytest.approx(100 * z2 / (10 + z2))
    # 5 of 10: centre 0.5, half-width z sqrt(0.25/10 + z^2/400) / (1 + z^2/10) = 0.2634
    assert (const.pgd_lo, const.pgd_hi) == (pytest.approx(23.66, abs=0.01), pytest.approx(76.34, abs=0.01))
    line = ch06.robust_markdown(rob, 8 / 255, 20)
    assert "eps 8/255, 10 test images" in line and "full rank: 100.0% clean -> 0.0% [0.0, 27.8]" in line
    assert "full rank, adversarial: 50.0% clean -> 50.0% [23.7, 76.3]" in line


def test_extra_models_load_or_say_why(tmp_path):
    bad = tmp_path / "resnet20.th"
    bad.write_bytes(b"<html>not a checkpoint</html>")
    loaded, skipped = runs.load_models({"ResNet-20 (file)": f"cifar_resnet20={bad}",
                                       "ResNet-20 (gone)": f"cifar_resnet20={tmp_path / 'gone.th'}"},
                                      "smoke")
    assert loaded == {} and set(skipped) == {"ResNet-20 (file)", "ResNet-20 (gone)"}
    assert all(str(tmp_path) in why for why in skipped.values())
    ours = pd.DataFrame({"run": ["ResNet-20 (published)"], "success": [99.5], "recovery": [0.25],
                         "top1": [91.0]})
    lines = ch06.extra_markdown(ours, skipped)
    assert lines[0] == ("- **ResNet-20 (published)**, attacked the same way (not scored): "
                        "success 99.5%, recovery 0.2%, top-1 91.0%.")
    assert lines[1].startswith("- **ResNet-20 (file)**: skipped: ") and len(lines) == 3
    assert ch06.extra_markdown(None, {}) == []


def _tiny_classifier():
    """A small seeded CNN on 8 x 8 images (10 classes) whose predictions PGD can move."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 8 * 8, 10)).eval()


def test_robust_per_image_matches_evaluate_across_batches():
    from rankcore import attacks
    model = _tiny_classifier()
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    spec = {"pgd": {"attack": "pgd", "norm": "linf", "eps": 4 / 255, "steps": 5, "restarts": 2}}
    ok = ch06.robust_per_image(model, x, y, spec, seed=3, batch_size=16)["pgd"]
    ref = attacks.evaluate(model, x, y, eps=4 / 255, steps=5, targeted=False, restarts=2,
                           seed=3, batch_size=16)
    assert ok.shape == (40,) and ok.dtype == bool
    assert ok.mean() == pytest.approx(ref["recovery"])       # same batches, same seeds
    assert 0 < ok.sum() < 40                                  # the attack moved some, not all
    with pytest.raises(ValueError, match="attack='fgsm'"):
        ch06.robust_per_image(model, x, y, {"f": {"attack": "fgsm", "norm": "linf", "eps": 0.1}}, 0)


def test_autoattack_table_wilson_and_paired_difference():
    from scipy.stats import binomtest
    from rankcore import stats
    pgd_ok = np.array([True] * 40 + [False] * 60)
    aa_ok = pgd_ok.copy()
    aa_ok[:6] = False                                         # AutoAttack takes 6 more ...
    aa_ok[50] = True                                          # ... and misses 1 PGD took
    t = ch06.autoattack_table(pgd_ok, aa_ok, steps=20, version="fast").set_index("attack")
    assert list(t.index) == ["PGD-20", "AutoAttack (fast)", "PGD-20 minus AutoAttack (paired)"]
    ci = binomtest(35, 100).proportion_ci(method="wilson")
    assert t.loc["AutoAttack (fast)", "accuracy"] == pytest.approx(35.0)
    assert t.loc["AutoAttack (fast)", ["lo", "hi"]].tolist() == pytest.approx(
        [100 * ci.low, 100 * ci.high])
    d = t.loc["PGD-20 minus AutoAttack (paired)"]
    assert d.accuracy == pytest.approx(5.0)                   # (6 - 1) / 100 images
    # Newcombe's paired interval on the 2 x 2 table (a, b, c, d) = (34, 6, 1, 59)
    assert [d.lo, d.hi] == pytest.approx([100 * v for v in stats.newcombe_paired(34, 6, 1, 59)[1:]])
    _, ilo, ihi = stats.newcombe_independent(40, 100, 35, 100)
    assert d.hi - d.lo < 100 * (ihi - ilo)                    # paired: narrower than unpaired
    line = ch06.autoattack_markdown(t.reset_index(), 8 / 255, "same trend")
    assert "the same 100 test images" in line and "PGD-20 leaves 40.0%" in line
    assert "AutoAttack (fast) 35.0%" in line and "takes 5.0 points more" in line


@pytest.mark.parametrize("gap, lo, hi, pgd_hi, verdict", [
    (2.0, 0.5, ch06.AA_GAP, 40.0, "reproduced"),              # the interval ends at AA_GAP
    (4.0, 2.0, ch06.AA_GAP + 0.01, 40.0, "same trend"),       # straddles it
    (7.0, ch06.AA_GAP + 0.01, 9.0, 40.0, "differs"),          # wholly beyond: masking
    (-1.0, -3.0, 1.0, 40.0, "reproduced"),                    # AutoAttack no stronger here
    (7.0, 6.0, 9.0, ch06.AA_MIN_ROBUST - 0.01, "not meaningful here"),
    (4.0, -1.0, -1.0 + 2 * ch06.AA_GAP, 40.0, "same trend"),  # 10 points wide: still placed
    (4.0, -1.0, -0.99 + 2 * ch06.AA_GAP, 40.0, "not meaningful here"),  # 16 images' width
])
def test_autoattack_verdict_boundaries(gap, lo, hi, pgd_hi, verdict):
    assert ch06.autoattack_verdict(gap, lo, hi, pgd_hi) == verdict


def test_autoattack_rule_is_beyond_the_paper_and_can_differ():
    from rankcore.book import verdicts
    r = ch06.autoattack_verdict.rule
    assert r.kind == "beyond the paper" and r.refs == ("autoattack",)
    assert {o: r.outcome(**r.examples()[o][0]) for o in verdicts.OUTCOMES} == {
        o: o for o in verdicts.OUTCOMES}


def test_pgd_vs_autoattack_on_a_model_nothing_can_move():
    pytest.importorskip("torchattacks")
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(8, dtype=torch.long)
    ok = ch06.pgd_vs_autoattack(_Const(0), x, y, eps=8 / 255, steps=3, restarts=1, seed=0,
                                version="fast")
    assert ok["pgd"].all() and ok["autoattack"].all()         # a constant model keeps every image
    ok1 = ch06.pgd_vs_autoattack(_Const(1), x, y, eps=8 / 255, steps=3, restarts=1, seed=0,
                                 version="fast")
    assert not ok1["pgd"].any() and not ok1["autoattack"].any()


def test_table2_carries_the_wilson_intervals_the_rule_judges():
    from rankcore import stats
    ours = pd.DataFrame({"run": ["natural", "low_rank:5"], "success": [96.0, 50.0],
                         "recovery": [1.0, 30.0], "top1": [80.0, 78.0], "n": 200})
    t2 = ch06.table2(ours).set_index("run")
    lo, hi = stats.wilson(192, 200)                           # 96% of 200 images
    assert t2.loc["natural", ["ours_success_lo", "ours_success_hi"]].tolist() == pytest.approx(
        [100 * lo, 100 * hi])
    lo, hi = stats.wilson(60, 200)
    assert t2.loc["low_rank:5", ["ours_recovery_lo", "ours_recovery_hi"]].tolist() == pytest.approx(
        [100 * lo, 100 * hi])
    # the rule's "differs" is the interval lying outside the band: here for rank 5's
    # success (its upper bound 56.9% is far below the band) on the same 200 images
    band = ch06.rate_band("success", t2.loc["low_rank:5", "paper_success"])
    assert t2.loc["low_rank:5", "ours_success_hi"] < band[0]
    assert ch06.table2_verdicts(t2.reset_index())[("low_rank:5", "success")] == "differs"
    trained = _Trained({"natural": _Config(), "low_rank:5": _Config()}, "airbench")
    md = ch06.summary_markdown(t2.reset_index(), {}, {"top1": 0.8, "recovery": 0.0}, None, 200,
                               4 / 255, 20, trained, "smoke")
    assert "success 96.0% [92.3, 98.0]" in md and "95% Wilson intervals" in md


def test_random_order_makes_every_prefix_of_a_class_ordered_subset_a_random_draw():
    """The JPEG CIFAR-10 copy's subsets come ordered by class: the first 100 of 500 were
    50 airplanes and 50 cars, and chapter 08 attacked only those."""
    y = torch.arange(10).repeat_interleave(50)                 # 500 labels, by class
    order = ch06.random_order(len(y), seed=0)
    assert sorted(order.tolist()) == list(range(500))          # a permutation
    assert torch.equal(order, ch06.random_order(500, seed=0))  # seeded
    assert not torch.equal(order, ch06.random_order(500, seed=1))
    assert len(set(y[:100].tolist())) == 2 and len(set(y[order[:100]].tolist())) == 10
    assert torch.equal(ch06.attack_subset(500, 0, 3), torch.arange(500))    # all, in order
    assert torch.equal(ch06.attack_subset(500, 800, 3), torch.arange(500))
    assert torch.equal(ch06.attack_subset(500, 50, 3), ch06.random_order(500, 3)[:50])
