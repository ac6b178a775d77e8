"""The page rules of every chapter: one hiding rule over the notebooks, the runner's
"Re-run this chapter" block, and the table helper."""
from __future__ import annotations

import json
import re
import shlex

import nbformat
import pandas as pd
import pytest

from rankcore.book import pages, runner

# Chapters whose opening (headline figure and verdict) is their owner's to write (PENDING:
# whose tags have not followed yet; empty since 06 and 08 are tagged).
PENDING: set[str] = set()
OPENING_PENDING: set[str] = set()
#: Every notebook in book/ (test_every_notebook_in_book_is_checked keeps the list whole).
CHAPTERS = ["00_setup", "01_rank_images", "02_rank_spectrum", "03_rig", "04_high_rank_training",
            "05_low_rank_training", "06_low_rank_robustness", "07_appendix",
            "08_rank_as_a_metric", "scorecard"]


def _notebooks(repo):
    return sorted((repo / "book").glob("*.ipynb"))


def test_the_book_has_its_notebooks(repo):
    assert len(_notebooks(repo)) >= 10


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_follows_the_one_hiding_rule(repo, name):
    if name in PENDING:
        pytest.xfail(f"{name}: tagged in the last commit")
    source = repo / "book" / f"{name}.ipynb"
    problems = pages.page_rule_problems(json.loads(source.read_text()), name)
    assert not problems, "\n".join(problems)


def test_every_notebook_in_book_is_checked(repo):
    listed = {p.stem for p in _notebooks(repo)}
    assert listed == set(CHAPTERS)


def test_the_rule_finds_a_shown_code_cell_and_a_shown_parameters_cell():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(a)"),
        nbformat.v4.new_code_cell("a", metadata={"tags": ["hide-input"]})])
    problems = pages.page_rule_problems(nb)
    assert len(problems) == 4 and "cell 0" in problems[0] and "cell 1" in problems[1]
    pages.apply_page_rule(nb)
    assert pages.page_rule_problems(nb) == []
    assert [c.metadata["tags"] for c in nb.cells] == [["parameters", "remove-cell"],
                                                      ["remove-input"], ["remove-input"]]


def test_the_rule_finds_a_code_line_wider_than_the_column_but_not_prose_or_directives():
    wide = "python -m rankcore.book run " + "-p x=1 " * 12
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("```{glue:figure} headline-figure\n\n" + "long caption " * 20
                                      + "\n```\n\n" + "prose " * 40 + "\n\n```\n" + wide + "\n```"),
        nbformat.v4.new_markdown_cell("```\nshort\n```")])
    problems = pages.page_rule_problems(nb)
    assert len(problems) == 1 and "cell 0" in problems[0] and "sideways" in problems[0]
    assert all(len(line) <= pages.CODE_COLUMNS
               for line in pages._fenced_lines("```\n" + "\n".join(["short"] * 3) + "\n```"))


def _meta(**injected):
    return {"chapter": "02_rank_spectrum", "profile": "smoke",
            "injected": {"profile": "smoke", "download": False, **injected},
            "params": {"profile": "smoke", "imagenet_n": injected.get("imagenet_n", 4),
                       "cifar_ranks": list(range(0, 33, 2)), "architectures": {"A": "resnet50"}},
            "git": {"commit": "0123456789abcdef", "dirty": False}, "wall_s": 12.3}


def _blocks(text):
    return dict(re.findall(r"```(\w+)\n(.*?)\n```", text, re.S))


def test_rerun_block_gives_a_command_that_parses_back_to_the_values_it_ran_with():
    ranks = list(range(1, 120, 3))
    meta = _meta(imagenet_n=4, imagenet_ranks=ranks, imagenet_data="my folder")
    text = runner.rerun_markdown(meta)
    blocks = _blocks(text)
    assert "0123456789" in text and "`smoke`" in text
    for block in blocks.values():
        assert max(len(line) for line in block.splitlines()) <= runner.RERUN_WIDTH
    argv = shlex.split(blocks["bash"].replace("\\\n", " "))
    assert argv[:7] == ["python", "-m", "rankcore.book", "run", "--profile", "smoke", "--only"]
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
    got = runner.parse_overrides(overrides, ["02_rank_spectrum"], [])["02_rank_spectrum"]
    # imagenet_n=4 is the smoke profile's own value: the command needs no -p for it.
    assert got == {"imagenet_ranks": ranks, "imagenet_data": "my folder"}
    assert "cifar_ranks = [0, 2, 4," in blocks["python"]
    assert "architectures = {'A': 'resnet50'}" in blocks["python"]


