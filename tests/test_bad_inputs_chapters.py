"""Issue 14 for the book's chapter helpers (fourier, timing, distortions, chapter 01): every bad
input gives ``ValueError``/``TypeError`` naming the argument (table-driven), and random shapes,
dtypes and windows either work or raise one of those two naming it (hypothesis)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from rankcore.book import ch01_rank_images as ch01
from rankcore.book import distortions, fourier, timing

X = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
NAN = X.clone()
NAN[0, 0, 0, 0] = float("nan")

# (entry point, call, error type, text the message must hold: the argument and the value)
ROWS = [
    ("frequency_window", lambda: fourier.frequency_window(0, 3), ValueError, "n must be >= 1, got 0"),
    ("frequency_window", lambda: fourier.frequency_window(8, 2.5), TypeError, "k must be a non-negative int, got float 2.5"),
    ("frequency_window", lambda: fourier.frequency_window(8, True), TypeError, "k must be a non-negative int, got bool"),
    ("frequency_window", lambda: fourier.frequency_window(8, -1), ValueError, "k must be a non-negative int, got -1"),
    ("low_pass", lambda: fourier.low_pass([[1.0]], 3), TypeError, "x must be a torch.Tensor"),
    ("low_pass", lambda: fourier.low_pass(torch.ones(3, 4, 4, dtype=torch.long), 3), ValueError, "torch.int64"),
    ("low_pass", lambda: fourier.low_pass(X, 3, axes="cols"), ValueError, "axes='cols'"),
    ("low_pass", lambda: fourier.low_pass(NAN, 3), ValueError, "x contains NaN"),
    ("numerical_rank", lambda: fourier.numerical_rank([[1.0]]), TypeError, "x must be a tensor of matrices"),
    ("numerical_rank", lambda: fourier.numerical_rank(torch.ones(3)), ValueError, "got shape (3,)"),
    ("numerical_rank", lambda: fourier.numerical_rank(X, rtol=-1.0), ValueError, "rtol=-1.0"),
    ("rank_bound_table", lambda: fourier.rank_bound_table(X, ["3"]), TypeError, "k must be a non-negative int, got str '3'"),
    ("low_rank_params", lambda: fourier.low_rank_params(-1, 8, 8), ValueError, "k must be a non-negative int, got -1"),
    ("window_for_budget", lambda: fourier.window_for_budget(2, 0, 8), ValueError, "h=0, w=8"),
    ("psnr", lambda: fourier.psnr([1.0], X), TypeError, "x must be a torch.Tensor"),
    ("psnr", lambda: fourier.psnr(X, X[:, :1]), ValueError, "same shape"),
    ("budget_comparison", lambda: fourier.budget_comparison(X[0], [1], progress=False), ValueError, "x must have shape (N, C, H, W)"),
    ("budget_comparison", lambda: fourier.budget_comparison(X, [9], progress=False), ValueError, "ranks=[9]"),
    ("budget_comparison", lambda: fourier.budget_comparison(X, [1.5], progress=False), TypeError, "ranks item"),
    ("rank_k_times", lambda: timing.rank_k_times(X[0], progress=False), ValueError, "x must have shape (N, C, H, W)"),
    ("rank_k_times", lambda: timing.rank_k_times(X, repeats=1.5, progress=False), ValueError, "repeats=1.5"),
    ("rank_k_times", lambda: timing.rank_k_times(X, ranks=[9], progress=False), ValueError, "ranks"),
    ("summarise", lambda: timing.summarise([1, 2]), TypeError, "times must be a pandas.DataFrame"),
    ("devices_to_time", lambda: timing.devices_to_time(3), TypeError, "spec must be a str"),
    ("devices_to_time", lambda: timing.devices_to_time(""), ValueError, "spec=''"),
    ("device_name", lambda: timing.device_name("gpu"), ValueError, "device='gpu'"),
    ("uniform_noise", lambda: distortions.uniform_noise(X, 1.0), ValueError, "shape (1, 3, 8, 8)"),
    ("square_patch", lambda: distortions.square_patch(X[0], -2.0), ValueError, "l2 must be > 0, got -2.0"),
    ("square_patch", lambda: distortions.square_patch(X[0], 1e6), ValueError, "l2=1000000.0"),
    ("ch01.pipeline", lambda: ch01.pipeline(X[0], 99), ValueError, "k=99"),
    ("ch01.pipeline", lambda: ch01.pipeline(X[0], 1.5), TypeError, "float 1.5"),
    ("ch01.gallery", lambda: ch01.gallery(X[0], [2.5]), TypeError, "ranks must hold ints, got 2.5"),
    ("ch01.reverse_truncation", lambda: ch01.reverse_truncation(X, -1), ValueError, "k must be >= 0, got -1"),
]


@pytest.mark.parametrize("entry, call, error, text", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_bad_input_gives_a_clear_error(entry, call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value), f"{entry}: {info.value}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=4),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.float16]),
       k=st.one_of(st.integers(-2, 8), st.floats(-1, 8), st.booleans(), st.none()),
       symmetric=st.booleans())
def test_low_pass_works_or_names_the_argument(shape, dtype, k, symmetric):
    x = torch.zeros(shape, dtype=dtype)
    try:
        y = fourier.low_pass(x, k, symmetric=symmetric)
    except (ValueError, TypeError) as e:
        assert any(name in str(e) for name in ("x ", "x=", "k ", "k=", "n ")), str(e)
        return
    assert y.shape == x.shape and y.dtype == x.dtype


@settings(max_examples=30, deadline=None)
@given(rank=st.one_of(st.integers(-2, 300), st.floats(0, 9), st.booleans()),
       h=st.integers(-1, 40), w=st.integers(-1, 40))
def test_window_for_budget_works_or_names_the_argument(rank, h, w):
    try:
        k = fourier.window_for_budget(rank, h, w)
    except (ValueError, TypeError) as e:
        assert any(name in str(e) for name in ("rank", "h=", "w=", "h must", "w must")), str(e)
        return
    assert k == 0 or (k % 2 == 1 and k * k <= fourier.low_rank_params(rank, h, w) and k <= min(h, w))
