"""The scorecard lists every figure and table of the paper and the comparisons chapters made."""
import json

import pytest

from rankcore.book import paper, scorecard
from rankcore.book.results import Results

VALUES = {
    "figures": {"fig2": {"chapter": "01_a", "what": "two"},
                "fig10": {"chapter": "03_c", "what": "ten"},
                "fig1": {"chapter": "01_a", "what": "one"}},
    "tables": {"table1": {"chapter": "00_s", "what": "models"}},
}


def test_every_paper_figure_and_table_listed_when_nothing_ran(tmp_path):
    df = scorecard.scorecard("quick", root=tmp_path)
    listed = set(paper.values()["figures"]) | set(paper.values()["tables"])
    assert set(df["ref"]) == listed
    assert len(df) == len(listed)
    assert (df["verdict"] == scorecard.MISSING).all()
    assert df["note"].str.endswith("has not run").all()


def test_records_rows_order_and_missing(tmp_path):
    r = Results("01_a", "quick", root=tmp_path)
    r.score("fig2", "rank-10 PSNR", 30.0, 29.5, "same trend", unit="dB")
    r.score("fig1", "top-1", 76.1, 76.1, "reproduced", unit="%")
    r.score("sec9.1", "rank bound", "<= k", "<= k (odd k)", "reproduced")
    Results("03_c", "quick", root=tmp_path)  # ran, recorded nothing
    df = scorecard.scorecard("quick", root=tmp_path, values=VALUES)
    # natural order: fig1, fig2, fig10, then tables, then other references
    assert list(df["ref"]) == ["fig1", "fig2", "fig10", "table1", "sec9.1"]
    row = df.set_index("ref").loc["fig2"]
    assert (row["ours"], row["unit"], row["verdict"], row["profile"]) == \
        (29.5, "dB", "same trend", "quick")
    assert row["what"] == "two"
    fig10 = df.set_index("ref").loc["fig10"]
    assert fig10["verdict"] == scorecard.MISSING
    assert "ran (quick profile) but recorded no comparison" in fig10["note"]
    assert df.set_index("ref").loc["table1", "note"] == "00_s has not run"
    c = scorecard.counts(df)
    assert list(c.index) == list(scorecard.ALL_VERDICTS)
    assert (c["reproduced"], c["same trend"], c[scorecard.MISSING], c["differs"]) == (2, 1, 2, 0)


def test_profile_preference_never_mixes_profiles_within_a_chapter(tmp_path):
    Results("01_a", "smoke", root=tmp_path).score("fig1", "x", 1, 0.5, "differs")
    paper_run = Results("01_a", "paper", root=tmp_path)
    paper_run.score("fig2", "y", 1, 1, "reproduced")
    Results("03_c", "smoke", root=tmp_path).score("fig10", "z", 1, 1, "same trend")
    df = scorecard.scorecard("quick", root=tmp_path, values=VALUES).set_index("ref")
    # 01_a: no quick results, paper preferred over smoke -> fig1 has no record from paper
    assert df.loc["fig2", "profile"] == "paper"
    assert df.loc["fig1", "verdict"] == scorecard.MISSING
    assert df.loc["fig10", "profile"] == "smoke"
    only = scorecard.scorecard("quick", root=tmp_path, values=VALUES, fallback=()).set_index("ref")
    assert (only["verdict"] == scorecard.MISSING).all()
    # asking for smoke first picks smoke's 01_a record
    smoke = scorecard.scorecard("smoke", root=tmp_path, values=VALUES).set_index("ref")
    assert smoke.loc["fig1", "verdict"] == "differs"


