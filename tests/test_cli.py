"""The ``rankcore`` command line: one entry point, its commands, its plug-ins, its errors."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pandas as pd
import pytest

import rankcore
from rankcore import cli, data, models


def rankcore_cmd(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "rankcore", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def test_version():
    proc = rankcore_cmd("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"rankcore {rankcore.__version__}"


#: What the parser must not import: ~2.6 s on 2 cores before argparse had read a word.
HEAVY = ("torch", "torchvision", "pandas", "timm", "captum", "matplotlib", "sklearn", "skimage",
         "scipy", "papermill")


def imported_heavy(code: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after ``code`` ran (or exited) in a fresh python."""
    probe = (f"import sys\ntry:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


_LIBRARY_ARGV = [["--version"], ["--help"], ["spectrum", "--help"], ["models", "--help"]]


# The library's parser, and the console script's (the library's plus the book's commands).
@pytest.mark.parametrize("module, argv", [("rankcore.cli", a) for a in _LIBRARY_ARGV] + [
    ("rankcore.book.cli", a) for a in _LIBRARY_ARGV + [["train", "--help"], ["book", "--help"]]])
def test_the_parser_imports_nothing_heavy(module, argv):
    assert imported_heavy(f"import {module} as m; m.main({argv!r})") == []


def test_import_rankcore_is_light_and_its_names_arrive_on_use():
    assert imported_heavy("import rankcore") == []
    assert "torch" in imported_heavy("import rankcore; rankcore.low_rank")
    assert set(rankcore.__all__) <= set(dir(rankcore))
    assert rankcore.low_rank is rankcore.rank.low_rank and rankcore.pgd is rankcore.attacks.pgd
    with pytest.raises(AttributeError, match="no attribute 'lowrank'"):
        rankcore.lowrank  # noqa: B018


def test_the_book_command_registers_without_heavy_imports():
    assert imported_heavy("import rankcore.book.runner") == []


def test_the_command_line_tunes_the_allocator_before_it_runs(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(rankcore.torch_utils, "tune_allocator", lambda: calls.append(1) or True)
    assert cli.main(["models"]) == 0 and calls == [1] and "efficientnet_lite0" in capsys.readouterr().out


def test_the_console_script_is_the_books_command_line_over_the_librarys():
    import tomllib
    with open(os.path.join(os.path.dirname(__file__), "..", "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"] == {"rankcore": "rankcore.book.cli:main"}
    assert "entry-points" not in project  # no plugin group the package declares and consumes


def test_book_commands_are_added_by_the_book_not_found_by_the_library():
    from rankcore.book import cli as book_cli
    tree = ast.parse(open(cli.__file__).read())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if "book" in m or "metadata" in m]
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == {"spectrum", "models", "data"}  # the library's own
    sub = next(a for a in cli.build_parser(book_cli.COMMANDS)._actions if a.dest == "command")
    assert set(sub.choices) == {"spectrum", "models", "data", "book", "train"}


def test_models_lists_every_model_with_source_input_and_weights_here():
    proc = rankcore_cmd("models")
    assert proc.returncode == 0, proc.stderr
    table = models.registry_table()
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    assert header[:4] == ["model", "dataset", "input", "source"] and "here" in header
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == set(models.names())
    for _, r in table.iterrows():
        assert rows[r["model"]][2] == r["input"] and rows[r["model"]][3] == r["source"]
        assert rows[r["model"]][4] == ("yes" if r["here"] else "no")
    assert rows["efficientnet_lite0"][4] == "yes"  # embedded weights are always here
    lite = next(line for line in lines if line.startswith("efficientnet_lite0 "))
    assert "Google's TF weights" in lite and "not timm's efficientnet_lite0" in lite
    assert "timm:NAME or torchvision:NAME" in lines[-1]


def test_data_lists_every_data_set(tmp_path):
    (tmp_path / "cifar10-jpeg" / "test").mkdir(parents=True)
    proc = rankcore_cmd("data", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for name in data.names():
        assert f"  {name}" in proc.stdout
    assert str(tmp_path / "cifar10-jpeg" / "test") in proc.stdout
    assert "imagenet-auto -> samples" in proc.stdout


def test_python_dash_m_forms_keep_working():
    for module in ("rankcore", "rankcore.book", "rankcore.book.cli"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, f"python -m {module}: {proc.stderr[-2000:]}"


def test_spectrum_runs_end_to_end_on_the_shipped_photos(tmp_path):
    out = tmp_path / "s.csv"
    picture = tmp_path / "s.png"
    proc = rankcore_cmd("spectrum", "--model", "efficientnet_lite0", "--data", "samples", "--n", "2",
                        "--ranks", "0,112,max", "--device", "cpu", "--no-progress", "--out", str(out),
                        "--plot", str(picture))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert list(df["rank"]) == [0, 112, 224] and (df["n"] == 2).all()
    assert df["agreement"].iloc[-1] == 1.0 and df["top1"].isna().all()  # samples carry no labels
    assert "efficientnet_lite0 on 3 ranks x 2" in proc.stdout
    assert "top-1 at rank 224: n/a, no labels" in proc.stdout and "nan" not in proc.stdout
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_summary_line_gives_top1_where_labelled():
    df = pd.DataFrame({"rank": [0, 32], "agreement": [0.25, 1.0], "top1": [0.1, 0.625],
                       "n": [8, 8]})
    line = cli.spectrum_line(df, "m", "cifar10")
    assert line.endswith("top-1 at rank 32: 0.625") and "AUC 0.625" in line


def test_errors_use_the_command_lines_spellings(tmp_path):
    missing = tmp_path / "nowhere.pth"
    proc = rankcore_cmd("spectrum", "--model", "torchvision:resnet18", "--weights", str(missing),
                        "--data", "samples", "--out", str(tmp_path / "x.csv"))
    assert proc.returncode == 2 and f"--weights '{missing}' does not exist" in proc.stderr
    assert "weights=" not in proc.stderr
    assert cli.cli_spelling("pass weights=PATH, or download=False; n=100 > 10") == \
        "pass --weights PATH, or --no-download; --n 100 > 10"


def test_agreement_only_lets_a_model_meet_a_data_set_of_other_classes(tmp_path):
    if data.find_cifar10() is None:
        pytest.skip("needs CIFAR-10 under the data root")
    out = tmp_path / "a.csv"
    refused = rankcore_cmd("spectrum", "--model", "efficientnet_lite0", "--data", "cifar10",
                           "--out", str(out))
    assert refused.returncode == 2 and not out.exists()
    proc = rankcore_cmd("spectrum", "--model", "efficientnet_lite0", "--data", "cifar10", "--n", "2",
                        "--ranks", "0,max", "--agreement-only", "--no-progress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert df["top1"].isna().all() and df["agreement"].iloc[-1] == 1.0


def test_dry_run_checks_without_running(tmp_path):
    out = tmp_path / "never.csv"
    proc = rankcore_cmd("spectrum", "--model", "efficientnet_lite0", "--data", "imagenet-auto",
                        "--ranks", "0:224:8", "--device", "cpu", "--dry-run", "--out", str(out))
    assert proc.returncode == 0 and "would run the rank spectrum of efficientnet_lite0" in proc.stdout
    assert "weights " in proc.stdout and not out.exists()


def test_dry_run_refuses_what_the_run_would_refuse(tmp_path, monkeypatch):
    args = ["spectrum", "--data", "samples", "--dry-run", "--out", str(tmp_path / "x.csv")]
    too_many = rankcore_cmd(*args, "--model", "efficientnet_lite0", "--n", "100")
    assert too_many.returncode == 2
    assert "--n 100 but --data samples (samples, split test) has 10 images" in too_many.stderr
    monkeypatch.setenv("RANKCORE_MODELS", str(tmp_path / "no-models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-hub"))
    online = rankcore_cmd(*args, "--model", "torchvision:resnet18", "--n", "2")
    assert online.returncode == 0, online.stderr
    assert "downloaded from https://download.pytorch.org/models/resnet18" in online.stdout
    offline = rankcore_cmd(*args, "--model", "torchvision:resnet18", "--no-download")
    assert offline.returncode == 2 and "pass --weights FILE" in offline.stderr
    bad_plot = rankcore_cmd(*args, "--model", "efficientnet_lite0", "--plot", "x.gif")
    assert bad_plot.returncode == 2 and "--plot x.gif: expected a file ending in .png" in bad_plot.stderr


def test_debug_shows_the_traceback():
    args = ["spectrum", "--model", "no_such_model", "--data", "samples", "--out", "x.csv"]
    quiet = rankcore_cmd(*args)
    loud = rankcore_cmd("--debug", *args)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_device_names_accepted(device):
    proc = rankcore_cmd("spectrum", "--model", "efficientnet_lite0", "--data", "samples", "--device",
                        device, "--dry-run", "--out", "x.csv")
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------- paths

@pytest.fixture
def installed(tmp_path, monkeypatch):
    """rankcore as if installed outside a checkout, with a scratch home and no RANKCORE_*."""
    from rankcore import paths
    for k in ("RANKCORE_DATA", "RANKCORE_CACHE", "RANKCORE_RESULTS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(paths, "REPO_ROOT", None)
    monkeypatch.chdir(tmp_path)
    return paths


def test_outside_a_checkout_nothing_lands_in_the_current_directory(installed, tmp_path):
    home = tmp_path / "home" / ".cache" / "rankcore"
    assert installed.data_root() == home / "data"
    assert installed.cache_dir("x") == home / "x"
    assert installed.results_root() == home / "results"
    assert [p.name for p in tmp_path.iterdir()] == ["home"]


def test_results_in_the_current_directory_only_when_asked(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_RESULTS", ".")
    assert installed.results_root().resolve() == tmp_path


def test_a_read_only_data_root_gets_its_caches_in_the_user_cache(installed, tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        monkeypatch.setenv("RANKCORE_DATA", str(root))
        if os.access(root, os.W_OK):  # root writes anywhere: make the check answer as for a user
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, m, **k: False if str(p).startswith(str(root))
                                else real(p, m, **k))
        assert installed.cache_dir() == tmp_path / "home" / ".cache" / "rankcore"
    finally:
        root.chmod(0o755)


def test_a_writable_data_root_keeps_its_caches_beside_the_data(installed, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_DATA", str(tmp_path / "d"))
    assert installed.cache_dir() == tmp_path / "d" / "cache"
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path / "c"))
    assert installed.cache_dir("y") == tmp_path / "c" / "y"
