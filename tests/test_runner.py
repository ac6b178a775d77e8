"""The book runner on a toy book: parameters and their types, caching and its fingerprint,
meta.json, results swapped in only on success (also when killed), the CUDA guard."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from rankcore.book import profiles, provenance
from rankcore.book import runner as book


def _notebook(path: Path, params: str, body: str | list[str], markdown: str = "# A chapter") -> None:
    bodies = [body] if isinstance(body, str) else body
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(markdown),
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        *[nbformat.v4.new_code_cell(b) for b in bodies]],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


# Chapter "a" saves results; with `pause` set it stops at a numbered point, writing a
# marker file first, so a test can kill the runner there.
A_BODY = [
    "import os, time, pathlib\n"
    "def point(k):\n"
    "    if pause == k:\n"
    "        pathlib.Path(os.environ['MARKER']).write_text(str(k))\n"
    "        time.sleep(120)\n"
    "point(1)\n"
    "from rankcore.book.results import Results\n"
    "res = Results('a', profile)\n"
    "open('a_ran.txt', 'a').write(f'{profile} {n}\\n')\n"
    "open('a_env.txt', 'w').write(os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset'))",
    "res.score('fig1', 'first', 1, n, 'reproduced')\n"
    "point(2)\n"
    "for i in range(3):\n"
    "    res.score('fig2', f'item {i}', 1, n, 'same trend')\n"
    "res.json({'n': n, 'tag': tag}, 'numbers')\n"
    "point(3)",
]


@pytest.fixture
def toy_book(tmp_path, monkeypatch):
    """A two-chapter book in a scratch folder; the second chapter fails when told to."""
    (tmp_path / "profiles").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "book/intro", "chapters": [{"file": "book/a"}, {"file": "book/b"}]}))
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    _notebook(tmp_path / "book" / "a.ipynb",
              'profile: str = "quick"\nn: int = 1\npause: int = 0\ntag: str = "x"\nratio: float = 0.5',
              A_BODY)
    _notebook(tmp_path / "book" / "b.ipynb", "fail: bool = False\nitems: list = []",
              "print('progress of b: 50%')\nassert not fail, 'told to fail'")
    (tmp_path / "profiles" / "smoke.yml").write_text("a: {n: 2}\nb: {}\nruns: {natural: {epochs: 1}}\n")
    (tmp_path / "profiles" / "big.yml").write_text("settings: {needs_cuda: true}\na: {}\n")
    (tmp_path / "data" / "cifar10-jpeg").mkdir(parents=True)
    (tmp_path / "data" / "cifar10-jpeg" / "labels.txt").write_text("0\n")
    env = {"RANKCORE_BOOK_ROOT": str(tmp_path), "RANKCORE_PROFILES": str(tmp_path / "profiles"),
           "RANKCORE_RESULTS": str(tmp_path / "results"), "RANKCORE_DATA": str(tmp_path / "data")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(book, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _results(root: Path) -> dict[str, bytes]:
    folder = root / "results" / "smoke" / "a"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


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


def test_kernels_get_the_allocator_settings_unless_the_user_set_them(toy_book, monkeypatch):
    from rankcore.torch_utils import ALLOCATOR_ENV

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    book.run("smoke", only=["a"], progress=False)
    assert (toy_book / "a_env.txt").read_text() == ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"]
    assert "MALLOC_MMAP_THRESHOLD_" not in os.environ       # the runner's own is restored
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    book.run("smoke", only=["a"], force=True, progress=False)
    assert (toy_book / "a_env.txt").read_text() == "131072"


def test_markdown_edit_does_not_rerun_but_code_paper_values_and_data_do(toy_book, monkeypatch):
    book.run("smoke", only=["a"], progress=False)
    ran = lambda: (toy_book / "a_ran.txt").read_text().count("\n")  # noqa: E731
    nb = nbformat.read(toy_book / "book" / "a.ipynb", as_version=4)
    nb.cells[0].source = "# A chapter, with a typo fixed"
    nbformat.write(nb, toy_book / "book" / "a.ipynb")
    book.run("smoke", only=["a"], progress=False)
    assert ran() == 1
    nb.cells[2].source += "\n# a code comment"
    nbformat.write(nb, toy_book / "book" / "a.ipynb")
    book.run("smoke", only=["a"], progress=False)
    assert ran() == 2
    # New data under the same data root re-runs the chapter.
    (toy_book / "data" / "imagenet-val").mkdir()
    (toy_book / "data" / "imagenet-val" / "x.JPEG").write_bytes(b"1")
    book.run("smoke", only=["a"], progress=False)
    assert ran() == 3
    # ... and so does a change of paper_values.yml (the library digest covers it) or versions.
    monkeypatch.setattr(book, "library_digest", lambda: "another paper_values.yml")
    book.run("smoke", only=["a"], progress=False)
    assert ran() == 4
    monkeypatch.setattr(book, "versions", lambda: {"torch": "0.0"})
    book.run("smoke", only=["a"], progress=False)
    assert ran() == 5


def test_library_digest_covers_paper_values_and_every_library_file():
    package = Path(provenance.__file__).resolve().parents[1]
    assert (package / "book" / "paper_values.yml").exists()
    digest = provenance.library_digest()
    assert len(digest) == 64
    # The digest is built from these bytes: recompute it independently.
    h = hashlib.sha256(__import__("rankcore").__version__.encode())
    for path in sorted(package.rglob("*.py")) + [package / "book" / "paper_values.yml"]:
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    assert h.hexdigest() == digest


def test_meta_json_is_written_by_the_runner(toy_book):
    book.run("smoke", only=["a"], overrides=["a.tag=hello"], progress=False)
    meta = json.loads((toy_book / "results" / "smoke" / "a" / "meta.json").read_text())
    assert meta["injected"] == {"n": 2, "tag": "hello", "profile": "smoke"}
    assert meta["params"] == {"profile": "smoke", "n": 2, "pause": 0, "tag": "hello", "ratio": 0.5}
    assert set(meta["versions"]) >= {"torch", "torchvision", "timm", "captum"}
    assert meta["git"]["commit"] is None or len(meta["git"]["commit"]) == 40
    assert meta["device"]["device"] in ("cpu", "cuda") and meta["device"]["name"]
    assert meta["wall_s"] > 0 and meta["fingerprint"]
    assert list(meta["data"]) == [str((toy_book / "data" / "cifar10-jpeg").resolve())]


def test_results_from_earlier_parameters_do_not_linger(toy_book):
    book.run("smoke", only=["a"], progress=False)
    stray = toy_book / "results" / "smoke" / "a" / "from_an_old_run.png"
    stray.write_bytes(b"old")
    book.run("smoke", only=["a"], overrides=["a.n=3"], progress=False)
    assert not stray.exists()
    assert json.loads((toy_book / "results" / "smoke" / "a" / "numbers.json").read_text())["n"] == 3


def test_failing_chapter_stops_the_run_and_publishes_nothing(toy_book):
    with pytest.raises(book.BookError, match="b failed in cell .*told to fail"):
        book.run("smoke", overrides=["b.fail=true"], progress=False)
    out = book.executed_dir("smoke")
    assert not (out / "book" / "b.ipynb").exists()
    assert (out / "book" / "b.failed.ipynb").exists()
    assert not (toy_book / "results" / "smoke" / "b").exists()
    assert not list((toy_book / "results" / "smoke").glob(".b.*"))  # no staging left


@pytest.mark.slow
@pytest.mark.parametrize("point", [1, 2, 3])
def test_killing_a_chapter_leaves_its_previous_results_byte_identical(toy_book, point):
    book.run("smoke", only=["a"], progress=False)
    before = _results(toy_book)
    assert set(before) == {"meta.json", "scorecard.json", "numbers.json"}
    marker = toy_book / f"marker{point}"
    env = {**os.environ, "MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rankcore.book", "run", "--profile", "smoke",
                             "--only", "a", "-p", f"a.n=7", "-p", f"a.pause={point}"],
                            cwd=toy_book, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "the chapter never reached its kill point"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-chapter
    proc.wait(30)
    assert _results(toy_book) == before
    # The next run sees that the killed run never finished: it re-runs, and publishes.
    book.run("smoke", only=["a"], overrides=["a.n=7"], progress=False)
    assert json.loads((toy_book / "results" / "smoke" / "a" / "numbers.json").read_text())["n"] == 7
    assert not list((toy_book / "results" / "smoke").glob(".a.*"))


def test_interrupted_swap_is_recovered(tmp_path):
    final = tmp_path / "a"
    final.mkdir()
    (final / "x").write_text("old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a runner that died
    dead.wait()
    stage = tmp_path / f".a.staging-{dead.pid}"
    stage.mkdir()
    (stage / "x").write_text("new")
    os.rename(final, tmp_path / ".a.old")  # killed between the swap's two renames
    provenance.recover(final)
    assert (final / "x").read_text() == "old" and not stage.exists()
    stage.mkdir()
    (stage / "x").write_text("new")
    provenance.swap_in(stage, final)
    assert (final / "x").read_text() == "new" and not (tmp_path / ".a.old").exists()


@pytest.mark.parametrize("override, message", [
    ("b.fail=maybe", r"b.fail='maybe': expected bool"),
    ("b.fail=1", r"b.fail=1: expected bool"),
    ("a.n=2.5", r"a.n=2.5: expected int"),
    ("a.n=true", r"a.n=True: expected int"),
    ("a.tag=3", r"a.tag=3: expected str"),
    ("a.ratio=fast", r"a.ratio='fast': expected float"),
    ("b.items=3", r"b.items=3: expected list"),
])
def test_wrong_types_are_rejected_before_anything_runs(toy_book, override, message):
    with pytest.raises(book.UsageError, match=message):
        book.run("smoke", overrides=[override], progress=False)
    assert not (toy_book / "a_ran.txt").exists()


def test_right_types_pass(toy_book):
    book.run("smoke", overrides=["a.ratio=1", "b.items=[1, 2]", "b.fail=false"], progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(overrides=["a.nope=1"]), r"a: unknown parameter\(s\) \['nope'\]"),
    (dict(overrides=["n=1"]), "name the chapter"),
    (dict(overrides=["a.n"]), "expected CHAPTER.key=value"),
    (dict(only=["zzz"]), r"no such chapter"),
])
def test_bad_requests_fail_with_clear_errors(toy_book, kwargs, message):
    with pytest.raises(book.UsageError, match=message):
        book.run("smoke", progress=False, **kwargs)


def test_unknown_profile_lists_known_ones(toy_book):
    with pytest.raises(book.UsageError, match="unknown profile 'nope'; known profiles: big, smoke"):
        book.run("nope")


def test_cuda_profile_refuses_to_start_without_cuda_unless_allowed(toy_book, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(book.UsageError, match="needs a CUDA GPU.*--allow-cpu"):
        book.run("big", progress=False)
    assert not (toy_book / "a_ran.txt").exists()
    book.run("big", progress=False, allow_cpu=True)
    assert (toy_book / "a_ran.txt").read_text() == "big 1\n"


def test_reserved_profile_blocks_are_not_chapters(toy_book):
    assert profiles.runs("smoke") == {"natural": {"epochs": 1}}
    assert set(profiles.chapters("smoke")) == {"a", "b"}
    assert profiles.settings("big") == {"needs_cuda": True}


def test_command_line_exit_codes(toy_book):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rankcore.book", *args], cwd=toy_book,
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    bad = cli("run", "--profile", "smoke", "-p", "b.fail=maybe")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["error: b.fail='maybe': expected bool (the chapter's "
                                               "parameters cell), got str"]
    dry = cli("run", "--profile", "smoke", "--dry-run")
    assert dry.returncode == 0 and "would run a with" in dry.stdout
    assert not (toy_book / "a_ran.txt").exists()
    failed = cli("run", "--profile", "smoke", "-p", "b.fail=true")
    assert failed.returncode == 1 and "told to fail" in failed.stderr


def test_log_output_streams_the_chapters_own_output(toy_book):
    proc = subprocess.run([sys.executable, "-m", "rankcore.book", "run", "--profile", "smoke",
                           "--only", "b", "--log-output"], cwd=toy_book, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "progress of b: 50%" in proc.stderr + proc.stdout
