"""rankcore.models: registry, architectures, checkpoint formats, safe loading, accuracy."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torchvision

from rankcore import checkpoints, data, models

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = REPO.parent / "shared" / "models" / "cifar10-resnet-akamaster"
REAL = Path(os.environ["RANKCORE_DATA"]) if os.environ.get("RANKCORE_DATA") else None
needs_akamaster = pytest.mark.skipif(
    not (SHARED_MODELS / "resnet20-12fca82f.th").exists(),
    reason=f"needs the akamaster checkpoints in {SHARED_MODELS}")
# CI unpacks ../shared/data into $RANKCORE_DATA; locally these skip when it is absent.
needs_cifar = pytest.mark.skipif(REAL is None or data.find_cifar10() is None,
                                 reason="needs $RANKCORE_DATA with CIFAR-10")
needs_imagenet = pytest.mark.skipif(REAL is None or data.find_imagenet() is None,
                                    reason="needs $RANKCORE_DATA with ImageNet validation images")

_PICKLE_RAN = []


def _mark(message: str) -> None:
    _PICKLE_RAN.append(message)


class _Payload:
    """A pickled object whose unpickling calls a function (a visible side effect)."""

    def __reduce__(self):
        return (_mark, ("code ran",))


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every buffer."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ---------------------------------------------------------------------------- registry

def test_registry_entries_are_complete():
    table = models.registry_table()
    assert set(table["model"]) == set(models.names()) == set(models.available())
    for name in models.names():
        cfg = models.get_cfg(name)
        assert cfg.dataset in ("imagenet", "cifar10")
        assert cfg.input_size[1:] == ((32, 32) if cfg.dataset == "cifar10"
                                      else cfg.input_size[1:])
        if cfg.in_paper or cfg.weights != "none":
            assert cfg.url and cfg.file and cfg.published_top1 is not None, name
    paper = {n for n in models.names() if models.get_cfg(n).in_paper}
    assert {"resnet50", "vgg19", "densenet201", "googlenet", "robust_resnet50_imagenet_linf4",
            "robust_resnet50_cifar_linf8", "resnet50_cifar"} <= paper


def test_unknown_model_lists_known_and_close():
    with pytest.raises(ValueError) as e:
        models.load("resnet_50")
    assert "Did you mean" in str(e.value) and "resnet50" in str(e.value)
    assert "efficientnet_lite0" in str(e.value)


def test_untrained_model_has_no_weights():
    with pytest.raises(ValueError, match="create\\('cifar_resnet8'\\)"):
        models.load("cifar_resnet8")


# ---------------------------------------------------------------------------- architectures

@pytest.mark.parametrize("name, params", [
    # akamaster's README: 0.27M, 0.46M, 0.66M, 0.85M parameters
    ("cifar_resnet20", 0.27e6), ("cifar_resnet32", 0.46e6),
    ("cifar_resnet44", 0.66e6), ("cifar_resnet56", 0.85e6)])
def test_cifar_resnet_sizes(name, params):
    n = sum(p.numel() for p in models.create(name).parameters())
    assert abs(n - params) / params < 0.01


def test_wrapper_normalises_and_reports():
    model = models.create("cifar_resnet8").eval()
    assert model.input_size == (3, 32, 32) and model.dataset == "cifar10"
    assert model.num_classes == 10 and model.source == "untrained"
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x), model.net((x - mean) / std))
    assert models.create("cifar_resnet8", num_classes=3)(x).shape == (2, 3)


def test_robustness_cifar_resnet50_architecture():
    """Same size as the robustness library's (and kuangliu's) CIFAR ResNet-50: 23,520,842."""
    net = models.create("resnet50_cifar").net
    assert sum(p.numel() for p in net.parameters()) == 23_520_842
    assert {"conv1.weight", "layer1.0.shortcut.0.weight", "linear.weight"} <= set(
        net.state_dict())
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


# ---------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("name, shape", [("robust_resnet50_cifar_linf8", (2, 3, 32, 32)),
                                         ("robust_resnet50_imagenet_linf4", (1, 3, 64, 64))])
def test_robustness_format_round_trip(tmp_path, name, shape):
    source = models.create(name).eval()
    _randomise_bn(source.net)
    source.mean.copy_(torch.tensor([0.3, 0.4, 0.5]).view(1, 3, 1, 1))  # the file's own
    source.std.copy_(torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
    path = models.save_robustness_format(source, tmp_path / "ckpt.pt")
    blob = torch.load(path, weights_only=True)
    assert {"model", "epoch", "optimizer", "schedule"} <= set(blob)
    keys = set(blob["model"])
    assert "module.normalizer.new_mean" in keys and "module.attacker.normalize.new_std" in keys
    assert any(k.startswith("module.attacker.model.") for k in keys)
    loaded = models.load(name, weights=path, device="cpu")
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    assert torch.equal(loaded.mean, source.mean) and loaded.source == str(path)


def test_arbitrary_pickle_refused_by_default(tmp_path):
    state = models.create("cifar_resnet8").state_dict()
    net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": net_state, "payload": _Payload()}, path)
    _PICKLE_RAN.clear()
    with pytest.raises(checkpoints.UnsafeCheckpointError) as e:
        models.load("cifar_resnet8", weights=path, device="cpu")
    assert str(path) in str(e.value) and "trust=True" in str(e.value)
    assert _PICKLE_RAN == []  # refused before anything ran
    model = models.load("cifar_resnet8", weights=path, device="cpu", trust=True)
    assert _PICKLE_RAN == ["code ran"] and not model.training


def test_mismatched_keys_listed(tmp_path):
    path = tmp_path / "r8.pt"
    torch.save(models.create("cifar_resnet8").net.state_dict(), path)
    with pytest.raises(checkpoints.CheckpointMismatchError) as e:
        models.load("cifar_resnet20", weights=path, device="cpu")
    msg = str(e.value)
    assert str(path) in msg and "missing keys (" in msg and "layer1.1.conv1.weight" in msg


def test_module_prefix_stripped_only_when_everywhere(tmp_path):
    net = models.create("cifar_resnet8").net
    _randomise_bn(net)
    path = tmp_path / "dp.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
                "best_prec1": 12.5}, path)
    loaded = models.load("cifar_resnet8", weights=path, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net.eval()(x))
    with pytest.raises(checkpoints.CheckpointMismatchError, match="start with 'module.'"):
        checkpoints.strip_prefix({"module.a": 1, "b": 2}, "module.")


def test_wrapper_state_dict_round_trip(tmp_path):
    """A trained wrapper's own state dict (net.* plus mean/std) loads back identically."""
    model = models.create("cifar_resnet8").eval()
    _randomise_bn(model.net)
    model.mean.fill_(0.5)
    path = tmp_path / "trained.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    loaded = models.load("cifar_resnet8", weights=path, device="cpu")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_googlenet_torchvision_file_with_aux_heads(tmp_path):
    """torchvision's GoogLeNet files carry aux-head keys and expect transform_input=True."""
    ref = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True,
                                       init_weights=False).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), path)
    model = models.load("googlenet", weights=path, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref((x - mean) / std))


