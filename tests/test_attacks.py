"""PGD and Table 2's rates, checked against an independent loop, torchattacks and a linear model;
the training-time attack (FGSM-RS, PGD) against the same independent loop."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

import rankcore
from rankcore import attacks


def _tiny_net(seed=0, classes=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(64, classes))


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained for a few hundred steps on a learnable synthetic task."""
    g = torch.Generator().manual_seed(0)
    # Images = coarse 2x2-block colours plus pixel noise; label = a fixed linear function
    # of the block colours (argmax over 10 classes): learnable in a few hundred steps.
    coarse = torch.randn(512, 3, 2, 2, generator=g)
    x = 0.5 + 0.15 * coarse.repeat_interleave(8, 2).repeat_interleave(8, 3)
    x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = coarse.flatten(1).matmul(torch.randn(12, 10, generator=g)).argmax(1)
    model = _tiny_net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        idx = torch.randint(0, 512, (128,), generator=g)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.3  # it learned something
    return model, x[:96], y[:96]


def _independent_pgd(model, x, y, eps, steps, alpha, targeted=False, target=None, start=None,
                     norm="linf"):
    """Textbook PGD (Madry et al. 2018), last iterate, from the clean image or ``start``:
    L-inf steps along the gradient's sign, clipped to [x - eps, x + eps]; L2 steps along
    its unit vector, the difference rescaled to norm <= eps; then clipped to [0, 1]."""
    x_adv = x.clone() if start is None else start.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        logits = model(x_adv)
        if targeted:
            loss = -F.cross_entropy(logits, target, reduction="sum")
        else:
            loss = F.cross_entropy(logits, y, reduction="sum")
        grad, = torch.autograd.grad(loss, x_adv)
        if norm == "linf":
            x_adv = x_adv.detach() + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        else:
            g = grad.flatten(1)
            x_adv = x_adv.detach() + alpha * (g / g.norm(dim=1, keepdim=True)).view_as(x)
            d = (x_adv - x).flatten(1)
            x_adv = x + (d * (eps / d.norm(dim=1, keepdim=True)).clamp(max=1)).view_as(x)
        x_adv = x_adv.clamp(0, 1)
    return x_adv


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("keep", ["best", "last"])
def test_output_inside_ball_and_box(trained, norm, eps, keep):
    model, x, y = trained
    x = x.clone()
    x[:8] = x[:8].round()  # pixels at 0 and 1 exercise the box projection
    for targeted in (False, True):
        x_adv = rankcore.pgd(model, x, y, eps, steps=5, norm=norm, keep=keep,
                             targeted=targeted, restarts=2, seed=3)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        d = (x_adv - x).flatten(1)
        size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert (size <= eps * (1 + 1e-5) + 1e-7).all()
        assert size.max() > 0.5 * eps  # it moved


@pytest.mark.parametrize("targeted", [False, True])
def test_matches_independent_pgd_exactly(trained, targeted):
    model, x, y = trained
    eps, steps, alpha = 8 / 255, 10, 2 / 255
    target = attacks.random_targets(y, 10, seed=1) if targeted else None
    ours = rankcore.pgd(model, x, y, eps, steps=steps, step_size=alpha, targeted=targeted,
                        target=target, random_start=False, keep="last")
    ref = _independent_pgd(model, x, y, eps, steps, alpha, targeted, target)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    with torch.no_grad():
        hit = (lambda xa: (model(xa).argmax(1) == target) if targeted
               else (model(xa).argmax(1) != y))
        assert hit(ours).float().mean() == hit(ref).float().mean()
        # Keeping the best iterate can only add successes to the last iterate's.
        best = rankcore.pgd(model, x, y, eps, steps=steps, step_size=alpha, targeted=targeted,
                            target=target, random_start=False, keep="best")
        assert (hit(best) | ~hit(ref)).all()