def test_per_ref_keeps_weakest_verdict_and_styled_renders(tmp_path):
    r = Results("01_a", "quick", root=tmp_path)
    r.score("fig1", "a", 1.0, 1.0, "reproduced", unit="%")
    r.score("fig1", "b", 2.0, 5.0, "differs", unit="%")
    df = scorecard.scorecard("quick", root=tmp_path, values=VALUES)
    overview = scorecard.per_ref(df).set_index("ref")
    assert overview.loc["fig1", "verdict"] == "differs"
    assert list(overview.index) == ["fig1", "fig2", "fig10", "table1"]
    html = scorecard.styled(df).to_html()
    assert "5%" in html and scorecard.COLOURS["differs"] in html
    assert scorecard.COLOURS["differs"] in scorecard.styled(overview.reset_index()).to_html()
    import matplotlib.pyplot as plt
    fig = scorecard.plot_counts(df)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(scorecard.ALL_VERDICTS)
    plt.close(fig)


def test_bad_inputs_raise_with_the_value(tmp_path):
    with pytest.raises(ValueError, match="profile=''"):
        scorecard.scorecard("", root=tmp_path)
    bad = tmp_path / "quick" / "01_a" / "scorecard.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"ref": "fig1"}))
    with pytest.raises(ValueError, match="expected a list"):
        scorecard.scorecard("quick", root=tmp_path, values=VALUES)
    import pandas as pd
    with pytest.raises(ValueError, match="unknown verdicts"):
        scorecard.counts(pd.DataFrame({"verdict": ["maybe"]}))


# ---------------------------------------------------------------- rules x outcomes

from rankcore.book import verdicts  # noqa: E402

RULES = verdicts.all_rules()
COUNTED = sorted(n for n, r in RULES.items() if r.kind == verdicts.COUNTED)
CASES = [(name, outcome, i) for name in sorted(RULES)
         for outcome, examples in RULES[name].examples().items()
         for i in range(len(examples))]


def test_rules_are_registered_from_every_chapter():
    chapters = {n.split(".")[2] for n in RULES}
    assert chapters == set(verdicts.CHAPTER_MODULES)
    assert len(COUNTED) >= 15


@pytest.mark.parametrize("name", COUNTED)
def test_every_counted_rule_declares_each_outcome(name):
    """A counted rule that no input can make say "differs" (or "reproduced", "same trend")
    is a rule the measurements cannot fail: it must declare an input for each outcome."""
    examples = RULES[name].examples()
    missing = [o for o in verdicts.OUTCOMES if not examples.get(o)]
    assert not missing, f"{name} declares no input giving {missing}"


@pytest.mark.parametrize("name,outcome,i", CASES)
def test_every_declared_example_gives_its_outcome(name, outcome, i):
    rule = RULES[name]
    kwargs = rule.examples()[outcome][i]
    got = rule.outcome(**kwargs)
    assert got == outcome, f"{name}({kwargs}) gave {got!r}, declared {outcome!r}"
    if got == verdicts.NOT_MEANINGFUL:
        raw = rule.fn(**kwargs)
        item = raw if rule.read is verdicts.word else rule.read(raw)
        assert verdicts.reason(item), "not meaningful needs a reason"


def test_verdict_words_and_kinds():
    v = verdicts.not_meaningful("6 images")
    assert v == "not meaningful here" and v.reason == "6 images" and json.dumps(v) == \
        '"not meaningful here"'
    with pytest.raises(ValueError, match="reason"):
        verdicts.Verdict("not meaningful here")
    with pytest.raises(ValueError, match="verdict"):
        verdicts.Verdict("close enough")
    with pytest.raises(ValueError, match="kind"):
        verdicts.rule("fig1", kind="counted")


def test_kinds_are_recorded_and_counted_apart(tmp_path):
    r = Results("01_a", "quick", root=tmp_path)
    r.score("fig1", "claim", 1, 1, "reproduced")
    r.score("fig2", "picture", "illustration", "drawn", "reproduced", kind="illustration")
    r.score("table1", "zoo row", 76.1, 76.0, "reproduced", kind="zoo check")
    r.score("fig10", "tiny", 1, 1, verdicts.not_meaningful("3 images; needs 20"))
    with pytest.raises(ValueError, match="kind"):
        r.score("fig1", "x", 1, 1, "reproduced", kind="claim")
    df = scorecard.scorecard("quick", root=tmp_path, values=VALUES)
    rows = df.set_index("item")
    assert rows.loc["tiny", "note"] == "3 images; needs 20"
    assert rows.loc["picture", "kind"] == "illustration"
    c = scorecard.counts(df)                       # paper claims only
    assert (c["reproduced"], c["not meaningful here"]) == (1, 1)
    t = scorecard.kind_counts(df)
    assert t.loc["reproduced", "illustration"] == 1 and t.loc["reproduced", "zoo check"] == 1
    assert t.loc["reproduced", "all"] == 3
    assert "not meaningful here" in scorecard.legend_markdown()


