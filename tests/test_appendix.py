"""Section 9.1 (Fourier low-pass and rank) and Section 9.3 (timing), against float64 NumPy."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from rankcore.book import fourier, timing
from rankcore.rank import low_rank


def _images(n=2, h=20, w=24, seed=0):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)


@pytest.mark.parametrize("n", [7, 8])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5, 9])
def test_frequency_window_matches_numpy_fftfreq(n, k):
    f = np.rint(np.fft.fftfreq(n) * n).astype(int)
    lo, hi = -(k // 2), k - k // 2 - 1
    ref = (f >= lo) & (f <= hi) if k < n else np.ones(n, bool)
    assert fourier.frequency_window(n, k).numpy().tolist() == ref.tolist()
    sym = fourier.frequency_window(n, k, symmetric=True).numpy()
    assert sym.tolist() == (ref | ref[(-np.arange(n)) % n]).tolist()   # mirror -f added
    assert sym.sum() == (min(n, k + (k % 2 == 0 and k > 0)) if k < n else n)


def test_low_pass_matches_numpy_reference():
    x = _images(1, 12, 10)
    for k, sym in ((3, False), (4, False), (4, True)):
        mask = np.outer(fourier.frequency_window(12, k, sym).numpy(),
                        fourier.frequency_window(10, k, sym).numpy())
        ref = np.fft.ifft2(np.fft.fft2(x.numpy()) * mask)
        got = fourier.low_pass(x, k, symmetric=sym, real=False)
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(fourier.low_pass(x, k, symmetric=sym).numpy(), ref.real,
                                   atol=1e-12)
    torch.testing.assert_close(fourier.low_pass(x, 12), x, atol=1e-12, rtol=0)  # all kept
    assert fourier.low_pass(x.float(), 3).dtype == torch.float32
    # a conjugate-symmetric window keeps a real image real: nothing in the imaginary part
    assert fourier.low_pass(x, 5, real=False).imag.abs().max() < 1e-12


def test_rank_bound_holds_for_odd_and_complex_windows_and_is_tight():
    x = _images()                                            # generic: full rank 20
    table = fourier.rank_bound_table(x, [1, 2, 3, 6, 7]).set_index(["k", "variant"])
    for k in (1, 2, 3, 6, 7):
        assert table.loc[(k, "2-D window, complex"), "rank"] == k
        assert table.loc[(k, "one-sided W X (proof), complex"), "rank"] == k
        # real part adds the mirrored frequency of an even window: k + 1
        assert table.loc[(k, "2-D window, real part"), "rank"] == k + (k % 2 == 0)
        assert table.loc[(k, "2-D symmetric window"), "rank"] == k + (k % 2 == 0)
    assert table["at_bound"].all()
    assert table.loc[(6, "2-D window, real part"), "holds"] == False  # noqa: E712
    # an image of rank 3 stays rank 3 under a wider odd window: k is not tight there
    r3 = fourier.rank_bound_table(low_rank(x, 3), [9, 8]).set_index(["k", "variant"])
    assert (r3.loc[9, "rank"] == 3).all() and (r3["image_rank"] == 3).all()
    # ... but the real part of an even window adds the one mirrored frequency per axis:
    # rank min(k + 1, 3 + 2) = 5, above the image's own rank
    assert r3.loc[(8, "2-D window, real part"), "rank"] == 5
    assert r3.loc[(8, "2-D window, complex"), "rank"] == 3
    assert r3["at_bound"].all()


def test_budget_window_and_psnr_against_closed_forms():
    for r in (1, 5, 10, 40):
        k = fourier.window_for_budget(r, 224, 224)
        assert k % 2 == 1 and k * k <= r * 449 and ((k + 2) ** 2 > r * 449 or k == 223)
    assert fourier.window_for_budget(10, 224, 224) == 67          # sqrt(4490) = 67.0
    assert fourier.window_for_budget(0, 32, 32) == 0
    x = torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(fourier.psnr(x + 0.1, x), torch.full((2,), 20.0))
    with pytest.raises(ValueError, match="same shape"):
        fourier.psnr(x, x[:1])


def test_budget_comparison_rows_ranks_and_agreement():
    x = _images(3, 16, 16).float()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 256, 5)).eval()
    df = fourier.budget_comparison(x, [1, 3, 16], model=model, progress=False)
    lr = df[df.method == "low-rank"].set_index("rank")
    lp = df[df.method == "low-pass"].set_index("rank")
    assert lr.loc[[1, 3], "signal_rank"].tolist() == [1, 3]
    assert (lp["params"] <= lr["params"]).all()
    assert (lp.loc[[1, 3], "signal_rank"] == lp.loc[[1, 3], "window"]).all()
    assert lr.loc[16, "agreement"] == 1.0 and math.isinf(lr.loc[16, "psnr"])
    assert df["agreement"].between(0, 1).all()
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        fourier.budget_comparison(x, [17], progress=False)


def test_rank_k_times_rows_and_summary():
    x = torch.rand(2, 3, 8, 8)
    df = timing.rank_k_times(x, per_k_ranks=[2, 5], repeats=2, progress=False)
    per_k, sweep = (df[df.method == m] for m in timing.METHODS)
    assert len(per_k) == 2 * 2 and len(sweep) == 2 * 9
    assert sweep.groupby("image")["k"].apply(list).tolist() == [list(range(9))] * 2
    assert (df["seconds"] >= 0).all() and df["device"].str.contains("CPU").all()
    s = timing.summarise(df).set_index("method")
    total = sweep.groupby("image")["seconds"].sum().median()
    assert s.loc[timing.METHODS[1], "all_ranks_s"] == pytest.approx(total)
    assert s.loc[timing.METHODS[0], "all_ranks_s"] == pytest.approx(
        per_k.groupby("image")["seconds"].mean().median() * 9)
    with pytest.raises(ValueError, match="lacks columns"):
        timing.summarise(df.drop(columns="device"))
    # k = 0 and k = min(H, W) cost no SVD: left out of the per-k means
    ends = timing.rank_k_times(x, per_k_ranks=[0, 3, 8], progress=False)
    mid = ends[(ends.method == timing.METHODS[0]) & (ends.k == 3)]
    s2 = timing.summarise(ends).set_index("method")
    assert s2.loc[timing.METHODS[0], "per_image_median"] == pytest.approx(mid["seconds"].median())
    with pytest.raises(ValueError, match="repeats=0"):
        timing.rank_k_times(x, repeats=0, progress=False)
    assert timing.devices_to_time("cpu") == ["cpu"]
    assert timing.devices_to_time()[0] == "cpu"


def test_devices_to_time_names_what_this_machine_lacks():
    with pytest.raises(ValueError, match="devices item='nope'"):
        timing.devices_to_time("cpu,nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            timing.devices_to_time("cuda")
