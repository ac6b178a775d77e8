"""rankcore.models: registry, architectures, checkpoint formats, timm/torchvision entries."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import torchvision

from rankcore import data, models
from rankcore.paths import data_root
from rankcore.torch_utils import accuracy, synchronize

REAL = Path(os.environ["RANKCORE_DATA"]) if os.environ.get("RANKCORE_DATA") else None
AKAMASTER = models.find_weights("cifar_resnet20")  # <data root>/models, $RANKCORE_MODELS
needs_akamaster = pytest.mark.skipif(
    AKAMASTER is None, reason=f"needs the akamaster checkpoints under {data_root() / 'models'}")
needs_cifar = pytest.mark.skipif(REAL is None or data.find_cifar10() is None,
                                 reason="needs $RANKCORE_DATA with CIFAR-10")
needs_imagenet = pytest.mark.skipif(REAL is None or data.find_imagenet() is None,
                                    reason="needs $RANKCORE_DATA with ImageNet validation images")


@pytest.fixture(autouse=True)
def _no_download_folder(tmp_path, monkeypatch):
    """Downloads and searches never touch the user's ~/.cache in these tests."""
    monkeypatch.setenv("RANKCORE_MODELS", str(tmp_path / "rankcore-models"))


def _randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode outputs depend on every buffer."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _normalise(x, mean, std):
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------- registry

def test_registry_entries_are_complete():
    table = models.registry_table()
    assert set(table["model"]) == set(models.names()) == set(models.available())
    assert {"model", "source", "input", "dataset", "here", "published top-1",
            "published source"} <= set(table.columns)
    for name in models.names():
        cfg = models.get_cfg(name)
        assert cfg.dataset in ("imagenet", "cifar10")
        if cfg.dataset == "cifar10":
            assert cfg.input_size == (3, 32, 32)
        if cfg.in_paper or cfg.weights not in ("none",):
            assert cfg.url and cfg.file, name
            assert 0.4 < cfg.published_top1 < 1.0 and cfg.published_source, name
    paper = {n for n in models.names() if models.get_cfg(n).in_paper}
    assert {"resnet50", "vgg19", "densenet201", "googlenet", "robust_resnet50_imagenet_linf4",
            "robust_resnet50_cifar_linf8", "resnet50_cifar"} <= paper
    assert "cifar_resnet14" not in models.names()  # dead entry deleted


def test_published_accuracies_are_the_robustness_readme_values():
    """Issue 11 point 5: the README's 62.42 / 47.91, not Salman et al.'s 63.86 / 54.53."""
    linf4 = models.get_cfg("robust_resnet50_imagenet_linf4")
    linf8 = models.get_cfg("robust_resnet50_imagenet_linf8")
    assert (linf4.published_top1, linf8.published_top1) == (0.6242, 0.4791)
    assert "MadryLab/robustness" in linf4.published_source


def test_torchvision_accuracies_and_files_are_torchvisions_own():
    """Each torchvision entry quotes the installed torchvision's metadata and file."""
    for name in models.names():
        cfg = models.get_cfg(name)
        if cfg.weights != "torchvision":
            continue
        enum, member = cfg.extra["tv"].split(".")
        w = getattr(torchvision.models, enum)[member]
        assert cfg.published_top1 == pytest.approx(w.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100)
        assert cfg.url == w.url and cfg.file == w.url.rsplit("/", 1)[-1]


def test_digests_recorded_where_known():
    """Full SHA-256 for akamaster and the embedded files; torchvision's name-borne prefix."""
    for name in models.names():
        cfg = models.get_cfg(name)
        if cfg.fmt in ("akamaster", "efficientnet_lite"):
            assert re.fullmatch(r"[0-9a-f]{64}", cfg.sha256), name
        if cfg.weights == "torchvision":
            assert cfg.sha256 and cfg.file.split("-")[-1].startswith(cfg.sha256), name


def test_unknown_model_lists_known_and_close():
    with pytest.raises(ValueError) as e:
        models.load("resnet_50")
    assert "Did you mean" in str(e.value) and "resnet50" in str(e.value)
    assert "efficientnet_lite0" in str(e.value) and "name=" in str(e.value)


def test_untrained_model_has_no_weights():
    with pytest.raises(ValueError, match="create\\('cifar_resnet8'\\)"):
        models.load("cifar_resnet8")


def test_embedded_file_matches_its_digest():
    path = models.find_weights("efficientnet_lite0")
    assert path is not None
    assert models.weights.sha256(path) == models.get_cfg("efficientnet_lite0").sha256


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
    torch.testing.assert_close(model(x), model.net(_normalise(x, models.IMAGENET_MEAN,
                                                              models.IMAGENET_STD)))
    assert models.create("cifar_resnet8", num_classes=3)(x).shape == (2, 3)


def test_robustness_cifar_resnet50_architecture():
    """Same size as the robustness library's (and kuangliu's) CIFAR ResNet-50: 23,520,842."""
    net = models.create("resnet50_cifar").net
    assert sum(p.numel() for p in net.parameters()) == 23_520_842
    assert {"conv1.weight", "layer1.0.shortcut.0.weight", "linear.weight"} <= set(
        net.state_dict())
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


# ---------------------------------------------------------------------------- formats

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


