"""What ``pip install rankcore`` (no extras) gives: the library and the command line import
without scikit-learn, scikit-image and matplotlib, and each optional use names its extra."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

#: A meta-path finder that makes these packages look uninstalled: ``find_spec`` finds no
#: package folder (so their data files are not found either) and importing them fails.
BLOCK = '''
import importlib.abc, importlib.machinery, sys
BLOCKED = {"sklearn", "skimage", "matplotlib"}
class Missing(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked)", name=spec.name)
    def exec_module(self, module):
        pass
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, Missing())
sys.meta_path.insert(0, Block())
'''


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_the_blocker_blocks():
    proc = run_blocked("import matplotlib")
    assert proc.returncode != 0 and "No module named 'matplotlib' (blocked)" in proc.stderr


def test_the_library_and_the_command_line_need_no_sklearn_skimage_or_matplotlib():
    proc = run_blocked('''
import torch
import rankcore, rankcore.rank, rankcore.spectrum, rankcore.models
from rankcore import cli
x = torch.rand(2, 3, 16, 16)
assert rankcore.low_rank(x, 4).shape == x.shape
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5)).eval()
table = rankcore.rank_spectrum(model, x, ranks=[0, 16], progress=False)
assert list(table["rank"]) == [0, 16]
for argv in (["--help"], ["spectrum", "--help"], ["models", "--help"]):
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == 0, argv
print("blocked:", sorted(m for m in ("sklearn", "skimage", "matplotlib") if m in sys.modules))
''')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "blocked: []"


def test_the_sample_photos_name_their_extra_when_it_is_missing():
    proc = run_blocked('''
import rankcore
try:
    rankcore.data.load("samples", n=1, size=32)
except FileNotFoundError as e:
    print(e)
''')
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'rankcore[samples]'" in proc.stdout


def test_the_plot_names_its_extra_when_matplotlib_is_missing():
    proc = run_blocked('''
import pandas as pd
import rankcore.spectrum
try:
    rankcore.spectrum.plot(pd.DataFrame({"rank": [0, 1], "agreement": [0.5, 1.0]}))
except ImportError as e:
    print(e)
''')
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'rankcore[plot]'" in proc.stdout


def test_optional_packages_are_extras_not_core_dependencies():
    core = {Requirement(r).name for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not core & {"scikit-learn", "scikit-image", "matplotlib"}
    assert {Requirement(r).name for r in extras["samples"]} == \
        {"scikit-learn", "scikit-image", "matplotlib"}
    assert "matplotlib" in {Requirement(r).name for r in extras["plot"]}
    assert "rankcore[samples,plot]" in extras["book"] and "rankcore[samples,plot]" in extras["dev"]


def test_every_requirement_is_pinned_in_constraints_within_its_bounds():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            r = Requirement(line)
            pins[r.name.lower().replace("_", "-")] = next(iter(r.specifier)).version
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]] + \
        [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for r in reqs:
        if r.name == "rankcore":
            continue
        name = r.name.lower().replace("_", "-")
        assert name in pins, f"{r.name} is required but not pinned in constraints.txt"
        assert r.specifier.contains(pins[name], prereleases=True), (r, pins[name])


def test_the_build_backend_can_read_the_licence_expression():
    # license = "MIT" (PEP 639) needs setuptools >= 77: older ones refuse the string.
    assert PYPROJECT["project"]["license"] == "MIT"
    backend = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools = next(r for r in backend if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.1.0") and setuptools.specifier.contains("77.0.0")
