"""Issue 14: every bad input to the spectrum's entry points gives a clear error naming the
argument (table-driven), and random shapes, dtypes and ranges either work or raise
``ValueError``/``TypeError`` naming it (hypothesis)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from rankcore import rank, spectrum
from rankcore.spectrum import rank_spectrum

import hostile

SIDE, N, CLASSES = 6, 5, 4


class MeanModel(nn.Module):
    """Any (B, C, H, W) -> (B, CLASSES) logits: a linear map of per-channel means."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, CLASSES))

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None] * self.w + torch.arange(CLASSES) * 0.01


def good() -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(model=MeanModel(), images=torch.rand(N, 3, SIDE, SIDE, generator=g),
                labels=torch.randint(0, CLASSES, (N,), generator=g), ranks=[0, 3, SIDE],
                progress=False)


def _nan_images():
    x = torch.rand(N, 3, SIDE, SIDE)
    x[0, 0, 0, 0] = float("nan")
    return x


ROWS = [  # (case, changes to the good arguments, error type, argument named in the message)
    ("model not a module", dict(model=lambda x: x), TypeError, "model"),
    ("images a string", dict(images="cat.jpg"), TypeError, "images"),
    ("images a number", dict(images=3.0), TypeError, "images"),
    ("images 3-D", dict(images=torch.rand(3, SIDE, SIDE)), ValueError, "images"),
    ("images empty", dict(images=torch.rand(0, 3, SIDE, SIDE), labels=None), ValueError, "images"),
    ("images int32", dict(images=torch.ones(N, 3, SIDE, SIDE, dtype=torch.int32)), TypeError, "images"),
    ("images 0-255 floats", dict(images=torch.rand(N, 3, SIDE, SIDE) * 255), ValueError, "images"),
    ("images negative", dict(images=torch.rand(N, 3, SIDE, SIDE) - 1), ValueError, "images"),
    ("images NaN", dict(images=_nan_images()), ValueError, "images"),
    ("labels too few", dict(labels=torch.tensor([0, 1])), ValueError, "labels"),
    ("labels float", dict(labels=torch.rand(N)), TypeError, "labels"),
    ("labels beyond the classes", dict(labels=torch.full((N,), CLASSES)), ValueError, "labels"),
    ("labels negative", dict(labels=torch.full((N,), -3)), ValueError, "labels"),
    ("ranks fractional", dict(ranks=[3.7]), TypeError, "ranks"),
    ("ranks a float", dict(ranks=2.0), TypeError, "ranks"),
    ("ranks a bool", dict(ranks=True), TypeError, "ranks"),
    ("ranks above full", dict(ranks=[SIDE + 1]), ValueError, "ranks"),
    ("ranks negative", dict(ranks=[-1]), ValueError, "ranks"),
    ("ranks malformed string", dict(ranks="1:x"), ValueError, "ranks"),
    ("ranks zero step", dict(ranks="0:6:0"), ValueError, "ranks"),
    ("batch_size 0", dict(batch_size=0), ValueError, "batch_size"),
    ("batch_size float", dict(batch_size=2.5), ValueError, "batch_size"),
    ("batch_size bool", dict(batch_size=True), ValueError, "batch_size"),
    ("block 0", dict(block=0), ValueError, "block"),
    ("amp unknown", dict(amp="fp8"), ValueError, "amp"),
    ("device other than the model's", dict(device="meta"), ValueError, "device"),
    ("input_size mismatch", dict(model="input_size"), ValueError, "input_size"),
]


@pytest.mark.parametrize("case,change,error,name", ROWS, ids=[r[0] for r in ROWS])
def test_rank_spectrum_bad_input(case, change, error, name):
    kwargs = {**good(), **change}
    if kwargs["model"] == "input_size":
        kwargs["model"] = MeanModel()
        kwargs["model"].input_size = (3, SIDE + 2, SIDE + 2)
    model, images = kwargs.pop("model"), kwargs.pop("images")
    with pytest.raises(error, match=name):
        rank_spectrum(model, images, **kwargs)


def test_checkpoint_of_another_run_names_the_checkpoint(tmp_path):
    ckpt = tmp_path / "c.pt"
    kwargs = good()
    model, images = kwargs.pop("model"), kwargs.pop("images")
    rank_spectrum(model, images, checkpoint=ckpt, **kwargs)
    with pytest.raises(ValueError, match="checkpoint"):
        rank_spectrum(model, images, checkpoint=ckpt, **{**kwargs, "ranks": [0, 1]})


# ---------------------------------------------------------------------------- issue 28: the checkpoint file

def _weights(tmp_path):
    torch.save(MeanModel().state_dict(), tmp_path / "model.pt")  # the model's own weights
    return tmp_path / "model.pt"


