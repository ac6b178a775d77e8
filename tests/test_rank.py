"""The rank engine against a float64 NumPy SVD, Eckart-Young optimality and identities."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import rankcore
from rankcore.rank import low_rank, max_rank, singular_values


def numpy_low_rank(x: np.ndarray, k: int) -> np.ndarray:
    """Independent reference: float64 SVD of every (H, W) matrix, zero all but the k largest."""
    x = np.asarray(x, dtype=np.float64)
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    s = s.copy()
    s[..., k:] = 0
    return (u * s[..., None, :]) @ vh


def real_images(size=(48, 64)):
    """Real photographs (scikit-image ships them) as (N, 3, H, W) in [0, 1]."""
    from skimage import data
    imgs = []
    for name in ("astronaut", "chelsea", "coffee"):
        a = getattr(data, name)()[: size[0] * 4 : 4, : size[1] * 4 : 4, :3]
        imgs.append(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(imgs)


SHAPES = [(2, 3, 16, 16), (3, 3, 20, 31), (3, 31, 20), (4, 1, 9, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 3, 8, 100])
def test_low_rank_matches_numpy_float64(shape, k):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(k))
    got = rankcore.low_rank(x, k).double().numpy()
    np.testing.assert_allclose(got, numpy_low_rank(x.numpy(), k), atol=2e-5)


def test_low_rank_on_real_images_non_square():
    x = real_images()
    for k in (1, 5, 20, 47):
        np.testing.assert_allclose(rankcore.low_rank(x, k).numpy(), numpy_low_rank(x.numpy(), k), atol=2e-5)


def test_low_rank_per_image_k_matches_each_image_alone():
    x = torch.rand(3, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    ks = torch.tensor([0, 4, 10])
    got = rankcore.low_rank(x, ks)
    for i, k in enumerate(ks.tolist()):
        np.testing.assert_allclose(got[i].numpy(), numpy_low_rank(x[i].numpy(), k), atol=2e-5)


def test_edge_ranks_zero_and_full():
    x = torch.rand(2, 3, 7, 9)
    assert torch.equal(rankcore.low_rank(x, 0), torch.zeros_like(x))
    assert torch.equal(rankcore.low_rank(x, 7), x)
    assert torch.equal(rankcore.low_rank(x, 1000), x)
    assert torch.equal(rankcore.high_rank(x, 7), torch.zeros_like(x))
    assert torch.equal(rankcore.high_rank(x, 0), x)


def test_low_plus_high_is_identity_and_high_matches_numpy():
    x = real_images()
    for k in (1, 3, 10):
        lo, hi = rankcore.low_rank(x, k), rankcore.high_rank(x, k)
        torch.testing.assert_close(lo + hi, x, atol=1e-5, rtol=0)
        np.testing.assert_allclose(hi.numpy(), x.numpy() - numpy_low_rank(x.numpy(), k), atol=2e-5)


def test_result_has_rank_k_and_singular_values_of_input():
    x = torch.rand(2, 3, 15, 15, dtype=torch.float64)
    y = rankcore.low_rank(x, 4)
    assert (torch.linalg.matrix_rank(y) == 4).all()
    # Truncation keeps exactly the top singular values (Eckart-Young construction).
    torch.testing.assert_close(singular_values(y)[..., :4], singular_values(x)[..., :4])
    np.testing.assert_allclose(singular_values(x).numpy(), np.linalg.svd(x.numpy(), compute_uv=False), atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    a=arrays(np.float64, (6, 8), elements=st.floats(0, 1, allow_nan=False, width=32)),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_eckart_young_no_random_rank_k_matrix_is_closer(a, k, seed):
    x = torch.from_numpy(a)
    best = (rankcore.low_rank(x, k) - x).norm()
    # The optimum's error is the tail of the singular values.
    s = np.linalg.svd(a, compute_uv=False)
    assert abs(best.item() - np.sqrt((s[k:] ** 2).sum())) < 1e-9
    rng = np.random.default_rng(seed)
    for _ in range(20):
        # Random rank-k competitors, including perturbations of the optimum.
        cand = rng.standard_normal((6, k)) @ rng.standard_normal((k, 8))
        near = rankcore.low_rank(x, k).numpy() + 1e-3 * (rng.standard_normal((6, 1)) @ rng.standard_normal((1, 8)))
        near = numpy_low_rank(near, k)
        for c in (cand, near):
            assert np.linalg.norm(c - a) >= best.item() - 1e-9


@pytest.mark.parametrize("ranks", [None, [0, 1, 2, 9, 16], range(0, 17, 4), [16, 3, 3, 0]])
@pytest.mark.parametrize("chunk", [1, 3, 16, 100])
def test_rank_sweep_equals_low_rank_at_every_rank(ranks, chunk):
    x = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(1))
    got = list(rankcore.rank_sweep(x, ranks=ranks, chunk=chunk))
    expected_ks = sorted(set(range(17) if ranks is None else ranks))
    assert [k for k, _ in got] == expected_ks
    for k, xk in got:
        torch.testing.assert_close(xk, rankcore.low_rank(x, k), atol=2e-5, rtol=0)


def test_rank_blocks_shapes_clamp_and_full_rank_exact():
    x = real_images()
    w = max_rank(x)
    blocks = list(rankcore.rank_blocks(x, chunk=10, clamp=True))
    assert [len(ks) for ks, _ in blocks] == [10] * (w // 10) + ([(w + 1) % 10] if (w + 1) % 10 else [])
    for ks, xs in blocks:
        assert xs.shape == (len(ks), *x.shape)
        assert xs.min() >= 0 and xs.max() <= 1
    assert torch.equal(blocks[-1][1][-1], x)


@pytest.mark.parametrize("shape", [(2, 3, 12, 7), (2, 3, 7, 12), (1, 2, 9, 9)])
def test_rank_blocks_match_the_float64_svd_for_tall_wide_and_rank_deficient_matrices(shape):
    # Float32 CPU factors come from the eigenvectors of the smaller Gram matrix (m m^T or
    # m^T m); a rank-deficient image (a repeated row and column) leaves null eigenvectors.
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    x[..., 1, :] = x[..., 0, :]
    x[..., :, 1] = x[..., :, 0]
    w = max_rank(x)
    for ks, xs in rankcore.rank_blocks(x, chunk=4):
        for k, xk in zip(ks, xs):
            np.testing.assert_allclose(xk.numpy(), numpy_low_rank(x.numpy(), k), atol=1e-5)
    A, B = rankcore.rank.svd_factors(x)
    assert A.shape == (x[..., 0, 0].numel(), shape[-2], w) and B.shape == (A.shape[0], w, shape[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 12, 7), (2, 3, 7, 12)])
def test_factors_of_a_rank_are_the_leading_factors_and_give_its_rank_k_images(shape, dtype):
    # Float32 takes the Gram path, float64 the SVD: both cut to the rank asked for.
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    A, B = rankcore.rank.svd_factors(x)
    A4, B4 = rankcore.rank.svd_factors(x, 4)
    m = x[..., 0, 0].numel()
    assert A4.shape == (m, shape[-2], 4) and B4.shape == (m, 4, shape[-1]) and A4.dtype == dtype
    for k in range(5):
        np.testing.assert_allclose((A4[..., :k] @ B4[..., :k, :]).reshape(x.shape).numpy(),
                                   numpy_low_rank(x.numpy(), k), atol=1e-5)
    torch.testing.assert_close(A4 @ B4, A[..., :4] @ B[..., :4, :])
    A0, B0 = rankcore.rank.svd_factors(x, 0)
    assert A0.shape == (m, shape[-2], 0) and B0.shape == (m, 0, shape[-1])


def test_rank_blocks_computes_only_the_factors_its_ranks_need():
    # ranks 0, 3 and full need the 3 leading factors; factors of rank >= 3 are accepted,
    # narrower ones refused by name.
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    seen = []
    real, inner = rankcore.rank.svd_factors, rankcore.rank._factors

    def spy(v, rank):
        seen.append(rank)
        return inner(v, rank)

    try:
        rankcore.rank._factors = spy
        got = {k: xk for k, xk in rankcore.rank_sweep(x, ranks=[0, 3, 10])}
    finally:
        rankcore.rank._factors = inner
    assert seen == [3] == [rankcore.rank.factor_rank([0, 3, 10], 10)]
    assert rankcore.rank.factor_rank([10], 10) == rankcore.rank.factor_rank([], 10) == 0
    np.testing.assert_allclose(got[3].numpy(), numpy_low_rank(x.numpy(), 3), atol=1e-5)
    assert torch.equal(got[10], x) and not got[0].any()
    wide = real(x, 5)
    blocks = list(rankcore.rank_blocks(x, [3, 10], factors=wide))
    torch.testing.assert_close(blocks[0][1][0], got[3])
    with pytest.raises(ValueError, match=r"rank >= 3"):
        list(rankcore.rank_blocks(x, [3, 10], factors=real(x, 2)))


def test_half_precision_in_float32_out_in_own_dtype():
    x = torch.rand(2, 3, 16, 16)
    for dtype in (torch.float16, torch.bfloat16):
        y = rankcore.low_rank(x.to(dtype), 5)
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), rankcore.low_rank(x.to(dtype).float(), 5).to(dtype).float())
        for _, xk in rankcore.rank_sweep(x.to(dtype), ranks=[5]):
            assert xk.dtype == dtype


def test_clamp_keeps_unit_range_and_raw_can_leave_it():
    x = real_images()
    raw = rankcore.low_rank(x, 2)
    assert raw.min() < 0 or raw.max() > 1  # low-rank reconstructions overshoot
    clamped = rankcore.low_rank(x, 2, clamp=True)
    torch.testing.assert_close(clamped, raw.clamp(0, 1))


def test_uint8_pictures_are_approximated_as_x_over_255_and_rounded_back():
    x = real_images()
    pixels = (255 * x).round().to(torch.uint8)
    got = rankcore.low_rank(pixels, 3)
    assert got.dtype == torch.uint8 and got.shape == pixels.shape
    ref = np.clip(numpy_low_rank(pixels.numpy().astype(np.float64) / 255, 3), 0, 1)
    # float32 against float64, then rounding: at most one grey level apart
    assert np.abs(got.numpy().astype(int) - np.round(255 * ref).astype(int)).max() <= 1
    assert torch.equal(rankcore.low_rank(pixels, 10_000), pixels)


def test_any_k_beyond_the_image_rank_is_the_image_but_a_rank_list_must_fit():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(rankcore.low_rank(x, 500), x)
    assert torch.equal(rankcore.high_rank(x, 500), torch.zeros_like(x))
    with pytest.raises(ValueError, match="500"):
        rankcore.parse_ranks(500, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(rankcore.low_rank(x.cuda(), 7).cpu(), rankcore.low_rank(x, 7), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", [(2, 3, 12, 7), (2, 3, 7, 12)])
def test_cuda_factors_match_the_float64_svd(shape):
    # On CUDA, float32 factors come from the float64 Gram matrix's eigenvectors, as on the CPU
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    A, B = rankcore.rank.svd_factors(x.cuda())
    assert A.is_cuda and A.dtype == torch.float32
    for k in range(max_rank(x) + 1):
        np.testing.assert_allclose((A[..., :k] @ B[..., :k, :]).cpu().reshape(x.shape).numpy(),
                                   numpy_low_rank(x.numpy(), k), atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: rankcore.low_rank(torch.rand(5), 1), "at least 2 dimensions"),
    (lambda: rankcore.low_rank(torch.ones(3, 4, 4, dtype=torch.int64), 1), "floating-point"),
    (lambda: rankcore.high_rank(torch.ones(3, 4, 4, dtype=torch.uint8), 1), "uint8, but high_rank's residual is signed"),
    (lambda: rankcore.low_rank(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1), "NaN"),
    (lambda: rankcore.high_rank(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), 1), "NaN or infinite"),
    (lambda: rankcore.low_rank(torch.rand(3, 4, 4), -1), "k must be >= 0"),
    (lambda: rankcore.low_rank(torch.rand(2, 3, 4, 4), torch.tensor([1, 2, 3])), "k has length 3"),
    (lambda: rankcore.low_rank(torch.rand(2, 3, 4, 4), torch.tensor([1, -2])), "k must be >= 0"),
    (lambda: rankcore.low_rank(torch.rand(2, 3, 4, 4), torch.tensor([1.5, 2.0])), "integers"),
    (lambda: list(rankcore.rank_sweep(torch.rand(3, 4, 4), ranks=[0, 5])), r"ranks=\[0, 5\]: every rank must lie in \[0, 4\]"),
    (lambda: list(rankcore.rank_sweep(torch.rand(3, 4, 4), chunk=0)), "chunk"),
    (lambda: rankcore.rank.svd_factors(torch.rand(3, 4, 6), 5), r"rank must be an int in \[0, 4\].*got 5"),
    (lambda: rankcore.rank.svd_factors(torch.rand(3, 4, 6), True), "rank must be an int"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_single_non_finite_value_anywhere_in_a_large_batch_is_refused(dtype, bad):
    # Large enough for vectorised reductions, with the value at the start, the middle, a
    # vector tail and the end.
    x = torch.rand(2, 3, 37, 41).to(dtype)
    for index in (0, 4567, x.numel() - 3, x.numel() - 1):
        y = x.clone()
        y.view(-1)[index] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            rankcore.rank.check_images(y)
    rankcore.rank.check_images(x)


def test_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        rankcore.low_rank(np.zeros((3, 4, 4)), 1)
    with pytest.raises(TypeError, match="k must be"):
        rankcore.low_rank(torch.rand(3, 4, 4), 1.5)


def test_cpu_svd_splits_the_matrices_among_single_threaded_workers():
    before = torch.get_num_threads()
    seen = []
    real = torch.linalg.svd

    def spy(m, *args, **kwargs):
        seen.append((torch.get_num_threads(), m.shape[0]))
        return real(m, *args, **kwargs)

    try:
        torch.set_num_threads(2)
        torch.linalg.svd = spy
        x = torch.rand(2, 3, 8, 8)
        expected = numpy_low_rank(x.numpy(), 3)
        np.testing.assert_allclose(rankcore.low_rank(x, 3).numpy(), expected, atol=1e-5)
        # 6 matrices: 3 to each of the 2 workers, each on one thread; the caller's 2 restored.
        assert sorted(seen) == [(1, 3), (1, 3)] and torch.get_num_threads() == 2
        torch.linalg.svd = real
        U, S, Vh = rankcore.rank._svd(x)
        assert all(torch.equal(a, b) for a, b in zip((U, S, Vh), real(x, full_matrices=False)))
    finally:
        torch.linalg.svd = real
        torch.set_num_threads(before)


@pytest.mark.parametrize("image", ["constant", "zeros", "rank one"])
def test_low_rank_warns_when_its_gradient_is_nan(image):
    # Issue 28: a constant image's SVD has tied (zero) singular values, and torch's SVD
    # backward divides by their differences: the gradient was NaN without a word.
    x = {"constant": torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64),
         "zeros": torch.zeros(1, 1, 8, 8, dtype=torch.float64),
         "rank one": torch.outer(torch.arange(1.0, 9), torch.arange(1.0, 9)).view(1, 1, 8, 8)
         .double() / 64}[image].requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="repeated singular values"):
        y = low_rank(x, 2)
    y.sum().backward()
    if image != "rank one":  # exact ties: NaN; float noise gives the rank-one image garbage
        assert torch.isnan(x.grad).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low_rank(x.detach(), 2)  # no gradient asked for: no warning


def test_low_rank_gradient_of_distinct_singular_values_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # distinct singular values: no warning
        (low_rank(x, 2) * w).sum().backward()
    f = lambda z: float(np.sum(numpy_low_rank(z, 2) * w.numpy()[0, 0]))  # noqa: E731
    z, h = x.detach().numpy()[0, 0], 1e-6
    fd = np.zeros_like(z)
    for i in range(6):
        for j in range(6):
            e = np.zeros_like(z)
            e[i, j] = h
            fd[i, j] = (f(z + e) - f(z - e)) / (2 * h)
    np.testing.assert_allclose(x.grad.numpy()[0, 0], fd, rtol=1e-5, atol=1e-7)
