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
