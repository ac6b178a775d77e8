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

from ..rank import check_images, low_rank, max_rank, parse_ranks, rank_sweep
from ..torch_utils import resolve_device, synchronize
from .figures import figsize

__all__ = ["device_name", "devices_to_time", "rank_k_times", "summarise", "plot", "METHODS"]

#: The two ways of making rank-k images that :func:`rank_k_times` compares.
METHODS = ("per-k SVD (paper)", "single-SVD sweep")


def device_name(device: str | torch.device = "cpu") -> str:
    """A readable name of the hardware behind ``device``, for figure titles.

    CUDA devices give the GPU's name; the CPU gives its model (``/proc/cpuinfo`` on
    Linux, else :func:`platform.processor`) and the number of threads torch uses.
    """
    device = resolve_device(device)
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


def devices_to_time(spec: str = "auto") -> list[str]:
    """Devices to time: ``"auto"`` is the CPU plus CUDA when present; else a comma list."""
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as 'auto' or 'cpu,cuda', got "
                        f"{type(spec).__name__} {spec!r}")
    if not spec:
        raise ValueError(f"spec={spec!r}; expected 'auto' or a comma list such as 'cpu,cuda'")
    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    # resolve_device raises, naming the devices this machine has, on a malformed or absent one
    return [str(resolve_device(d.strip(), name="devices item"))
            for d in spec.split(",") if d.strip()]


def _time_per_k(xi: Tensor, k: int) -> float:
    t0 = time.perf_counter()
    low_rank(xi, k, clamp=True)
    synchronize(xi.device)
    return time.perf_counter() - t0


def _time_sweep(xi: Tensor, ranks: list[int], chunk: int) -> list[tuple[int, float]]:
    steps, t0 = [], time.perf_counter()
    for k, _ in rank_sweep(xi, ranks, chunk=chunk, clamp=True):
        synchronize(xi.device)
        t1 = time.perf_counter()
        steps.append((k, t1 - t0))
        t0 = t1
    return steps


def rank_k_times(x: Tensor, ranks=None, per_k_ranks=None, chunk: int = 16, repeats: int = 1,
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
        repeats (int, optional): time everything this many times and keep the fastest (per
            rank for the per-k SVD, the fastest whole sweep for the sweep), which removes
            most of the noise of a shared machine. Default: 1.
        progress (bool, optional): tqdm bar over images. Default: ``True``.

    Returns:
        pandas.DataFrame with one row per (image, method, k): ``image``, ``method`` (one of
        :data:`METHODS`), ``k``, ``seconds``, ``device`` (:func:`device_name`) and
        ``max_rank`` (``min(H, W)``). For the
        sweep, ``seconds`` is the time from the previous rank's image to this one, so the
        first rank of each block carries the block's work and the rows sum to the sweep.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    check_images(x)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    w = max_rank(x)
    ranks = parse_ranks(ranks, w)
    per_k = ranks if per_k_ranks is None else parse_ranks(per_k_ranks, w)
    device, name = x.device, device_name(x.device)
    low_rank(x[:1], 1)  # warm-up: library loading and, on CUDA, the solver's workspace
    synchronize(device)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}; expected a positive int")
    rows = []
    for i in tqdm(range(x.shape[0]), desc=f"timing on {device.type}", disable=not progress):
        xi = x[i:i + 1]                                    # (1, C, H, W)
        # Repeats go round all ranks in turn, so a burst of load elsewhere on the machine
        # hits one pass over k rather than one k.
        best = {k: min(t) for k, *t in zip(per_k, *([_time_per_k(xi, k) for k in per_k]
                                                    for _ in range(repeats)))}
        rows += [(i, METHODS[0], k, t) for k, t in best.items()]
        steps = min((_time_sweep(xi, ranks, chunk) for _ in range(repeats)),
                    key=lambda st: sum(t for _, t in st))
        rows += [(i, METHODS[1], k, t) for k, t in steps]
    df = pd.DataFrame(rows, columns=["image", "method", "k", "seconds"])
    df["device"], df["max_rank"] = name, w
    return df


def _nontrivial(g):
    # The per-k method returns zeros for k = 0 and the image itself for k = min(H, W)
    # without an SVD; averaging them in would flatter it.
    if g["method"].iloc[0] != METHODS[0]:
        return g
    keep = g[(g["k"] > 0) & (g["k"] < g["max_rank"])] if "max_rank" in g else g
    return keep if len(keep) else g