def _training_start(x, eps, norm, seed):
    """The start ``rankcore.attacks.adversarial`` documents, drawn from the same generator:
    uniform in the L-inf cube, or for L2 the cube's direction at radius eps * U(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.rand(x.shape, generator=g) * 2 - 1  # float32 draws, as in training
    if norm == "linf":
        return (x + (d * eps).to(x.dtype)).clamp(0, 1)
    r = torch.rand(len(x), generator=g).view(-1, 1, 1, 1)
    delta = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * r * eps
    return (x + delta.to(x.dtype)).clamp(0, 1)


# (method, norm, eps, steps, step size the reference takes: the documented defaults)
TRAINING_ATTACKS = [("fgsm-rs", "linf", 8 / 255, 1, 1.25 * 8 / 255),
                    ("pgd", "linf", 8 / 255, 4, 2.5 * 8 / 255 / 4),
                    ("pgd", "l2", 0.5, 3, 2.5 * 0.5 / 3)]


@pytest.mark.parametrize("method,norm,eps,steps,alpha", TRAINING_ATTACKS,
                         ids=[f"{a[0]}-{a[1]}" for a in TRAINING_ATTACKS])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_training_attack_matches_independent_pgd(trained, method, norm, eps, steps, alpha, mode):
    """The attack adversarial training makes (FGSM-RS, PGD) is the textbook loop from its
    documented start, in the model's own mode: a flipped gradient sign, a projection that
    forgets the eps ball or one that forgets the [0, 1] box each fail here."""
    model, x, y = trained
    model = copy.deepcopy(model).double()  # float64: no rounding ties between the two loops
    x = x.double().clone()
    x[:16] = x[:16].round()                # pixels at 0 and 1: the box constraint is active
    getattr(model, mode)()
    ours = attacks.adversarial(model, x, y, method=method, norm=norm, eps=eps, steps=steps,
                               step_size=None, generator=torch.Generator().manual_seed(4))
    assert model.training == (mode == "train")  # the caller's mode, kept
    ref = _independent_pgd(model, x, y, eps, steps, alpha, start=_training_start(x, eps, norm, 4),
                           norm=norm)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=0)
    d = (ours - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-9).all() and size.max() > 0.9 * eps
    assert ours.min() >= 0 and ours.max() <= 1
    with torch.no_grad():  # it attacks: the loss rises above the clean images'
        assert F.cross_entropy(model(ours), y) > F.cross_entropy(model(x), y) + 0.05


@pytest.mark.parametrize("method,steps", [("fgsm-rs", 1), ("pgd", 5)])
def test_training_attack_matches_torchattacks(trained, method, steps):
    """torchattacks' FFGSM (Wong et al.'s FGSM-RS) and PGD with a random start are the
    training attack's L-inf recipes; drawn from the same seeded stream (FFGSM spends one
    Gaussian draw first), their starts agree, and so do the adversarial images."""
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    eps = 8 / 255
    alpha = 1.25 * eps if method == "fgsm-rs" else 2.5 * eps / steps
    torch.manual_seed(7)
    if method == "fgsm-rs":
        theirs = torchattacks.FFGSM(model, eps=eps, alpha=alpha)(x, y)
    else:
        theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    g = torch.Generator().manual_seed(7)
    if method == "fgsm-rs":
        torch.randn(x.shape, generator=g)
    ours = attacks.adversarial(model, x, y, method=method, norm="linf", eps=eps, steps=steps,
                               step_size=None, generator=g)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_at_least_torchattacks(trained):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    eps, steps, alpha = 4 / 255, 20, 1 / 255
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours = rankcore.pgd(model, x, y, eps, steps=steps, step_size=alpha, random_start=False)
    with torch.no_grad():
        rate = lambda xa: (model(xa).argmax(1) != y).float().mean().item()
        assert rate(ours) >= rate(theirs)
        last = rankcore.pgd(model, x, y, eps, steps=steps, step_size=alpha, random_start=False,
                            keep="last")
        torch.testing.assert_close(last, theirs, atol=1e-6, rtol=0)


def _linear_pair(d=3 * 8 * 8, seed=0):
    """A two-class linear model: logit difference (class 1 - class 0) = u.x + c."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g) * 0.05)
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin), lin


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float64 models too
def test_targeted_linf_reaches_analytic_optimum(dtype):
    model, lin = _linear_pair()
    model.to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(200, 3, 8, 8, generator=g).to(dtype)
    u = (lin.weight[1] - lin.weight[0]).detach().view(3, 8, 8)
    with torch.no_grad():
        margin = model(x)[:, 1] - model(x)[:, 0]
        lin.bias[1] -= margin.median() + 0.05   # most images start in class 0
    y, target = torch.zeros(200, dtype=torch.long), torch.ones(200, dtype=torch.long)
    eps = 8 / 255
    # The target's logit gap is linear, so its maximum over ball and box is the corner
    # x + eps * sign(u), clipped to [0, 1]; the target is reachable iff the gap is > 0 there.
    corner = (x + eps * u.sign()).clamp(0, 1)
    with torch.no_grad():
        reachable = model(corner).argmax(1) == 1
        gap = (model(corner)[:, 1] - model(corner)[:, 0]).abs()
    assert 10 < reachable.sum() < 190
    x_adv = rankcore.pgd(model, x, y, eps, steps=10, targeted=True, target=target)
    torch.testing.assert_close(x_adv, corner, atol=1e-6, rtol=0)
    with torch.no_grad():
        success = model(x_adv).argmax(1) == 1
    clear = gap > 1e-4
    assert torch.equal(success[clear], reachable[clear])


