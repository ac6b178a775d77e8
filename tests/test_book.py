"""The book runner: parameters, profiles, caching; and the smoke build of every chapter."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from rankcore.book import runner as book


# ---------------------------------------------------------------------------- runner units

def _notebook(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(body)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def toy_book(tmp_path, monkeypatch):
    """A two-chapter book in a scratch folder; the second chapter fails when told to."""
    (tmp_path / "book" / "profiles").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "book/intro", "chapters": [{"file": "book/a"}, {"file": "book/b"}]}))
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    _notebook(tmp_path / "book" / "a.ipynb", 'profile: str = "quick"\nn: int = 1',
              "open('a_ran.txt', 'a').write(f'{profile} {n}\\n')")
    _notebook(tmp_path / "book" / "b.ipynb", "fail: bool = False", "assert not fail, 'told to fail'")
    (tmp_path / "book" / "profiles" / "smoke.yml").write_text("a: {n: 2}\nb: {}\n")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    monkeypatch.setattr(book, "PROFILES", tmp_path / "book" / "profiles")
    return tmp_path


def test_run_passes_profile_and_parameters_and_skips_unchanged(toy_book, capsys):
    out = book.run("smoke", progress=False)
    assert (out / "book" / "a.ipynb").exists() and (out / "book" / "b.ipynb").exists()
    assert (toy_book / "a_ran.txt").read_text() == "smoke 2\n"
    book.run("smoke", progress=False)
    assert "unchanged since its last run" in capsys.readouterr().out
    assert (toy_book / "a_ran.txt").read_text() == "smoke 2\n"  # not executed again
    # A changed parameter re-runs only the chapter it belongs to.
    book.run("smoke", overrides=["a.n=5"], progress=False)
    assert (toy_book / "a_ran.txt").read_text() == "smoke 2\nsmoke 5\n"
    book.run("smoke", overrides=["a.n=5"], force=True, only=["a"], progress=False)
    assert (toy_book / "a_ran.txt").read_text().count("smoke 5") == 2


def test_failing_chapter_stops_the_run_and_publishes_nothing(toy_book):
    with pytest.raises(book.BookError, match="b failed in cell .*told to fail"):
        book.run("smoke", overrides=["b.fail=true"], progress=False)
    out = book.executed_dir("smoke")
    assert not (out / "book" / "b.ipynb").exists()
    assert (out / "book" / "b.failed.ipynb").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(overrides=["a.nope=1"]), r"a: unknown parameter\(s\) \['nope'\]; known: \['n', 'profile'\]"),
    (dict(overrides=["n=1"]), "name the chapter"),
    (dict(overrides=["a.n"]), "expected CHAPTER.key=value"),
    (dict(only=["zzz"]), r"no such chapter"),
])
def test_bad_requests_fail_with_clear_errors(toy_book, kwargs, message):
    with pytest.raises(book.BookError, match=message):
        book.run("smoke", progress=False, **kwargs)


def test_unknown_profile_lists_known_ones(toy_book):
    with pytest.raises(book.BookError, match="unknown profile 'nope'; known profiles: smoke"):
        book.run("nope")


def test_overrides_are_read_as_yaml():
    got = book.parse_overrides(["a.n=500", "a.xs=[1, 2]", "a.flag=true", "a.name=resnet50"], ["a"], [])
    assert got == {"a": {"n": 500, "xs": [1, 2], "flag": True, "name": "resnet50"}}


def test_every_profile_names_only_real_chapters_and_parameters(repo):
    """The real profiles must match the real notebooks' parameters cells."""
    pages = {c.name: c for c in book.chapters(repo) if c.is_notebook}
    for path in sorted(book.PROFILES.glob("*.yml")):
        for chapter, values in (yaml.safe_load(path.read_text()) or {}).items():
            assert chapter in pages, f"{path.name}: {chapter} is not in _toc.yml"
            declared = book.notebook_parameters(pages[chapter])
            assert "profile" in declared, f"{chapter} has no `profile` parameter"
            assert set(values or {}) <= set(declared), f"{path.name}: {chapter}: {set(values) - set(declared)}"


def test_committed_notebooks_have_no_outputs(repo):
    for chapter in book.chapters(repo):
        if chapter.is_notebook:
            nb = nbformat.read(chapter.source, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    assert not cell.outputs and cell.execution_count is None, f"{chapter.name} has outputs"


# ---------------------------------------------------------------------------- the smoke book

def test_smoke_book_builds_every_chapter_with_its_figures(built_book, repo):
    for chapter in book.chapters(repo):
        page = built_book / "book" / f"{chapter.name}.html"
        assert page.exists(), f"no HTML for {chapter.name}"
        html = page.read_text()
        assert "Traceback" not in html and "output_error" not in html, f"{chapter.name} shows an error"
        if chapter.is_notebook and chapter.name not in ("scorecard",):
            images = re.findall(r"<img[^>]+src=\"([^\"]+)\"", html)
            assert images, f"{chapter.name} has no figure"
            for src in images:
                if not src.startswith(("data:", "http")):
                    assert (page.parent / src).resolve().exists(), f"{chapter.name}: broken image {src}"
    assert (built_book / "index.html").exists()


def test_smoke_book_saves_results_with_their_parameters(built_book):
    results = Path((built_book / ".results").read_text()) / "smoke"
    meta = json.loads((results / "01_rank_images" / "meta.json").read_text())
    assert meta["profile"] == "smoke" and "pipeline_rank" in meta["params"]
    assert (results / "01_rank_images" / "fig3_gallery.png").stat().st_size > 10_000
