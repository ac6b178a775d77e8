"""Chapter 00's Table 1: streaming evaluation against a direct float reference, skipped
rows for unloadable weights, verdict rules, depth order, generated summary."""
from __future__ import annotations

import dataclasses
import pickle

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rankcore import data, models  # noqa: E402
from rankcore.book import ch00_setup as ch00  # noqa: E402
from rankcore.models import registry  # noqa: E402


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A data root with a 40-image CIFAR-10 test batch in torchvision's pickle format."""
    monkeypatch.setenv("RANKCORE_MODELS", str(tmp_path / "no-models"))
    monkeypatch.setenv("RANKCORE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 3 * 32 * 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=40).tolist()
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": images, "labels": labels, "batch_label": "testing batch 1 of 1",
                     "filenames": [f"{i}.png" for i in range(40)]}, f, protocol=2)
    return tmp_path / "data", images.reshape(40, 3, 32, 32), torch.tensor(labels)


def _net_file(folder, name="resnet20-12fca82f.th", seed=0):
    torch.manual_seed(seed)
    net = models.create("cifar_resnet20").net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict()}, folder / name)
    return net


def test_table_measures_with_streaming_and_skips_unloadable(cifar_root, tmp_path, monkeypatch):
    root, images, labels = cifar_root
    net = _net_file(tmp_path / "w")

    def whole_set_in_memory(*args, **kwargs):
        raise AssertionError("chapter 00 must stream (data.dataset), not data.load")
    monkeypatch.setattr(data, "load", whole_set_in_memory)
    # the published digest would refuse this random file: first as is (a skipped row) ...
    table = ch00.clean_accuracy_table(["cifar_resnet20", "cifar_resnet32", "resnet50"],
                                      weights_dirs=[tmp_path / "w"], root=root,
                                      batch_size=16, workers=0, device="cpu", progress=False)
    assert list(table.columns) == ch00.COLUMNS
    r20 = table.set_index("model").loc["cifar_resnet20"]
    assert r20["present"] and np.isnan(r20["measured top-1"])
    assert r20["skipped"].startswith("CorruptCheckpointError") and "SHA-256" in r20["skipped"]
    assert not table.set_index("model").loc["resnet50", "present"]
    # ... then as the user's own weights (no published digest): measured
    cfg = dataclasses.replace(models.get_cfg("cifar_resnet20"), sha256=None)
    monkeypatch.setitem(registry._REGISTRY, "cifar_resnet20", cfg)
    table = ch00.clean_accuracy_table(["cifar_resnet20"], weights_dirs=[tmp_path / "w"],
                                      root=root, cifar_n=30, batch_size=7, workers=0,
                                      device="cpu", progress=False)
    row = table.iloc[0]
    keep = np.sort(torch.randperm(40, generator=torch.Generator().manual_seed(0))[:30].numpy())
    x = torch.from_numpy(images[keep]).double() / 255  # independent float64 reference
    mean = torch.tensor(cfg.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float64).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = net.double()((x - mean) / std).argmax(1)
    expected = float((pred == labels[keep]).double().mean())
    assert row["images"] == 30 and row["evaluated on"] == "cifar10"
    assert row["measured top-1"] == pytest.approx(expected, abs=1 / 30 + 1e-9)
    assert row["difference"] == pytest.approx(row["measured top-1"] - cfg.published_top1)


def test_verdicts_and_depth_order(tmp_path):
    table = pd.DataFrame([
        {"model": "cifar_resnet20", "evaluated on": "cifar10", "images": 100,
         "measured top-1": 0.91, "published top-1": 0.9173, "how to get": "", "skipped": ""},
        {"model": "cifar_resnet32", "evaluated on": "cifar10", "images": 100,
         "measured top-1": 0.85, "published top-1": 0.9263, "how to get": "", "skipped": ""},
        {"model": "vgg19", "evaluated on": "", "images": 0, "measured top-1": np.nan,
         "published top-1": 0.72376, "how to get": "download it", "skipped": ""},
        {"model": "resnet50", "evaluated on": "", "images": 0, "measured top-1": np.nan,
         "published top-1": 0.7613, "how to get": "", "skipped": "WeightsMismatchError: x"}])
    table["difference"] = table["measured top-1"] - table["published top-1"]
    v = ch00.table1_verdicts(table, root=tmp_path)  # no proxy data under tmp_path
    assert v["verdict"].tolist() == ["reproduced", "differs", "needs GPU or data",
                                     "needs GPU or data"]
    assert v["note"].iloc[2] == "download it" and v["note"].iloc[3].startswith("Weights")
    assert ch00.depth_order(table) == ([20, 32], [32, 20], 100)
    assert ch00.depth_order(table.iloc[2:]) is None
    pct = ch00.percent(table)
    assert pct["measured top-1 (%)"].iloc[0] == 91.0 and "measured top-1" not in pct


def test_summary_and_scores_come_from_the_table(tmp_path):
    table = pd.DataFrame([
        {"model": "efficientnet_lite0", "dataset": "imagenet", "training": "natural",
         "source": "embedded", "present": True, "evaluated on": "imagenet-val", "images": 16,
         "measured top-1": 0.8125, "published top-1": 0.751, "how to get": "", "skipped": ""},
        {"model": "vgg19", "dataset": "imagenet", "training": "natural",
         "source": "torchvision", "present": False, "evaluated on": "", "images": 0,
         "measured top-1": np.nan, "published top-1": 0.72376, "how to get": "online",
         "skipped": ""}])
    table["difference"] = table["measured top-1"] - table["published top-1"]
    v = ch00.table1_verdicts(table, root=tmp_path)
    text = ch00.summary_markdown(table, v, None, "smoke")
    assert "1 of 2 models" in text and "81.25% on 16 imagenet-val" in text
    assert "+6.15 points" in text and "differs: 1" in text

    class FakeResults:
        scores = []

        def score(self, *args, **kwargs):
            self.scores.append((args, kwargs))
    res = FakeResults()
    ch00.record_scores(res, table, v, ([20, 32], [20, 32], 50))
    assert res.scores[0][0][2:4] == (75.1, 81.25) and res.scores[1][0][3] == "absent"
    assert res.scores[2][0][4] == "same trend"
    fig = ch00.plot_accuracy(table, "smoke")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["efficientnet_lite0"]
