"""Chapter 01's experiments, figure data and verdict rules against float64 NumPy."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rankcore.book import ch01_rank_images as ch01  # noqa: E402


def _image(c=3, h=12, w=10, seed=0):
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _np_low_rank(a, k):
    """Best rank-k approximation of every (H, W) matrix of ``a`` by NumPy's SVD."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    s[..., k:] = 0
    return (u * s[..., None, :]) @ vt


def test_pipeline_matches_numpy_truncation_and_channelwise_rule():
    x = _image()
    r = ch01.pipeline(x, 4)
    ref = np.clip(_np_low_rank(x.numpy(), 4), 0, 1)
    np.testing.assert_allclose(r["image"].numpy(), ref, atol=1e-10)
    assert r["same"] is True and r["k"] == 4
    assert ch01.fig2_verdict(True) == "reproduced" and ch01.fig2_verdict(False) == "differs"
    fig = ch01.figure2(x, r)
    assert len([a for a in fig.axes if a.images]) == 8


def test_gallery_caps_ranks_and_error_table_matches_numpy():
    x = _image()
    g = ch01.gallery(x, [1, 3, 50])                       # 50 > min(H, W) = 10: capped
    assert list(g) == [1, 3, 10]
    err = ch01.error_table(x, g).set_index("rank")
    for k in (1, 3, 10):
        ref = np.clip(_np_low_rank(x.numpy(), k), 0, 1)
        mse = ((ref - x.numpy()) ** 2).mean()
        rel = np.linalg.norm(ref - x.numpy()) / np.linalg.norm(x.numpy())
        assert err.loc[k, "relative_error"] == pytest.approx(rel, abs=1e-9)
        if k < 10:                                     # full rank: x itself, PSNR inf
            assert err.loc[k, "psnr_db"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
    fig = ch01.figure3(g)
    assert [a.get_title() for a in fig.axes] == ["rank 1", "rank 3", "rank 10"]


@pytest.mark.parametrize("psnr, verdict", [
    ([10.0, 12.0, 30.0], "reproduced"),
    ([10.0], "reproduced"),
    ([10.0, 10.0, 30.0], "differs"),          # equal neighbours: not a rise
    ([10.0, 12.0, 11.9], "differs"),
])
def test_fig3_rule_strict_rise(psnr, verdict):
    assert ch01.fig3_verdict(psnr) == verdict


def test_spectra_and_energy_ranks_against_numpy():
    x = torch.stack([_image(seed=1), _image(seed=2)])
    s, energy = ch01.spectra(x)
    ref = np.linalg.svd(x.numpy(), compute_uv=False).mean(axis=1)    # (2, 10)
    np.testing.assert_allclose(s.numpy(), ref, rtol=1e-9)
    e_ref = np.cumsum(ref ** 2, -1) / (ref ** 2).sum(-1, keepdims=True)
    np.testing.assert_allclose(energy.numpy(), e_ref, rtol=1e-9)
    t = ch01.energy_ranks(["a", "b"], energy, levels=(0.99,))
    want = [int(np.argmax(e >= 0.99)) + 1 for e in e_ref]
    assert t["rank for 99% energy"].tolist() == want
    fig = ch01.figure_spectra(["a", "b"], s, energy)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), ref[0])


def test_equal_l2_gives_equal_norms_and_rule_boundary():
    x = _image(h=32, w=32).float()
    d = ch01.equal_l2(x, 3.0, seed=0)
    assert abs(d["l2_noise"] - float((d["noisy"] - x).norm())) < 1e-6
    assert ch01.fig5_verdict(d["l2_noise"], d["l2_patch"]) == "reproduced"
    assert ch01.fig5_verdict(1.0, 1.0 + 0.999 * ch01.L2_TOLERANCE) == "reproduced"
    assert ch01.fig5_verdict(1.0, 1.0 + 1.001 * ch01.L2_TOLERANCE) == "differs"


def test_reverse_truncation_energy_against_numpy_and_rule_boundary():
    x = torch.stack([_image(seed=3), _image(seed=4)])
    r = ch01.reverse_truncation(x, 3)
    s = np.linalg.svd(x.numpy(), compute_uv=False)                   # (2, 3, 10)
    assert r["energy_left"] == pytest.approx((s[..., 3:] ** 2).sum() / (s ** 2).sum(), rel=1e-9)
    np.testing.assert_allclose(r["taken"].numpy(), _np_low_rank(x.numpy(), 3), atol=1e-10)
    fig = ch01.figure9(x, r, "random")
    assert len([a for a in fig.axes if a.images]) == 6
    assert ch01.fig9_verdict(0.999 * ch01.FIG9_MAX_ENERGY_LEFT) == "reproduced"
    assert ch01.fig9_verdict(ch01.FIG9_MAX_ENERGY_LEFT) == "differs"


def test_summary_quotes_this_runs_numbers():
    x = _image(h=32, w=32).float()
    g = ch01.gallery(x, [1, 32])
    err = ch01.error_table(x, g)
    _, energy = ch01.spectra(x[None])
    d = ch01.equal_l2(x, 2.0)
    r = ch01.reverse_truncation(x[None], 3)
    md = ch01.summary_markdown(n_photos=1, errors=err, energy_table=ch01.energy_ranks(["a"], energy),
                               fig5=d, fig9=r, fig9_source="random",
                               verdicts=dict(fig2="reproduced", fig3="reproduced",
                                             fig5="reproduced", fig9="differs"))
    assert f"{d['l2_noise']:.3f}" in md and f"{100 * r['energy_left']:.1f}%" in md
    assert f"{err.psnr_db.iloc[0]:.1f} dB at rank 1" in md


@pytest.mark.parametrize("x, l2, error, match", [
    ([[0.5]], 1.0, TypeError, "x must be a torch.Tensor"),
    (torch.zeros(1, 3, 4, 4), 1.0, ValueError, r"shape \(1, 3, 4, 4\)"),
    (torch.zeros(3, 4, 4, dtype=torch.uint8), 1.0, ValueError, "torch.uint8"),
    (torch.zeros(3, 4, 4), "1", TypeError, "l2 must be a number"),
    (torch.zeros(3, 4, 4), 0.0, ValueError, "l2 must be > 0, got 0.0"),
])
def test_distortions_reject_bad_inputs_by_name(x, l2, error, match):
    from rankcore.book.distortions import square_patch, uniform_noise
    for f in (uniform_noise, square_patch):
        with pytest.raises(error, match=match):
            f(x, l2)