def test_targeted_l2_reaches_analytic_optimum():
    model, lin = _linear_pair()
    x = 0.3 + 0.4 * torch.rand(50, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    u = (lin.weight[1] - lin.weight[0]).detach().view(1, 3, 8, 8)
    eps = 0.5
    x_adv = rankcore.pgd(model, x, torch.zeros(50, dtype=torch.long), eps, steps=10,
                         norm="l2", targeted=True, target=torch.ones(50, dtype=torch.long),
                         random_start=False)
    # Box inactive here, so the optimum is the ball's point along u. (From a random start
    # the projections only approach it geometrically, hence random_start=False.)
    torch.testing.assert_close(x_adv, x + eps * u / u.norm(), atol=1e-5, rtol=0)


def test_mode_restored_and_eval_during_attack(trained):
    model, x, y = trained
    modes = []
    hook = model.register_forward_pre_hook(lambda m, i: modes.append(m.training))
    model.train()
    try:
        rankcore.pgd(model, x[:4], y[:4], 4 / 255, steps=2)
    finally:
        hook.remove()
    assert model.training and modes and not any(modes)
    model.eval()


def test_evaluate_rates(trained):
    model, x, y = trained
    target = attacks.random_targets(y, 10, seed=0)
    assert (target != y).all()
    with torch.no_grad():
        pred = model(x).argmax(1)
    # eps = 0 leaves the images unchanged, so recovery = clean top-1, success = pred == target.
    r0 = attacks.evaluate(model, x, y, eps=0.0, steps=3, target=target, batch_size=40)
    assert r0["recovery"] == pytest.approx((pred == y).float().mean().item())
    assert r0["top1"] == r0["recovery"]
    assert r0["success"] == pytest.approx((pred == target).float().mean().item())
    assert r0["recovery_on_correct"] == 1.0
    r = attacks.evaluate(model, x, y, eps=16 / 255, steps=10, target=target, batch_size=40)
    assert r["success"] + r["recovery"] + r["other"] == pytest.approx(1)
    assert r["success"] > r0["success"] + 0.2
    assert r["n"] == len(y) and r["n_correct"] == (pred == y).sum().item()
    # each number under one key, every rate a fraction
    assert set(r) == {"n", "n_correct", "top1", "success", "recovery", "other",
                      "success_on_correct", "recovery_on_correct"}
    assert all(0.0 <= v <= 1.0 for k, v in r.items() if not k.startswith("n"))
    untargeted = attacks.evaluate(model, x, y, eps=16 / 255, steps=5, targeted=False)
    assert "other" not in untargeted and untargeted["success"] == 1 - untargeted["recovery"]


def test_evaluate_per_image_is_each_batch_attacked_with_its_own_seed(trained):
    """The per-image outcomes are pgd's on each batch (seed + batch index), classified
    image by image; their means are the rates."""
    model, x, y = trained
    r = attacks.evaluate(model, x, y, eps=8 / 255, steps=4, targeted=False, batch_size=40,
                         seed=5, per_image=True)
    with torch.no_grad():
        adv = torch.cat([model(rankcore.pgd(model, x[i:i + 40], y[i:i + 40], 8 / 255, steps=4,
                                            seed=5 + b)).argmax(1)
                         for b, i in enumerate(range(0, len(x), 40))])
        clean = model(x).argmax(1)
    each = r["per_image"]
    np.testing.assert_array_equal(each["recovery"], (adv == y).numpy())
    np.testing.assert_array_equal(each["success"], (adv != y).numpy())
    np.testing.assert_array_equal(each["correct"], (clean == y).numpy())
    assert 0 < each["recovery"].sum() < len(y)
    assert each["recovery"].mean() == pytest.approx(r["recovery"])
    assert "per_image" not in attacks.evaluate(model, x, y, eps=8 / 255, steps=1, targeted=False)


def test_errors_name_the_argument(trained):
    model, x, y = trained
    with pytest.raises(ValueError, match="norm='l3'"):
        rankcore.pgd(model, x, y, 0.1, norm="l3")
    with pytest.raises(ValueError, match="keep="):
        rankcore.pgd(model, x, y, 0.1, keep="first")
    with pytest.raises(ValueError, match="target must"):
        rankcore.pgd(model, x, y, 0.1, targeted=True, target=y[:3])
    with pytest.raises(ValueError, match="y must"):
        rankcore.pgd(model, x, y[:3], 0.1)
    with pytest.raises(ValueError, match="target is given but targeted=False"):  # issue 28
        rankcore.pgd(model, x, y, 0.1, target=attacks.random_targets(y, 10))


def _half_inputs(dtype):
    """Pixels in [0.25, 0.5), where float16's spacing (2^-12) puts 65 steps at 0.01587 > 4/255."""
    return (0.25 + 0.25 * torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("call", ["pgd", "perturb", "adversarial"])
def test_half_precision_inputs_never_leave_the_ball(dtype, call):
    """Issue 28: projected in float16, a step to x + eps rounds to 0.01587 > 4/255."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).to(dtype)
    x, y, eps = _half_inputs(dtype), torch.randint(0, 10, (64,)), 4 / 255
    g = torch.Generator().manual_seed(0)
    if call == "pgd":
        xa = rankcore.pgd(model, x, y, eps, steps=7)
    elif call == "perturb":
        xa = attacks.perturb(model, x, y, eps=eps, steps=7, step_size=2.5 * eps / 7,
                             keep="last", generator=g)
    else:
        xa = attacks.adversarial(model, x, y, method="pgd", norm="linf", eps=eps, steps=7,
                                 step_size=None, generator=g)
    assert xa.dtype == dtype
    d = (xa.double() - x.double()).abs()
    assert d.max() <= eps and d.max() > 0.9 * eps and xa.min() >= 0 and xa.max() <= 1


@pytest.mark.parametrize("call", [lambda m, x, y: rankcore.pgd(m, x, y, 4 / 255, steps=1),
                                  lambda m, x, y: attacks.evaluate(m, x, y, steps=1)])
def test_inputs_follow_the_models_device(call):
    from test_attribution import DeviceProbe, Seen     # a model on the meta device
    probe = DeviceProbe()
    with pytest.raises(Seen):
        call(probe, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))
    assert probe.seen[0].type == "meta"
