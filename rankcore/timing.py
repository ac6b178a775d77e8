"""How long rank-k images take to make (Section 9.3, Figure 12 of the paper).

The paper recomputes the SVD for every rank (Algorithm 1) and reports under 1 s per rank-k
224x224x3 image on an NVIDIA TITAN Xp. :func:`rank_k_times` times that per-k method beside
:func:`rankcore.rank.rank_sweep`, which decomposes each image once and builds every rank
from it, on whatever device the images are on.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from torch import Tensor

from .rank import _check_images, _check_ranks, low_rank, max_rank, rank_sweep

__all__ = ["device_name", "rank_k_times", "summarise", "METHODS"]

#: The two ways of making rank-k images that :func:`rank_k_times` compares.
METHODS = ("per-k SVD (paper)", "single-SVD sweep")


def device_name(device: str | torch.device = "cpu") -> str:
    """A readable name of the hardware behind ``device``, for figure titles.

    CUDA devices give the GPU's name; the CPU gives its model (``/proc/cpuinfo`` on
    Linux, else :func:`platform.processor`) and the number of threads torch uses.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine()
    return f"{model} (CPU, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rank_k_times(x: Tensor, ranks=None, per_k_ranks=None, chunk: int = 16,
                 progress: bool = True) -> "pandas.DataFrame":  # noqa: F821
    """Time every rank-k image of every image, both ways, on ``x``'s device.

    Args:
        x (Tensor): images ``(N, C, H, W)`` in ``[0, 1]``, on the device to time.
        ranks (int, sequence or range, optional): ranks the sweep builds.
            Default: all, ``0 .. min(H, W)``.
        per_k_ranks (sequence of int, optional): ranks timed with the per-k SVD (each costs
            a full SVD, so a subset keeps the run short; the time does not depend on k).
            Default: same as ``ranks``.
        chunk (int, optional): ranks per block of the sweep (:func:`rankcore.rank.rank_blocks`).
            Default: 16.
        progress (bool, optional): tqdm bar over images. Default: ``True``.

    Returns:
        pandas.DataFrame with one row per (image, method, k): ``image``, ``method`` (one of
        :data:`METHODS`), ``k``, ``seconds`` and ``device`` (:func:`device_name`). For the
        sweep, ``seconds`` is the time from the previous rank's image to this one, so the
        first rank of each block carries the block's work and the rows sum to the sweep.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    _check_images(x)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    w = max_rank(x)
    ranks = _check_ranks(ranks, w)
    per_k = ranks if per_k_ranks is None else _check_ranks(per_k_ranks, w)
    device, name = x.device, device_name(x.device)
    low_rank(x[:1], 1)  # warm-up: library loading and, on CUDA, the solver's workspace
    _sync(device)
    rows = []
    for i in tqdm(range(x.shape[0]), desc=f"timing on {device.type}", disable=not progress):
        xi = x[i:i + 1]                                    # (1, C, H, W)
        for k in per_k:
            t0 = time.perf_counter()
            low_rank(xi, k, clamp=True)
            _sync(device)
            rows.append((i, METHODS[0], k, time.perf_counter() - t0))
        t0 = time.perf_counter()
        for k, _ in rank_sweep(xi, ranks, chunk=chunk, clamp=True):
            _sync(device)
            t1 = time.perf_counter()
            rows.append((i, METHODS[1], k, t1 - t0))
            t0 = t1
    df = pd.DataFrame(rows, columns=["image", "method", "k", "seconds"])
    df["device"] = name
    return df


def summarise(times) -> "pandas.DataFrame":  # noqa: F821
    """Per device and method: seconds per rank-k image and for all ranks of one image.

    Args:
        times (pandas.DataFrame): output of :func:`rank_k_times` (several may be
            concatenated, e.g. CPU and CUDA).

    Returns:
        pandas.DataFrame with ``device``, ``method``, ``per_image_median`` (median over
        images of the mean seconds per rank-k image), ``per_image_max`` and
        ``all_ranks_s`` (median seconds to make every rank ``0 .. min(H, W)`` of one image;
        for the per-k method, the mean per-k time times the number of ranks swept).
    """
    import pandas as pd

    missing = {"device", "method", "image", "k", "seconds"} - set(times.columns)
    if missing:
        raise ValueError(f"times lacks columns {sorted(missing)}; expected the output "
                         "of rank_k_times")
    n_ranks = times.loc[times["method"] == METHODS[1]].groupby("device")["k"].nunique()
    rows = []
    for (device, method), g in times.groupby(["device", "method"], sort=False):
        per_image = g.groupby("image")["seconds"].mean()
        count = n_ranks.get(device, g["k"].nunique())
        rows.append({"device": device, "method": method,
                     "per_image_median": float(per_image.median()),
                     "per_image_max": float(per_image.max()),
                     "all_ranks_s": float(per_image.median() * count)})
    return pd.DataFrame(rows)
