"""Rank truncation of images by singular value decomposition (Section 3 of the paper).

Every image is a stack of colour channels; each channel is a matrix whose best rank-k
approximation (Eckart-Young) keeps its k largest singular values (equation 2). All
functions take ``(..., C, H, W)`` float tensors on any device; rank runs from 0 to
``min(H, W)``.

The paper's Algorithm 1 recomputes the SVD for every rank. :func:`rank_sweep` and
:func:`rank_blocks` compute it once per image and channel and build each rank-k image
from the previous one by adding rank-one terms, so all ranks cost one SVD plus writing
the reconstructions.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from ._checks import is_int_like
from ._rank_parse import Ranks, parse_ranks  # re-exported: rankcore.rank.parse_ranks

__all__ = ["low_rank", "high_rank", "rank_sweep", "rank_blocks", "singular_values", "max_rank",
           "parse_ranks", "check_images", "svd_factors", "factor_rank"]



# ---------------------------------------------------------------------------- checks

def check_images(x: Tensor, name: str = "x") -> None:
    """Raise ``TypeError``/``ValueError`` naming ``name`` unless ``x`` is a finite float tensor
    with at least 2 dimensions ``(..., H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., C, H, W), got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    # min and max propagate NaN, so one pass finds NaN and both infinities; 11x faster than
    # isfinite(x).all() on 224 x 224 images, which cost a third of rank_blocks' time.
    if x.numel() and not all(math.isfinite(v) for v in torch.aminmax(x.detach())):
        raise ValueError(f"{name} contains NaN or infinite values")


def max_rank(x: Tensor) -> int:
    """The largest rank of an image: ``min(H, W)`` of ``x`` with shape ``(..., H, W)``."""
    return min(x.shape[-2], x.shape[-1])


