"""The one home of the small torch helpers every part of rankcore uses.

The device rule of rankcore: a model's device comes from its parameters, and inputs
follow the model (``x.to(model_device(model))``). Results that are rates (accuracy,
agreement, success) are fractions in ``[0, 1]`` everywhere in the library; the book
formats them as percent.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from typing import Iterator

import torch
from torch import Tensor, nn

__all__ = ["model_device", "resolve_device", "available_devices", "evaluating", "autocast",
           "predict", "top_k", "accuracy", "distributed", "init_distributed", "wrap_distributed", "trim_memory",
           "tune_allocator", "ALLOCATOR_ENV", "synchronize"]


def model_device(model: nn.Module) -> torch.device:
    """The device a model runs on: that of its first parameter, else its first buffer, else CPU."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def available_devices() -> list[str]:
    """The device names this machine can run on: ``cpu``, ``cuda:0``..., ``mps``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def synchronize(device: str | torch.device) -> None:
    """Wait until the work queued on ``device`` has run, so that a timer read next includes
    it (GPU kernels run asynchronously). A no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def resolve_device(device: str | torch.device | None = None, name: str = "device") -> torch.device:
    """A ``torch.device`` from ``None``/``"auto"`` (CUDA when present, under ``torchrun`` the
    local rank's GPU, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        ValueError: a malformed name, or a device this machine does not have (the message
            lists the ones it has).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a str or torch.device such as 'cpu', 'cuda:0' or "
                        f"'mps', got {type(device).__name__} {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={device!r} is not a device name; use one of "
                         f"{available_devices()} or 'auto'") from None
    have = available_devices()
    ok = (dev.type == "cpu"
          or (dev.type == "cuda" and torch.cuda.is_available()
              and (dev.index is None or dev.index < torch.cuda.device_count()))
          or (dev.type == "mps" and "mps" in have))
    if not ok:
        raise ValueError(f"{name}={device!r} is not available on this machine; it has {have}")
    return dev


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block and restore the caller's mode after.

    Evaluation must not update BatchNorm running statistics nor depend on the batch; the
    caller's training flag of every submodule is put back even when the block raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def autocast(device: torch.device | str, enabled: bool | None = None,
             dtype: torch.dtype = torch.bfloat16) -> contextlib.AbstractContextManager:
    """Mixed precision chosen once: bfloat16 autocast on CUDA by default, off on the CPU
    unless ``enabled=True`` (where a bench shows that it pays)."""
    device = torch.device(device)
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 256, amp: bool | None = None) -> Tensor:
    """Logits of ``model`` on images ``x`` ``(N, C, H, W)``, in batches, in eval mode.

    Batches move to the model's device in channels-last order; the logits ``(N, classes)``
    come back as float32 on ``x``'s device. The caller's train/eval mode is restored.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = model_device(model)
    out = []
    with evaluating(model), autocast(device, amp):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device, non_blocking=True)
            if xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out.append(model(xb).float().to(x.device))
    if not out:
        raise ValueError("x holds no images")
    return torch.cat(out)


def top_k(model: nn.Module, x: Tensor, k: int = 5, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Softmax probabilities and class indices of the ``k`` most likely classes, each ``(N, k)``."""
    probs = predict(model, x, batch_size).softmax(1)
    return probs.topk(k, dim=1)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256,
             amp: bool | None = None) -> float:
    """Top-1 accuracy as a fraction in ``[0, 1]`` of ``model`` on images ``x`` ``(N, C, H, W)``
    with int labels ``y`` ``(N,)``; under ``torchrun`` each process scores its share and the
    counts are summed."""
    if not isinstance(y, Tensor) or y.dim() != 1 or len(y) != len(x):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"y must be an int tensor with one label per image ({len(x)}), got {shape}")
    rank, world = distributed()
    idx = torch.arange(rank, len(x), world)
    pred = predict(model, x[idx], batch_size, amp).argmax(1).cpu()
    correct = torch.tensor(float((pred == y[idx].cpu()).sum()))
    if world > 1:
        correct = correct.to(model_device(model))
        torch.distributed.all_reduce(correct)
    return float(correct) / max(1, len(x))


def distributed() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (``nccl`` on CUDA, ``gloo``
    otherwise) and return ``(rank, world size)``; ``(0, 1)`` outside ``torchrun``."""
    import torch.distributed as dist
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap_distributed(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """The module a training loop steps through: ``model`` itself for one process, else
    ``DistributedDataParallel`` over it, with BatchNorm synchronised across GPUs on CUDA
    (per-GPU batches are small, so unsynchronised statistics would differ per process)."""
    if world <= 1:
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


@functools.cache
def _libc_function(name: str):
    """A function of glibc (``malloc_trim``, ``mallopt``), or None on other C libraries
    (musl, macOS, Windows)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError, TypeError):
        return None


#: glibc's allocator settings for a process that runs models on the CPU (bytes): blocks up
#: to 64 MB come from the heap, and up to 256 MB of free heap stays with the process. See
#: :func:`tune_allocator`.
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 64 << 20, 256 << 20
#: The same settings as the environment variables glibc reads when a process starts, for
#: the child processes of an application (e.g. the book's notebook kernels).
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD),
                 "MALLOC_TRIM_THRESHOLD_": str(_TRIM_THRESHOLD)}


def tune_allocator() -> bool:
    """Keep a CPU forward pass's activations on glibc's heap instead of fresh mappings.

    glibc serves every block above its mmap threshold (128 KB at start, adapting up to
    32 MB) with a new ``mmap`` and unmaps it when freed, so each forward pass of an
    ImageNet model on the CPU maps, page-faults and unmaps its activations afresh:
    ``strace`` counted about 37 ``mmap``/``munmap`` pairs per forward pass of
    EfficientNet-Lite0, and the system time matched the user time. This sets the mmap
    threshold to 64 MB and the trim threshold to 256 MB (``mallopt``), the settings of
    :data:`ALLOCATOR_ENV`. Measured with ``bench/spectrum_bench.py --malloc``: the bare
    model on 100 x 7 ImageNet inputs (2 cores) went from 16.2 s to 11.0 s, its system time
    from 9.5 s to 0.1 s.

    It changes the allocator of the whole process, so the library never calls it on
    import: applications do (``rankcore``'s command line, the book's kernels through
    :data:`ALLOCATOR_ENV`). Long loops should still call :func:`trim_memory` now and then.

    Returns:
        bool: whether the settings were applied (False where the C library is not glibc).
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    # Some glibc versions refuse a threshold above 32 MB: then 32 MB, still far above 128 KB.
    mmap = mallopt(m_mmap_threshold, _MMAP_THRESHOLD) or mallopt(m_mmap_threshold, 32 << 20)
    return bool(mmap) and bool(mallopt(m_trim_threshold, _TRIM_THRESHOLD))


def trim_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; a no-op
    where the C library has none).

    A long CPU loop whose temporary tensors vary in size (decoded images, batches of
    rank-k images, activations) fragments glibc's heap: freed pages stay resident and the
    process grows with the number of images, though nothing is kept. Measured on
    :func:`rankcore.spectrum.rank_spectrum`, EfficientNet-Lite0 on 1,000 streamed ImageNet
    images: resident memory grew by about 0.3 MB per image without a trim and stayed flat
    with one after each block. A trim costs page faults when the pages are used again, so
    loops call it every so many iterations, not after each.
    """
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)