def test_old_records_without_kind_read_as_paper_claims(tmp_path):
    d = tmp_path / "quick" / "01_a"
    d.mkdir(parents=True)
    (d / "scorecard.json").write_text(json.dumps([{"ref": "fig2", "item": "old", "paper": 1,
                                                   "ours": 1, "verdict": "reproduced"}]))
    df = scorecard.scorecard("quick", root=tmp_path, values=VALUES)
    assert df.set_index("item").loc["old", "kind"] == "paper claim"


def test_profile_summary_says_what_the_profile_cannot_test():
    params = {"02_rank_spectrum": {"imagenet_robust": "", "imagenet_natural": "efficientnet_lite0",
                                   "cifar_n": 10000},
              "03_rig": {"imagenet_n": 50}, "06_low_rank_robustness": {"cifar_n": 500}}
    text = scorecard.profile_summary("quick", params=params)
    assert "no robust ImageNet model" in text and "efficientnet_lite0" in text
    assert "airbench_cpu" in text and "500 test images" in text
    assert text.startswith("**What the quick profile can test:**")


def test_seed_scatter_tolerance_is_the_larger_of_floor_and_scatter(tmp_path):
    from rankcore.book import seed_scatter
    (tmp_path / "p.json").write_text(json.dumps({"runs": {
        "natural": {"seeds": [0, 1, 2], "sd": 2.0, "low_rank_sd": {"1": 0.5, "2": 1.5}},
        "low_rank:5": {"seeds": [0, 1, 2], "sd": 0.5}}}))
    tol, note = seed_scatter.tolerance("p", "natural", 3.0, folder=tmp_path)
    assert tol == 4.0 and "2 x the seed sd" in note and "3 seeds" in note
    tol, note = seed_scatter.tolerance("p", "low_rank:10", 3.0, folder=tmp_path)
    assert tol == 3.0 and "fixed floor" in note and "low_rank:5" in note
    assert seed_scatter.tolerance("p", "high_rank:3", 1.0, folder=tmp_path)[0] == 4.0  # largest
    assert seed_scatter.low_rank_sd("p", folder=tmp_path) == 1.5
    tol, note = seed_scatter.tolerance("absent", "natural", 3.0, folder=tmp_path)
    assert tol == 3.0 and "no seed scatter measured" in note


def test_scorecard_diff_lists_rows_whose_verdict_or_kind_changed(tmp_path, repo):
    import importlib.util
    spec = importlib.util.spec_from_file_location("scorecard_diff",
                                                  repo / "bench" / "scorecard_diff.py")
    sd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sd)
    old, new = Results("01_a", "quick", root=tmp_path / "old"), Results("01_a", "quick",
                                                                         root=tmp_path / "new")
    for r, kind, v in ((old, "paper claim", "same trend"), (new, "paper claim", "differs")):
        r.score("fig1", "saturation", 15, 3, v, kind=kind)
        r.score("fig2", "picture", 1, 1, "reproduced",
                kind="paper claim" if r is old else "illustration")
        r.score("fig3", "same", 1, 1, "reproduced")
    changed, _, _ = sd.diff(tmp_path / "old", tmp_path / "new", "quick")
    assert list(changed["item"]) == ["saturation", "picture"]
    row = changed.set_index("item").loc["picture"]
    assert (row["kind before"], row["kind after"]) == ("paper claim", "illustration")
