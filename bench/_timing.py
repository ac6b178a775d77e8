"""The benches' clock: ``torch.utils.benchmark.Timer``, in the paired design of the benches.

Timer brings what a hand-written ``perf_counter`` loop had to get right by itself: its clock
synchronises the accelerator before every reading (CUDA kernels are asynchronous), it runs
at a fixed thread count (the bench's, so two ways are timed alike), and it calls the
statement once to size its block before it measures (the warm-up). What stays here is the
design: every round times each way once, in an order that rotates from round to round, so a
noisy neighbour on a shared machine slows all ways alike; ratios are taken within a round.
"""
from __future__ import annotations

import statistics
from typing import Any, Callable

import torch
from torch.utils import benchmark


def _seconds(timer: benchmark.Timer) -> float:
    # min_run_time=0: one block, after Timer's own sizing call; a block is one call for any
    # statement that takes longer than a millisecond.
    return timer.blocked_autorange(min_run_time=0).median


def paired_times(ways: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each way, one value per round (the rounds in the same order for
    every way, so ``times[a][i] / times[b][i]`` is a paired ratio).

    Args:
        ways (dict of str to callable): the statements to time, by name.
        rounds (int): how many rounds, ``>= 1``.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds!r}; expected an int >= 1")
    threads = torch.get_num_threads()
    timers = {name: benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads,
                                    label=name) for name, fn in ways.items()}
    names = list(ways)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_seconds(timers[name]))
    return times


def best(times: list[float]) -> float:
    return min(times)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of ``numerator[i] / denominator[i]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))
