"""Chapter 04's training block, Table 3 and Figure 14: rules at their boundaries, figure data."""
import dataclasses
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from rankcore.book import ch04_high_rank_training as ch04  # noqa: E402
from rankcore.book import paper  # noqa: E402


def _paper_table3():
    # The paper's Table 3, read straight from the YAML file (not through rankcore.book.paper).
    return yaml.safe_load(paper.values_path().read_text())["table3"]


@pytest.mark.parametrize("ours, falls", [
    ({2: 30.0, 3: 28.0, 5: 13.0}, True),
    ({2: 30.0, 3: 30.0 + ch04.FALL_NOISE}, True),              # a rise of exactly the noise
    ({2: 30.0, 3: 30.0 + ch04.FALL_NOISE + 0.01}, False),
    ({10: 11.0, 2: 30.0}, True),                              # order of k, not of the dict
    ({5: 20.0}, True),
])
def test_falls_with_k(ours, falls):
    assert ch04.falls_with_k(ours) is falls


@pytest.mark.parametrize("k, ours, paper_value, falls, verdict", [
    (3, 28.02 + ch04.TABLE3_CLOSE, 28.02, False, "reproduced"),   # boundary: within 3 points
    (3, 28.02 + ch04.TABLE3_CLOSE + 0.01, 28.02, True, "same trend"),
    (3, ch04.ABOVE_CHANCE, 28.02, True, "differs"),                # must be above, not at
    (3, ch04.ABOVE_CHANCE + 0.01, 28.02, True, "same trend"),
    (5, 10.0, 13.54 + 10, True, "same trend"),                     # k >= 5: chance is the trend
    (5, 10.0, 13.54 + 10, False, "differs"),
    (5, 13.54 + ch04.LATE_BAND, 13.54, True, "same trend"),        # k >= 5: bounded above
    (5, 13.54 + ch04.LATE_BAND + 0.01, 13.54, True, "differs"),    # not near chance any more
    (7, 40.0, None, True, "differs"),                              # no paper row, no bound
])
def test_table3_verdict_boundaries(k, ours, paper_value, falls, verdict):
    assert ch04.table3_verdict(k, ours, paper_value, falls) == verdict


def test_table3_rows_follow_the_paper_and_our_runs():
    top1 = {"high_rank:2": 31.0, "high_rank:3": 26.0, "high_rank:5": 14.0, "natural": 90.0}
    t3 = ch04.table3(top1, [2, 3, 5])
    ref = _paper_table3()
    assert t3["paper_top1"].tolist() == [ref[2], ref[3], ref[5]]
    assert t3["ours_top1"].tolist() == [31.0, 26.0, 14.0]
    assert (t3["ours_natural_top1"] == 90.0).all() and (t3["chance"] == 10.0).all()
    verdicts, falls = ch04.table3_verdicts(t3)
    assert falls and verdicts == {2: "reproduced", 3: "reproduced", 5: "reproduced"}
    assert ch04.fig14_verdict(True) == "same trend" and ch04.fig14_verdict(False) == "differs"
    assert ch04.fig14_verdict(True, list(verdicts.values())) == "reproduced"
    assert ch04.table3_verdicts(t3, close=0.5)[0][2] == "same trend"   # a tighter tolerance
    md = ch04.summary_markdown(t3, verdicts, falls, 0.05, 3, _FakeTrained(), "smoke")
    assert "2 removed: 31.0% (paper 31.71%, reproduced)" in md and "5.0%" in md


@dataclasses.dataclass
class _Config:
    arch: str = "toynet"
    epochs: int = 2
    n_train: int = 512


class _FakeTrained(ch04.TrainedRuns):
    def __init__(self):
        super().__init__({"natural": _Config()}, {}, pd.DataFrame(), 0.0)


def test_train_runs_uses_the_profile_presets_and_reports_percent(monkeypatch):
    calls = []
    monkeypatch.setattr(ch04.runs, "preset", lambda name, profile, family: calls.append(
        (name, profile, family)) or _Config())
    monkeypatch.setattr(ch04.runs, "get_or_train",
                        lambda cfg, progress=False: types.SimpleNamespace(model=object()))
    monkeypatch.setattr(ch04.runs, "summary", lambda results: pd.DataFrame(
        {"run": list(results), "test_top1": [0.5, 0.25], "train_minutes": [1.0, 2.0],
         "from_cache": [True, False]}))
    t = ch04.train_runs(["high_rank:3", "natural"], "smoke", family="resnet")
    assert calls == [("high_rank:3", "smoke", "resnet"), ("natural", "smoke", "resnet")]
    assert t.family == "resnet"
    assert t.top1() == {"high_rank:3": 50.0, "natural": 25.0}
    md = ch04.training_markdown(t)
    assert md.startswith("2 models (toynet, 2 epochs, 512 training images)")
    assert "training them took 3.0 min (1 loaded from the cache)" in md


def test_accuracy_figure_plots_percent_per_run():
    curves = pd.DataFrame({"run": ["high_rank:2", "high_rank:2", "natural", "natural"], "epoch": [1, 2, 1, 2],
                           "test_top1": [0.1, 0.2, 0.3, 0.4]})
    fig = ch04.accuracy_figure(curves, "t", ch04.removed_label, chance=10.0)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [10.0, 20.0])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [30.0, 40.0])
    assert ax.lines[2].get_ydata()[0] == 10.0                      # chance line
    assert ch04.removed_label("high_rank:3") == "3 largest removed"
    assert ch04.removed_label("natural") == "full rank"


def test_epochs_text_names_the_runs_that_train_longer():
    cfg = lambda e: dataclasses.replace(_Config(), epochs=e)  # noqa: E731
    assert ch04.epochs_text({"low_rank:5": cfg(4), "natural": cfg(4)}) == "4 epochs"
    assert ch04.epochs_text({"natural": cfg(5), "low_rank:20": cfg(4), "low_rank:5": cfg(4),
                             "adv": cfg(10)}) == "4 epochs (natural 5, adv 10)"


def test_rows_near_chance_are_not_meaningful_when_the_recipe_learned_nothing():
    # A full-rank model at chance: Table 3's rows near chance would "agree" with the paper's
    # 13.54% and 11.19% for that reason alone.
    t3 = ch04.table3({"high_rank:5": 9.0, "high_rank:10": 10.0, "natural": 11.7}, [5, 10])
    verdicts, falls = ch04.table3_verdicts(t3)
    assert set(verdicts.values()) == {"not meaningful here"}
    assert "11.7%" in verdicts[5].reason
    assert ch04.training_evidence(ch04.FULL_MIN + 0.1) == ""
    assert ch04.fig14_verdict(falls, why=ch04.training_evidence(11.7)) == "not meaningful here"
