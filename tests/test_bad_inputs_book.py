"""Issue 14, the command lines and the book runner: each row a bad input and the error it
must give (exit status 2 and one line naming the argument, or the exception type and the
argument's name), before anything runs."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

import rankcore
from rankcore.book import cli  # the console script: the library's commands and the book's
from rankcore.book import profiles, provenance, results
from rankcore.book import runner as book

import hostile

# ---------------------------------------------------------------------------- rankcore CLI

SPECTRUM = ["spectrum", "--model", "efficientnet_lite0", "--data", "samples", "--out", "x.csv"]

CLI_ROWS = [
    # (argv, text the one-line error must contain)
    (["spectrum", "--model", "no_such_model", "--data", "samples", "--out", "x.csv"], "no_such_model"),
    (["spectrum", "--model", "bogus:resnet18", "--data", "samples", "--out", "x.csv"], "prefix 'bogus'"),
    (["spectrum", "--model", "efficientnet_lite0", "--data", "cifar100", "--out", "x.csv"], "--data"),
    (["spectrum", "--model", "efficientnet_lite0", "--data", "cifar10", "--out", "x.csv"],
     "--agreement-only"),
    ([*SPECTRUM, "--n", "0"], "--n"),
    ([*SPECTRUM, "--n", "ten"], "--n"),
    ([*SPECTRUM, "--seed", "-1"], "--seed"),
    ([*SPECTRUM, "--batch-size", "0"], "--batch-size"),
    ([*SPECTRUM, "--ranks", "0:400"], "--ranks"),
    ([*SPECTRUM, "--ranks", "3.7"], "--ranks"),
    ([*SPECTRUM, "--device", "cuda:99"], "--device"),
    ([*SPECTRUM, "--device", "gpu0"], "--device"),
    ([*SPECTRUM, "--amp", "fp8"], "--amp"),
    (["spectrum", "--data", "samples", "--out", "x.csv"], "--model"),
    (["models", "--dataset", "mnist"], "--dataset"),
    (["nosuchcommand"], "COMMAND"),
    (["book", "run", "--profile", "nope"], "unknown profile 'nope'"),
    (["book", "run", "-p", "01_rank_images.live=maybe", "--dry-run"], "01_rank_images.live='maybe': expected bool"),
    (["book", "run", "-p", "02_rank_spectrum.imagenet_n=many", "--dry-run"], "02_rank_spectrum.imagenet_n"),
    (["book", "run", "-p", "02_rank_spectrum.n_images=500", "--dry-run"], "unknown parameter(s) ['n_images']"),
    (["book", "run", "--only", "99_nothing", "--dry-run"], "--only ['99_nothing']"),
    (["book", "check", "--profile", "nope"], "unknown profile 'nope'"),
    # issue 28 item 6: refused before the work, on one line
    (["spectrum", "--model", "efficientnet_lite0", "--data", "samples", "--out", "."],
     "--out='.' is a directory"),
    ([*SPECTRUM, "--checkpoint", "."], "--checkpoint='.' is a directory"),
    (["book", "run", "--profile", "../../x", "--dry-run"], "profile='../../x' is not a profile name"),
    (["train", "natural", "--set", "lr=!!python/object/apply:os.system ['echo pwned']",
      "--dry-run"], "is not plain YAML"),
]


@pytest.mark.parametrize("argv, message", CLI_ROWS, ids=[" ".join(r[0])[:70] for r in CLI_ROWS])
def test_cli_mistakes_give_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse's own checks
        status = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "unavailable" not in line]
    assert status == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert message in lines[0]
    assert not (tmp_path / "x.csv").exists()


def test_the_installed_command_gives_the_same_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rankcore.book.cli", "book", "run", "-p",
                           "01_rank_images.live=maybe", "--dry-run"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "01_rank_images.live='maybe': expected bool" in proc.stderr


def test_cli_main_in_process_returns_2_for_value_errors(capsys):
    assert cli.main(["spectrum", "--model", "efficientnet_lite0", "--data", "cifar10",
                     "--out", "x.csv", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rankcore spectrum: error: --model efficientnet_lite0 predicts imagenet")


# ---------------------------------------------------------------------------- runner API

@pytest.fixture
def toy(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'profile: str = "quick"\nlive: bool = True\nn: int = 1\nratio: float = 0.5\n'
        'ranks: list = [1, 2]\nname: str = "x"\nmodels: dict = {}\nanything = None',
        metadata={"tags": ["parameters"]})],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    (tmp_path / "book").mkdir()
    nbformat.write(nb, tmp_path / "book" / "a.ipynb")
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/a"}))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke.yml").write_text("a: {}\n")
    (tmp_path / "profiles" / "broken.yml").write_text("a: [1, 2]\n")
    (tmp_path / "profiles" / "stray.yml").write_text("zz: {n: 1}\n")
    monkeypatch.setenv("RANKCORE_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.setattr(book, "ROOT", tmp_path)
    return tmp_path


RUNNER_ROWS = [
    # (overrides, error type, text naming the argument)
    (["a.live=maybe"], book.UsageError, "a.live='maybe': expected bool"),
    (["a.live=1"], book.UsageError, "a.live=1: expected bool"),
    (["a.n=2.5"], book.UsageError, "a.n=2.5: expected int"),
    (["a.n=yes"], book.UsageError, "a.n=True: expected int"),
    (["a.n=[1]"], book.UsageError, "a.n=[1]: expected int"),
    (["a.ratio=x"], book.UsageError, "a.ratio='x': expected float"),
    (["a.ranks=5"], book.UsageError, "a.ranks=5: expected list"),
    (["a.name=5"], book.UsageError, "a.name=5: expected str"),
    (["a.models=[1]"], book.UsageError, "a.models=[1]: expected dict"),
    (["a.nope=1"], book.UsageError, "unknown parameter(s) ['nope']"),
    (["a.n"], book.UsageError, "expected CHAPTER.key=value"),
    (["n=1"], book.UsageError, "name the chapter"),
    (["a.n=[1"], book.UsageError, "not valid YAML"),
]


@pytest.mark.parametrize("overrides, error, message", RUNNER_ROWS, ids=[r[0][0] for r in RUNNER_ROWS])
def test_runner_rejects_before_running(toy, overrides, error, message):
    with pytest.raises(error) as info:
        book.plan("smoke", overrides=overrides)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # usage mistakes are ValueErrors (exit 2)


def test_untyped_parameters_take_any_value(toy):
    assert book.plan("smoke", overrides=["a.anything=[1, 2]", "a.ratio=3"])[0][1]["anything"] == [1, 2]


@pytest.mark.parametrize("profile, message", [
    ("nope", "unknown profile 'nope'; known profiles: broken, smoke, stray"),
    ("broken", "block 'a' must be a mapping"),
    ("stray", "names unknown chapter(s) ['zz']"),
    (3, "profile must be a str"),
])
def test_bad_profiles(toy, profile, message):
    with pytest.raises((book.UsageError, TypeError)) as info:
        book.plan(profile)
    assert message in str(info.value)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(chapter="", profile="quick"), ValueError, "chapter"),
    (dict(chapter="a/b", profile="quick"), ValueError, "chapter"),
    (dict(chapter="a", profile=None), ValueError, "profile"),
    (dict(chapter="a", profile=".hidden"), ValueError, "profile"),
])
def test_results_names(tmp_path, kwargs, error, name):
    with pytest.raises(error, match=name):
        results.Results(root=tmp_path, **kwargs)


def test_results_no_longer_take_params(tmp_path):
    with pytest.raises(TypeError):
        results.Results("a", "quick", params={"n": 1}, root=tmp_path)


def test_profiles_module_rejects_a_non_mapping_file(tmp_path, monkeypatch):
    (tmp_path / "list.yml").write_text("- 1\n- 2\n")
    monkeypatch.setenv("RANKCORE_PROFILES", str(tmp_path))
    with pytest.raises(profiles.ProfileError, match="expected a mapping"):
        profiles.load("list")


# ---------------------------------------------------------------------------- issue 28: files and runners

def test_profile_outside_the_profiles_folder_is_never_read(toy, monkeypatch):
    (toy / "x.yml").write_text("a: {n: 5}\n")       # ../x from the profiles folder
    read = []
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (read.append(self), real(self, *a, **k))[1])
    with pytest.raises(book.UsageError, match="not a profile name"):
        book.plan("../x")
    assert toy / "x.yml" not in [Path(os.path.normpath(r)) for r in read]


def _sleeper(toy: Path) -> None:
    """Chapter ``a`` of the toy book writes $MARKER, then sleeps (to be stopped there)."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('profile: str = "quick"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os, pathlib, time\n"
                                  "pathlib.Path(os.environ['MARKER']).write_text('1')\n"
                                  "time.sleep(120)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, toy / "book" / "a.ipynb")