def test_mismatched_keys_listed(tmp_path):
    path = tmp_path / "r8.pt"
    torch.save(models.create("cifar_resnet8").net.state_dict(), path)
    with pytest.raises(models.WeightsMismatchError) as e:
        models.load("cifar_resnet20", weights=path, device="cpu")
    msg = str(e.value)
    assert str(path) in msg and "missing keys (" in msg and "layer1.1.conv1.weight" in msg
    assert isinstance(e.value, models.WeightsError)


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
    with pytest.raises(models.WeightsMismatchError, match="start with 'module.'"):
        models.weights.strip_prefix({"module.a": 1, "b": 2}, "module.")


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
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(_normalise(x, models.IMAGENET_MEAN,
                                                            models.IMAGENET_STD)))


def _legacy_densenet_key(key: str) -> str:
    """torchvision's published DenseNet naming: denselayerN.norm1 -> denselayerN.norm.1."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def test_densenet_legacy_keys(tmp_path):
    """Issue 11 point 1: a DenseNet-201 file in torchvision's legacy naming loads."""
    ref = torchvision.models.densenet201(weights=None).eval()
    _randomise_bn(ref)
    # the published file predates BatchNorm's num_batches_tracked
    legacy = {_legacy_densenet_key(k): v for k, v in ref.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy  # the file's naming
    assert sum(k != _legacy_densenet_key(k) for k in ref.state_dict()) > 900
    path = tmp_path / "densenet201-legacy.pth"
    torch.save(legacy, path)
    model = models.load("densenet201", weights=path, device="cpu")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(_normalise(x, models.IMAGENET_MEAN,
                                                            models.IMAGENET_STD)))
    assert models.formats.densenet_legacy_keys({"a.norm.1.weight": 1}) == {"a.norm.1.weight": 1}


# ---------------------------------------------------------------------------- timm, torchvision

def test_torchvision_architecture_with_weights_file(tmp_path):
    ref = torchvision.models.resnet18(weights=None).eval()
    _randomise_bn(ref)
    path = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), path)
    model = models.load("torchvision:resnet18", weights=path, device="cpu")
    cfg = models.get_cfg("torchvision:resnet18")
    assert model.input_size == (3, 224, 224) and model.data_kwargs["resize"] == 256
    assert cfg.published_top1 == pytest.approx(0.69758) and model.source == str(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(_normalise(x, cfg.mean, cfg.std)))


def test_timm_architecture_uses_its_pretrained_config(tmp_path):
    import safetensors.torch
    import timm
    ref = timm.create_model("resnet18", pretrained=False).eval()
    _randomise_bn(ref)
    pc = ref.pretrained_cfg
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(ref.state_dict(), str(path))
    model = models.load("timm:resnet18", weights=path, device="cpu")
    assert model.input_size == tuple(pc["input_size"])
    assert model.data_kwargs == {"size": pc["input_size"][-1],
                                 "resize": round(pc["input_size"][-1] / pc["crop_pct"]),
                                 "interpolation": pc["interpolation"]}
    # data_config speaks timm's language: the keys and values of timm's own resolver.
    timm_config = timm.data.resolve_data_config({}, model=ref)
    assert {k: model.data_config[k] for k in timm_config} == \
        {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in timm_config.items()}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(_normalise(x, pc["mean"], pc["std"])))


def test_external_names_are_checked():
    with pytest.raises(ValueError, match="name='timm:resnet_18'.*timm:resnet18"):
        models.get_cfg("timm:resnet_18")
    with pytest.raises(ValueError, match="unknown prefix 'keras'"):
        models.get_cfg("keras:resnet18")


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
    x, y = data.load("imagenet-val", progress=False, **model.data_kwargs)
    assert len(y) == 1300
    assert accuracy(model, x, y) >= 0.78  # about 82-85% here


@pytest.mark.slow
@pytest.mark.data
@needs_akamaster
@needs_cifar
def test_akamaster_resnet20_top1_on_shared_cifar10():
    model = models.load("cifar_resnet20", device="cpu")
    assert model.source == str(AKAMASTER)
    assert models.weights.sha256(model.source) == models.get_cfg("cifar_resnet20").sha256
    x, y = data.load("cifar10", progress=False)
    assert accuracy(model, x, y) >= 0.78  # about 81% on the JPEGs


@pytest.mark.parametrize("device, expected", [("cpu", []), ("cuda", [torch.device("cuda")]),
                                              (torch.device("cuda:1"), [torch.device("cuda:1")])])
def test_synchronize_waits_on_the_named_gpu_and_is_a_no_op_on_the_cpu(monkeypatch, device, expected):
    # Recorded instead of run, so the dispatch is checked without a GPU.
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(d))
    synchronize(device)
    assert calls == expected


def test_whose_weights_every_entry_says():
    from rankcore.models.registry import weights_by
    table = models.registry_table()
    by = dict(zip(table["model"], table["weights by"]))
    assert by["cifar_resnet20"] == "akamaster/pytorch_resnet_cifar10"
    assert by["robust_resnet50_imagenet_linf4"] == "MadryLab/robustness"
    assert by["airbench94"] == "untrained" and by["resnet50"] == "torchvision"
    # same architecture name as timm's, other weights: said in the registry, not left implied
    assert "tf_efficientnet_lite0.in1k" in weights_by(models.get_cfg("efficientnet_lite0"))
    import timm
    assert "tf_efficientnet_lite0.in1k" in timm.list_pretrained("tf_efficientnet_lite0*")
