"""Benchmark: 20-step L-inf PGD on one batch, rankcore against torchattacks, in one run.

Both attack the same model and images with eps 4/255, step 1/255, 20 steps and a random
start. rankcore is timed twice: ``keep="last"`` (torchattacks' behaviour, same work) and
``keep="best"`` (the default, which also tracks each image's best iterate: one extra
forward pass per restart). Target (issue 5): rankcore no slower than torchattacks.

Run: ``python bench/attack_bench.py [--device cuda] [--batch 128] [--arch cifar_resnet8] [--repeat 3]``
Timings on a shared machine are inflated by contention; the ratio is what to read.
"""
from __future__ import annotations

import argparse
import platform

import torch

import rankcore
from _timing import best, paired_ratio, paired_times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--arch", default="cifar_resnet8")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    import torchattacks

    device = torch.device(args.device)
    model = rankcore.models.create(args.arch).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    eps, alpha = 4 / 255, 1 / 255
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=args.steps, random_start=True)
    runs = {
        "torchattacks.PGD": lambda: ta(x, y),
        "rankcore.pgd keep=last": lambda: rankcore.pgd(model, x, y, eps, steps=args.steps,
                                                        step_size=alpha, keep="last"),
        "rankcore.pgd keep=best": lambda: rankcore.pgd(model, x, y, eps, steps=args.steps,
                                                        step_size=alpha, keep="best"),
    }
    times = paired_times(runs, args.repeat)
    base = times["torchattacks.PGD"]
    print(f"PGD-{args.steps}, batch {args.batch}, {args.arch}, {device} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"best of {args.repeat} rounds, ratios the median of the rounds' pairs)")
    for name, t in times.items():
        print(f"  {name:26s} {best(t) * 1000:9.1f} ms   {paired_ratio(base, t):5.2f}x "
              "torchattacks' speed")


if __name__ == "__main__":
    main()
