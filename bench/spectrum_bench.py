"""How fast is the rank spectrum? Three ways to classify N images at R ranks, in one run.

    (a) Algorithm 1 as written in the paper: for every rank, a fresh SVD of every image
        and channel, one image at a time, then the model on the N rank-k images.
    (b) The model alone: the same N x R forward passes on inputs computed beforehand,
        in batches of --batch-size. No method can beat this by much.
    (c) rankcore.rank_spectrum: one SVD per image and channel, ranks of several images
        batched into each forward pass.

Target (issue 4): (c) within 10% of (b), and at least 5x faster than (a), on CPU with
EfficientNet-Lite0 at 224x224. Prints images x ranks per second and the ratios.

    python bench/spectrum_bench.py --algorithm1-ranks 8             # CPU, EfficientNet-Lite0
    python bench/spectrum_bench.py --model resnet50 --random-init --n 256 --ranks 0:224:8 \\
        --batch-size 256 --amp bf16 --skip-algorithm1               # a GPU

Timings on a shared machine are inflated by contention; compare the ratios.
"""
from __future__ import annotations

import argparse

import torch
import torch.utils.benchmark as benchmark

import rankcore
from rankcore.rank import low_rank, rank_blocks
from rankcore.rank import parse_ranks
from rankcore.spectrum import load_data_for, rank_spectrum

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def load_model(name: str, random_init: bool, device: torch.device) -> torch.nn.Module:
    """A model from the zoo; ``random_init`` builds the architecture without weights
    (speed does not depend on the weights, and a GPU box may lack them)."""
    if random_init:
        return rankcore.models.create(name).to(device).eval()
    return rankcore.models.load(name, device=device)


def forward(model, xb, amp, channels_last):
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=xb.device.type, dtype=amp, enabled=amp is not None):
        return model(xb).float().argmax(-1)


def algorithm1_images(x, k):
    """Algorithm 1's rank-k images: a fresh SVD per image and channel."""
    xk = torch.zeros_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            u, s, vh = torch.linalg.svd(x[i, c], full_matrices=False)
            s = s.clone()
            s[k:] = 0
            xk[i, c] = (u * s) @ vh
    return xk.clamp_(0, 1)


def algorithm1(model, x, ks, amp, channels_last, classify=True):
    """The paper's loop over ranks (the full-rank forward pass before it is timed apart)."""
    for k in ks:
        xk = algorithm1_images(x, k)
        if classify:
            forward(model, xk, amp, channels_last)


def sweep_images(x, ks, chunk):
    """rankcore's rank-k images: one SVD per image and channel."""
    for _, block in rank_blocks(x, ks, chunk=chunk, clamp=True):
        block.sum()  # read what a consumer would read


def model_alone(model, inputs, batch_size, amp, channels_last):
    """Only the forward passes, on precomputed rank-k images ``(N * R, C, H, W)``."""
    for start in range(0, inputs.shape[0], batch_size):
        forward(model, inputs[start:start + batch_size], amp, channels_last)


def timed(fn, repeat: int) -> float:
    """Best of ``repeat`` runs, in seconds (torch's Timer synchronises CUDA)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn})
    return min(timer.timeit(1).mean for _ in range(repeat))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--random-init", action="store_true", help="architecture only, no weights")
    p.add_argument("--data", default="imagenet-auto")
    p.add_argument("--n", type=int, default=8, help="images (default: 8)")
    p.add_argument("--ranks", default="0:max:4,max",
                   help="ranks (default: 0:max:4,max, 58 ranks at 224x224)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--amp", default="none", choices=sorted(_AMP))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=2, help="best of this many runs (default: 2)")
    p.add_argument("--algorithm1-ranks", type=int, default=None,
                   help="time (a) on this many evenly spaced ranks only and report its rate "
                        "(its cost is linear in the number of ranks); default: all of --ranks")
    p.add_argument("--skip-algorithm1", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's; 1 is steadier on a busy machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    amp, channels_last = _AMP[args.amp], device.type == "cuda"
    model = load_model(args.model, args.random_init, device)
    side = tuple(model.input_size)[-1]
    x, y = load_data_for(model, args.data, n=args.n)
    x = x.to(device)
    ks = parse_ranks(args.ranks, side)
    work = len(ks) * x.shape[0]
    print(f"{args.model} on {device} ({torch.get_num_threads()} CPU threads), {x.shape[0]} images "
          f"{tuple(x.shape[1:])} x {len(ks)} ranks = {work} forward passes, batch "
          f"{args.batch_size}, amp {args.amp}")

    with torch.inference_mode():
        forward(model, x[: min(8, len(x))], amp, channels_last)  # warm-up
        inputs = torch.cat([low_rank(x, k, clamp=True) for k in ks])  # (R * N, C, H, W)
        run_b = lambda: model_alone(model, inputs, args.batch_size, amp, channels_last)  # noqa: E731
        run_c = lambda: rank_spectrum(  # noqa: E731
            model, x, y, ranks=ks, batch_size=args.batch_size, progress=False,
            amp=None if args.amp == "none" else args.amp, channels_last=channels_last)
        # (b) and (c) alternate, best of each, so that a busy machine's drift hits both.
        t_b = t_c = float("inf")
        for _ in range(args.repeat):
            t_b, t_c = min(t_b, timed(run_b, 1)), min(t_c, timed(run_c, 1))
        del inputs
        ks_a = ks
        if args.algorithm1_ranks and args.algorithm1_ranks < len(ks):
            ks_a = [ks[round(i * (len(ks) - 1) / max(1, args.algorithm1_ranks - 1))]
                    for i in range(args.algorithm1_ranks)]
        # (a) = full-rank predictions + the loop, scaled to all R ranks: each rank costs
        # the same N x C SVDs and one forward pass of N images.
        t_a = float("nan")
        if not args.skip_algorithm1:
            t_full = timed(lambda: forward(model, x, amp, channels_last), 1)
            t_loop = timed(lambda: algorithm1(model, x, ks_a, amp, channels_last), 1)
            t_a = t_full + t_loop * len(ks) / len(ks_a)
            # The rank-k images alone, without the model: where the two methods differ.
            t_img_a = timed(lambda: [algorithm1_images(x, k) for k in ks_a], 1) * len(ks) / len(ks_a)
            chunk = max(1, args.batch_size // min(16, args.batch_size, len(x)))
            t_img_c = timed(lambda: sweep_images(x, ks, chunk), args.repeat)

    if not args.skip_algorithm1 and len(ks_a) < len(ks):
        print(f"(a) timed on {len(ks_a)} of the {len(ks)} ranks and scaled by {len(ks) / len(ks_a):.1f}")
    for name, t in (("(a) Algorithm 1 as written", t_a), ("(b) model alone", t_b),
                    ("(c) rank_spectrum", t_c)):
        print(f"{name:28s} {t:8.2f} s  {work / t:9.1f} images x ranks / s")
    print(f"rank_spectrum overhead over the model alone: {100 * (t_c / t_b - 1):+.1f}% "
          f"(target <= 10%)")
    print(f"rank_spectrum speed-up over Algorithm 1:     {t_a / t_c:.1f}x (target >= 5x)")
    if not args.skip_algorithm1:
        print(f"rank-k images alone: per-rank SVD {t_img_a:.2f} s, one SVD {t_img_c:.2f} s "
              f"({t_img_a / t_img_c:.1f}x); at best (a) / (c) = (images + model) / model = "
              f"{(t_img_a + t_b) / t_b:.1f}x")


if __name__ == "__main__":
    main()
