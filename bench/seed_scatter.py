"""Bench: the seed scatter of a profile's training runs, written as data the verdict rules read.

Trains the profile's natural run and one rank run (default ``low_rank:5``) with several seeds
(``TrainConfig.seed``: initialisation, shuffling, augmentation; the data are the same) and
writes ``rankcore/book/seed_scatter/<profile>.json``: per run the final full-rank test top-1
of every seed (percent), their mean and standard deviation (ddof 1), and for the natural
run also the top-1 at ranks 1-10 of the CIFAR-10 test images (the low ranks of Figure 7c),
so the rules know how far a single run scatters. ``rankcore.book.seed_scatter.tolerance``
reads it.

Measured on the quick profile (2 shared cores): natural 5 epochs ~230 CPU s per seed, a rank
run ~180 CPU s. Run with its own cache so the book's models are not touched::

    RANKCORE_CACHE=/tmp/s24-cache PYTHONPATH=. python bench/seed_scatter.py --profile quick
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

import torch

from rankcore import _io
from rankcore.book import runs
from rankcore.book.seed_scatter import FOLDER


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _low_rank_top1(model, n: int, ranks: list[int]) -> dict[int, float]:
    """Top-1 (percent) of ``model`` at ``ranks`` on the first ``n`` CIFAR-10 test images
    (seeded subset 0, as chapter 02 loads them)."""
    from rankcore.book.ch02_rank_spectrum import load_data_for
    from rankcore.spectrum import rank_spectrum
    df = rank_spectrum(model, load_data_for(model, "cifar10", n, 0), ranks=ranks, progress=False)
    return {int(k): 100.0 * float(v) for k, v in zip(df["rank"], df["top1"])}


def _entry(rows: list[dict], cfg, spectrum_n: int, natural: bool) -> dict:
    tops = [r["test_top1"] for r in rows]
    entry = {"seeds": [r["seed"] for r in rows], "test_top1": tops, "mean": statistics.mean(tops),
             "sd": statistics.stdev(tops) if len(tops) > 1 else 0.0,
             "epochs": cfg.epochs, "arch": cfg.arch, "per_seed": rows}
    if natural and spectrum_n and len(rows) > 1:
        per_rank = {k: [r["low_rank_top1"][k] for r in rows] for k in range(1, 11)}
        entry["low_rank_sd"] = {str(k): statistics.stdev(v) for k, v in per_rank.items()}
        entry["low_rank_images"] = spectrum_n
    return entry


def measure(profile: str, run_names: list[str], seeds: list[int], spectrum_n: int,
            out: Path | None = None) -> dict:
    """Train every run with every seed; with ``out``, rewrite the file after each seed (a
    run with fewer than two seeds done is left out), so an interrupted bench leaves data."""
    data = {"profile": profile, "seeds": seeds, "runs": {},
            "measured": {"commit": _commit(), "host": platform.node(),
                         "threads": torch.get_num_threads(),
                         "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                             timespec="seconds")}}
    rows: dict[str, list[dict]] = {name: [] for name in run_names}
    # Seeds outer, runs inner: after the second seed every run has a scatter to read.
    for seed in seeds:
        for name in run_names:
            cfg = runs.preset(name, profile, seed=seed)
            t0, c0 = time.perf_counter(), _cpu_seconds()
            result = runs.get_or_train(cfg, progress=False)
            model = result.model
            top1 = 100.0 * float(result.history[-1]["test_top1"])
            row = {"seed": seed, "test_top1": top1, "from_cache": result.from_cache,
                   "wall_s": round(time.perf_counter() - t0, 1),
                   "cpu_s": round(_cpu_seconds() - c0, 1)}
            if name == "natural" and spectrum_n:
                row["low_rank_top1"] = _low_rank_top1(model, spectrum_n, list(range(1, 11)))
            rows[name].append(row)
            print(f"{name} seed {seed}: {top1:.2f}% ({row['cpu_s']} CPU s)", flush=True)
            if len(rows[name]) > 1:
                data["runs"][name] = _entry(rows[name], cfg, spectrum_n, name == "natural")
                if out is not None:
                    _io.write_json(out, data)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--runs", default="natural,low_rank:5",
                    help="comma-separated run names (default: natural,low_rank:5)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    ap.add_argument("--spectrum-n", type=int, default=2000,
                    help="CIFAR-10 test images for the natural run's ranks 1-10 (0: skip)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output file (default: rankcore/book/seed_scatter/<profile>.json)")
    args = ap.parse_args(argv)
    if not os.environ.get("RANKCORE_CACHE"):
        ap.error("set RANKCORE_CACHE to a folder of your own: this bench trains new models")
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 2:
        ap.error(f"--seeds {args.seeds!r}: a scatter needs at least two seeds")
    out = args.out or FOLDER / f"{args.profile}.json"
    data = measure(args.profile, args.runs.split(","), seeds, args.spectrum_n, out)
    _io.write_json(out, data)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
