"""Benchmark: RIG against the bare forward-backward passes it needs, in one run (issue 15).

RIG over all ranks of ``--images`` 224x224 images costs ``w - 1 = 223`` forward-backward
passes per image (rank 224 has weight 0) in batches of ``--batch``; everything else (one
SVD per image and channel, the rank-k images, the weighted channel maximum) should vanish
beside them. Timed on the same model and the same number of inputs per pass:

- ``RIG``: ``rankcore.rig`` (equation 3, every rank);
- ``bare passes``: the floor: the target's softmax probability and its gradient with
  respect to the input, on ready-made inputs of the same count and batch shapes;
- ``SVD + rank images``: the rank engine alone (``rank_blocks`` over the same ranks);
- ``captum IG``: captum's ``IntegratedGradients`` with as many steps, for reference.

The methods run in alternating order ``--repeat`` times and the best of each is kept
(contention from other processes inflates all of them). Printed: wall, user and system
seconds per method, and the ratio RIG / bare passes (target <= 1.10).

Run: ``python bench/attribution_bench.py [--device cpu|cuda] [--images 1] [--batch 16]
[--repeat 2] [--ranks all|4:max:4] [--captum] [--malloc glibc]``
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import torch

import rankcore
from rankcore import attribution, data, models
from rankcore.torch_utils import evaluating, synchronize


def _timed(fn, device: torch.device) -> tuple[float, float, float]:
    """(wall, user, system) seconds of one call."""
    synchronize(device)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    synchronize(device)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def bare_passes(model, inputs: torch.Tensor, target: torch.Tensor, batch: int) -> None:
    """The floor: softmax probability of the target and its input gradient, batch by batch."""
    with evaluating(model), torch.enable_grad():
        for i in range(0, len(inputs), batch):
            xb = inputs[i:i + batch].detach().requires_grad_(True)
            p = model(xb).softmax(1).gather(1, target[i:i + batch, None]).sum()
            torch.autograd.grad(p, xb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=1, help="224x224 images (embedded photos)")
    ap.add_argument("--batch", type=int, default=16, help="inputs per forward/backward pass")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each method")
    ap.add_argument("--ranks", default="all", help="RIG's ranks (rank.parse_ranks form, e.g. "
                    "'4:max:4'); default every rank")
    ap.add_argument("--captum", action="store_true", help="also time captum's IG (as many steps)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--malloc", choices=["tuned", "glibc"], default="tuned",
                    help="tuned: rankcore's allocator settings (torch_utils.tune_allocator), "
                         "as its command line and the book run; glibc: the C library's "
                         "defaults (default: tuned)")
    args = ap.parse_args()
    tuned = args.malloc == "tuned" and rankcore.torch_utils.tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = models.load("efficientnet_lite0").to(device).eval()
    x = data.load("samples", n=args.images, progress=False)[0].to(device)      # (N, 3, 224, 224)
    target = rankcore.torch_utils.predict(model, x, amp=False).argmax(1)
    w = min(x.shape[-2:])
    ks, _ = attribution.rig_ranks(args.ranks, w)             # rank w has weight 0: skipped
    # the same inputs RIG feeds the model, built once: (N * (w - 1), 3, 224, 224) in the
    # order RIG batches them (per image group, per block of ranks)
    per_pass = max(1, args.batch // min(len(x), args.batch))
    blocks, targets = [], []
    for i in range(0, len(x), args.batch):
        xg, tg = x[i:i + args.batch], target[i:i + args.batch]
        for kb, xs in rankcore.rank_blocks(xg, ranks=ks, chunk=per_pass, clamp=True):
            blocks.append(xs.flatten(0, 1))
            targets.append(tg.repeat(len(kb)))
    inputs, input_targets = torch.cat(blocks), torch.cat(targets)
    sizes = [len(b) for b in blocks]

    def bare():
        start = 0
        for n in sizes:                                      # RIG's exact batch shapes
            bare_passes(model, inputs[start:start + n], input_targets[start:start + n], n)
            start += n

    runs = {
        "RIG": lambda: rankcore.rig(model, x, target, ranks=args.ranks,
                                    internal_batch_size=args.batch),
        "bare passes": bare,
        "SVD + rank images": lambda: [xs.sum() for i in range(0, len(x), args.batch)
                                      for _, xs in rankcore.rank_blocks(
                                          x[i:i + args.batch], ranks=ks, chunk=per_pass,
                                          clamp=True)],
    }
    if args.captum:
        runs["captum IG"] = lambda: attribution.integrated_gradients(
            model, x, target, steps=len(ks), internal_batch_size=args.batch)
    runs["RIG"]()                                                              # warm-up
    best = {name: (float("inf"), 0.0, 0.0) for name in runs}
    for r in range(args.repeat):
        # alternate the order so that a drift in machine load favours no method
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t = _timed(runs[name], device)
            print(f"  run {r + 1}: {name:20s} wall {t[0]:7.2f} s  user {t[1]:7.2f} s  "
                  f"sys {t[2]:6.2f} s  (load average {os.getloadavg()[0]:.1f})", flush=True)
            best[name] = min(best[name], t)

    what = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {device} ({what}), {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, malloc {'tuned' if tuned else 'glibc'}, load average "
          f"{os.getloadavg()[0]:.2f} at the end; "
          f"{len(x)} image(s) x {len(ks)} ranks = {len(inputs)} forward-backward passes "
          f"in batches of {args.batch}, best of {args.repeat}")
    print(f"  {'method':20s} {'wall s':>8s} {'user s':>8s} {'sys s':>8s}")
    for name, (wall, user, sys_) in best.items():
        print(f"  {name:20s} {wall:8.2f} {user:8.2f} {sys_:8.2f}")
    ratio = best["RIG"][0] / best["bare passes"][0]
    share = best["SVD + rank images"][0] / best["RIG"][0]
    print(f"RIG / bare passes = {ratio:.3f}x (target <= 1.10); SVD and rank images are "
          f"{100 * share:.1f}% of RIG's time")
    if "captum IG" in best:
        print(f"RIG / captum IG = {best['RIG'][0] / best['captum IG'][0]:.3f}x")


if __name__ == "__main__":
    main()
