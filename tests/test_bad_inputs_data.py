"""Issue 14 for rankcore.data: every bad input gives ValueError/TypeError naming the argument
(or the file and line), never a silent wrong answer and never another exception."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rankcore import data


def _imagenet_folder(root: Path, lines: list[str], n_images: int = 3) -> Path:
    """``root/imagenet-val-1300`` with ``n_images`` small PNGs and ``labels.txt`` = lines."""
    folder = root / "imagenet-val-1300"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        f = folder / "images" / f"{i}.png"
        if not f.exists():
            Image.fromarray(np.full((40, 48, 3), 40 * i, np.uint8)).save(f)
    (folder / "labels.txt").write_text("".join(line + "\n" for line in lines))
    return folder


@pytest.fixture
def imagenet(tmp_path) -> Path:
    _imagenet_folder(tmp_path, [f"images/{i}.png, {i}" for i in range(3)])
    return tmp_path


def _tiny_model():
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(3, 1000))


# ---------------------------------------------------------------------------- argument rows

# (call, error type, text the message must contain)
ARGUMENT_ROWS = [
    (lambda r: data.load("cifar100", root=r), ValueError, "cifar100"),
    (lambda r: data.load(None, root=r), ValueError, "None"),
    (lambda r: data.load("samples", split="validation"), ValueError, "split='validation'"),
    (lambda r: data.load("samples", split="train"), ValueError, "split='train'"),
    (lambda r: data.load("samples", n=0), ValueError, "n=0"),
    (lambda r: data.load("samples", n=-2), ValueError, "n=-2"),
    (lambda r: data.load("samples", n=2.5), ValueError, "n=2.5"),
    (lambda r: data.load("samples", n=True), ValueError, "n=True"),
    (lambda r: data.load("samples", n=11), ValueError, "n=11"),
    (lambda r: data.load("samples", size=0), ValueError, "size=0"),
    (lambda r: data.load("samples", size=32.0), ValueError, "size=32.0"),
    (lambda r: data.load("samples", size=True), ValueError, "size=True"),
    (lambda r: data.load("samples", seed=1.5), TypeError, "seed=1.5"),
    (lambda r: data.load("samples", interpolation="nearest"), ValueError, "interpolation"),
    (lambda r: data.load("imagenet-val", root=r, size=224, resize=200), ValueError, "resize=200"),
    (lambda r: data.load("imagenet-val", root=r, resize=256.0), ValueError, "resize=256.0"),
    (lambda r: data.load("imagenet-val", root=r, split="train"), ValueError, "split='train'"),
    (lambda r: data.load("imagenet", root=r, split="train"), FileNotFoundError, "train"),
    (lambda r: data.dataset("nope", root=r), ValueError, "nope"),
    (lambda r: data.dataset("samples", split="train"), ValueError, "split='train'"),
    (lambda r: data.loader(data.dataset("samples"), batch_size=0), ValueError, "batch_size=0"),
    (lambda r: data.loader(data.dataset("samples"), batch_size=2.0), ValueError, "batch_size"),
    (lambda r: data.loader(data.dataset("samples"), workers=-1), ValueError, "workers=-1"),
    (lambda r: data.loader(data.dataset("samples"), workers=1.5), ValueError, "workers=1.5"),
    (lambda r: data.evaluate(_tiny_model(), data.dataset("imagenet-val", root=r, size=16),
                             topk=(0,), progress=False), ValueError, "topk"),
    (lambda r: data.evaluate(_tiny_model(), data.dataset("samples", n=2, size=16),
                             progress=False), ValueError, "labels outside"),
    (lambda r: data.class_names("mnist"), ValueError, "dataset='mnist'"),
    (lambda r: data.load("cifar10", root=5), TypeError, "root=5"),
    (lambda r: data.dataset("imagenet-val", root=["a"]), TypeError, "root=['a']"),
    (lambda r: data.dataset("samples")[10], IndexError, "index 10"),
]


@pytest.mark.parametrize("call, error, text", ARGUMENT_ROWS,
                         ids=[f"row{i}-{row[2][:20]}" for i, row in enumerate(ARGUMENT_ROWS)])
def test_bad_argument(imagenet, call, error, text):
    with pytest.raises(error) as e:
        call(imagenet)
    assert text in str(e.value)


# ---------------------------------------------------------------------------- label-file rows

# (labels.txt lines, line number the message must name, what it must say)
LABEL_ROWS = [
    (["images/0.png, 1", "images/1.png, 5000"], 2, "label 5000 is outside"),
    (["images/0.png, -3"], 1, "label -3 is outside"),
    (["images/0.png, 1000"], 1, "label 1000 is outside"),
    (["images/0.png, 1", "images/1.png, 2", "images/0.png, 3"], 3, "listed twice (first on line 1)"),
    (["images/0.png, 1", "images/./0.png, 1"], 2, "listed twice"),
    (["images/0.png, 3.7"], 1, "expected '<file>, <class index>'"),
    (["images/0.png"], 1, "expected"),
    (["images/0.png, seven"], 1, "expected"),
]


@pytest.mark.parametrize("lines, line_no, text", LABEL_ROWS,
                         ids=[f"labels{i}" for i in range(len(LABEL_ROWS))])
def test_bad_labels_txt_names_file_and_line(tmp_path, lines, line_no, text):
    folder = _imagenet_folder(tmp_path, lines)
    for call in (lambda: data.load("imagenet-val", root=tmp_path, progress=False),
                 lambda: data.dataset("imagenet-val", root=tmp_path)):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert f"{folder / 'labels.txt'}, line {line_no}" in msg and text in msg


def test_bad_val_txt_names_file_and_line(tmp_path):
    folder = tmp_path / "imagenet-val"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")
    (folder / "val.txt").write_text("a.png 7\na.png 1200\n")
    with pytest.raises(ValueError, match=r"val\.txt, line 2: label 1200 is outside"):
        data.load("imagenet-val", root=tmp_path)


def test_unknown_synset_folder(tmp_path):
    folder = tmp_path / "imagenet-val" / "n99999999"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.png")
    with pytest.raises(ValueError, match="n99999999.*not ImageNet-1k synsets"):
        data.load("imagenet-val", root=tmp_path)


def test_missing_image_file_named(tmp_path):
    _imagenet_folder(tmp_path, ["images/0.png, 1", "images/gone.png, 2"])
    with pytest.raises(ValueError, match=r"unreadable image .*gone\.png"):
        data.load("imagenet-val", root=tmp_path, progress=False)


def test_corrupt_cifar_labels_rejected(tmp_path):
    import pickle
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.parent.mkdir()
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 12]},
                                   protocol=2))
    with pytest.raises(ValueError, match=r"labels \[12\] outside 0..9"):
        data.load("cifar10", root=tmp_path, download=False)


# ---------------------------------------------------------------------------- issue 28 item 5

def test_empty_labels_txt_is_refused_not_a_0_image_set(tmp_path):
    folder = _imagenet_folder(tmp_path, [])
    for call in (lambda: data.load("imagenet-val", root=tmp_path, progress=False),
                 lambda: data.dataset("imagenet-val", root=tmp_path)):
        with pytest.raises(ValueError, match="lists no images") as e:
            call()
        assert str(folder / "labels.txt") in str(e.value)


def test_empty_cifar_class_folder_is_refused(tmp_path):
    copy = tmp_path / "cifar10-jpeg" / "test"
    for i, cls in enumerate(data.CIFAR10_CLASSES):
        (copy / cls).mkdir(parents=True)
        if cls != "frog":  # an empty class: its images lost in a copy
            Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(copy / cls / "0.png")
    with pytest.raises(FileNotFoundError, match="'frog' hold no images"):
        data.load("cifar10", root=tmp_path, download=False, progress=False)


# ---------------------------------------------------------------------------- properties

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.lists(st.integers(-2000, 3000), min_size=1, max_size=3))
def test_any_integer_labels_load_or_name_the_line(tmp_path, labels):
    """Labels in 0..999 load unchanged; any other integer raises naming its line."""
    root = tmp_path / f"r{abs(hash(tuple(labels)))}"
    folder = _imagenet_folder(root, [f"images/{i}.png, {v}" for i, v in enumerate(labels)])
    bad = [i for i, v in enumerate(labels) if not 0 <= v < 1000]
    if bad:
        with pytest.raises(ValueError, match=rf"labels\.txt, line {bad[0] + 1}: label"):
            data.dataset("imagenet-val", root=root)
    else:
        ds = data.dataset("imagenet-val", root=root, size=16)
        assert ds.labels.tolist() == labels and str(folder) in data.find_imagenet(root).as_posix()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.one_of(st.integers(-4, 300), st.floats(0, 300), st.booleans(), st.none()),
       resize=st.one_of(st.integers(-4, 400), st.floats(0, 300), st.none()),
       interpolation=st.sampled_from(["bilinear", "bicubic", "nearest", ""]))
def test_any_preprocessing_works_or_names_the_argument(imagenet, size, resize, interpolation):
    try:
        ds = data.dataset("imagenet-val", root=imagenet, size=size, resize=resize,
                          interpolation=interpolation)
    except (ValueError, TypeError) as e:
        assert any(name in str(e) for name in ("size", "resize", "interpolation")), str(e)
        return
    x, label = ds[0]
    s = size or 224
    assert x.dtype == torch.uint8 and x.shape == (3, s, s) and label == 0


# ---------------------------------------------------------------------------- ImageNet training

def _config(**kw):
    from rankcore.imagenet_training import imagenet_config
    return imagenet_config(**kw)


CONFIG_ROWS = [
    (dict(transform="low_rank"), "transform='low_rank'"),
    (dict(transform="mid_rank:5"), "transform='mid_rank:5'"),
    (dict(transform="low_rank:-1"), "transform='low_rank:-1'"),
    (dict(transform="low_rank:2.5"), "transform='low_rank:2.5'"),
    (dict(transform=5), "transform=5"),
    (dict(schedule="linear"), "schedule='linear'"),
    (dict(epochs=0), "epochs=0"),
    (dict(epochs=1.5), "epochs=1.5"),
    (dict(epochs=True), "epochs=True"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(crop=0), "crop=0"),
    (dict(n_train=0), "n_train=0"),
    (dict(n_test=2.0), "n_test=2.0"),
    (dict(step_epochs=0), "step_epochs=0"),
    (dict(warmup_epochs=-1), "warmup_epochs=-1"),
    (dict(lr=0), "lr=0"),
    (dict(lr=-0.1), "lr=-0.1"),
    (dict(lr=float("nan")), "lr=nan"),
    (dict(lr=True), "lr=True"),
    (dict(momentum=-0.1), "momentum=-0.1"),
    (dict(weight_decay=float("nan")), "weight_decay=nan"),
    (dict(val_resize=200), "val_resize=200"),
]


@pytest.mark.parametrize("fields, text", CONFIG_ROWS, ids=[r[1] for r in CONFIG_ROWS])
def test_bad_training_config(fields, text):
    # a value of the wrong type is a TypeError (TrainConfig's rule), a bad value a ValueError
    wrong_type = text in ("epochs=1.5", "epochs=True", "n_test=2.0", "lr=True")
    with pytest.raises(TypeError if wrong_type else ValueError) as e:
        _config(**fields)
    assert text in str(e.value)


def test_bad_training_arguments(tmp_path):
    from rankcore import imagenet_training as it
    from rankcore import train as T
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1000))
    items = torch.utils.data.TensorDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
                                           torch.zeros(4, dtype=torch.long))
    rows = [
        (lambda: T.train(model, items, None, "config"), TypeError, "config must be"),
        (lambda: T.train("model", items, None, _config()), TypeError, "model must be"),
        (lambda: T.train(model, items, None, _config(batch_size=2), stop_after=0), ValueError,
         "stop_after=0"),
        (lambda: T.train(model, items, None, _config(batch_size=8)), ValueError, "batch_size=8"),
        (lambda: T.train(model, items, None, _config(batch_size=2, adv="fgsm-rs")), ValueError,
         "needs a labelled test_data"),
        (lambda: T.load_checkpoint(tmp_path / "absent.pt"), ValueError, "absent.pt"),
        (lambda: T.TrainConfig(crop=32), ValueError, "dataset='imagenet'"),
    ]
    for call, error, text in rows:
        with pytest.raises(error) as e:
            call()
        assert text in str(e.value)
    with pytest.raises(SystemExit) as e:
        it.main(["--out", str(tmp_path), "--epochs", "many"])
    assert e.value.code == 2


def _devkit(root: Path, ground_truth: str, images=("ILSVRC2012_val_00000001.png",)) -> Path:
    """An ILSVRC2012 devkit layout: val JPEGs, meta.mat (id i -> i-th wnid), ground truth."""
    from scipy.io import savemat

    from rankcore import data_files
    folder = root / "ILSVRC2012" / "val"
    folder.mkdir(parents=True)
    for name in images:
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / name)
    synsets = np.zeros(1000, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    synsets["ILSVRC2012_ID"] = list(range(1, 1001))
    synsets["WNID"] = data_files.synsets()
    savemat(folder.parent / "meta.mat", {"synsets": synsets})
    gt = folder.parent / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text(ground_truth)
    return gt


@pytest.mark.parametrize("truth, images, text", [
    ("3\n1001\n", None, r"ground_truth\.txt, line 2: '1001' is not a devkit class id"),
    ("3\nseven\n", None, r"line 2: 'seven' is not a devkit class id"),
    ("3\n", ("ILSVRC2012_val_00000001.png", "ILSVRC2012_val_00000002.png"),
     r"ILSVRC2012_val_00000002\.png has no line in .*ground_truth\.txt \(1 labels\)"),
    ("3\n", ("ILSVRC2012_val_x.png",), r"ILSVRC2012_val_x\.png has no line"),
])
def test_bad_devkit_ground_truth(tmp_path, truth, images, text):
    _devkit(tmp_path, truth, images or ("ILSVRC2012_val_00000001.png",))
    with pytest.raises(ValueError, match=text):
        data.load("imagenet-val", root=tmp_path, progress=False)


def test_devkit_ground_truth_loads(tmp_path):
    _devkit(tmp_path, "3\n1000\n", ("ILSVRC2012_val_00000002.png", "ILSVRC2012_val_00000001.png"))
    assert data.load("imagenet-val", root=tmp_path, size=16).labels.tolist() == [2, 999]
