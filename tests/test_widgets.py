"""The rank explorer: the static page's factors and top-5, and the live widget, show the right rank-k views."""
import base64
import io
import re

import numpy as np

import pytest
import torch
from torch import nn

from rankcore.book import explorer, widgets
from rankcore.rank import low_rank


def _model(c=3, h=16, w=16, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, classes)).eval()


def _image(seed=0, h=16, w=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g)


def test_default_ranks_log_spaced_and_bounded():
    r = widgets.default_ranks(224, 12)
    assert r[0] == 1 and r[-1] == 224 and r == sorted(set(r)) and len(r) <= 13
    assert sum(k <= 15 for k in r) >= 4  # low ranks, where the image changes most, get frames
    with pytest.raises(ValueError, match="frames=1"):
        widgets.default_ranks(10, 1)


def quantisation_bound(f: explorer.Factors, k: int) -> np.ndarray:
    """Per-pixel bound ``(C, H, W)`` on |rank-k image from the quantised factors - exact one|.

    Exact s, u, v; stored s_hat (float32, relative error <= 2^-24), u_hat, v_hat with
    |u - u_hat| <= eu = u_scale / 2 (and ev for v). Per term of the sum over i < k,
    s u v - s_hat u_hat v_hat = s (u - u_hat) v + s u_hat (v - v_hat) + (s - s_hat) u_hat v_hat,
    with |v| <= |v_hat| + ev and s <= s_hat (1 + 2^-24). Clipping to [0, 1] only shrinks it.
    """
    s_hat = f.s[:, :k].astype(np.float64)
    s_up, ds = s_hat * (1 + 2.0 ** -24), s_hat * 2.0 ** -24
    eu, ev = f.u_scale[:, :k] / 2.0, f.v_scale[:, :k] / 2.0
    au = np.abs(f.u[:, :, :k] * f.u_scale[:, None, :k].astype(np.float64))   # (C, H, k)
    av = np.abs(f.v[:, :, :k] * f.v_scale[:, None, :k].astype(np.float64))   # (C, W, k)
    first = ((av + ev[:, None, :]) @ (s_up * eu)[..., None])[:, None, :, 0]  # (C, 1, W)
    second = (au @ (s_up * ev)[..., None])                                    # (C, H, 1)
    third = (au * ds[:, None, :]) @ av.transpose(0, 2, 1)                    # (C, H, W)
    return first + second + third + 1e-12  # + float64 rounding of the sums


def _payload(x, models, classes=None, **kw):
    html = widgets.rank_explorer(x, models, static=True, classes=classes, **kw).data
    [data] = explorer.read_payload(html)
    return html, data


def test_quantised_columns_lie_within_half_a_scale():
    g = np.random.default_rng(0)
    m = g.normal(size=(3, 40, 7)) * np.array([1e3, 1.0, 1e-6, 0.3, 2.0, 5.0, 0.0])
    codes, scale = explorer.quantise_columns(m)
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    assert np.abs(codes.astype(int)).max() <= explorer.LEVELS
    assert (np.abs(codes.astype(int)).max(axis=1)[..., :6] == explorer.LEVELS).all()  # full range used
    err = np.abs(codes * scale[:, None, :].astype(np.float64) - m)
    assert (err <= scale[:, None, :] / 2).all()
    assert (codes[..., 6] == 0).all()                          # the zero column stays zero


def test_static_explorer_is_self_contained_with_a_slider_over_every_rank():
    x = _image(h=16, w=20)
    html, data = _payload(x, {"lin": _model(w=20)}, classes=["a", "b", "c", "d"], ranks=[1, 4, 16])
    [slider] = re.findall(r'<input[^>]*type="range"[^>]*>', html)
    assert 'min="0"' in slider and 'max="16"' in slider and 'value="4"' in slider
    assert re.findall(r'<option value="(\d+)"', html) == ["1", "4", "16"]   # the ticks
    assert not re.search(r"https?://|<script[^>]*src=", html)  # nothing loaded from outside
    assert (data["c"], data["h"], data["w"], data["r"]) == (3, 16, 20, 16)
    # int8 codes for U (3x16x16) and V (3x20x16), float32 s and scales, the PNG, the table
    f = explorer.decode(data)
    assert f.u.shape == (3, 16, 16) and f.v.shape == (3, 20, 16)
    from PIL import Image
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["png"]))))
    np.testing.assert_array_equal(png, (x.permute(1, 2, 0).numpy() * 255).round())
    assert len(data["models"][0]["top"]) == 17                  # ranks 0..16


