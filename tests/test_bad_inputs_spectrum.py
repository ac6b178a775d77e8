"""Issue 14: every bad input to the spectrum's entry points gives a clear error naming the
argument (table-driven), and random shapes, dtypes and ranges either work or raise
``ValueError``/``TypeError`` naming it (hypothesis)."""
from __future__ import annotations

import os

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


class NaNModel(MeanModel):
    """A broken model: NaN logits (e.g. weights that diverged)."""

    def forward(self, x):
        return super().forward(x) * float("nan")


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
    ("model returns NaN logits", dict(model=NaNModel()), ValueError, "model returned non-finite"),
    ("data-set label 3.7", dict(images=[(torch.rand(3, SIDE, SIDE), 3.7)] * N, labels=None),
     TypeError, "labels must be integers, got 3.7"),
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


def _link(tmp_path, target):
    (tmp_path / "link.pt").symlink_to(target)
    return tmp_path / "link.pt"


# (case, make(tmp_path, monkeypatch) -> the --checkpoint path, text of the one-line error)
CHECKPOINT_ROWS = [
    ("checkpoint: the model's weights", lambda t, m: _weights(t), "not a rank spectrum checkpoint"),
    ("checkpoint: a text file", lambda t, m: _text(t), "not a rank spectrum checkpoint"),
    ("checkpoint: a directory", lambda t, m: t, "is a directory"),
    ("checkpoint: a read-only folder", _read_only, "cannot be written"),
    ("checkpoint: a link to the model's weights", lambda t, m: _link(t, _weights(t)),
     "not a rank spectrum checkpoint"),
    ("checkpoint: a dangling link", lambda t, m: _link(t, t / "gone.pt"), "does not exist"),
]


@pytest.mark.parametrize("case,make,text", CHECKPOINT_ROWS, ids=[r[0] for r in CHECKPOINT_ROWS])
def test_checkpoint_not_ours_is_refused_untouched_before_any_work(tmp_path, monkeypatch, case,
                                                                   make, text):
    path = make(tmp_path, monkeypatch)
    before = path.read_bytes() if path.is_file() else None
    link = os.readlink(path) if path.is_symlink() else None
    kwargs = good()
    model, images = kwargs.pop("model"), kwargs.pop("images")
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="checkpoint") as e:
        rank_spectrum(model, images, checkpoint=path, **kwargs)
    assert text in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert calls == []                               # refused before the computation
    assert (path.read_bytes() if path.is_file() else None) == before
    assert (os.readlink(path) if path.is_symlink() else None) == link


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


# ---------------------------------------------------------------------------- issue 28 item 4: huge rank specs

HUGE = st.one_of(st.integers(-3, 300), st.integers(-10**25, 10**25))
RANK_SPECS = st.one_of(
    st.text(alphabet="0123456789:,- maxMAXall", max_size=40),
    st.builds(lambda a, b, c: f"{a}:{b}:{c}", HUGE, HUGE, HUGE),
    st.builds(lambda a, b: f"{a}:{b},max", HUGE, HUGE),
    st.builds(range, HUGE, HUGE),
    st.builds(range, HUGE, HUGE, HUGE.filter(bool)),
    st.builds(lambda a, b: torch.tensor([a, b]), st.integers(-2**62, 2**62), st.integers(-3, 300)),
    st.lists(HUGE, max_size=5))


def _peak_bytes(call):
    """(result or the exception, the peak of Python allocations during ``call``)."""
    import tracemalloc
    tracemalloc.start()
    try:
        try:
            return call(), tracemalloc.get_traced_memory()[1]
        except (ValueError, TypeError) as e:
            return e, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=RANK_SPECS, max_rank=st.integers(0, 300))
def test_any_rank_spec_is_one_clear_error_or_ranks_within_bounds(spec, max_rank):
    """parse_ranks never builds more than max_rank + 1 ranks: a huge range or 'a:b:c' is
    refused before it is expanded (before: range(0, 10**12) grew to 20 GB)."""
    out, peak = _peak_bytes(lambda: rank.parse_ranks(spec, max_rank))
    assert peak < 256 * 1024, f"{peak} bytes for {spec!r}"
    if isinstance(out, Exception):
        message = str(out)
        assert message.startswith("ranks") and "\n" not in message and len(message) < 400
    else:
        assert out == sorted(set(out)) and 0 <= out[0] and out[-1] <= max_rank


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(RANK_SPECS.filter(lambda s: isinstance(s, str)),
                      st.builds(lambda a, b, c: f"{a}:{b}:{c}", HUGE, HUGE, HUGE)))
def test_cli_ranks_are_one_line_or_a_plan_in_bounded_memory(spec, tmp_path_factory):
    import contextlib
    import io

    from rankcore import cli
    out = tmp_path_factory.mktemp("ranks") / "s.csv"

    def main(ranks: str) -> int:
        try:
            return cli.main(["spectrum", "--model", "cifar_resnet20", "--data", "cifar10",
                             f"--ranks={ranks}", "--dry-run", "--out", str(out)])
        except SystemExit as e:  # argparse's own refusals
            return e.code

    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        main("0:8")                                      # warm: imports and plugins
        status, peak = _peak_bytes(lambda: main(spec))
    assert peak < 8 << 20, f"{peak} bytes for --ranks={spec!r}"
    if status == 0:
        assert std.getvalue().count("would run") == 2
    else:
        assert status == 2 and len(err.getvalue().strip().splitlines()) == 1
        assert "--ranks" in err.getvalue()


def test_the_issues_huge_rank_specs_fail_fast_under_a_memory_limit():
    """Before: range(0, 10**12) was OOM-killed at 20 GB, --ranks 0:400000000 a MemoryError
    traceback, 0:10**20 an OverflowError one. Here each runs under a 1 GiB data limit."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (1 << 30, 1 << 30))

    import rankcore
    repo = str(__import__("pathlib").Path(rankcore.__file__).resolve().parents[1])
    env = {**__import__("os").environ, "PYTHONPATH": repo}
    code = ("from rankcore.rank import parse_ranks\ntry:\n parse_ranks(range(0, 10**12), 224)\n"
            "except ValueError as e:\n print(e)")
    proc = subprocess.run([sys.executable, "-c", code], preexec_fn=limit, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "max 999999999999" in proc.stdout, proc.stderr[-2000:]
    for ranks in ("0:400000000", "0:" + "1" + "0" * 20):
        proc = subprocess.run([sys.executable, "-m", "rankcore", "spectrum", "--model",
                               "cifar_resnet20", "--data", "cifar10", "--ranks", ranks,
                               "--dry-run", "--out", "x.csv"], preexec_fn=limit, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(
            f"rankcore spectrum: error: --ranks='{ranks}': every rank must lie in [0, 32]")
