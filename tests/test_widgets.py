"""The rank explorer: static HTML animation and live widget show the right rank-k views."""
import base64
import re

import pytest
import torch
from torch import nn

from rankcore.book import widgets
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


def test_static_explorer_is_self_contained_with_one_frame_per_rank():
    x, ranks = _image(), [1, 4, 16]
    html = widgets.rank_explorer(x, {"lin": _model()}, ranks=ranks, static=True,
                                 classes=["a", "b", "c", "d"]).data
    sliders = re.findall(r'<input[^>]*type="range"[^>]*>', html)
    assert len(sliders) == 1
    # frames[i] = "data:image/jpeg;base64,<base64 split by backslash-newline>"
    frames = re.findall(r'data:image/jpeg;base64,([^"]+)"', html)
    assert len(frames) == len(ranks)
    decoded = [base64.b64decode(f.replace("\\\n", "")) for f in frames]
    assert all(d[:2] == b"\xff\xd8" for d in decoded)          # JPEG magic
    assert len(set(decoded)) == len(ranks)                       # each rank draws differently
    assert not re.search(r"https?://", html)  # nothing loaded from outside, icons included
    assert len(html) < 200_000 and "fa fa-" not in html


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
    with pytest.raises(TypeError, match="models must be"):
        widgets.rank_explorer(_image(), models=42, static=True)
    with pytest.raises(ValueError, match="top=0"):
        widgets.rank_explorer(_image(), top=0, static=True)
    with pytest.raises(ValueError, match=r"\[0, 16\]"):
        widgets.rank_explorer(_image(), ranks=[40], static=True)
