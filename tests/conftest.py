"""Shared fixtures: the repository's paths and the smoke-profile book, built once per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests find the data where the library does: $RANKCORE_DATA, else the checkout's data/
# (where `make data` unpacks it). Setting the variable here, before any test module is
# imported, lets every "needs real data" test see the same folder the library reads.
if not os.environ.get("RANKCORE_DATA"):
    from rankcore.paths import data_root

    if data_root().is_dir():
        os.environ["RANKCORE_DATA"] = str(data_root())


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """Execute every chapter on the smoke profile and render the book; returns ``.../_build/html``.

    Runs in a scratch folder (executed notebooks, results and HTML), so it never touches
    the developer's own ``_build`` or ``results``; the model and data caches are shared.
    """
    work = tmp_path_factory.mktemp("book")
    env = {**os.environ, "RANKCORE_RESULTS": str(work / "results")}
    for command in (["run", "--profile", "smoke", "--force", "--out", str(work / "executed")],
                    ["build", "--profile", "smoke", "--out", str(work / "executed"), "--html-root", str(work)]):
        proc = subprocess.run([sys.executable, "-m", "rankcore.book", *command], cwd=REPO, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"rankcore.book {command[0]} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    html = work / "_build" / "html"
    html.joinpath(".results").write_text(str(work / "results"))
    return html
