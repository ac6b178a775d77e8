"""Benchmark: training throughput of rankcore.train against a minimal PyTorch loop, in one run.

Same network, data, batch size and optimiser. Natural: the loop is index, forward,
backward, step; the trainer adds its schedule, metrics and per-epoch checkpoint. FGSM-RS
adversarial training (Wong et al. 2020): the loop adds the random start and one signed
gradient step. Augmentation is off in both so they do the same work; the trainer with its
crop-and-flip is printed too. Target (issue 5): the trainer within 10% of the loop.

Run: ``python bench/train_bench.py [--device cuda] [--n 2048] [--epochs 2] [--arch cifar_resnet8]``
On CUDA the trainer uses bfloat16 autocast and channels-last (``--arch resnet50_cifar`` gives
the paper's network; epochs per minute are printed). Timings on a shared machine are
inflated by contention; the ratio is what to read.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import rankcore
from rankcore import train as T

from attack_bench import timed  # same folder: run as `python bench/train_bench.py`


def minimal_loop(model, x, y, cfg, adv: bool):
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    eps = cfg.adv_eps
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), device=x.device)
        for i in range(0, len(x), cfg.batch_size):
            xb, yb = x[perm[i:i + cfg.batch_size]], y[perm[i:i + cfg.batch_size]]
            if adv:
                delta = ((torch.rand_like(xb) * 2 - 1) * eps).requires_grad_(True)
                grad, = torch.autograd.grad(F.cross_entropy(model(xb + delta), yb), delta)
                delta = (delta.detach() + 1.25 * eps * grad.sign()).clamp(-eps, eps)
                xb = (xb + delta).clamp(0, 1)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="cifar_resnet8")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.n, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    passes = args.n * args.epochs
    print(f"{args.arch}, {args.n} images x {args.epochs} epochs, batch {args.batch}, {device} "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        for adv in (None, "fgsm-rs"):
            cfg = T.TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch,
                                schedule="onecycle", augment=False, adv=adv)
            rows = {
                "minimal loop": lambda: minimal_loop(
                    rankcore.models.create(args.arch).to(device).train(), x, y, cfg, adv is not None),
                "rankcore.train": lambda: rankcore.train(
                    rankcore.models.create(args.arch).to(device), (x, y), None, cfg,
                    checkpoint=Path(tmp) / "c.pt", progress=False),
                "rankcore.train + augment": lambda: rankcore.train(
                    rankcore.models.create(args.arch).to(device), (x, y), None,
                    cfg.replace(augment=True), checkpoint=Path(tmp) / "c.pt", progress=False),
            }
            base = None
            for name, fn in rows.items():
                c0 = time.process_time()
                t = timed(fn, device, repeat=1)
                # CPU time (all threads) per image: steadier than the wall clock when the
                # machine is shared, and what an idle machine's wall time is bounded by.
                cpu_ms = 1000 * (time.process_time() - c0) / passes
                base = base or t
                print(f"  {adv or 'natural':8s} {name:26s} {passes / t:8.0f} img/s  "
                      f"{cpu_ms:6.2f} CPU ms/img  {60 * args.epochs / t:6.2f} epochs/min of "
                      f"{args.n}  {base / t:5.2f}x the loop's speed")


if __name__ == "__main__":
    main()