def _work_dtype(x: Tensor) -> torch.dtype:
    # Half-precision SVD is unsupported and inaccurate: compute in float32 at least.
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_k(k: int | Tensor, x: Tensor) -> Tensor | int:
    """Validate ``k``; return an int or a long tensor broadcastable to ``x``'s leading dim."""
    if isinstance(k, Tensor):
        if k.is_floating_point() or k.is_complex() or k.dtype == torch.bool:
            raise ValueError(f"k must hold integers, got dtype {k.dtype}")
        if k.dim() == 0:
            return _check_k(int(k), x)
        if k.dim() != 1:
            raise ValueError(f"k must be an int or a 1-D tensor with one rank per image, got shape {tuple(k.shape)}")
        if x.dim() < 4 or k.shape[0] != x.shape[0]:
            lead = x.shape[0] if x.dim() >= 4 else "none (x has no batch dimension)"
            raise ValueError(f"k has length {k.shape[0]} but x of shape {tuple(x.shape)} has "
                             f"{lead} images along dim 0")
        if bool((k < 0).any()):
            raise ValueError(f"k must be >= 0, got min {int(k.min())}")
        return k.to(device=x.device, dtype=torch.long)
    if isinstance(k, bool) or not isinstance(k, int):
        try:
            import numpy as np
            if isinstance(k, np.integer):
                return _check_k(int(k), x)
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(f"k must be an int or a 1-D integer tensor, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return k


# ---------------------------------------------------------------------------- core

def _per_matrix(fn: Callable[[Tensor], Any], x: Tensor) -> Any:
    """``fn`` (a batched linear-algebra function) on the matrices of ``x (..., H, W)``; on
    the CPU, split among the intra-op threads, each running LAPACK on one core.

    LAPACK's SVD of one small matrix gains nothing from several threads, and on a busy CPU
    their barriers spin (``bench/spectrum_bench.py`` measured 90-650 ms of CPU time per
    224 x 224 x 3 image on two threads against 15 ms on one). Splitting the matrices
    instead uses every core: 6.8 ms per image on 2 cores against 12.4 ms on one, with the
    same bits (each matrix meets the same LAPACK call).
    """
    n = torch.get_num_threads()
    if x.device.type != "cpu" or n == 1:
        return fn(x)
    m = x.reshape(-1, *x.shape[-2:])
    torch.set_num_threads(1)  # LAPACK in each worker thread runs sequentially
    try:
        if m.shape[0] < 2:
            return fn(x)
        with ThreadPoolExecutor(min(n, m.shape[0])) as pool:
            parts = list(pool.map(fn, m.tensor_split(min(n, m.shape[0]))))
    finally:
        torch.set_num_threads(n)
    lead = x.shape[:-2]
    if isinstance(parts[0], Tensor):
        return torch.cat(parts).reshape(*lead, *parts[0].shape[1:])
    return tuple(torch.cat(p).reshape(*lead, *p[0].shape[1:]) for p in zip(*parts))


def _svd(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD per matrix: U (..., H, r), S (..., r), Vh (..., r, W) with r = min(H, W)."""
    return _per_matrix(lambda m: torch.linalg.svd(m, full_matrices=False), x.to(_work_dtype(x)))


def singular_values(x: Tensor) -> Tensor:
    """Singular values of every channel, largest first.

    Args:
        x (Tensor): images ``(..., C, H, W)``, any float dtype.

    Returns:
        Tensor: ``(..., C, min(H, W))`` in float32 (float64 for float64 input).
    """
    check_images(x)
    return _per_matrix(torch.linalg.svdvals, x.to(_work_dtype(x)))


def _finish(y: Tensor, x: Tensor, clamp: bool) -> Tensor:
    if clamp:
        y = y.clamp(0.0, 1.0)
    return y.to(x.dtype)


def _warn_if_gradient_undefined(x: Tensor, S: Tensor) -> None:
    """Warn when autograd will differentiate an SVD with repeated singular values.

    ``torch.linalg.svd``'s backward divides by ``sigma_i^2 - sigma_j^2`` for every pair, so
    one tie (a constant image has ``min(H, W) - 1`` zero singular values) makes the whole
    gradient of that matrix NaN; where float noise breaks the tie the result is finite but
    arbitrary (the rank-k image is not differentiable where sigma_k = sigma_{k+1}).
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return
    s = S.detach()
    tied = ((s[..., :-1] - s[..., 1:]) <= 1e-6 * s[..., :1]).any(-1)
    if tied.any():
        warnings.warn(f"low_rank: {int(tied.sum())} of {tied.numel()} channel matrices of x "
                      f"have repeated singular values (e.g. a constant or low-rank image); "
                      f"the gradient through their SVD is undefined (NaN, or arbitrary where float "
                      f"noise breaks the tie)", RuntimeWarning, stacklevel=3)


def low_rank(x: Tensor, k: int | Tensor, clamp: bool = False) -> Tensor:
    """Best rank-k approximation of every channel of every image (equation 2, Figure 2).

    Three rules, the same everywhere in the library:

    * **Clamping.** ``low_rank`` and :func:`high_rank` return the approximation itself
      (equation 2, which may leave ``[0, 1]``: values from -0.27 to 1.40 at rank 10 of a
      photograph) unless ``clamp=True``. The functions that feed a model with rank-k
      images (:func:`rankcore.rank_spectrum`, :func:`rankcore.rig`, the low-rank training
      transform) clamp, because a model's input is a picture. For a picture, pass
      ``clamp=True``.
    * **uint8.** A ``uint8`` tensor is a picture with values 0-255, as
      :func:`rankcore.rank_spectrum` and :mod:`rankcore.data` take it: the result is the
      rank-k approximation of ``x / 255``, clamped and rounded back to ``uint8``
      (``clamp`` is ignored: a uint8 picture cannot leave 0-255). :func:`high_rank`
      refuses ``uint8`` (its residual is signed).
    * **Large k.** Any ``k >= min(H, W)`` keeps every singular value and returns ``x``
      (a matrix is its own best approximation of any rank at least its own). A *list of
      ranks to evaluate* (``ranks=`` of :func:`rankcore.rank.parse_ranks`,
      :func:`rank_spectrum`, :func:`rank_sweep`) must lie in ``0..min(H, W)`` instead:
      each rank labels a row of a table, and a row "rank 500" of a 224-pixel image would
      repeat the full-rank row under a rank the image cannot have.

    Args:
        x (Tensor): images ``(..., C, H, W)``, float (half precision is computed in
            float32 and returned in its own dtype) or uint8 (see above), on any device.
        k (int or Tensor): the number of largest singular values kept, ``>= 0``. An int
            applies to all images; a 1-D integer tensor of length ``x.shape[0]`` gives
            each image its own rank. ``k = 0`` gives zeros; ``k >= min(H, W)`` gives
            ``x`` back exactly.
        clamp (bool, optional): clamp the result to ``[0, 1]``, as a model input or a
            picture needs. Default: ``False`` (the approximation of equation 2 itself).

    Returns:
        Tensor: same shape, dtype and device as ``x``. Differentiable in ``x`` through the
        SVD, except where a channel has repeated singular values (a constant or low-rank
        image): torch's SVD gradient is NaN or arbitrary there, and ``low_rank`` warns
        (``RuntimeWarning``) when ``x`` requires grad.

    Examples::

        >>> x = torch.rand(2, 3, 32, 32)
        >>> low_rank(x, 5).shape
        torch.Size([2, 3, 32, 32])
        >>> low_rank(x, torch.tensor([1, 32])).shape
        torch.Size([2, 3, 32, 32])
        >>> bool((low_rank(x, 5, clamp=True) >= 0).all())  # a picture
        True
        >>> torch.equal(low_rank(x, 500), x)                 # k >= min(H, W): x itself
        True
        >>> pixels = (255 * x).round().to(torch.uint8)
        >>> low_rank(pixels, 5).dtype                        # uint8 in, uint8 out
        torch.uint8
    """
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        y = low_rank(x.to(torch.float32) / 255, k, clamp=True)
        return (y * 255).round_().to(torch.uint8)
    check_images(x)
    k = _check_k(k, x)
    w = max_rank(x)
    if isinstance(k, int):
        if k >= w:
            return _finish(x.clone(), x, clamp)
        if k == 0:
            return torch.zeros_like(x)
        U, S, Vh = _svd(x)
        _warn_if_gradient_undefined(x, S)
        y = (U[..., :k] * S[..., None, :k]) @ Vh[..., :k, :]
        return _finish(y, x, clamp)
    U, S, Vh = _svd(x)
    _warn_if_gradient_undefined(x, S)
    # Zero the singular values beyond each image's own k.  keep: (N, 1, ..., 1, r)
    keep = torch.arange(w, device=x.device) < k.view(-1, *([1] * (S.dim() - 1)))
    y = (U * (S * keep)[..., None, :]) @ Vh
    full = (k >= w).view(-1, *([1] * (x.dim() - 1)))
    y = torch.where(full, x.to(y.dtype), y)
    return _finish(y, x, clamp)


def high_rank(x: Tensor, k: int | Tensor, clamp: bool = False) -> Tensor:
    """The image with its k largest singular values removed: ``x - low_rank(x, k)``.

    The paper's "reverse truncation" (Section 5.1, Figure 9). The residual is centred
    near zero and takes negative values; ``clamp=True`` clips it to ``[0, 1]``.

    Args:
        x (Tensor): images ``(..., C, H, W)``, float (not uint8: the residual is signed;
            pass ``x.float() / 255``).
        k (int or Tensor): number of largest singular values removed, as in :func:`low_rank`
            (``k >= min(H, W)`` gives zeros).
        clamp (bool, optional): clamp the result to ``[0, 1]``. Default: ``False``.

    Returns:
        Tensor: same shape, dtype and device as ``x``.
    """
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        raise ValueError("x is uint8, but high_rank's residual is signed: pass "
                         "x.float() / 255 (low_rank takes uint8 pictures)")
    check_images(x)
    k = _check_k(k, x)
    work = x.to(_work_dtype(x))
    return _finish(work - low_rank(work, k), x, clamp)


def svd_factors(x: Tensor, rank: int | None = None) -> tuple[Tensor, Tensor]:
    """The factors :func:`rank_blocks` builds rank-k images from: ``(A, B)`` such that
    ``A[:, :, :k] @ B[:, :k, :]`` is the best rank-k approximation of every matrix.

    From the SVD ``U S Vh`` these are ``(U S, Vh)``. Float32 images on the CPU or a CUDA
    GPU take the eigenvectors of the smaller Gram matrix in float64 instead (the rank-k
    image is the projection onto its top k), which is closer to the float64 SVD (1e-11
    before the final rounding to float32; the rank-k images within 1e-7 of it, against
    1e-4 for the float32 SVD). Per 224 x 224 matrix (``bench/factors_bench.py``): 2.2-2.3
    against 1.9-2.0 ms for LAPACK's float32 SVD on 2 CPU cores, so the accuracy costs
    about 15% there; on one H100, 1.83 against 5.60 ms for cuSOLVER's float32 SVD.

    Computing them apart lets a caller overlap the SVD of the next images with other
    work (e.g. on a CPU thread while a GPU runs the model).

    Args:
        x (Tensor): images ``(..., C, H, W)``, float, any device.
        rank (int, optional): keep the factors of the ``rank`` largest singular values
            only, in ``[0, min(H, W)]``: enough for every rank-k image with
            ``k <= rank``. The Gram path then turns only those eigenvectors into factors:
            1.88 against 2.25 ms per 224 x 224 matrix on 2 CPU cores for rank 100
            (``bench/factors_bench.py``).
            ``rank=0`` computes nothing. Default: all ``min(H, W)``.

    Returns:
        (Tensor, Tensor): ``A`` of shape ``(M, H, rank)`` and ``B`` ``(M, rank, W)`` with
        ``M`` the number of matrices in ``x``, in float32 (float64 for float64 input), on
        ``x``'s device.
    """
    check_images(x)
    r = max_rank(x)
    if rank is None:
        rank = r
    elif not is_int_like(rank) or not 0 <= rank <= r:
        raise ValueError(f"rank must be an int in [0, {r}] (min(H, W) of images with shape "
                         f"{tuple(x.shape)}), got {rank!r}")
    return _factors(x, int(rank))


def _factors(x: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """:func:`svd_factors` of checked images."""
    h, wd = x.shape[-2:]
    m = x.reshape(-1, h, wd)
    dtype = _work_dtype(m)
    if rank == 0:
        return (torch.zeros(m.shape[0], h, 0, dtype=dtype, device=m.device),
                torch.zeros(m.shape[0], 0, wd, dtype=dtype, device=m.device))
    if m.device.type in ("cpu", "cuda") and dtype == torch.float32:
        return _per_matrix(lambda part: _gram_factors(part, rank), m)
    U, S, Vh = _svd(m)
    return U[..., :rank] * S[:, None, :rank], Vh[:, :rank]


def _gram_factors(m: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """``svd_factors(m, rank)`` of matrices ``(M, H, W)`` from the eigenvectors of ``m m^T``
    (or ``m^T m`` when W < H) in float64, in decreasing order of eigenvalue, as float32."""
    d = m.double()
    if d.shape[-2] <= d.shape[-1]:
        u = torch.linalg.eigh(d @ d.mT).eigenvectors.flip(-1)[..., :rank]    # (M, H, rank)
        return u.float(), (u.mT @ d).float()
    v = torch.linalg.eigh(d.mT @ d).eigenvectors.flip(-1)[..., :rank]        # (M, W, rank)
    return (d @ v).float(), v.mT.float()


def factor_rank(ks: Sequence[int], w: int) -> int:
    """The ``rank`` of :func:`svd_factors` that the rank-k images for the ranks ``ks`` need,
    for images of full rank ``w = min(H, W)``: the largest k below ``w`` (the full-rank image
    is the input itself), 0 if none.

    Examples::

        >>> factor_rank([5, 10, 100, 224], 224)
        100
    """
    return max((k for k in ks if k < w), default=0)


def rank_blocks(x: Tensor, ranks: Ranks = None, chunk: int = 16,
                clamp: bool = False,
                factors: tuple[Tensor, Tensor] | None = None) -> Iterator[tuple[list[int], Tensor]]:
    """Rank-k images for many k from one SVD, a block of ranks at a time.

    Each requested rank is built from the previous one by adding the rank-one terms
    ``sigma_j u_j v_j^T`` in between, so the whole sweep costs one SVD per image and
    channel plus one pass over the reconstructions; memory holds one block.

    Args:
        x (Tensor): images ``(..., C, H, W)``, float, any device.
        ranks (optional): ranks in ``[0, min(H, W)]``, any form of :func:`parse_ranks`
            (an int is one rank; ``range`` or ``"a:b:s"`` for strides); duplicates are
            dropped and the ranks are visited in ascending order.
            Default: every rank ``0, 1, ..., min(H, W)``.
        chunk (int, optional): ranks per block, ``>= 1``. A block of a 224x224x3 float32
            image takes ``chunk * 0.6`` MB per image. Default: 16.
        clamp (bool, optional): clamp every reconstruction to ``[0, 1]``. Default: ``False``.
        factors (tuple, optional): ``svd_factors(x, rank)`` computed beforehand, with
            ``rank`` at least the largest requested rank below full (on any device;
            moved to ``x``'s). Default: computed here, of just that rank.

    Yields:
        (list[int], Tensor): the block's ranks and their images,
        shape ``(len(ks), *x.shape)``, in ``x``'s dtype and device. The full rank
        ``min(H, W)`` yields ``x`` itself exactly.
    """
    check_images(x)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    w = max_rank(x)
    ks = parse_ranks(ranks, w)
    batch_shape, (h, wd) = x.shape[:-2], x.shape[-2:]
    need = factor_rank(ks, w)
    if factors is None:
        US, Vh = _factors(x, need)                 # (B, h, need), (B, need, wd)
    else:
        US, Vh = (f.to(x.device, non_blocking=True) for f in factors)
        m = x[..., 0, 0].numel()
        if (US.dim() != 3 or US.shape[:2] != (m, h) or Vh.shape != (m, US.shape[2], wd)
                or US.shape[2] < need):
            raise ValueError(f"factors have shapes {tuple(US.shape)}, {tuple(Vh.shape)}; "
                             f"expected svd_factors(x, rank) of x with shape {tuple(x.shape)} "
                             f"and rank >= {need} (the largest rank asked for below full)")
    acc = torch.zeros((US.shape[0], h, wd), dtype=US.dtype, device=x.device)  # running rank-k image
    done = 0                                       # rank of acc
    for start in range(0, len(ks), chunk):
        block_ks = ks[start:start + chunk]
        out = torch.empty((len(block_ks), *x.shape), dtype=x.dtype, device=x.device)
        for i, k in enumerate(block_ks):
            if k > done and k != w:
                acc.baddbmm_(US[:, :, done:k], Vh[:, done:k, :])
                done = k
            image = x if k == w else acc.view(*batch_shape, h, wd)
            if clamp and image.dtype == out.dtype:  # one pass, no temporary
                torch.clamp(image, 0.0, 1.0, out=out[i])
            else:
                out[i] = image.clamp(0.0, 1.0) if clamp else image
        yield block_ks, out


def rank_sweep(x: Tensor, ranks: Ranks = None, chunk: int = 16,
               clamp: bool = False) -> Iterator[tuple[int, Tensor]]:
    """Iterate over ``(k, x_k)``, the rank-k images of ``x``, from one SVD.

    The per-rank form of :func:`rank_blocks` (same arguments); ``x_k`` has ``x``'s shape.

    Examples::

        >>> x = torch.rand(4, 3, 32, 32)
        >>> for k, xk in rank_sweep(x, ranks=range(0, 33, 16)):
        ...     print(k, tuple(xk.shape))
        0 (4, 3, 32, 32)
        16 (4, 3, 32, 32)
        32 (4, 3, 32, 32)
    """
    for block_ks, block in rank_blocks(x, ranks, chunk, clamp):
        for k, xk in zip(block_ks, block):
            yield k, xk
