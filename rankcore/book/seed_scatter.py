"""The seed scatter of a profile's training runs, as data the verdict rules read.

``bench/seed_scatter.py`` trains a profile's natural run and one rank run with several seeds
and writes ``rankcore/book/seed_scatter/<profile>.json`` (package data). A rule that compares a
training result with the paper takes its tolerance from :func:`tolerance`: the rule's fixed
floor, or twice the measured standard deviation where that is larger, and a note saying
which it used.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["FOLDER", "SPREAD", "load", "sd", "tolerance", "low_rank_sd"]

#: Where the bench writes its measurements (package data).
FOLDER = Path(__file__).with_name("seed_scatter")
#: A tolerance from the seed scatter is this many standard deviations (about a 95% band
#: for one run against a fixed number).
SPREAD = 2.0


@functools.lru_cache(maxsize=None)
def _read(path: str) -> dict[str, Any] | None:
    p = Path(path)
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError(f"{p}: expected an object with a 'runs' mapping (bench/seed_scatter.py "
                         "writes it)")
    return data


def load(profile: str, folder: str | Path | None = None) -> dict[str, Any] | None:
    """The measurements of ``profile`` (``None`` when none were made).

    Returns:
        dict: ``profile``, ``runs`` (run name -> ``seeds``, ``test_top1`` in percent per
        seed, ``mean``, ``sd`` (ddof 1), ``epochs``, ``arch``) and how it was measured.
    """
    if not isinstance(profile, str) or not profile or "/" in profile:
        raise ValueError(f"profile={profile!r}; expected a profile name such as 'quick'")
    return _read(str(Path(folder or FOLDER) / f"{profile}.json"))


def _kind(run: str) -> str:
    return run.split(":", 1)[0]


def sd(profile: str, run: str, folder: str | Path | None = None) -> tuple[float, str] | None:
    """The seed standard deviation (percent points) that stands for ``run``, and the run it
    was measured on: ``run`` itself, else a run of the same kind (``low_rank:5`` for
    ``low_rank:10``), else the largest measured; ``None`` when nothing was measured."""
    data = load(profile, folder)
    if data is None or not data["runs"]:
        return None
    measured = {k: float(v["sd"]) for k, v in data["runs"].items()}
    if run in measured:
        return measured[run], run
    same = [k for k in measured if _kind(k) == _kind(run)]
    pick = same[0] if same else max(measured, key=measured.get)
    return measured[pick], pick


def tolerance(profile: str, run: str, floor: float, difference: bool = False,
              folder: str | Path | None = None) -> tuple[float, str]:
    """A training rule's tolerance in points, and the note that says where it came from.

    Args:
        profile (str): the profile whose runs are judged.
        run (str): the run compared with the paper, e.g. ``"natural"``, ``"low_rank:5"``.
        floor (float): the rule's fixed tolerance (points), used when it is the larger.
        difference (bool, optional): the compared value is a difference of two runs (a
            gap): the scatter is ``sqrt(2)`` times one run's. Default: False.

    Returns:
        (float, str): ``max(floor, SPREAD * sd)`` and e.g. ``"tolerance 3.0 points: the
        fixed floor (seed sd 0.6 of natural, 3 seeds)"``.
    """
    found = sd(profile, run, folder)
    if found is None:
        return float(floor), (f"tolerance {floor:g} points: the fixed floor (no seed scatter "
                              f"measured for the {profile} profile)")
    s, source = found
    n = len(load(profile, folder)["runs"][source].get("seeds", []))
    s = s * (2 ** 0.5 if difference else 1.0)
    tol = max(float(floor), SPREAD * s)
    which = "the fixed floor" if tol == floor else f"{SPREAD:g} x the seed sd"
    return tol, (f"tolerance {tol:.2g} points: {which} (seed sd {s:.2f}"
                 f"{' of a difference' if difference else ''} from {source}, {n} seeds)")


def low_rank_sd(profile: str, folder: str | Path | None = None) -> float | None:
    """The largest seed standard deviation (points) of the natural run's top-1 over ranks
    1-10 of the CIFAR-10 test images (Figure 7c's low ranks), ``None`` when not measured."""
    data = load(profile, folder)
    sds = (data or {}).get("runs", {}).get("natural", {}).get("low_rank_sd")
    return max(float(v) for v in sds.values()) if sds else None
