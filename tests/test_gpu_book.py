"""bench/gpu_book.sh: the GPU call's script, dry-run on the CPU so the one GPU run cannot fail on
a typo (run, then render, end to end), and its 64 MiB bundle check."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rankcore import data

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_book.sh"
CHAPTERS = ("02_rank_spectrum", "04_high_rank_training", "05_low_rank_training",
            "06_low_rank_robustness")
#: What the device tool brings back from $OUT (/work/.library/device/README.md, Limits).
MAX_FILES, MAX_BYTES, NAME = 8, 16 * 2**20, re.compile(r"^[A-Za-z0-9._-]+$")

needs_cifar = pytest.mark.skipif(not os.environ.get("RANKCORE_DATA") or data.find_cifar10() is None,
                                 reason="needs RANKCORE_DATA with the CIFAR-10 JPEG copy")


def _checkout(dest: Path) -> Path:
    """A copy of this checkout's working tree (what the device tool sends), as a git repo."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            (dest / f).write_bytes(src.read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def _script(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / "bench" / "gpu_book.sh"), *args], cwd=repo,
                          env={**os.environ, "PYTHON": sys.executable, **env},
                          capture_output=True, text=True)


def _members(path: Path) -> set[str]:
    with tarfile.open(path) as t:
        return {m.name.removeprefix("./") for m in t.getmembers()}


@pytest.mark.slow
@pytest.mark.data
@needs_cifar
def test_cpu_dry_run_runs_the_chapters_then_renders_what_came_back(tmp_path):
    repo = _checkout(tmp_path / "repo")
    out = tmp_path / "out"
    # BOOK_S: the GPU call stops its book run at 460 s; a busy CPU may need longer.
    env = dict(DEVICE="cpu", OUT=str(out), BOOK_S="3600", RANKCORE_RESULTS=str(tmp_path / "results"),
               RANKCORE_CACHE=os.environ.get("RANKCORE_CACHE") or str(tmp_path / "cache"))
    run = _script(repo, "run", **env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]

    # What comes back: few files, each small enough, each with a name the tool accepts.
    files = sorted(p.name for p in out.iterdir())
    assert set(files) >= {"gpu_book.log", "times.txt", "executed.tar.gz", "results.tar.gz",
                          "training.tar.gz"}, files
    assert len(files) <= MAX_FILES and all(NAME.match(f) for f in files), files
    assert all((out / f).stat().st_size < MAX_BYTES for f in files)
    executed = _members(out / "executed.tar.gz")
    assert {f"book/{c}.ipynb" for c in CHAPTERS} <= executed and "state.json" in executed
    results = _members(out / "results.tar.gz")
    for c in CHAPTERS:
        assert f"{c}/meta.json" in results
    with tarfile.open(out / "results.tar.gz") as t:
        meta = json.load(t.extractfile(f"./{CHAPTERS[0]}/meta.json"))
    assert meta["profile"] == "gpu" and meta["injected"]["imagenet_data"] == "samples"
    # Both families' natural runs trained, with their per-epoch logs.
    logs = [m for m in _members(out / "training.tar.gz") if m.endswith("log.jsonl")]
    assert any("airbench94-natural" in m for m in logs) and any("cifar_resnet20-natural" in m for m in logs)
    times = (out / "times.txt").read_text()
    for c in CHAPTERS:
        assert re.search(rf"chapter {c}\s+[0-9.]+ s", times), times
    assert re.search(r"natural@resnet\s+cifar_resnet20\s+1\s+[0-9.]+", times), times
    log = (out / "gpu_book.log").read_text()
    assert "skipped: 02's ImageNet half" in log and "book run exit 0" in log

    # Render from the returned files alone, into a tree that has none of the run's output.
    for stale in (repo / "_build" / "executed", tmp_path / "results"):
        subprocess.run(["rm", "-rf", str(stale)], check=True)
    render = _script(repo, "render", str(out), RANKCORE_RESULTS=str(tmp_path / "results"))
    assert render.returncode == 0, render.stdout[-6000:] + render.stderr[-3000:]
    assert ("left out of this build: 00_setup 01_rank_images 03_rig 07_appendix "
            "08_rank_as_a_metric scorecard") in render.stdout
    assert (tmp_path / "results" / "gpu" / CHAPTERS[-1] / "meta.json").exists()
    html = repo / "_build" / "html" / "book"
    for c in CHAPTERS:
        page = (html / f"{c}.html").read_text()
        assert "gpu" in page and "Traceback" not in page
    for c in CHAPTERS[:3]:  # the chapters with figures show them
        assert "<img" in (html / f"{c}.html").read_text()
    assert not (html / "03_rig.html").exists()


@pytest.mark.data
@needs_cifar
def test_run_out_of_time_runs_nothing_more_and_still_packs(tmp_path):
    repo = _checkout(tmp_path / "repo")
    out = tmp_path / "out"
    proc = _script(repo, "run", DEVICE="cpu", OUT=str(out), BOOK_S="5",
                   RANKCORE_RESULTS=str(tmp_path / "results"), RANKCORE_CACHE=str(tmp_path / "cache"))
    assert proc.returncode == 124
    log = (out / "gpu_book.log").read_text()
    for c in CHAPTERS:
        assert f"not run: {c} (the book run's 5 s are spent)" in log
    times = (out / "times.txt").read_text()
    assert all(f"chapter {c}" in times and "not finished" in times for c in CHAPTERS), times
    assert not (repo / "_build" / "executed").exists()


def _sparse(path: Path, mib: int) -> None:
    path.touch()
    os.truncate(path, mib * 2**20)


def _toy(tmp_path: Path, carried_mib: int, untracked_mib: int = 0) -> Path:
    """A git checkout holding the script, a .whl/ of ``carried_mib`` and an untracked,
    not ignored file of ``untracked_mib`` (sparse files: nothing is written)."""
    repo = tmp_path / "toy"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "gpu_book.sh").write_bytes(SCRIPT.read_bytes())
    (repo / ".gitignore").write_text(".whl/\n.gpudata/\n_build/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".whl").mkdir()
    _sparse(repo / ".whl" / "big-1.0-py3-none-any.whl", carried_mib)
    if untracked_mib:
        _sparse(repo / "notes.bin", untracked_mib)
    (repo / "_build").mkdir()   # ignored and not carried: does not travel, does not count
    _sparse(repo / "_build" / "huge", 500)
    return repo


def test_size_check_passes_a_bundle_within_64_mib(tmp_path):
    proc = _script(_toy(tmp_path, 60), "size")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"bundle: 60\.\d MiB of 64", proc.stdout), proc.stdout


def test_size_check_refuses_an_oversize_bundle_naming_the_largest(tmp_path):
    proc = _script(_toy(tmp_path, 65), "size")
    assert proc.returncode == 1
    assert "too large by 1.0 MiB" in proc.stderr and ".whl/big-1.0-py3-none-any.whl 65.0 MiB" in proc.stderr
    # The untracked files that travel count with the carried ones.
    proc = _script(_toy(tmp_path / "b", 60, untracked_mib=5), "size")
    assert proc.returncode == 1 and "notes.bin 5.0 MiB" in proc.stderr