def _start_runner(toy: Path, marker: Path) -> subprocess.Popen:
    repo = str(Path(rankcore.__file__).resolve().parents[1])  # the rankcore under test
    env = {**os.environ, "MARKER": str(marker), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
           "RANKCORE_BOOK_ROOT": str(toy), "RANKCORE_PROFILES": str(toy / "profiles"),
           "RANKCORE_RESULTS": str(toy / "results")}
    # Started as from a terminal: SIGINT at its default. A suite launched in the background
    # of a script (`make test &`) inherits SIGINT ignored, and the runner, rightly, keeps
    # ignoring it; the Ctrl-C row then waited out the chapter's sleep (the 120 s timeouts
    # of the 2026-12-03 clean-clone runs).
    proc = subprocess.Popen([sys.executable, "-m", "rankcore.book", "run", "--profile", "smoke"],
                            cwd=toy, env=env, start_new_session=True, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the chapter never started"
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_second_runner_is_refused_and_leaves_the_first_ones_staging(toy, monkeypatch, capsys):
    """Issue 28 item 3: one runner per results folder, the holder named; nothing deleted."""
    _sleeper(toy)
    monkeypatch.setenv("RANKCORE_RESULTS", str(toy / "results"))
    first = _start_runner(toy, toy / "marker")
    try:
        staging = list((toy / "results" / "smoke").glob(".a.staging-*"))
        assert len(staging) == 1
        assert cli.main(["book", "run", "--profile", "smoke", "--force"]) == 2
        err = capsys.readouterr().err.strip()
        assert "in use by another book runner" in err and f"pid {first.pid}" in err
        assert len(err.splitlines()) == 1 and staging[0].is_dir()
        provenance.recover(toy / "results" / "smoke" / "a")  # its owner is alive: kept
        assert staging[0].is_dir()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    provenance.recover(toy / "results" / "smoke" / "a")      # now dead: dropped
    assert not staging[0].exists()


def test_recover_keeps_the_staging_folder_of_a_live_runner(tmp_path):
    """The issue's old name (``.a.staging-<pid>``) of a live process is kept; a dead one's
    and a pid reused by a process started after the folder are dropped."""
    final = tmp_path / "a"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f".a.staging-{dead.pid}"
    gone.mkdir()
    old = time.time() - 3600
    reused = tmp_path / f".a.staging-{os.getpid()}@{socket.gethostname()}"
    reused.mkdir()
    os.utime(reused, (old, old))                       # made before this process started
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        kept = tmp_path / f".a.staging-{live.pid}"
        kept.mkdir()
        provenance.recover(final)
        assert kept.is_dir() and not gone.exists() and not reused.exists()
    finally:
        live.kill()
        live.wait()


def test_read_only_results_folder_is_one_line_and_exit_2(toy, monkeypatch, capsys):
    monkeypatch.setenv("RANKCORE_RESULTS", str(toy / "results"))
    (toy / "results").mkdir()
    hostile.read_only(monkeypatch, toy / "results")
    assert cli.main(["book", "run", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "cannot be written" in err and str(toy / "results") in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_in_python_m_rankcore_book_is_one_line_and_130(toy):
    _sleeper(toy)
    runner = _start_runner(toy, toy / "marker")
    os.killpg(runner.pid, signal.SIGINT)  # what Ctrl-C sends: the runner and its kernel
    try:
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    # (the chapter's kernel may log its own teardown; the runner prints one line)
    assert runner.returncode == 130, err[-3000:]
    assert "KeyboardInterrupt" not in err and "rankcore/book" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "python -m rankcore.book: interrupted"
    assert not list((toy / "results" / "smoke").glob(".a.staging-*"))


AKAMASTER = Path(os.environ.get("RANKCORE_DATA", "data")) / "models" / "cifar10-resnet-akamaster"


@pytest.mark.skipif(not AKAMASTER.is_dir(), reason=f"needs {AKAMASTER}")
def test_full_disk_is_one_line_and_exit_2_and_the_summary_names_the_weights(tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["spectrum", "--model", "cifar_resnet20", "--data", "samples", "--agreement-only",
            "--n", "2", "--ranks", "0,32", "--no-progress", "--no-download", "--out", "s.csv"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "weights: " + str(AKAMASTER / "resnet20-12fca82f.th") in out
    hostile.full_disk(monkeypatch)
    assert cli.main(argv[:-1] + ["t.csv"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t.csv").exists()


def test_weights_folder_without_the_file_never_loads_another(tmp_path, monkeypatch):
    """``--weights DIR`` without the entry's file: an error naming DIR, even when the data
    root's models folder holds that file (issue 28 item 5)."""
    from rankcore import models
    monkeypatch.setenv("RANKCORE_DATA", str(AKAMASTER.parents[1]))
    if models.find_weights("cifar_resnet20") is None:
        pytest.skip(f"needs {AKAMASTER}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.WeightsMissingError, match="empty.*holds no resnet20-12fca82f.th"):
        models.load("cifar_resnet20", weights=tmp_path / "empty", device="cpu")
