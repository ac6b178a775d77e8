"""How fast is the rank spectrum? rank_spectrum against the bare model and a naive loop.

Three ways to classify the same N images at the same R ranks, each in a fresh process
(so one method's memory does not stay with the next), timed in one run:

    bare       the model alone on N x R inputs (the N images, R times), in batches of
               --batch-size: the floor. No method can beat it by much.
    spectrum   rankcore.rank_spectrum on the same images and ranks.
    naive      the 30-line script: per batch of images one torch.linalg.svd, each
               rank-k image rebuilt from it, the model on each.
    images     rank_spectrum's work without the model: the SVD factors and rank-k images
               of the same blocks (svd_factors, rank_blocks). bare + images is about
               what rank_spectrum can reach; images / bare is the share to win back.

Every worker runs with the allocator settings of rankcore's command line
(``torch_utils.tune_allocator``); ``--malloc glibc`` keeps glibc's defaults, under which
the forward passes of every method spend as much time in the kernel as in user space.

For each: wall, user and system CPU time, and peak memory (the process's peak resident
set while the method ran, and above what it held before); on CUDA also the share of the
time the GPU was busy (``GpuBusy``). Then the ratios to the floor.
Issue 15's acceptance: rank_spectrum / bare <= 1.10 at ImageNet and CIFAR sizes, and the
peak memory of a streamed data set independent of its length (--memory).

    python bench/spectrum_bench.py --size imagenet --n 100                # EfficientNet-Lite0
    python bench/spectrum_bench.py --size cifar --n 2000 --ranks all      # CIFAR-10 ResNet-20
    python bench/spectrum_bench.py --size imagenet --batch-sizes 4,8,16,32,64  # the floor per batch
    python bench/spectrum_bench.py --size imagenet --memory 100,1000 --ranks 5,max
    python bench/spectrum_bench.py --size imagenet --methods bare --malloc glibc   # the default allocator
    python bench/spectrum_bench.py --size cifar --n 1000 --layouts    # channels-last vs contiguous
    python bench/spectrum_bench.py --model resnet50 --random-init --data random --n 1000 \\
        --ranks all --device cuda --amp bf16                             # the paper's GPU workload

Timings on a shared machine are inflated by the other processes: the bench prints the
load average before and after; compare ratios taken in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

import torch

SIZES = {"imagenet": ("efficientnet_lite0", "imagenet-val", "5,10,20,30,50,100,224"),
         "cifar": ("cifar_resnet20", "cifar10", "all")}


# ---------------------------------------------------------------------------- worker side

def _rss_reset() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) so it measures from here on."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _status(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (NaN where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _model(args, device):
    import rankcore

    if args.random_init:
        return rankcore.models.create(args.model).to(device).eval()
    try:
        return rankcore.models.load(args.model, device=device)
    except Exception as e:  # noqa: BLE001 - weights absent: time the architecture
        print(f"({args.model}: {type(e).__name__}; timing random weights)", file=sys.stderr)
        return rankcore.models.create(args.model).to(device).eval()


def _images(args, model, n, stream: bool):
    from rankcore import data

    if args.data == "random":  # timing only: no data set needed (e.g. on a GPU box)
        g = torch.Generator().manual_seed(args.seed)
        return torch.rand(n, *tuple(model.input_size), generator=g), None
    config = dict(getattr(model, "data_kwargs", None) or {"size": tuple(model.input_size)[-1]})
    if stream:
        return data.dataset(args.data, n=n, seed=args.seed, progress=False, **config), None
    loaded = data.load(args.data, n=n, seed=args.seed, progress=False, **config)
    return loaded[0], loaded[1]


def _forward(model, xb, amp, channels_last):
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=amp):
        return model(xb).float().softmax(-1).argmax(-1)


class GpuBusy:
    """The GPU's busy share while a method runs: NVML's ``utilization.gpu`` (the share of its
    last sample period in which a kernel ran, as ``nvidia-smi`` shows it) read every 0.1 s on
    a thread, averaged. ``mean()`` is None off CUDA or without NVML (``pynvml``)."""

    def __init__(self, device: torch.device):
        self.samples: list[float] = []
        self._stop, self._thread = threading.Event(), None
        if device.type != "cuda":
            return
        try:
            torch.cuda.utilization(device)
        except Exception:  # no pynvml or no NVML: not measured
            return
        self._thread = threading.Thread(target=self._sample, args=(device,), daemon=True)
        self._thread.start()

    def _sample(self, device: torch.device) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(float(torch.cuda.utilization(device)))

    def mean(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return statistics.fmean(self.samples) if self.samples else None


def worker(args) -> dict:
    """Run one method once and return its times and memory."""
    from rankcore._spectrum_blocks import default_block, rank_chunk
    from rankcore.rank import factor_rank, parse_ranks, rank_blocks, svd_factors
    from rankcore.spectrum import default_batch_size, rank_spectrum
    from rankcore.torch_utils import synchronize, tune_allocator

    tuned = args.malloc == "tuned" and tune_allocator()
    device = torch.device(args.device)
    model = _model(args, device)
    x, y = _images(args, model, args.n, args.method == "stream")
    shape = tuple(model.input_size)
    ks = parse_ranks(args.ranks, min(shape[-2:]))
    bs = args.batch_size or default_batch_size(shape, device)
    amp, cl = args.amp == "bf16", args.channels_last == "on"
    if isinstance(x, torch.Tensor) and args.method in ("bare", "naive"):
        # the floor's inputs wait on the device; rank_spectrum gets them as a loader would
        x = x.to(device)
    import pandas  # noqa: F401  one-time imports of rank_spectrum, not timed
    import tqdm.auto  # noqa: F401
    with torch.inference_mode():  # warm-up: one batch
        _forward(model, torch.rand(bs, *shape, device=device), amp, cl)
    synchronize(device)
    _rss_reset()
    busy = GpuBusy(device)
    rss0, r0, t0 = _status("VmRSS"), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    passes = len(x) * (len(ks) + (ks[-1] != min(shape[-2:])))
    if args.method in ("spectrum", "stream"):
        rank_spectrum(model, x, y, ranks=ks, batch_size=bs, progress=False,
                      amp="bf16" if amp else None, channels_last=cl)
    elif args.method == "images":  # rank_spectrum's blocks and rank chunks, no model
        block = default_block(bs, shape)
        with torch.inference_mode():
            for start in range(0, len(x), block):
                xb = x[start:start + block]
                chunk = rank_chunk(bs, len(xb), len(ks))
                factors = svd_factors(xb, factor_rank(ks, min(shape[-2:])))
                for _ in rank_blocks(xb.to(device), ks, chunk=chunk, clamp=True, factors=factors):
                    pass
    else:
        with torch.inference_mode():
            for start in range(0, len(x), bs):
                xb = x[start:start + bs]
                if args.method == "bare":  # the same number of inputs, nothing else
                    for _ in range(passes // len(x)):
                        _forward(model, xb, amp, cl)
                else:  # naive: one SVD per batch, every rank-k image rebuilt from it
                    u, s, vh = torch.linalg.svd(xb, full_matrices=False)
                    if ks[-1] != min(shape[-2:]):
                        _forward(model, xb, amp, cl)
                    for k in ks:
                        xk = ((u[..., :k] * s[..., None, :k]) @ vh[..., :k, :]).clamp(0, 1)
                        _forward(model, xk, amp, cl)
    synchronize(device)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    gpu_busy = busy.mean()
    return {"method": args.method, "wall": wall, "user": r1.ru_utime - r0.ru_utime,
            "sys": r1.ru_stime - r0.ru_stime, "peak_mb": _status("VmHWM"),
            "above_mb": _status("VmHWM") - rss0, "passes": passes, "batch_size": bs,
            "n": len(x), "ranks": len(ks), "threads": torch.get_num_threads(),
            "malloc": "tuned" if tuned else "glibc", "gpu_busy": gpu_busy}


# ---------------------------------------------------------------------------- parent side

def run(args, method: str, n: int | None = None) -> dict:
    """One method in a fresh process."""
    cmd = [sys.executable, __file__, "--worker", method, "--n", str(n or args.n)]
    for name in ("model", "data", "ranks", "device", "amp", "seed", "malloc", "channels_last"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    cmd += ["--batch-size", str(args.batch_size or 0)]
    if args.random_init:
        cmd.append("--random-init")
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{method} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _row(r: dict, floor: dict | None = None) -> str:
    ratio = f"{r['wall'] / floor['wall']:6.2f}x" if floor else "      "
    busy = "" if r.get("gpu_busy") is None else f"  GPU busy {r['gpu_busy']:5.1f}%"
    return (f"{r['method']:9s} n={r['n']:5d} {r['wall']:8.1f} s wall {r['user']:8.1f} s user "
            f"{r['sys']:7.1f} s sys  peak {r['peak_mb']:6.0f} MB (+{r['above_mb']:5.0f})  "
            f"{r['passes'] / r['wall']:8.1f} passes/s  {ratio}{busy}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="imagenet",
                   help="imagenet: EfficientNet-Lite0 on ImageNet validation images; "
                        "cifar: ResNet-20 on CIFAR-10 test images (default: imagenet)")
    p.add_argument("--model", default=None, help="a rankcore.models name (default: per --size)")
    p.add_argument("--random-init", action="store_true", help="architecture only, no weights")
    p.add_argument("--data", default=None,
                   help="a rankcore.data name, or random for uniform noise images (default: per --size)")
    p.add_argument("--n", type=int, default=100, help="images (default: 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ranks", default=None, help="default: 5,10,20,30,50,100,224 / all")
    p.add_argument("--batch-size", type=int, default=0,
                   help="images per forward pass (default 0: rank_spectrum's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--malloc", choices=["tuned", "glibc"], default="tuned",
                   help="tuned: rankcore's allocator settings (torch_utils.tune_allocator), as "
                        "its command line and the book run; glibc: the C library's defaults "
                        "(default: tuned)")
    p.add_argument("--repeat", type=int, default=3,
                   help="alternate bare and spectrum this many times; the ratio is the median "
                        "of the back-to-back pairs, single pairs of one build scattering by "
                        "+-5%% on a shared machine (default: 3)")
    p.add_argument("--methods", default="bare,spectrum,naive,images",
                   help="comma list of bare, spectrum, naive, images (default: all four)")
    p.add_argument("--batch-sizes", default=None,
                   help="instead: time the floor at each of these batch sizes")
    p.add_argument("--memory", default=None,
                   help="instead: peak memory of rank_spectrum on a streamed data set of "
                        "each of these lengths, e.g. 100,1000")
    p.add_argument("--channels-last", choices=["on", "off"], default="on",
                   help="feed channels-last inputs, rank_spectrum's default (default: on)")
    p.add_argument("--layouts", action="store_true",
                   help="instead: rank_spectrum with contiguous and channels-last inputs, "
                        "--repeat back-to-back pairs, and their ratio")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    model, data, ranks = SIZES[args.size]
    args.model, args.data, args.ranks = args.model or model, args.data or data, args.ranks or ranks
    if args.worker:
        args.method, args.batch_size = args.worker, args.batch_size or None
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    print(f"{args.model} on {args.data}, {args.n} images, ranks {args.ranks}, device "
          f"{args.device}, amp {args.amp}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"malloc {args.malloc}, load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.batch_sizes:
        base = args.batch_size
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            args.batch_size = bs
            print(f"batch {bs:4d}: " + _row(run(args, "bare")), flush=True)
        args.batch_size = base
    elif args.layouts:
        pairs = []
        for _ in range(args.repeat):
            row = {}
            for layout in ("off", "on"):
                args.channels_last = layout
                row[layout] = run(args, "spectrum")
                print(f"channels-last {layout:3s}: " + _row(row[layout]), flush=True)
            pairs.append(row["off"]["wall"] / row["on"]["wall"])
        print(f"contiguous / channels-last = {statistics.median(pairs):.3f}: median of "
              f"{len(pairs)} back-to-back pairs ({', '.join(f'{q:.3f}' for q in sorted(pairs))})")
    elif args.memory:
        rows = []
        for n in args.memory.split(","):
            rows.append(run(args, "stream", int(n)))
            print(_row(rows[-1]), flush=True)
        print(f"peak memory, {rows[-1]['n']} vs {rows[0]['n']} images: "
              f"{rows[-1]['peak_mb'] / rows[0]['peak_mb']:.3f}x (target <= 1.20)")
    else:
        best: dict[str, dict] = {}
        walls: dict[str, list[float]] = {}
        methods = args.methods.split(",")
        for i in range(args.repeat):
            for m in methods if i == 0 else [m for m in methods if m not in ("naive", "images")]:
                r = run(args, m)
                print(_row(r), flush=True)
                walls.setdefault(m, []).append(r["wall"])
                if m not in best or r["wall"] < best[m]["wall"]:
                    best[m] = r
        floor = best.get("bare")
        if floor:
            print("fastest of each, against the bare model:")
            for m, r in best.items():
                print(_row(r, floor))
            if "spectrum" in best:
                # The machine's speed drifts by several percent between runs; a spectrum run
                # and the bare run just before it share the drift, so their ratio cancels it.
                pairs = sorted(s / b for s, b in zip(walls["spectrum"], walls["bare"]))
                print(f"rank_spectrum / bare model = {statistics.median(pairs):.3f} (target <= 1.10): "
                      f"median of {len(pairs)} back-to-back pairs "
                      f"({', '.join(f'{q:.3f}' for q in pairs)}); fastest / fastest "
                      f"{best['spectrum']['wall'] / floor['wall']:.3f}; batch {best['spectrum']['batch_size']}")
            if "images" in best:
                print(f"(bare + images) / bare model = "
                      f"{1 + best['images']['wall'] / floor['wall']:.3f}: the rank-k images alone "
                      f"(SVD factors and reconstructions, fastest run) take "
                      f"{100 * best['images']['wall'] / floor['wall']:.1f}% of the bare model's time")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
