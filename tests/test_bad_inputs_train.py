"""Issue 14 for rankcore.train and rankcore.book.runs: every bad input gives ValueError or
TypeError naming the argument, never a silent wrong answer and never another exception."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from rankcore import train as T
from rankcore.book import runs


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))


def _data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


_CFG = dict(arch="test-net", epochs=1, batch_size=16, schedule="onecycle", lr=0.05)

# TrainConfig fields: (changes, error type, argument name in the message)
CONFIG_ROWS = [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=2.5), TypeError, "epochs"),
    (dict(epochs="3"), TypeError, "epochs"),
    (dict(epochs=True), TypeError, "epochs"),
    (dict(batch_size=-4), ValueError, "batch_size"),
    (dict(n_train=0), ValueError, "n_train"),
    (dict(n_test=1.5), TypeError, "n_test"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(momentum=float("inf")), ValueError, "momentum"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
    (dict(warmup=1.5), ValueError, "warmup"),
    (dict(crop_padding=-1), ValueError, "crop_padding"),
    (dict(crop_padding=2.0), TypeError, "crop_padding"),
    (dict(pad_mode="wrap"), ValueError, "pad_mode"),
    (dict(schedule="linear"), ValueError, "schedule"),
    (dict(transform="low_rank"), ValueError, "transform"),
    (dict(transform="low_rank:3.5"), ValueError, "transform"),
    (dict(transform="mid_rank:3"), ValueError, "transform"),
    (dict(transform=5), ValueError, "transform"),
    (dict(transform="low_rank:999"), ValueError, "low_rank:999.*K=999 exceeds.*32 x 32"),  # issue 28
    (dict(transform="high_rank:33"), ValueError, "high_rank:33"),
    (dict(adv="fgsm"), ValueError, "adv"),
    (dict(adv_norm="l1"), ValueError, "adv_norm"),
    (dict(adv="fgsm-rs", adv_norm="l2"), ValueError, "adv_norm"),
    (dict(adv_eps=-8 / 255), ValueError, "adv_eps"),
    (dict(adv_steps=0), ValueError, "adv_steps"),
    (dict(guard_n=0), ValueError, "guard_n"),
    (dict(amp="yes"), TypeError, "amp"),
]


@pytest.mark.parametrize("changes,error,arg", CONFIG_ROWS, ids=lambda v: str(v)[:40])
def test_train_config_rows(changes, error, arg):
    with pytest.raises(error, match=arg):
        T.TrainConfig(**{**_CFG, **changes})


def test_unknown_field_in_replace():
    with pytest.raises(TypeError, match="unknown TrainConfig fields \\['epoch'\\]"):
        T.TrainConfig().replace(epoch=3)


x, y = _data()
# train(model, train_data, test_data, config, **kw): (arguments, error, argument name)
TRAIN_ROWS = [
    (dict(model="resnet"), TypeError, "model"),
    (dict(config=dict(epochs=1)), TypeError, "config"),
    (dict(train_data=x), TypeError, "train_data"),
    (dict(train_data=(x, y, y)), TypeError, "train_data"),
    (dict(train_data=(x[0], y)), ValueError, "train_data"),
    (dict(train_data=(x.numpy(), y)), ValueError, "train_data"),
    (dict(train_data=(x.long(), y)), ValueError, "train_data"),
    (dict(train_data=(x[:0], y[:0])), ValueError, "train_data"),
    (dict(train_data=(x.clone().fill_(float("nan")), y)), ValueError, "train_data"),
    (dict(train_data=(x, y[:5])), ValueError, "train_data"),
    (dict(train_data=(x, y.float())), ValueError, "train_data"),
    (dict(train_data=(x, y > 4)), ValueError, "train_data"),
    (dict(train_data=(x, y - 20)), ValueError, "train_data"),
    (dict(train_data=(x * 255, y)), ValueError, "train_data"),
    (dict(train_data=(x - 0.5, y)), ValueError, "train_data"),
    (dict(model=T.build_model(T.TrainConfig(arch="airbench_cpu")),
          train_data=(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 10]))), ValueError,
     "train_data labels must be < the model's 10 classes"),
    (dict(test_data=(x, y[:3])), ValueError, "test_data"),
    (dict(test_data=[x]), TypeError, "test_data"),
    (dict(config=T.TrainConfig(**{**_CFG, "dataset": "other", "transform": "low_rank:9"})),
     ValueError, "low_rank:9.*8 x 8 images of train_data"),
    (dict(stop_after=0), ValueError, "stop_after"),
    (dict(stop_after=1.5), TypeError, "stop_after"),
    (dict(config=T.TrainConfig(**{**_CFG, "adv": "fgsm-rs"})), ValueError, "guard_n"),
]


@pytest.mark.parametrize("changes,error,arg", TRAIN_ROWS, ids=lambda v: str(v)[:40])
def test_train_rows(changes, error, arg):
    kw = dict(model=_net(), train_data=(x, y), test_data=None, config=T.TrainConfig(**_CFG),
              progress=False)
    kw.update(changes)
    with pytest.raises(error, match=arg):
        T.train(**kw)


# The book's runs: (call, error, argument name)
RUNS_ROWS = [
    (lambda: runs.preset("natral", "smoke"), ValueError, "name"),
    (lambda: runs.preset(None, "smoke"), TypeError, "name"),
    (lambda: runs.preset("natural", "nope"), ValueError, "profile"),
    (lambda: runs.preset("natural", 3), TypeError, "profile"),
    (lambda: runs.preset("natural", "smoke", family="vgg"), ValueError, "family"),
    (lambda: runs.preset("natural", "smoke", epochs=0), ValueError, "epochs"),
    (lambda: runs.cached("natural"), TypeError, "config"),
    (lambda: runs.cached(runs.preset("natural", "smoke"), device="tpu"), ValueError, "device"),
    (lambda: runs.load_model(3, "smoke"), ValueError, "spec"),
    (lambda: runs.load_model("train:", "smoke"), ValueError, "name"),
    (lambda: runs.train_command([], "smoke", dry_run=True), ValueError, "names"),
    (lambda: runs.train_command(["natural"], "smoke", sets=["lr"], dry_run=True), ValueError,
     "--set"),
    (lambda: runs.train_command(["natural"], "smoke", sets=["lr=x"], dry_run=True), TypeError,
     "lr"),
    (lambda: T.transformed(torch.rand(2, 3, 4, 4), "low_rank:x"), ValueError, "transform"),
    (lambda: T.transformed(torch.rand(3, 4, 4), "low_rank:1"), ValueError, "x"),
    (lambda: T.build_model("airbench_cpu"), TypeError, "config"),
]


@pytest.mark.parametrize("call,error,arg", RUNS_ROWS, ids=[str(i) for i in range(len(RUNS_ROWS))])
def test_runs_rows(call, error, arg):
    with pytest.raises(error, match=arg):
        call()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(0, 6), c=st.integers(1, 4), h=st.integers(1, 9),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.float64, torch.uint8,
                              torch.int64, torch.bool]),
       label_dtype=st.sampled_from([torch.int64, torch.int32, torch.float32]),
       scale=st.sampled_from([1.0, 255.0, -1.0]))
def test_random_training_data_works_or_names_the_argument(n, c, h, dtype, label_dtype, scale):
    xs = (torch.rand(n, c, h, h) * scale).to(dtype)
    ys = torch.randint(0, 10, (n,)).to(label_dtype)
    net = nn.Sequential(nn.Conv2d(c, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(2, 10))
    try:
        out = T.train(net, (xs, ys), None, T.TrainConfig(**_CFG, augment=False), progress=False)
    except (ValueError, TypeError) as e:
        assert "train_data" in str(e)
    else:
        assert len(out.train_history) == 1
