"""Benchmark: every rank-k image of 8 real 224x224x3 images, three ways, in one run.

1. ``rank_sweep``: one SVD per image and channel, rank-one updates (rankcore).
2. Algorithm 1 as written in the paper: a fresh SVD for every k.
3. The floor: one batched SVD plus writing the 225 reconstructions once.

Targets (issue 2): rank_sweep >= 30x faster than the per-k SVD loop and within 3x of
the floor on CPU.  Run: ``python bench/rank_bench.py [--device cuda] [--n 8] [--repeat 3]``
"""
from __future__ import annotations

import argparse
import platform

import torch

import rankcore
from rankcore import data
from _timing import best, paired_ratio, paired_times


def sweep(x, chunk):
    for _, block in rankcore.rank_blocks(x, chunk=chunk):
        block.sum()  # touch what a consumer would read


def per_k_svd(x, ranks):
    for k in ranks:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        s[..., k:] = 0
        ((u * s[..., None, :]) @ vh).sum()


def floor(x, chunk):
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    w = min(x.shape[-2:])
    for start in range(0, w + 1, chunk):
        m = min(chunk, w + 1 - start)
        out = torch.empty((m, *x.shape), dtype=x.dtype, device=x.device)
        out.copy_(x.expand(m, *x.shape))
        out.sum()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-per-k", action="store_true", help="skip the slow per-k loop")
    p.add_argument("--per-k-sample", type=int, default=25,
                   help="time the per-k loop on this many evenly spaced ranks and scale to all "
                        "(every iteration is one full SVD, whatever k); 0 = every rank")
    args = p.parse_args()
    device = torch.device(args.device)
    x, _ = data.load("samples", size=224)
    x = x[: args.n].to(device)
    if len(x) < args.n:
        x = x.repeat((args.n + len(x) - 1) // len(x), 1, 1, 1)[: args.n]
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"{args.n} images {tuple(x.shape[1:])}, all {min(x.shape[-2:]) + 1} ranks, device {device} ({hw}), torch {torch.__version__}")
    times = paired_times({"sweep": lambda: sweep(x, args.chunk),
                          "floor": lambda: floor(x, args.chunk)}, args.repeat)
    t_sweep, t_floor = best(times["sweep"]), best(times["floor"])
    print(f"rank_sweep          {t_sweep:8.3f} s")
    print(f"floor (1 SVD+write) {t_floor:8.3f} s   rank_sweep / floor = "
          f"{paired_ratio(times['sweep'], times['floor']):5.2f}x  (target <= 3x)")
    if not args.skip_per_k:
        w = min(x.shape[-2:])
        every = list(range(w + 1))
        sample = every if args.per_k_sample <= 0 else every[:: max(1, (w + 1) // args.per_k_sample)]
        t_perk = best(paired_times({"per-k": lambda: per_k_svd(x, sample)}, 1)["per-k"]) \
            * (w + 1) / len(sample)
        how = "measured" if len(sample) == w + 1 else f"{len(sample)} ranks timed, scaled to {w + 1}"
        print(f"per-k SVD (Alg. 1)  {t_perk:8.3f} s   per-k / rank_sweep = {t_perk / t_sweep:5.1f}x  "
              f"(target >= 30x; {how})")


if __name__ == "__main__":
    main()
