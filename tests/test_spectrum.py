"""Rank spectrum (Algorithm 1): against a plain per-rank loop, resumed, distributed, errors."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rankcore.rank import low_rank
from rankcore.rank import parse_ranks
import rankcore.spectrum as spectrum
from rankcore import torch_utils
from rankcore.spectrum import rank_spectrum, summary

SIDE, N, CLASSES = 12, 21, 7


def toy_model(seed: int = 0) -> nn.Module:
    """A small float64 CNN without pooling, so its predictions depend on fine detail."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * (SIDE - 2) ** 2, CLASSES)).double().eval()


def toy_data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, 3, SIDE, SIDE, generator=g, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (N,), generator=g)


def reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
              ranks: list[int]) -> pd.DataFrame:
    """Algorithm 1 as written: for each rank, truncate every image and classify the batch."""
    with torch.no_grad():
        p_full = model(x).softmax(-1)
        full = p_full.argmax(-1).numpy()
        rows = []
        for k in ranks:
            p = model(low_rank(x, k, clamp=True)).softmax(-1).numpy()
            pred = p.argmax(-1)
            row = {"rank": k, "agreement": np.mean(pred == full), "n": len(x)}
            if y is None:
                row.update(top1=np.nan, top5=np.nan, mean_true_prob=np.nan)
            else:
                yn = y.numpy()
                top5 = np.argsort(-p, axis=-1)[:, :5]
                row.update(top1=np.mean(pred == yn), top5=np.mean((top5 == yn[:, None]).any(1)),
                           mean_true_prob=np.mean(p[np.arange(len(yn)), yn]))
            rows.append(row)
    return pd.DataFrame(rows)[["rank", "agreement", "top1", "top5", "mean_true_prob", "n"]]


def assert_same(df: pd.DataFrame, ref: pd.DataFrame, exact_prob: bool = False) -> None:
    assert list(df.columns) == list(ref.columns)
    for col in ("rank", "agreement", "top1", "top5", "n"):
        np.testing.assert_array_equal(df[col].to_numpy(), ref[col].to_numpy(), err_msg=col)
    rtol = 0 if exact_prob else 1e-9
    np.testing.assert_allclose(df["mean_true_prob"], ref["mean_true_prob"], rtol=rtol)


# ---------------------------------------------------------------------------- correctness

def test_matches_plain_loop_over_ranks():
    model, (x, y) = toy_model(), toy_data()
    df = rank_spectrum(model, x, y, batch_size=16, block=4, progress=False)
    ref = reference(model, x, y, list(range(SIDE + 1)))
    assert_same(df, ref)
    # The curve is not trivial: rank 0 (a black image) disagrees with full rank somewhere.
    assert df["agreement"].iloc[0] < 1 and df["agreement"].iloc[-1] == 1


def test_block_and_batch_size_do_not_change_the_table():
    model, (x, y) = toy_model(), toy_data()
    a = rank_spectrum(model, x, y, ranks="0:12:3", batch_size=7, block=2, progress=False)
    b = rank_spectrum(model, x, y, ranks=[0, 3, 6, 9, 12], batch_size=64, block=21, progress=False)
    assert_same(a, b)


def test_without_labels_and_data_set_input():
    model, (x, y) = toy_model(), toy_data()
    ranks = [0, 2, 5, SIDE]
    no_labels = rank_spectrum(model, x, ranks=ranks, progress=False)
    assert_same(no_labels, reference(model, x, None, ranks))
    assert no_labels[["top1", "top5", "mean_true_prob"]].isna().all().all()
    # A data set of (image, label) items gives the table of the tensors.
    items = [(x[i], int(y[i])) for i in range(N)]
    assert_same(rank_spectrum(model, items, ranks=ranks, progress=False),
                reference(model, x, y, ranks))
    # So does the (images, labels) pair rankcore.data.load returns.
    assert_same(rank_spectrum(model, (x, y), ranks=ranks, progress=False),
                reference(model, x, y, ranks))


def test_float32_model_agrees_with_reference_on_predictions():
    model, (x, y) = toy_model().float(), toy_data()
    x = x.float()
    df = rank_spectrum(model, x, y, ranks=[0, 1, 4, SIDE], progress=False)
    ref = reference(model, x, y, [0, 1, 4, SIDE])
    np.testing.assert_allclose(df["mean_true_prob"], ref["mean_true_prob"], rtol=1e-4)
    assert df["agreement"].iloc[-1] == 1.0


# ---------------------------------------------------------------------------- resume

@pytest.fixture
def save_every_block(monkeypatch):
    """Checkpoint after every block (the default writes at most every 30 s)."""
    monkeypatch.setattr(spectrum, "_SAVE_SECONDS", 0.0)


def test_resume_after_interruption_gives_the_same_table(tmp_path, save_every_block):
    model, (x, y) = toy_model(), toy_data()
    kwargs = dict(ranks="0:12:2", batch_size=8, block=4, progress=False)
    calls = {"n": 0}

    def count(module, inputs, output):
        calls["n"] += 1
        if calls.get("stop") and calls["n"] >= calls["stop"]:
            raise KeyboardInterrupt

    hook = model.register_forward_hook(count)
    whole = rank_spectrum(model, x, y, **kwargs)
    whole_calls, calls["n"] = calls["n"], 0
    rank_spectrum(model, x[:8], y[:8], **kwargs)  # the first two blocks of 4 images
    two_blocks = calls["n"]
    calls.update(n=0, stop=two_blocks + 2)        # a kill in the middle of the third block
    ckpt = tmp_path / "spectrum.pt"
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
    assert ckpt.exists()
    calls.update(n=0, stop=None)
    resumed = rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
    hook.remove()
    assert_same(resumed, whole, exact_prob=True)
    # Only the unfinished blocks ran again.
    assert calls["n"] == whole_calls - two_blocks
    # A finished checkpoint answers without running the model at all.
    calls["n"] = 0
    hook = model.register_forward_hook(count)
    assert_same(rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs), whole, exact_prob=True)
    hook.remove()
    assert calls["n"] == 0


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model, (x, y) = toy_model(), toy_data()
    ckpt = tmp_path / "s.pt"
    rank_spectrum(model, x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="different run.*ranks"):
        rank_spectrum(model, x, y, ranks=[0, 7], checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="different run.*model"):
        rank_spectrum(toy_model(seed=5), x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)


def test_checkpoint_of_an_older_rankcore_is_recomputed_with_a_warning(tmp_path):
    model, (x, y) = toy_model(), toy_data()
    ckpt = tmp_path / "s.pt"
    whole = rank_spectrum(model, x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=False)
    state["fingerprint"]["version"] -= 1
    for block in state["blocks"].values():
        block["pred"] = torch.zeros_like(block["pred"])      # stale answers must not be reused
    torch.save(state, ckpt)
    with pytest.warns(RuntimeWarning, match="another rankcore .*recomputing"):
        again = rank_spectrum(model, x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)
    assert_same(again, whole, exact_prob=True)
    assert torch.load(ckpt, weights_only=False)["fingerprint"]["version"] == spectrum.CHECKPOINT_VERSION


# ---------------------------------------------------------------------------- distributed

_WORKER = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_spectrum import toy_model, toy_data
    from rankcore.spectrum import rank_spectrum
    model, (x, y) = toy_model(), toy_data()
    df = rank_spectrum(model, x, y, ranks="0:12:2", batch_size=8, block=4, progress=False,
                       checkpoint={ckpt!r})
    if dist.get_rank() == 0:
        df.to_pickle({out!r})
    dist.destroy_process_group()
""")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_torchrun_equals_single_process(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not installed")
    script, out = tmp_path / "worker.py", tmp_path / "df.pkl"
    script.write_text(_WORKER.format(tests=str(Path(__file__).parent), out=str(out),
                                     ckpt=str(tmp_path / "ck.pt")))
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script)],
                          env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, (x, y) = toy_model(), toy_data()
    single = rank_spectrum(model, x, y, ranks="0:12:2", batch_size=8, block=4, progress=False)
    assert_same(pd.read_pickle(out), single, exact_prob=True)
    # Each process checkpointed its own blocks; process 0 wrote the complete file.
    assert (tmp_path / "ck.pt.part0of2").exists() and (tmp_path / "ck.pt.part1of2").exists()
    assert (tmp_path / "ck.pt").exists()


# ---------------------------------------------------------------------------- errors

def test_input_size_mismatch_is_a_clear_error():
    model, (x, y) = toy_model(), toy_data()
    model.input_size = (3, 16, 16)
    with pytest.raises(ValueError, match=r"\(3, 12, 12\).*input_size \(3, 16, 16\)"):
        rank_spectrum(model, x, y, progress=False)


def test_empty_data_is_a_clear_error():
    with pytest.raises(ValueError, match="images is empty"):
        rank_spectrum(toy_model(), torch.zeros(0, 3, SIDE, SIDE, dtype=torch.float64),
                      progress=False)
    with pytest.raises(ValueError, match="images is empty"):
        rank_spectrum(toy_model(), [], progress=False)


@pytest.mark.parametrize("ranks", [[-1, 3], [0, SIDE + 1], "0:13", "5:max:0"])
def test_ranks_outside_range_are_clear_errors(ranks):
    model, (x, y) = toy_model(), toy_data()
    with pytest.raises(ValueError, match=r"ranks="):
        rank_spectrum(model, x, y, ranks=ranks, progress=False)


def test_images_outside_unit_range_and_bad_labels_are_errors():
    model, (x, y) = toy_model(), toy_data()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rank_spectrum(model, x * 255, y, progress=False)
    with pytest.raises(ValueError, match="labels must lie in"):
        rank_spectrum(model, x, y + CLASSES, ranks=[0], progress=False)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        rank_spectrum(model, x, y[:3], progress=False)


# ---------------------------------------------------------------------------- ranks, summary

def test_parse_ranks_forms():
    assert parse_ranks("1:224:4", 224) == list(range(1, 225, 4))
    assert parse_ranks("all", 3) == [0, 1, 2, 3]
    assert parse_ranks(None, 2) == [0, 1, 2]
    assert parse_ranks("10,20,50", 224) == [10, 20, 50]
    assert parse_ranks("0:4:2, 8:max:8, max", 32) == [0, 2, 4, 8, 16, 24, 32]
    assert parse_ranks([5, 1, 5], 8) == [1, 5]
    for bad in ("a", "1:2:3:4", "", "3:1"):
        with pytest.raises(ValueError, match="ranks="):
            parse_ranks(bad, 8)


def test_summary_of_a_known_curve():
    # agreement = rank / 10 on ranks 0..10: area 0.5, crosses 0.5 at 5 and 0.9 at 9.
    df = pd.DataFrame({"rank": range(11), "agreement": [k / 10 for k in range(11)],
                       "top1": [0.0] * 11})
    s = summary(df)
    assert s["rank_50"] == 5 and s["rank_90"] == 9 and s["full"] == 1.0
    assert math.isclose(s["auc"], 0.5)
    assert math.isnan(summary(df, "top1")["rank_50"])
    # Uneven rank steps are weighted by their width (trapezoid rule).
    uneven = pd.DataFrame({"rank": [0, 1, 10], "agreement": [0.0, 1.0, 1.0]})
    assert math.isclose(summary(uneven)["auc"], (0.5 + 9) / 10)
    with pytest.raises(ValueError, match="column="):
        summary(df, "top3")


# ---------------------------------------------------------------------------- command line

_REAL = Path(os.environ["RANKCORE_DATA"]) if os.environ.get("RANKCORE_DATA") else None
# where the library looks for it (a worktree has no ../shared beside it)
_AKAMASTER = (_REAL or Path("data")) / "models" / "cifar10-resnet-akamaster"


@pytest.mark.data
@pytest.mark.skipif(_REAL is None or not (_REAL / "cifar10-jpeg" / "test").is_dir()
                    or not (_AKAMASTER / "resnet20-12fca82f.th").exists(),
                    reason="needs $RANKCORE_DATA with cifar10-jpeg/ and the akamaster ResNet-20")
def test_command_line_writes_the_library_table(tmp_path, capsys):
    from rankcore import data, models
    from rankcore.cli import main

    out = tmp_path / "r20.csv"
    args = ["spectrum", "--model", "cifar_resnet20", "--data", "cifar10", "--n", "8",
            "--ranks", "0:32:16", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    assert "agreement 50% at rank" in capsys.readouterr().out
    model = models.load("cifar_resnet20", device="cpu")
    x, y = data.load("cifar10", n=8, progress=False)
    expected = rank_spectrum(model, x, y, ranks=[0, 16, 32], progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_exact=False, rtol=1e-6)


def test_command_line_rejects_bad_arguments(capsys):
    from rankcore.cli import main

    with pytest.raises(SystemExit):
        main(["spectrum", "--data", "cifar10", "--out", "x.csv"])  # --model missing
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["nonsense"])


# ---------------------------------------------------------------------------- chapter helpers

def test_gap_saturation_and_summary_table():
    from rankcore.spectrum import gap, saturation_rank, summary_table

    natural = pd.DataFrame({"rank": [0, 5, 10, 32], "agreement": [0.1, 0.4, 0.9, 1.0],
                            "top1": [0.1, 0.3, 0.76, 0.8], "n": 10})
    robust = pd.DataFrame({"rank": [0, 10, 32], "agreement": [0.3, 1.0, 1.0],
                           "top1": [0.4, 0.6, 0.7], "n": 10})
    g = gap(robust, natural)
    assert list(g["rank"]) == [0, 10, 32]                       # ranks both evaluated
    np.testing.assert_allclose(g["gap"], [0.3, -0.16, -0.1])
    assert saturation_rank(natural) == 10                       # 0.76 >= 0.95 * 0.8
    t = summary_table({"natural": natural, "no labels": natural.assign(top1=np.nan)})
    assert t.loc[0, "top1_saturation"] == 10 and t.loc[0, "agreement_rank_90"] == 10
    assert math.isnan(t.loc[1, "top1_full"]) and t.loc[1, "agreement_rank_50"] == 10
    with pytest.raises(ValueError, match="no evaluated rank"):
        gap(robust[robust["rank"] == 0], natural[natural["rank"] == 5])


# ---------------------------------------------------------------------------- issue 14: nothing stale

def test_edited_labels_are_recomputed_not_resumed(tmp_path, save_every_block):
    model, (x, y) = toy_model(), toy_data()
    ckpt = tmp_path / "s.pt"
    kwargs = dict(ranks=[0, 3, SIDE], block=4, progress=False)
    rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
    y2 = y.clone()
    y2[5] = (y2[5] + 1) % CLASSES                   # one label edited: one block changes
    with pytest.warns(RuntimeWarning, match="1 finished block"):
        resumed = rank_spectrum(model, x, y2, checkpoint=ckpt, **kwargs)
    assert_same(resumed, reference(model, x, y2, [0, 3, SIDE]))
    x2 = x.clone()
    x2[-1] = x2[-1].flip(-1)                        # an image edited
    with pytest.warns(RuntimeWarning, match="changed"):
        resumed = rank_spectrum(model, x2, y2, checkpoint=ckpt, **kwargs)
    assert_same(resumed, reference(model, x2, y2, [0, 3, SIDE]))


def test_checkpoint_key_covers_weights_and_settings(tmp_path):
    model, (x, y) = toy_model(), toy_data()
    ckpt = tmp_path / "s.pt"
    rank_spectrum(model, x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)
    with torch.no_grad():                           # the same parameter sums, other weights
        w = model[0].weight
        w.copy_(w.flip(0))
    with pytest.raises(ValueError, match="different run.*model"):
        rank_spectrum(model, x, y, ranks=[0, 6], checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="different run.*batch_size"):
        rank_spectrum(toy_model(), x, y, ranks=[0, 6], batch_size=5, checkpoint=ckpt,
                      progress=False)


@pytest.mark.parametrize("point", ["inside a block", "between blocks", "while writing"])
def test_killed_run_never_reports_a_wrong_table(tmp_path, save_every_block, monkeypatch, point):
    """A kill at three points; the next run resumes and gives the uninterrupted table."""
    from rankcore import _io

    model, (x, y) = toy_model(), toy_data()
    kwargs = dict(ranks="0:12:3", batch_size=8, block=4, progress=False)
    whole = rank_spectrum(model, x, y, **kwargs)
    ckpt = tmp_path / "k.pt"
    state = {"calls": 0, "saves": 0}

    def on_forward(module, inputs, output):
        state["calls"] += 1
        if point == "inside a block" and state["calls"] == 7:
            raise KeyboardInterrupt

    real_save = _io.torch_save

    def save(obj, path):
        state["saves"] += 1
        if point == "between blocks" and state["saves"] == 3:
            real_save(obj, path)
            raise KeyboardInterrupt
        if point == "while writing" and state["saves"] == 3:
            real_save(obj, path)                 # a torn write, as if without the atomic rename
            Path(path).write_bytes(Path(path).read_bytes()[:600])
            raise KeyboardInterrupt
        return real_save(obj, path)

    hook = model.register_forward_hook(on_forward)
    monkeypatch.setattr(_io, "torch_save", save)
    with pytest.raises(KeyboardInterrupt):
        rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
    hook.remove()
    monkeypatch.setattr(_io, "torch_save", real_save)
    if point == "while writing":  # the torn file is kept aside, never overwritten
        torn = ckpt.read_bytes()
        with pytest.warns(RuntimeWarning, match="damaged.*moved it to .*k.pt.corrupt-"):
            resumed = rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
        assert [f.read_bytes() for f in tmp_path.glob("k.pt.corrupt-*")] == [torn]
    else:
        resumed = rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs)
    assert_same(resumed, whole, exact_prob=True)
    assert_same(rank_spectrum(model, x, y, checkpoint=ckpt, **kwargs), whole, exact_prob=True)


def test_checkpoint_with_code_is_never_run(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    ckpt = tmp_path / "p.pt"
    torch.save({"fingerprint": {}, "blocks": {0: Payload()}}, ckpt, pickle_module=pickle)
    before = ckpt.read_bytes()
    model, (x, y) = toy_model(), toy_data()
    # not a file rankcore wrote: refused, naming it, and left as it was (issue 28 item 2)
    with pytest.raises(ValueError, match="p.pt.*not a rank spectrum checkpoint"):
        rank_spectrum(model, x, y, ranks=[0, SIDE], checkpoint=ckpt, progress=False)
    assert not marker.exists() and ckpt.read_bytes() == before


# ---------------------------------------------------------------------------- issue 14: modes, inputs

def test_training_mode_model_is_evaluated_in_eval_mode_and_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * (SIDE - 2) ** 2, CLASSES)).double()
    x, y = toy_data()
    with torch.no_grad():                           # non-trivial running statistics
        model.train()(x)
    model[1].eval()                                 # the caller's mixed modes
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    df = rank_spectrum(model, x, y, ranks=[0, 4, SIDE], batch_size=3, progress=False)
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert_same(df, reference(model.eval(), x, y, [0, 4, SIDE]))


def test_uint8_inputs_data_sets_loaders_and_grad_inputs_agree():
    model, (x, y) = toy_model().float(), toy_data()
    x8 = (x * 255).round().to(torch.uint8)
    xf = x8.float() / 255
    ranks = [0, 5, SIDE]
    ref = rank_spectrum(model, xf, y, ranks=ranks, progress=False)
    items = [(x8[i], int(y[i])) for i in range(N)]
    loader = torch.utils.data.DataLoader(items, batch_size=5, num_workers=0)
    for images in (x8, items, loader, xf.clone().requires_grad_(True)):
        labels = None if isinstance(images, (list, torch.utils.data.DataLoader)) else y
        assert_same(rank_spectrum(model, images, labels, ranks=ranks, progress=False), ref,
                    exact_prob=True)


def test_overlapped_svd_gives_the_same_table():
    model, (x, y) = toy_model(), toy_data()
    a = rank_spectrum(model, x, y, ranks="0:12:2", block=4, progress=False, overlap=True)
    b = rank_spectrum(model, x, y, ranks="0:12:2", block=4, progress=False, overlap=False)
    assert_same(a, b, exact_prob=True)


def test_default_batch_size_and_throughput():
    assert spectrum.default_batch_size((3, 224, 224)) == 8
    assert spectrum.default_batch_size((3, 32, 32)) == 256
    assert spectrum.default_batch_size((3, 32, 32), "cuda") == 256
    model, (x, y) = toy_model(), toy_data()
    t = spectrum.throughput(model, x, ranks=[0, 6, SIDE])
    assert t["forward_passes"] == N * 3 and t["seconds"] > 0
    assert math.isclose(t["images_x_ranks_per_s"], N * 3 / t["seconds"])


# ---------------------------------------------------------------------------- intervals

def test_wilson_bounds_solve_the_score_equation():
    # The Wilson bounds are the two roots p of (phat - p)^2 = z^2 p (1 - p) / n.
    z = 1.959963984540054
    for k, n in ((0, 10), (3, 10), (10, 10), (437, 1000), (1, 10000)):
        lo, hi = spectrum.wilson_interval(k / n, n)
        for p in (float(lo), float(hi)):
            assert math.isclose((k / n - p) ** 2, z * z * p * (1 - p) / n, abs_tol=1e-12)
        assert lo <= k / n <= hi


def test_gap_interval_matches_newcombe_1998():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80 = 0.1,
    # hybrid score interval (method 10) 0.0524 to 0.3339.
    robust = pd.DataFrame({"rank": [1], "top1": [56 / 70], "n": [70]})
    natural = pd.DataFrame({"rank": [1], "top1": [48 / 80], "n": [80]})
    g = spectrum.gap(robust, natural)
    assert math.isclose(g["gap"].iloc[0], 0.2)
    np.testing.assert_allclose([g["gap_lo"].iloc[0], g["gap_hi"].iloc[0]], [0.0524, 0.3339],
                               atol=1e-4)


def test_with_intervals_adds_bounds_around_every_rate():
    model, (x, y) = toy_model(), toy_data()
    df = spectrum.with_intervals(rank_spectrum(model, x, y, ranks=[0, 4, SIDE], progress=False))
    for col in ("agreement", "top1", "top5"):
        assert (df[f"{col}_lo"] <= df[col]).all() and (df[col] <= df[f"{col}_hi"]).all()
    no_labels = spectrum.with_intervals(rank_spectrum(model, x, ranks=[0, SIDE], progress=False))
    assert no_labels["top1_lo"].isna().all() and no_labels["agreement_lo"].notna().all()


# ---------------------------------------------------------------------------- the GPU path, on CPU

def test_bf16_channels_last_and_overlap_path_runs_on_cpu():
    """The settings of the GPU workload (bf16 autocast, channels-last, SVD on a thread):
    the same ranks, full-rank agreement 1, and predictions close to float32's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, CLASSES)).eval()
    x, y = toy_data()
    x = x.float()
    fast = rank_spectrum(model, x, y, ranks="0:12:3", amp="bf16", channels_last=True,
                         overlap=True, progress=False)
    plain = rank_spectrum(model, x, y, ranks="0:12:3", progress=False)
    assert list(fast["rank"]) == list(plain["rank"]) and fast["agreement"].iloc[-1] == 1.0
    np.testing.assert_allclose(fast["mean_true_prob"], plain["mean_true_prob"], atol=0.02)


def test_channels_last_is_a_layout_not_a_setting(tmp_path):
    """Channels-last inputs (the default) give the float32 table of contiguous ones, and a
    checkpoint written in one layout resumes in the other: the layout does not key it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, CLASSES)).eval()
    x, y = toy_data()
    x = x.float()
    ckpt = tmp_path / "spectrum.pt"
    plain = rank_spectrum(model, x, y, ranks="0:12:3", channels_last=False, progress=False,
                          checkpoint=ckpt)
    default = rank_spectrum(model, x, y, ranks="0:12:3", progress=False)
    pd.testing.assert_frame_equal(default, plain, check_exact=False, rtol=1e-5)
    resumed = rank_spectrum(model, x, y, ranks="0:12:3", channels_last=True, progress=False,
                            checkpoint=ckpt)
    pd.testing.assert_frame_equal(resumed, plain)
    # a file from before the layout stopped keying the checkpoint still resumes
    from rankcore import _io
    from rankcore._spectrum_blocks import CHECKPOINT_TAG
    state = torch.load(ckpt, weights_only=False)
    state["fingerprint"]["channels_last"] = False
    _io.save_own({k: state[k] for k in ("fingerprint", "blocks")}, ckpt, CHECKPOINT_TAG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no "recomputing" warning either
        older = rank_spectrum(model, x, y, ranks="0:12:3", progress=False, checkpoint=ckpt)
    pd.testing.assert_frame_equal(older, plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults_match_cpu():
    model, (x, y) = toy_model().float(), toy_data()
    cpu = rank_spectrum(model, x.float(), y, ranks="0:12:4", progress=False)
    gpu = rank_spectrum(model.cuda(), x.float(), y, ranks="0:12:4", amp=None, progress=False)
    np.testing.assert_allclose(gpu["mean_true_prob"], cpu["mean_true_prob"], rtol=1e-4)
    # Images already on the GPU: no pinning (only CPU tensors can be pinned), SVD on the GPU
    resident = rank_spectrum(model, x.float().cuda(), y, ranks="0:12:4", amp=None, progress=False)
    np.testing.assert_allclose(resident["mean_true_prob"], cpu["mean_true_prob"], rtol=1e-4)


@pytest.mark.skipif(torch_utils._libc_function("malloc_trim") is None or not Path("/proc/self/statm").exists(),
                    reason="glibc and /proc only")
def test_trim_memory_returns_freed_heap_pages():
    # Run in a fresh process so the heap's state is this test's own.
    code = textwrap.dedent("""
        import ctypes, os
        from rankcore.torch_utils import trim_memory
        page = os.sysconf("SC_PAGE_SIZE")
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(64 * 1024) for _ in range(3000)]   # below the mmap threshold: heap
        for b in blocks:
            ctypes.memset(b, 1, 64 * 1024)                       # resident
        for b in blocks[:-1]:
            libc.free(b)                                         # the last one pins the heap top
        before = rss()
        trim_memory()
        print(before - rss())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 150   # ~187 MB were free but resident


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN or infinite"),
                                            (float("inf"), "NaN or infinite"),
                                            (-float("inf"), "NaN or infinite"),
                                            (-0.5, r"must lie in \[0, 1\].*-0.5"),
                                            (1.5, r"must lie in \[0, 1\].*1.5")])
def test_images_outside_the_unit_range_are_refused(value, message):
    model, (x, y) = toy_model(), toy_data()
    x = x.float().clone()
    x[-1, 1, 2, 3] = value                         # one pixel of the last image
    with pytest.raises(ValueError, match=message):
        rank_spectrum(model.float(), x, y, ranks=[1], progress=False)


_MMAPPED_BLOCKS = textwrap.dedent("""
    import ctypes, sys
    from rankcore import torch_utils
    if sys.argv[1] == "call":
        assert torch_utils.tune_allocator()
    libc = ctypes.CDLL("libc.so.6")
    class Info(ctypes.Structure):  # glibc's struct mallinfo2: ten size_t
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                   "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblks
    blocks = [libc.malloc(16 << 20) for _ in range(4)]   # the size of an ImageNet activation
    print(libc.mallinfo2().hblks - before)               # how many of them glibc mmapped
    for b in blocks:
        libc.free(b)
""")


@pytest.mark.skipif(torch_utils._libc_function("mallinfo2") is None, reason="glibc >= 2.33 only")
@pytest.mark.parametrize("how", ["none", "call", "environment"])
def test_tune_allocator_keeps_large_blocks_on_the_heap(how):
    env = {**os.environ, **(torch_utils.ALLOCATOR_ENV if how == "environment" else {})}
    out = subprocess.run([sys.executable, "-c", _MMAPPED_BLOCKS, how], env=env,
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) == (4 if how == "none" else 0)


def test_heap_trimmed_every_so_many_blocks_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(spectrum, "trim_memory", lambda: calls.append(1))
    model, (x, y) = toy_model(), toy_data()
    x, y = x.repeat(4, 1, 1, 1), y.repeat(4)              # 84 blocks of one image
    df = rank_spectrum(model, x, y, ranks=[1, SIDE], block=1, progress=False)
    assert len(calls) == len(x) // spectrum._TRIM_BLOCKS >= 2 and df["n"].iloc[0] == len(x)


def test_small_images_meet_the_model_in_full_batches_by_default():
    # Default blocks of small images hold a whole batch, so each rank of a block is one full
    # pass (the old 16-image blocks sent 20-image batches through in passes of 16); the
    # last block's one image goes through with all its 5 ranks in one pass.
    model, (x, y) = toy_model(), toy_data()
    sizes = []
    model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    df = rank_spectrum(model, x, y, ranks="0:12:3", batch_size=20, progress=False)
    assert sizes == [20] * 5 + [5]
    pd.testing.assert_frame_equal(df, rank_spectrum(model, x, y, ranks="0:12:3", batch_size=20,
                                                    block=3, progress=False))
    blocks = spectrum.eng.default_block
    assert blocks(20, (3, 224, 224)) == 16 and blocks(1024, (3, 32, 32)) == 784