def test_finish_page_removes_the_injected_cell_and_ends_the_page_once(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters", "remove-cell"]}),
        nbformat.v4.new_code_cell("n = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_markdown_cell("# text")])
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    for _ in range(2):
        runner.finish_page(path, _meta())
    out = nbformat.read(path, as_version=4)
    nbformat.validate(out)
    assert out.cells[1].metadata["tags"] == ["injected-parameters", "remove-cell"]
    assert len(out.cells) == 4 and out.cells[2].source == "# text"
    assert out.cells[3].source == runner.rerun_markdown(_meta())


def test_table_has_no_index_and_moves_long_text_to_footnotes():
    long = "a note " * 30
    df = pd.DataFrame({"model": ["a", "b"], "top-1": [0.12345, 0.5], "note": ["short", long]},
                      index=[7, 8])
    html = pages.table(df, footnote_over=40).to_html()
    assert "0.123" in html and "0.12345" not in html
    assert ">7<" not in html and ">8<" not in html   # no index
    assert long.strip() in html and "[1]" in html and "..." not in html
    assert "short" in html
    with pytest.raises(KeyError, match="nope"):
        pages.table(df, columns=["nope"])
    with pytest.raises(ValueError, match="footnote_over"):
        pages.table(df, footnote_over=3)


# ---------------------------------------------------------------------------- results first

ROW = {"ref": "fig7c", "item": "CIFAR-10: L-inf robust minus natural top-1, ranks 1-10",
       "paper": "> 20", "ours": "+3.1 [-1.0, +7.2] paired at rank 8", "unit": "",
       "verdict": "differs", "kind": "paper claim", "note": "64 images"}


def test_verdict_box_is_two_lines_paper_then_this_run_with_the_verdict():
    md = pages.verdict_markdown(ROW)
    head, body = md.split("\n\n", 1)
    assert head.startswith("```{admonition} fig7c: differs") and ":class: warning" in head
    lines = body.strip().removesuffix("```").strip().split("\\\n")
    assert len(lines) == 2
    assert lines[0].startswith("**The paper:** > 20.") and ROW["item"] in lines[0]
    assert lines[1] == "**This run:** +3.1 [-1.0, +7.2] paired at rank 8: **differs**."
    assert "(illustration)" in pages.verdict_markdown({**ROW, "kind": "illustration"})


class _Res:
    def __init__(self, folder, rows):
        self.dir, self.chapter = folder, "02_rank_spectrum"
        (folder / "scorecard.json").write_text(json.dumps(rows))


def test_glue_verdicts_glues_every_ref_it_is_asked_for_and_the_headline(tmp_path, monkeypatch):
    glued = {}
    monkeypatch.setattr(pages, "_glue", lambda key, obj: glued.__setitem__(key, obj.data))
    rows = [{**ROW, "item": "L2 robust minus natural", "verdict": "same trend"}, ROW,
            {**ROW, "ref": "fig7a", "item": f"row {0}"}]
    out = pages.glue_verdicts(_Res(tmp_path, rows), ["fig7a", "fig7c", "fig13"],
                              headline=("fig7c", "L-inf"))
    assert set(glued) == {"verdict-fig7a", "verdict-fig7c", "verdict-fig13", "headline-verdict"}
    assert glued["headline-verdict"] == pages.verdict_markdown(ROW)   # the matching row
    assert glued["verdict-fig7c"].count("{admonition}") == 2
    assert "no comparison for fig13" in glued["verdict-fig13"] and out["fig13"] == []
    many = [{**ROW, "item": f"row {i}"} for i in range(5)]
    assert "2 more fig7c" in pages.boxes_markdown(many, "fig7c", limit=3)


def _refs_glued(nb) -> set[str]:
    import ast
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    m = re.search(r"pages\.glue_verdicts\(res, (\[.*?\])", code)
    return set(ast.literal_eval(m.group(1))) if m else set()


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_opens_with_its_headline_figure_and_verdict(repo, name):
    if name in OPENING_PENDING:
        pytest.xfail(f"{name}: its opening is its owner's to write")
    nb = json.loads((repo / "book" / f"{name}.ipynb").read_text())
    first = "".join(nb["cells"][0]["source"])
    title, rest = first.split("\n", 1)
    assert title.startswith("# "), f"{name}: the first cell is not the title"
    # The title, then the headline figure and its verdict box, then the narrative.
    caption = re.match(r"```\{glue:figure\} \S+\n\n(.+?)\n```\n", rest.lstrip())
    assert caption, f"{name}: the title is not followed by the headline figure"
    assert rest.lstrip().startswith(pages.opening_markdown(caption.group(1))), \
        f"{name}: the headline figure is not followed by its verdict box"
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "pages.headline(" in code, f"{name}: no figure is glued as the headline"
    assert "pages.glue_verdicts(" in code or "pages.HEADLINE_VERDICT" in code
    # Every verdict placed under a figure is glued, and every glued verdict is placed.
    placed = set(re.findall(r"\{glue:md\} verdict-(\S+)", "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")))
    assert placed == _refs_glued(nb), f"{name}: placed {sorted(placed)}, glued {sorted(_refs_glued(nb))}"


# ---------------------------------------------------------------------------- figures

def test_figsize_fills_the_column_and_two_by_two_beats_one_by_four():
    from rankcore.book.figures import COLUMN_INCHES, DPI, figsize, grid_shape
    assert COLUMN_INCHES * DPI == 700
    w, h = figsize(2, 2, aspect=0.75)
    assert w == COLUMN_INCHES and h == pytest.approx(2 * COLUMN_INCHES / 2 * 0.75)
    assert figsize(1, 1, aspect=0.5, extra=0.4)[1] == pytest.approx(3.9)
    assert grid_shape(4) == (2, 2) and grid_shape(3) == (2, 2) and grid_shape(1) == (1, 1)
    assert grid_shape(13, max_cols=7) == (2, 7)
    for bad in ({"ncols": 0}, {"nrows": 1.5}, {"aspect": 0}, {"extra": -1}, {"width": -2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            figsize(**bad)


def test_image_grid_is_never_wider_than_the_column():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from rankcore.book.figures import COLUMN_INCHES, image_grid
    fig = image_grid([torch.rand(3, 8, 8)] * 8, titles=[f"rank {i}" for i in range(8)], ncols=8,
                     size=2.0)
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_INCHES)
    small = image_grid([torch.rand(3, 8, 8)] * 2, ncols=2, size=1.0)
    assert small.get_size_inches()[0] == pytest.approx(2.0)
    plt.close("all")


# ---------------------------------------------------------------------------- the landing page

def _card_with_headline(tmp_path):
    from rankcore.book import scorecard
    folder = tmp_path / "smoke" / "02_rank_spectrum"
    folder.mkdir(parents=True)
    pd.DataFrame({"rank": [0, 4, 8], "gap": [0.0, 0.1, 0.05], "gap_lo": [-0.1, 0.0, -0.05],
                  "gap_hi": [0.1, 0.2, 0.15]}).to_csv(folder / "fig7c_gap_linf.csv", index=False)
    rows = [{**ROW, "chapter": "02_rank_spectrum", "profile": "smoke"},
            {**ROW, "ref": "fig6", "item": "x", "verdict": "reproduced", "profile": "smoke",
             "chapter": "02_rank_spectrum"},
            {**ROW, "ref": "fig2", "item": "y", "verdict": "reproduced", "kind": "illustration",
             "profile": "smoke", "chapter": "01_rank_images"}]
    card = pd.DataFrame([{c: r.get(c, "") for c in scorecard.COLUMNS} for r in rows])
    return card


def test_landing_shows_this_builds_fig7c_band_and_counts(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from rankcore.book import scorecard
    card = _card_with_headline(tmp_path)
    gaps = scorecard.headline_gaps(card, tmp_path)
    assert list(gaps) == ["linf"] and list(gaps["linf"]["gap_hi"]) == [0.1, 0.2, 0.15]
    res = type("R", (), {"dir": tmp_path / "out"})()
    res.dir.mkdir()
    res.figure = lambda fig, name, dpi=100: fig.savefig(res.dir / f"{name}.png", dpi=dpi)
    fig, text = scorecard.write_landing(res, card, tmp_path)
    band = [c for c in fig.axes[0].collections]
    assert band, "no interval band"
    written = (res.dir / scorecard.LANDING_TEXT).read_text()
    assert "(landing.png)" in written and "(landing.png)" not in text
    assert "of **2** paper claims compared, **1** reproduced, **1** differs" in written
    assert "1 illustrations" in written and ROW["ours"] in written
    assert (res.dir / scorecard.LANDING_FIGURE).stat().st_size > 5_000
    # No Figure 7c saved: no picture, and the text says so.
    fig2, text2 = scorecard.write_landing(res, card[card["ref"] != "fig7c"], tmp_path)
    assert fig2 is None and "has not run in this build" in text2


def test_build_copies_the_landing_of_its_own_profile_or_says_it_has_not_run(tmp_path, monkeypatch):
    from rankcore.book import scorecard
    monkeypatch.setenv("RANKCORE_RESULTS", str(tmp_path / "results"))
    dest = tmp_path / "executed" / "book"
    dest.mkdir(parents=True)
    (dest / scorecard.LANDING_FIGURE).write_bytes(b"stale")
    assert "has not run for the `smoke` profile" in runner.copy_landing("smoke", dest)
    assert not (dest / scorecard.LANDING_FIGURE).exists()
    src = tmp_path / "results" / "smoke" / "scorecard"
    src.mkdir(parents=True)
    (src / scorecard.LANDING_TEXT).write_text("**This build**\n\n![x](landing.png)\n")
    (src / scorecard.LANDING_FIGURE).write_bytes(b"png")
    assert runner.copy_landing("smoke", dest).startswith("**This build**")
    assert (dest / scorecard.LANDING_FIGURE).read_bytes() == b"png"


def test_intro_includes_the_landing_result_not_a_typed_one(repo):
    text = (repo / "book" / "intro.md").read_text()
    assert "```{include} landing.md" in text
    assert text.index("landing.md") < text.index("| chapter |")
