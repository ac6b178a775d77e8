"""Every command in README.md and book/intro.md runs: cheap ones fully, expensive ones up
to argument validation (``--dry-run``, ``make -n``), so the documentation cannot drift."""
from __future__ import annotations

import doctest
import importlib.util
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "book" / "intro.md"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def commands(path: Path) -> list[str]:
    """The shell commands of ``path``'s bash blocks: continuations joined, comments dropped."""
    out = []
    for block in blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


ALL = [(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in commands(p)]


def test_the_documents_have_commands():
    assert len(ALL) >= 10
    assert any("rankcore models" in c for _, c in ALL)


def plan(command: str) -> list[str] | None:
    """How the test runs ``command``: an argv (expensive work replaced by validation), or
    ``None`` for commands that touch the machine itself (venv creation, pip installs)."""
    words = shlex.split(command)
    env_free = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    if env_free[0] == "make":
        return ["make", "-n", *env_free[1:]]                           # prints, runs nothing
    if env_free[0].startswith("python3") and "venv" in env_free:    # venv + pip install
        return None
    if env_free[:3] == ["python", "-m", "http.server"]:
        return None
    if env_free[0] == "rankcore":  # the console script: rankcore.book.cli:main
        argv = [sys.executable, "-m", "rankcore.book.cli", *env_free[1:]]
    elif env_free[:3] in (["python", "-m", "rankcore"], ["python", "-m", "rankcore.book"]):
        argv = [sys.executable, *env_free[1:]]
    else:
        raise AssertionError(f"the docs test does not know how to run {command!r}: teach plan()")
    if "spectrum" in argv or ("book" in argv and ("run" in argv or "build" in argv)) or \
            ("train" in argv and not _smoke_training(argv)):
        argv.append("--dry-run")
    if "check" in argv:
        argv.append("--offline")
    return argv


def _smoke_training(argv: list[str]) -> bool:
    """A training of the smoke profile (seconds): run for real, twice (the second loads it)."""
    return "train" in argv and "--profile" in argv and argv[argv.index("--profile") + 1] == "smoke"


@pytest.mark.parametrize("doc, command", ALL, ids=[f"{d}: {c[:60]}" for d, c in ALL])
def test_documented_command_runs(doc, command, tmp_path):
    argv = plan(command)
    if argv is not None and _smoke_training(argv):
        if not os.environ.get("RANKCORE_DATA"):
            pytest.skip("the smoke training needs RANKCORE_DATA with CIFAR-10")
        # A fresh model cache (the first call trains), the decoded CIFAR-10 shared.
        from rankcore.paths import cache_dir
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache" / "data").symlink_to(cache_dir("data"), target_is_directory=True)
        env = {**ENV, "RANKCORE_CACHE": str(tmp_path / "cache")}
        runs = [subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=600) for _ in range(2)]
        assert [p.returncode for p in runs] == [0, 0], runs[-1].stderr[-3000:]
        import json
        first, second = (json.loads(p.stdout.strip().splitlines()[-1]) for p in runs)
        assert first["from_cache"] is False and second["from_cache"] is True
        assert first["dir"] == second["dir"] and 0 <= second["test_top1"] <= 1
        return
    if argv is None:
        # Commands that install into the machine: check the pieces they name exist.
        assert "download.pytorch.org/whl/cpu" in command or "http.server" in command
        return
    env = dict(ENV)
    env.update(dict(w.split("=", 1) for w in shlex.split(command) if re.match(r"^[A-Z_]+=", w)))
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    # `book check` exits 1 when the profile needs something this machine lacks: it still ran.
    ok = (0, 1) if "check" in argv else (0,)
    assert proc.returncode in ok, f"{doc}: {command!r} -> {proc.returncode}\n{proc.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("doc", [p for p in DOCS if blocks(p, "python")],
                         ids=lambda p: p.name)
def test_documented_python_runs(doc, tmp_path):
    for code in blocks(doc, "python"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{doc.name}:\n{code}\n{proc.stderr[-3000:]}"


def test_launch_buttons_only_where_they_work():
    """No Binder/Colab buttons while rankcore is not installable from a package index; the
    repository address lives in _config.yml only."""
    import yaml
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    buttons = config.get("launch_buttons", {})
    assert not buttons.get("binderhub_url") and not buttons.get("colab_url")
    assert not config["html"].get("use_repository_button") or config["repository"]["url"]
    for path in [REPO / "README.md", REPO / "pyproject.toml", REPO / "book" / "intro.md"]:
        assert "github.com/rankcore" not in path.read_text(), path


def _modules_with_examples() -> list[str]:
    import rankcore
    names = [info.name for info in pkgutil.walk_packages(rankcore.__path__, "rankcore.")
             if not info.name.endswith("__main__")]       # __main__ runs the command line
    return [n for n in names if ">>>" in (importlib.util.find_spec(n).loader.get_source(n) or "")]


@pytest.mark.parametrize("name", _modules_with_examples())
def test_the_docstring_examples_run_and_print_what_they_show(name):
    # Each example imports what it uses, as a reader pasting it would.
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed
