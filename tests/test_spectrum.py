"""Rank spectrum (Algorithm 1): against a plain per-rank loop, resumed, distributed, errors."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rankcore.rank import low_rank
from rankcore.rank import parse_ranks
from rankcore.spectrum import rank_spectrum, summary, top_predictions

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


def test_top_predictions_matches_softmax():
    model, (x, _) = toy_model(), toy_data()
    probs, idx = top_predictions(model, x[:3], k=5)
    p = model(x[:3]).softmax(-1).detach()
    np.testing.assert_allclose(probs, p.sort(-1, descending=True).values[:, :5], rtol=1e-12)
    assert (p.gather(1, idx) == probs).all()


# ---------------------------------------------------------------------------- resume

def test_resume_after_interruption_gives_the_same_table(tmp_path):
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
_AKAMASTER = Path(__file__).resolve().parents[2] / "shared" / "models" / "cifar10-resnet-akamaster"


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


def test_load_model_rejects_an_empty_spec():
    from rankcore.spectrum import load_model

    with pytest.raises(ValueError, match="spec="):
        load_model("  ")
