"""AutoAttack through torchattacks: at least as strong as PGD-20, exact on a linear model,
and the same input checks and mode handling as :func:`rankcore.attacks.pgd`."""
import contextlib
import functools
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rankcore import attacks

pytest.importorskip("torchattacks")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """APGD's many small steps run 10x slower with threads fighting over shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained in a second on 16 x 16 images whose class is set by block colours."""
    g = torch.Generator().manual_seed(1)
    coarse = torch.randn(384, 3, 2, 2, generator=g)
    x = (0.5 + 0.15 * coarse.repeat_interleave(8, 2).repeat_interleave(8, 3)
         + 0.05 * torch.randn(384, 3, 16, 16, generator=g)).clamp(0, 1)
    y = coarse.flatten(1).matmul(torch.randn(12, 4, generator=g)).argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                          nn.Flatten(), nn.Linear(8 * 16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        idx = torch.randint(0, 384, (128,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.6  # it learned the task
    return model, x[:64], y[:64]


def _correct(model, x, y) -> int:
    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


@pytest.mark.parametrize("norm, eps", [("linf", 4 / 255), ("l2", 0.25)])
def test_no_more_correct_than_pgd20(trained, norm, eps):
    """The fast version here; the standard one (with Square's 5,000 queries) below."""
    model, x, y = trained
    pgd_left = _correct(model, attacks.pgd(model, x, y, eps, steps=20, norm=norm), y)
    x_adv = attacks.autoattack(model, x, y, eps, norm=norm, version="fast")
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    size = ((x_adv - x).flatten(1).abs().amax(1) if norm == "linf"
            else (x_adv - x).flatten(1).norm(dim=1))
    assert (size <= eps * (1 + 1e-5) + 1e-7).all()
    left = _correct(model, x_adv, y)
    assert left <= pgd_left
    assert left < _correct(model, x, y)          # the attack does something


def _linear(seed=0, d=3 * 4 * 4, classes=4):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, classes))
    return model.eval()


def test_linear_model_exact_worst_case():
    """For logits ``W x + b`` and images far from the box edges, an image survives every
    L-inf attack of radius eps exactly when, for every other class o, its margin
    ``(w_y - w_o) . x + b_y - b_o`` exceeds ``eps * ||w_y - w_o||_1``."""
    model = _linear()
    g = torch.Generator().manual_seed(3)
    x = 0.5 + 0.1 * (torch.rand(48, 3, 4, 4, generator=g) - 0.5)
    with torch.no_grad():
        y = model(x).argmax(1)                   # every image correct before the attack
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    flat = x.flatten(1).double()
    need = torch.full((len(x),), float("inf"), dtype=torch.float64)  # smallest fooling eps
    for o in range(4):
        dw = w[y] - w[o]                         # (N, d)
        margin = (dw * flat).sum(1) + b[y] - b[o]
        need = torch.where(o == y, need, torch.minimum(need, margin / dw.abs().sum(1)))
    eps = float(need.median())
    assert eps + 0.05 < 0.5                      # x +- eps stays inside [0, 1]: no box
    robust = int((need > eps).sum())
    assert 0 < robust < len(x)                   # the radius splits the images
    x_adv = attacks.autoattack(model, x, y, eps, version="standard")
    assert _correct(model, x_adv, y) == robust


def test_evaluate_dispatches_and_is_stronger(trained):
    model, x, y = trained
    p = attacks.evaluate(model, x, y, eps=4 / 255, targeted=False, batch_size=32)
    a = attacks.evaluate(model, x, y, eps=4 / 255, targeted=False, batch_size=32,
                         attack="autoattack", version="fast")
    assert a["top1"] == p["top1"] and a["n"] == p["n"] == len(x)
    assert a["recovery"] <= p["recovery"]
    assert a["success"] == pytest.approx(1 - a["recovery"])
    with pytest.raises(ValueError, match="untargeted"):
        attacks.evaluate(model, x, y, eps=4 / 255, attack="autoattack")
    with pytest.raises(ValueError, match="attack='cw'"):
        attacks.evaluate(model, x, y, eps=4 / 255, targeted=False, attack="cw")


@contextlib.contextmanager
def _train_mode_recorded(model):
    """The model in train mode, yielding the list of its modes at every forward pass."""
    modes = []
    hook = model.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    model.train()
    try:
        yield modes
    finally:
        hook.remove()


@pytest.mark.parametrize("fn", [attacks.pgd, functools.partial(attacks.autoattack, version="fast")])
def test_eval_mode_during_attack_and_mode_restored(trained, fn):
    """Exactly like pgd: a model in train mode is attacked in eval mode (BatchNorm and
    dropout frozen) and handed back in train mode."""
    model, x, y = trained
    with _train_mode_recorded(model) as modes:
        fn(model, x[:8], y[:8], 4 / 255, steps=2)
    assert model.training and modes and not any(modes)
    model.eval()


def test_global_rng_untouched(trained):
    model, x, y = trained
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    attacks.autoattack(model, x[:8], y[:8], 4 / 255, version="fast", steps=2, seed=7)
    assert torch.equal(torch.rand(3), want)


@pytest.mark.parametrize("bad, match", [
    (lambda x: x * 255, r"\[0, 1\]"),
    (lambda x: x - 0.5, r"\[0, 1\]"),
    (lambda x: torch.full_like(x, float("nan")), "finite"),
])
def test_refuses_images_outside_the_box_like_pgd(trained, bad, match):
    model, x, y = trained
    for fn in (attacks.pgd, attacks.autoattack):
        with pytest.raises(ValueError, match=match):
            fn(model, bad(x[:4]), y[:4], 4 / 255)


def test_bad_arguments(trained, monkeypatch):
    model, x, y = trained
    with pytest.raises(ValueError, match="version='plus'"):
        attacks.autoattack(model, x[:4], y[:4], 4 / 255, version="plus")
    with pytest.raises(ValueError, match="norm='l1'"):
        attacks.autoattack(model, x[:4], y[:4], 4 / 255, norm="l1")
    with pytest.raises(ValueError, match="y must lie in"):
        attacks.autoattack(model, x[:4], torch.full((4,), 9), 4 / 255)
    with pytest.raises(ValueError, match=">= 4 classes"):
        attacks.autoattack(_linear(classes=3), x[:4, :, :4, :4], y[:4] % 3, 4 / 255)
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match=r"rankcore\[attacks\]"):
        attacks.autoattack(model, x[:4], y[:4], 4 / 255)