def summarise(times) -> "pandas.DataFrame":  # noqa: F821
    """Per device and method: seconds per rank-k image and for all ranks of one image.

    Args:
        times (pandas.DataFrame): output of :func:`rank_k_times` (several may be
            concatenated, e.g. CPU and CUDA).

    Returns:
        pandas.DataFrame with ``device``, ``method``, ``per_image_median`` (median over
        images of the mean seconds per rank-k image), ``per_image_max`` and
        ``all_ranks_s`` (median seconds to make every rank ``0 .. min(H, W)`` of one image;
        for the per-k method, the mean per-k time times the number of ranks swept). Per-k
        means leave out ``k = 0`` and ``k = min(H, W)``, which need no SVD.
    """
    import pandas as pd

    if not isinstance(times, pd.DataFrame):
        raise TypeError(f"times must be a pandas.DataFrame from rank_k_times, got "
                        f"{type(times).__name__}")
    missing = {"device", "method", "image", "k", "seconds"} - set(times.columns)
    if missing:
        raise ValueError(f"times lacks columns {sorted(missing)}; expected the output "
                         "of rank_k_times")
    n_ranks = times.loc[times["method"] == METHODS[1]].groupby("device")["k"].nunique()
    rows = []
    for (device, method), g in times.groupby(["device", "method"], sort=False):
        per_image = _nontrivial(g).groupby("image")["seconds"].mean()
        count = n_ranks.get(device, g["k"].nunique())
        rows.append({"device": device, "method": method,
                     "per_image_median": float(per_image.median()),
                     "per_image_max": float(per_image.max()),
                     "all_ranks_s": float(per_image.median() * count)})
    return pd.DataFrame(rows)


def plot(times, rates: dict[str, float] | None = None):
    """Figure 12: seconds per rank-k image, per method and device, named in the title.

    Left: one point per image, its mean seconds per rank-k image (for the sweep, the whole
    sweep divided by its number of ranks), as a box per method and device (log scale).
    Right: the per-k SVD's median over images against k, with each device's sweep as a
    flat line at its amortised time per rank.

    Args:
        times (DataFrame): :func:`rank_k_times` (one or more devices).
        rates (dict, optional): device name -> images x ranks per second of the whole rank
            spectrum (rank-k images plus the model's forward passes,
            :func:`rankcore.spectrum.throughput`); each drawn on the right as a dotted line
            at ``1 / rate`` seconds per rank-k image. Default: ``None``.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=figsize(2, 1, aspect=0.95))
    groups = list(times.groupby(["device", "method"], sort=False))
    per_image = [_nontrivial(g).groupby("image")["seconds"].mean().to_numpy() for _, g in groups]
    left.boxplot(per_image, tick_labels=[f"{m}\n{d.split(' (')[0][:28]}" for (d, m), _ in groups])
    for i, values in enumerate(per_image, start=1):
        left.plot([i] * len(values), values, "k.", alpha=0.5)
    left.set_yscale("log")
    left.set_ylabel("seconds per rank-k image (mean over k)")
    left.tick_params(axis="x", labelsize=7)
    for (device, method), g in groups:
        short = device.split(" (")[0][:24]
        if method == METHODS[0]:
            med = g.groupby("k")["seconds"].median()
            right.semilogy(med.index, med.to_numpy(), "o-", ms=3, label=f"{method}, {short}")
        else:
            amortised = g.groupby("image")["seconds"].mean().median()
            right.axhline(amortised, ls="--", color="tab:orange",
                          label=f"{method} (per rank, amortised), {short}")
    for device, rate in (rates or {}).items():
        right.axhline(1.0 / rate, ls=":", color="tab:green",
                      label=f"rank spectrum with model, {device.split(' (')[0][:24]}")
    right.set_xlabel("rank k (k = 0 and k = min(H, W) need no SVD)")
    right.set_ylabel("median seconds per rank-k image")
    right.legend(fontsize=7)
    n_img = times["image"].nunique()
    fig.suptitle("Time to make rank-k images, " + f"{n_img} image(s) on "
                 + "; ".join(times["device"].unique()), fontsize=9)
    fig.tight_layout()
    return fig
