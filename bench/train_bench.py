"""Benchmark: the fast CIFAR-10 recipe against the old ResNet-8 recipe, in one run.

Rows (each a full ``rankcore.train.train`` call on the same images, same epochs):

- ``old resnet8``: the former quick recipe: ``cifar_resnet8``, batch 128, float32, zero-pad
  crop + flip, one-cycle lr 0.2.
- ``new airbench_cpu``: the quick profile's recipe (``rankcore/book/profiles/quick.yml``):
  airbench layout at widths 32/64/128, batch 512, uint8-resident data, reflect translate +
  flip, label smoothing, shift learning-rate scale, bfloat16 autocast.
- ``new airbench_cpu fp32``: the same without bfloat16 (does autocast pay on this CPU?).
- ``--gpu-rows``: the natural recipes of the ``gpu`` profile (``airbench94``,
  ``cifar_resnet20``) and the ``paper`` profile (``resnet50_cifar``) too.

Each is run natural and with FGSM-RS (L-inf 8/255). Printed: images per second (image
passes of training, attack passes not counted), wall seconds, CPU milliseconds per image
(all threads; steadier than the wall clock on a shared machine) and, with ``--real``, the
top-1 on 2,000 CIFAR-10 test images after training on ``--n`` real training images. On a
GPU each row also prints its passes per second (the FGSM-RS attack's pass counted) beside
the rate ``rankcore.book.runs.estimate`` assumes for that network.

Run: ``python bench/train_bench.py [--device cuda] [--n 4096] [--epochs 1] [--real]
[--malloc glibc]``.
Timings on a shared machine are inflated by contention: print ``uptime`` beside them.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from rankcore import train as T
from rankcore.book import runs
from rankcore.torch_utils import synchronize, tune_allocator


def _configs(epochs: int, gpu_rows: bool) -> dict[str, T.TrainConfig]:
    old = T.TrainConfig(arch="cifar_resnet8", epochs=epochs, batch_size=128, schedule="onecycle",
                        lr=0.2, nesterov=True)
    new = runs.preset("natural", "quick", epochs=epochs, n_train=None, n_test=None)
    rows = {"old resnet8": old, "new airbench_cpu": new,
            "new airbench_cpu fp32": new.replace(amp=False)}
    if gpu_rows:
        for profile in ("gpu", "paper"):
            for family in runs.families(profile):
                cfg = runs.preset("natural", profile, family, epochs=epochs, n_train=None,
                                  n_test=None)
                rows[f"{profile} {cfg.arch}"] = cfg
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=4096, help="training images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--real", action="store_true", help="CIFAR-10 images + test top-1")
    p.add_argument("--gpu-rows", action="store_true",
                   help="add the gpu and paper profiles' networks")
    p.add_argument("--no-adv", action="store_true")
    p.add_argument("--malloc", choices=["tuned", "glibc"], default="tuned",
                   help="tuned: rankcore's allocator settings (torch_utils.tune_allocator), "
                        "as `rankcore train` and the book run; glibc: the C library's "
                        "defaults, as this bench ran before them (default: tuned)")
    args = p.parse_args()
    tuned = args.malloc == "tuned" and tune_allocator()
    device = torch.device(args.device)
    if args.real:
        from rankcore import data
        x, y = data.load("cifar10", split="train", n=args.n, progress=False)[:2]
        test = data.load("cifar10", split="test", n=2000, progress=False)[:2]
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(args.n, 3, 32, 32, generator=g), torch.randint(0, 10, (args.n,), generator=g)
        test = None
    passes = args.n * args.epochs
    print(f"{args.n} {'CIFAR-10' if args.real else 'random'} images x {args.epochs} epochs on "
          f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, malloc {'tuned' if tuned else 'glibc'}); load average "
          f"{os.getloadavg()[0]:.1f}")
    for adv in ((None,) if args.no_adv else (None, "fgsm-rs")):
        for name, cfg in _configs(args.epochs, args.gpu_rows).items():
            cfg = cfg.replace(adv=adv, guard_n=64)
            model = T.build_model(cfg).to(device)
            synchronize(device)
            t0, c0 = time.perf_counter(), time.process_time()
            model = T.train(model, (x, y), test, cfg, progress=False)
            synchronize(device)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            top1 = model.train_history[-1]["test_top1"]
            assumed = runs.GPU_IMAGES_PER_S.get(cfg.arch) if device.type == "cuda" else None
            rate = passes * runs.passes_per_image(cfg) / wall
            print(f"  {adv or 'natural':8s} {name:24s} {passes / wall:8.0f} img/s  "
                  f"{wall:7.1f} s wall  {1000 * cpu / passes:6.2f} CPU ms/img"
                  + (f"  top-1 {top1:.3f}" if top1 is not None else "")
                  + (f"  {rate:8.0f} passes/s (estimate assumes {assumed})" if assumed else ""),
                  flush=True)


if __name__ == "__main__":
    main()
