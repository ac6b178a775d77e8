"""Chapter 05's Table 2 top-1 column and Figure 16 rules, against the paper's YAML file."""
import math

import pytest
import yaml

from rankcore.book import ch05_low_rank_training as ch05
from rankcore.book import paper


def _paper_cifar():
    return yaml.safe_load(paper.values_path().read_text())["table2"]["cifar10"]


def test_run_names_and_labels():
    assert ch05.run_names([3, 5]) == ["low_rank:3", "low_rank:5", "natural"]
    assert ch05.rank_label("low_rank:5") == "rank 5" and ch05.rank_label("natural") == "full rank"


@pytest.mark.parametrize("gaps, shrinks", [
    ({5: 4.0, 10: 1.0, 20: 0.0}, True),
    ({5: 1.0, 10: 1.0 + ch05.SHRINK_NOISE}, True),          # widening of exactly the noise
    ({5: 1.0, 10: 1.0 + ch05.SHRINK_NOISE + 0.01}, False),
    ({20: 0.0, 3: 9.0}, True),                              # sorted by rank, not by dict order
])
def test_gap_shrinks(gaps, shrinks):
    assert ch05.gap_shrinks(gaps) is shrinks


def test_table2_top1_rows_against_the_paper():
    top1 = {"natural": 80.0, "low_rank:3": 60.0, "low_rank:5": 70.0, "low_rank:20": 79.0}
    t2 = ch05.table2_top1(top1, [3, 5, 20])
    ref = _paper_cifar()
    assert t2["trained_on"].tolist() == ["full", 20, 5, 3]
    row = t2.set_index("trained_on")
    assert row.loc[5, "paper_top1"] == ref[5]["top1"]
    assert row.loc[5, "paper_gap"] == pytest.approx(ref["full"]["top1"] - ref[5]["top1"])
    assert row.loc[5, "ours_gap"] == 10.0 and row.loc["full", "ours_gap"] == 0.0
    p3 = row.loc[3, "paper_top1"]
    assert p3 is None or math.isnan(p3)                   # the paper has no rank-3 row
    verdicts, shrinks = ch05.table2_top1_verdicts(t2)
    assert shrinks and set(verdicts) == {"full", 20, 5}


@pytest.mark.parametrize("trained_on, ours, ours_gap, shrinks, verdict", [
    (5, 91.54 - ch05.TOP1_CLOSE, 5.0, False, "reproduced"),         # boundary: within 2 points
    (5, 80.0, 3.67 + ch05.GAP_SLACK, True, "same trend"),           # gap at the slack
    (5, 80.0, 3.67 + ch05.GAP_SLACK + 0.01, True, "differs"),
    (5, 80.0, 1.0, False, "differs"),                               # gap widens with rank
    # the full-rank row on its own accuracy, not the other rows' gaps
    ("full", 91.54 - ch05.FULL_TREND_BAND, 0.0, True, "same trend"),
    ("full", 91.54 - ch05.FULL_TREND_BAND - 0.01, 0.0, True, "differs"),
    ("full", 80.0, 0.0, True, "differs"),
])
def test_table2_top1_verdict_boundaries(trained_on, ours, ours_gap, shrinks, verdict):
    assert ch05.table2_top1_verdict(trained_on, ours, 91.54, ours_gap, 3.67, shrinks) == verdict


def test_fig16_rule_and_summary():
    assert ch05.fig16_verdict(True) == "same trend" and ch05.fig16_verdict(False) == "differs"
    assert ch05.fig16_verdict(True, ["reproduced"]) == "reproduced"

    class _C:
        arch, epochs = "toynet", 2

    class _T:
        configs, family = {"natural": _C()}, "resnet"

    t2 = ch05.table2_top1({"natural": 80.0, "low_rank:5": 70.0}, [5])
    md = ch05.summary_markdown(t2, {5: "differs"}, True, _T(), "smoke", "not run here.")
    assert "full-rank model reaches 80.0%" in md and "rank 5: 70.0%, gap 10.0 points" in md
    assert "not run here." in md and "`resnet` family: toynet, 2 epochs" in md


def test_imagenet_status_says_what_is_missing(tmp_path):
    st = ch05.imagenet_status(["low_rank:30", "natural"], root=tmp_path / "runs",
                              data_root=tmp_path / "data")
    assert st["ready"] is False and st["reason"].startswith("needs imagenet-train")
    assert len(st["commands"]) == 2 and "--transform low_rank:30" in st["commands"][0]
    assert str(ch05.imagenet_dir("low_rank:30", tmp_path / "runs")) in st["commands"][0]
    assert "--transform" not in st["commands"][1]
    # a run's folder carries its configuration's key: another recipe, another folder
    assert ch05.imagenet_dir("low_rank:30", tmp_path) != ch05.imagenet_dir("low_rank:50", tmp_path)


def test_imagenet_top1_and_table_rows():
    import pandas as pd
    curves = pd.DataFrame({"run": ["natural", "natural", "low_rank:100", "low_rank:100"],
                           "epoch": [2, 1, 1, 2], "test_top1": [0.75, 0.5, 0.25, 0.7]})
    top1 = ch05.imagenet_top1(curves)
    assert top1 == {"natural": 75.0, "low_rank:100": 70.0}
    t2 = ch05.table2_top1(top1, [100], "imagenet")
    ref = yaml.safe_load(paper.values_path().read_text())["table2"]["imagenet"]
    assert t2["paper_top1"].tolist() == [ref["full"]["top1"], ref[100]["top1"]]
    assert t2["ours_gap"].tolist() == [0.0, 5.0]
    assert "rank 100" in ch05.fig15_claim()


def test_rank_rows_need_a_full_rank_model_above_chance():
    t2 = ch05.table2_top1({"natural": 11.7, "low_rank:5": 20.3, "low_rank:20": 21.9}, [5, 20])
    verdicts, _ = ch05.table2_top1_verdicts(t2)
    assert verdicts["full"] == "differs"                        # judged on its own accuracy
    assert verdicts[5] == verdicts[20] == "not meaningful here"