def test_offline_torchvision_error_says_how(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        models.load("vgg19", device="cpu")
    assert "vgg19-dcbb9e9d.pth" in str(e.value) and "weights=PATH" in str(e.value)
    with pytest.raises(FileNotFoundError, match="imagenet_linf_4.pt"):
        models.load("robust_resnet50_imagenet_linf4", device="cpu", download=False)


# ---------------------------------------------------------------------------- real weights

def test_efficientnet_lite0_recognises_the_cat():
    """Offline check of the embedded mapping: the chelsea photo is a tabby / tiger cat."""
    model = models.load("efficientnet_lite0", device="cpu")
    assert model.input_size == (3, 224, 224) and model.source.endswith(".pth")
    loaded = data.load("samples", n=None, size=224, interpolation="bicubic")
    x = loaded.images[loaded.names.index("chelsea")][None]
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert set(top5) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.mark.slow
@pytest.mark.data
@needs_imagenet
def test_efficientnet_lite0_top1_on_shared_imagenet():
    model = models.load("efficientnet_lite0", device="cpu")
    x, y = data.load("imagenet-val", progress=False, **model.data_config)
    assert len(y) == 1300
    assert models.accuracy(model, x, y, batch_size=50) >= 78.0  # about 82-85% here


@pytest.mark.slow
@pytest.mark.data
@needs_akamaster
@needs_cifar
def test_akamaster_resnet20_top1_on_shared_cifar10():
    model = models.load("cifar_resnet20", weights=SHARED_MODELS, device="cpu")
    assert model.source == str(SHARED_MODELS / "resnet20-12fca82f.th")
    assert checkpoints.sha256(model.source) == models.get_cfg("cifar_resnet20").sha256
    x, y = data.load("cifar10", progress=False)
    assert models.accuracy(model, x, y, batch_size=500) >= 78.0  # about 81% on the JPEGs


def test_table1_verdicts_and_depth_order(tmp_path):
    import pandas as pd
    table = pd.DataFrame([
        {"model": "cifar_resnet20", "evaluated on": "cifar10", "images": 100,
         "measured top-1 (%)": 91.0, "published top-1 (%)": 91.73, "how to get": ""},
        {"model": "cifar_resnet32", "evaluated on": "cifar10", "images": 100,
         "measured top-1 (%)": 85.0, "published top-1 (%)": 92.63, "how to get": ""},
        {"model": "vgg19", "evaluated on": "", "images": 0, "measured top-1 (%)": None,
         "published top-1 (%)": 72.38, "how to get": "download it"}])
    table["difference"] = table["measured top-1 (%)"] - table["published top-1 (%)"]
    v = models.table1_verdicts(table, root=tmp_path)  # no proxy data under tmp_path
    assert v["verdict"].tolist() == ["reproduced", "differs", "needs GPU or data"]
    assert v["note"].iloc[2] == "download it"
    assert models.depth_order(table) == ([20, 32], [32, 20], 100)