def _text(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes, not a checkpoint\n")
    return tmp_path / "notes.txt"


def _damaged(tmp_path):  # a checkpoint of ours, cut short by a disk or a copy
    kwargs = good()
    model, images = kwargs.pop("model"), kwargs.pop("images")
    rank_spectrum(model, images, checkpoint=tmp_path / "c.pt", **kwargs)
    (tmp_path / "c.pt").write_bytes((tmp_path / "c.pt").read_bytes()[:700])
    return tmp_path / "c.pt"


def _read_only(tmp_path, monkeypatch):
    (tmp_path / "ro").mkdir()
    hostile.read_only(monkeypatch, tmp_path / "ro")
    return tmp_path / "ro" / "c.pt"


# (case, make(tmp_path, monkeypatch) -> the --checkpoint path, text of the one-line error)
CHECKPOINT_ROWS = [
    ("checkpoint: the model's weights", lambda t, m: _weights(t), "not a rank spectrum checkpoint"),
    ("checkpoint: a text file", lambda t, m: _text(t), "not a rank spectrum checkpoint"),
    ("checkpoint: a directory", lambda t, m: t, "is a directory"),
    ("checkpoint: a read-only folder", _read_only, "cannot be written"),
]


@pytest.mark.parametrize("case,make,text", CHECKPOINT_ROWS, ids=[r[0] for r in CHECKPOINT_ROWS])
def test_checkpoint_not_ours_is_refused_untouched_before_any_work(tmp_path, monkeypatch, case,
                                                                   make, text):
    path = make(tmp_path, monkeypatch)
    before = path.read_bytes() if path.is_file() else None
    kwargs = good()
    model, images = kwargs.pop("model"), kwargs.pop("images")
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="checkpoint") as e:
        rank_spectrum(model, images, checkpoint=path, **kwargs)
    assert text in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert calls == []                               # refused before the computation
    assert (path.read_bytes() if path.is_file() else None) == before


def test_damaged_checkpoint_of_ours_is_moved_aside_never_overwritten(tmp_path):
    path = _damaged(tmp_path)
    torn = path.read_bytes()
    kwargs = good()
    model, images = kwargs.pop("model"), kwargs.pop("images")
    with pytest.warns(RuntimeWarning, match="damaged.*moved it to .*c.pt.corrupt-"):
        df = rank_spectrum(model, images, checkpoint=path, **kwargs)
    aside = list(tmp_path.glob("c.pt.corrupt-*"))
    assert [f.read_bytes() for f in aside] == [torn]
    assert df.equals(rank_spectrum(model, images, **kwargs))


SUMMARY_ROWS = [
    ("summary: unknown column", lambda df: spectrum.summary(df, "top3"), ValueError, "column"),
    ("wilson: n = 0", lambda df: spectrum.wilson_interval(0.5, 0), ValueError, "n"),
    ("wilson: p > 1", lambda df: spectrum.wilson_interval(1.5, 10), ValueError, "p"),
    ("wilson: confidence 1", lambda df: spectrum.wilson_interval(0.5, 10, 1.0), ValueError,
     "confidence"),
    ("with_intervals: confidence 95", lambda df: spectrum.with_intervals(df, 95), ValueError,
     "confidence"),
    ("gap: no shared rank", lambda df: spectrum.gap(df[df["rank"] == 0], df[df["rank"] == 3]),
     ValueError, "rank"),
    ("gap: unknown column", lambda df: spectrum.gap(df, df, "top3"), ValueError, "column"),
    ("throughput: repeat 0", lambda df: spectrum.throughput(MeanModel(), torch.rand(1, 3, 4, 4),
                                                           repeat=0), ValueError, "repeat"),
]


@pytest.mark.parametrize("case,call,error,name", SUMMARY_ROWS, ids=[r[0] for r in SUMMARY_ROWS])
def test_summaries_bad_input(case, call, error, name):
    df = pd.DataFrame({"rank": [0, 3, 6], "agreement": [0.2, 0.8, 1.0],
                       "top1": [0.1, 0.5, 0.6], "top5": [0.5, 0.9, 1.0], "n": 10})
    with pytest.raises(error, match=name):
        call(df)


# ---------------------------------------------------------------------------- properties

NAMES = ("images", "labels", "ranks", "batch_size", "block")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 3), c=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.uint8,
                              torch.int64, torch.bool]),
       scale=st.sampled_from([1.0, 255.0, -1.0]),
       ranks=st.one_of(st.none(), st.integers(-2, 7), st.lists(st.integers(-1, 6), max_size=3),
                       st.just("0:max:2"), st.floats(0, 5)),
       with_labels=st.booleans(), batch_size=st.one_of(st.none(), st.integers(-1, 4)))
def test_random_inputs_work_or_name_the_argument(n, c, h, w, dtype, scale, ranks, with_labels,
                                                 batch_size):
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(n + h))
    x = (x * scale).to(dtype) if dtype != torch.uint8 else (x * 255).to(dtype)
    y = torch.arange(n) % CLASSES if with_labels else None
    try:
        df = rank_spectrum(MeanModel(), x, y, ranks=ranks, batch_size=batch_size, progress=False)
    except (ValueError, TypeError) as e:
        assert any(name in str(e) for name in NAMES), str(e)
        return
    full = rank.parse_ranks(ranks, min(h, w))
    assert list(df["rank"]) == full and (df["n"] == n).all()
    assert ((df["agreement"] >= 0) & (df["agreement"] <= 1)).all()
    assert df["agreement"].iloc[-1] == 1.0 or full[-1] != min(h, w)
    assert np.isnan(df["top1"]).all() != with_labels


@settings(max_examples=40, deadline=None)
@given(p=st.floats(0, 1), n=st.integers(1, 10**6), confidence=st.floats(0.5, 0.999))
def test_wilson_interval_contains_the_estimate(p, n, confidence):
    k = round(p * n)
    lo, hi = spectrum.wilson_interval(k / n, n, confidence)
    assert 0 <= lo <= k / n <= hi <= 1
