"""Benchmark: start-up of the ``rankcore`` command against a bare interpreter, in one run.

Each pair runs ``python -c pass`` and ``python -m rankcore.book.cli --version`` (what the
``rankcore`` console script runs: the library's commands and the book's) back to back (in
alternating order, so a noisy neighbour hits both alike) and the table prints the medians
and the median of the paired differences. ``--version`` and ``--help`` build the whole
parser, so they cost what any command costs before it starts its own work.

Target (issue 27): ``rankcore --version`` under 1 s on the 2-core development machine
(it was 3.4 s with every submodule, torch and timm imported before argparse ran).
Run: ``python bench/cli_bench.py [--repeat 7] [--args=--help]``
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def run_once(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7, help="pairs (default: 7)")
    p.add_argument("--args", default="--version", help="rankcore's arguments (default: --version)")
    args = p.parse_args()
    bare = [sys.executable, "-c", "pass"]
    command = [sys.executable, "-m", "rankcore.book.cli", *shlex.split(args.args)]
    order = [("bare", bare), ("rankcore", command)]
    run_once(command)  # warm the file cache: every later run reads the same .pyc files
    times: dict[str, list[float]] = {name: [] for name, _ in order}
    for i in range(args.repeat):
        for name, argv in order if i % 2 == 0 else order[::-1]:
            times[name].append(run_once(argv))
    diffs = [r - b for r, b in zip(times["rankcore"], times["bare"])]
    print(f"{args.repeat} pairs, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"  python -c pass                {statistics.median(times['bare']):7.3f} s (median)")
    print(f"  rankcore {args.args:20s} {statistics.median(times['rankcore']):7.3f} s "
          f"(median; range {min(times['rankcore']):.3f}-{max(times['rankcore']):.3f})")
    print(f"  rankcore's own start-up       {statistics.median(diffs):7.3f} s (median of paired "
          "differences)")


if __name__ == "__main__":
    main()
