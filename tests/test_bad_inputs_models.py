"""Issue 14 for rankcore.models: each bad input gives a clear error naming the argument."""
from __future__ import annotations

import dataclasses
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankcore import models
from rankcore.models import weights


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_MODELS", str(tmp_path / "models-cache"))
    monkeypatch.setenv("RANKCORE_DATA", str(tmp_path / "data"))


@pytest.fixture
def files(tmp_path):
    text = tmp_path / "notes.th"
    text.write_text("not weights\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"text": text, "empty": empty, "missing": tmp_path / "nope" / "r20.th"}


# (call, error type, text the message must contain); ``f`` is the fixture's files
ROWS = [
    ("load-name-int", lambda f: models.load(123), TypeError, "name=123"),
    ("load-name-unknown", lambda f: models.load("resnet_51"), ValueError, "name='resnet_51'"),
    ("load-timm-unknown", lambda f: models.load("timm:no_such_net"), ValueError,
     "name='timm:no_such_net'"),
    ("load-prefix-unknown", lambda f: models.load("keras:resnet50"), ValueError,
     "name='keras:resnet50'"),
    ("load-untrained", lambda f: models.load("cifar_resnet8"), ValueError,
     "name='cifar_resnet8'"),
    ("load-weights-int", lambda f: models.load("cifar_resnet20", weights=5), TypeError,
     "weights=5"),
    ("load-weights-missing", lambda f: models.load("cifar_resnet20", weights=f["missing"]),
     FileNotFoundError, "weights="),
    ("load-weights-empty-dir", lambda f: models.load("cifar_resnet20", weights=f["empty"]),
     FileNotFoundError, "weights="),
    ("load-weights-text", lambda f: models.load("cifar_resnet20", weights=f["text"]),
     ValueError, "is not a checkpoint"),
    ("load-trust-str", lambda f: models.load("efficientnet_lite0", trust="yes"), TypeError,
     "trust='yes'"),
    ("load-download-str", lambda f: models.load("efficientnet_lite0", download="no"),
     TypeError, "download='no'"),
    ("load-device-absent", lambda f: models.load("efficientnet_lite0", device="cuda:99"),
     ValueError, "device='cuda:99'"),
    ("load-device-float", lambda f: models.load("efficientnet_lite0", device=1.5), TypeError,
     "device"),
    ("load-offline-no-download", lambda f: models.load("cifar_resnet20", download=False),
     FileNotFoundError, "resnet20-12fca82f.th"),
    ("create-num-classes-0", lambda f: models.create("cifar_resnet8", num_classes=0),
     ValueError, "num_classes=0"),
    ("create-num-classes-bool", lambda f: models.create("cifar_resnet8", num_classes=True),
     ValueError, "num_classes=True"),
    ("create-num-classes-float", lambda f: models.create("cifar_resnet8", num_classes=2.5),
     ValueError, "num_classes=2.5"),
    ("get-cfg-none", lambda f: models.get_cfg(None), TypeError, "name=None"),
    ("register-twice", lambda f: models.register("cifar_resnet8", lambda num_classes: None,
                                                 dataset="cifar10"), ValueError, "cifar_resnet8"),
    ("register-colon", lambda f: models.register("a:b", lambda num_classes: None,
                                                 dataset="cifar10"), ValueError, "name='a:b'"),
    ("cfg-percent-accuracy", lambda f: dataclasses.replace(
        models.get_cfg("resnet50"), published_top1=76.13), ValueError, "published_top1=76.13"),
    ("cfg-weights-kind", lambda f: dataclasses.replace(
        models.get_cfg("resnet50"), weights="s3"), ValueError, "weights='s3'"),
    ("load-file-trust-int", lambda f: weights.load_file(f["text"], trust=1), TypeError,
     "trust=1"),
    ("load-file-missing", lambda f: weights.load_file(f["missing"]), FileNotFoundError,
     str("nope")),
]


@pytest.mark.parametrize("call, error, text", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input(files, call, error, text):
    with pytest.raises(error) as e:
        call(files)
    assert text in str(e.value)


def test_text_weights_never_suggest_trust(files):
    with pytest.raises(models.CorruptCheckpointError) as e:
        models.load("cifar_resnet20", weights=files["text"])
    assert "trust" not in str(e.value) and str(files["text"]) in str(e.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(alphabet=string.ascii_letters + string.digits + ":._-", max_size=30),
                 st.integers(), st.floats(allow_nan=True), st.none(), st.lists(st.integers())))
def test_any_name_resolves_or_names_the_argument(name):
    try:
        cfg = models.get_cfg(name)
    except (ValueError, TypeError) as e:
        assert "name" in str(e)
    else:
        assert isinstance(cfg, models.ModelCfg)


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(-3, 12), st.floats(-2, 12), st.booleans(), st.none(),
                 st.text(max_size=3)))
def test_any_num_classes_builds_or_names_the_argument(k):
    try:
        model = models.create("cifar_resnet8", num_classes=k)
    except (ValueError, TypeError) as e:
        assert "num_classes" in str(e)
    else:
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, k or 10)