@pytest.mark.parametrize("h, w", [(16, 16), (12, 20)])
def test_embedded_factors_reconstruct_low_rank_within_the_quantisation_bound(h, w):
    x = explorer.eight_bit(_image(3, h=h, w=w))
    _, data = _payload(x, None)
    f = explorer.decode(data)
    r = min(h, w)
    for k in (1, 2, 5, r - 1, r):
        ref = low_rank(x[None].double(), k, clamp=True)[0].numpy()
        err = np.abs(f.reconstruct(k) - ref)
        bound = quantisation_bound(f, k)
        assert (err <= bound).all(), (k, (err - bound).max())
        assert err.max() > 0 and bound.max() < 0.1             # quantised, but usefully so


def test_embedded_top5_equals_the_models_top5_on_low_rank():
    x = explorer.eight_bit(_image(4))             # the picture the page shows
    m1, m2 = _model(classes=7, seed=1), _model(classes=7, seed=5)
    names = [f"n{i}" for i in range(7)]
    _, data = _payload(x, {"one": m1, "two": m2}, classes=names)
    assert [m["name"] for m in data["models"]] == ["one", "two"]
    for k in (0, 1, 3, 8, 15, 16):
        xk = low_rank(x[None].double(), k, clamp=True).float()
        for m, entry in zip((m1, m2), data["models"]):
            with torch.no_grad():
                ref = torch.softmax(m(xk).double(), -1)[0].topk(5)
            shown = [(entry["classes"][c], p) for c, p in entry["top"][k]]
            assert [n for n, _ in shown] == [names[i] for i in ref.indices.tolist()], k
            np.testing.assert_allclose([p for _, p in shown], ref.values.numpy(), atol=5e-5 + 1e-6)


def test_static_explorer_rounds_the_image_to_eight_bits_first():
    x = _image(2) * 0.999 + 0.0003                  # no multiple of 1/255
    _, data = _payload(x, None)
    f = explorer.decode(data)
    x8 = explorer.eight_bit(x)
    ref = low_rank(x8[None].double(), 16)[0].numpy()
    assert (np.abs(f.reconstruct(16) - ref) <= quantisation_bound(f, 16)).all()


def test_frames_match_independent_low_rank_and_softmax():
    x, m = _image(1), _model(seed=2)
    view = widgets._View(x, widgets._models({"lin": m}, None), 3, None, 50)
    view.fill([2, 5, 16])                     # one SVD sweep, batched predictions
    for k in (2, 5, 16):
        xk, [(p, idx)] = view.cache[k]
        ref = low_rank(x[None].double(), k).clamp(0, 1)[0].float()
        torch.testing.assert_close(xk, ref, atol=1e-5, rtol=0)
        probs = torch.softmax(m(ref[None]), -1)[0]
        top = probs.topk(3)
        assert idx.tolist() == top.indices.tolist()
        torch.testing.assert_close(p, top.values.detach(), atol=1e-5, rtol=0)
    assert view.frame(16)[0].shape == (3, 16, 16)
    view.draw(0)                               # rank 0: blank image, everything removed
    assert view.axes[0].get_title() == "rank 0 of 16"
    import matplotlib.pyplot as plt
    plt.close(view.fig)


def test_class_names_from_model_dataset_attribute():
    m = _model(classes=10)
    m.dataset = "cifar10"
    [entry] = widgets._models([m], None)
    assert entry.classes[3] == "cat"
    assert widgets._label(None, 7) == "class 7"


def test_live_explorer_slider_recomputes_the_view():
    pytest.importorskip("ipywidgets")
    box = widgets.rank_explorer(_image(), [_model()])
    assert list(box.slider.options) == list(range(17))
    box.slider.value = 3
    assert 3 in box.view.cache
    assert box.view.axes[0].get_title() == "rank 3 of 16"


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\)"):
        widgets.rank_explorer(torch.rand(2, 3, 8, 8), static=True)
    with pytest.raises(ValueError, match=r"\(1 or 3, H, W\), got \(2, 8, 8\)"):
        widgets.rank_explorer(torch.rand(2, 8, 8), static=True)   # no picture has 2 channels
    with pytest.raises(TypeError, match="models must be"):
        widgets.rank_explorer(_image(), models=42, static=True)
    with pytest.raises(ValueError, match="top=0"):
        widgets.rank_explorer(_image(), top=0, static=True)
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        widgets.rank_explorer(_image(), ranks=[40], static=True)
