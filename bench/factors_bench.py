"""Benchmark: the SVD factors behind every rank-k image, two ways, in one run, per device.

1. ``rankcore.rank.svd_factors``: eigenvectors of the float64 Gram matrix (CPU and CUDA).
2. The same of rank ``--rank`` only (100: what ``rank_spectrum`` needs for the ImageNet
   ranks 5,10,20,30,50,100,224, the full-rank image being the input itself).
3. The library's float32 SVD, ``rankcore.rank._svd`` (LAPACK on the CPU, cuSOLVER on CUDA).

Each is checked against the float64 SVD: the largest error of the rank-k images at
k = 5, 50 and full rank (``--rank`` for the second).
Run: ``python bench/factors_bench.py [--device cpu,cuda] [--n 32] [--rank 100]``
"""
from __future__ import annotations

import argparse
import platform

import torch

from rankcore.rank import _svd, svd_factors
from _timing import best, paired_times
from rankcore.torch_utils import available_devices


def _svd_factors_f32(x: torch.Tensor):
    """svd_factors' other branch: the library's float32 SVD, split among threads like it."""
    u, s, vh = _svd(x.reshape(-1, *x.shape[-2:]))
    return u * s[:, None, :], vh


def _best_time(fn, x, device, repeat):
    """Best of ``repeat`` rounds (bench/_timing.py: torch's Timer, which synchronises the
    accelerator and warms up), and ``fn(x)``'s result."""
    fn(x[:1])  # warm-up: library loading, cuSOLVER handles
    return best(paired_times({"fn": lambda: fn(x)}, repeat)["fn"]), fn(x)


def _error(factors, ref, ks):
    a, b = (f.double().cpu() for f in factors)
    u, s, vh = ref
    return max(float((a[..., :k] @ b[..., :k, :] - (u[..., :k] * s[:, None, :k]) @ vh[:, :k]).abs().max())
               for k in ks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=",".join(available_devices()),
                   help="comma list of devices (default: every one this machine has)")
    p.add_argument("--n", type=int, default=32, help="images (3, 224, 224) (default: 32)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rank", type=int, default=100, help="rank of the partial factors (default: 100)")
    p.add_argument("--repeat", type=int, default=3, help="best of this many (default: 3)")
    args = p.parse_args()
    x = torch.rand(args.n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    m = args.n * 3
    ref = torch.linalg.svd(x.double().reshape(m, args.size, args.size), full_matrices=False)
    ks = (5, 50, args.size)
    print(f"{args.n} images (3, {args.size}, {args.size}) = {m} matrices, {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name in args.device.split(","):
        device = torch.device(name)
        xd = x.to(device)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        t_gram, f_gram = _best_time(svd_factors, xd, device, args.repeat)
        t_top, f_top = _best_time(lambda v: svd_factors(v, args.rank), xd, device, args.repeat)
        t_svd, f_svd = _best_time(_svd_factors_f32, xd, device, args.repeat)
        print(f"  {name:5s} ({label})")
        print(f"    svd_factors (float64 Gram)  {t_gram / m * 1e3:6.2f} ms/matrix  "
              f"max error {_error(f_gram, ref, ks):.1e}")
        top = f"svd_factors(x, {args.rank})"
        print(f"    {top:27s} {t_top / m * 1e3:6.2f} ms/matrix  "
              f"max error {_error(f_top, ref, (5, 50, args.rank)):.1e}")
        print(f"    float32 SVD (_svd)          {t_svd / m * 1e3:6.2f} ms/matrix  "
              f"max error {_error(f_svd, ref, ks):.1e}")
        print(f"    svd / svd_factors = {t_svd / t_gram:.2f}x, "
              f"rank {args.rank} / all = {t_top / t_gram:.2f}x")


if __name__ == "__main__":
    main()
