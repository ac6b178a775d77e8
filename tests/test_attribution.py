"""Tests of rankcore.attribution against independent references.

References: an explicit loop over ranks with float64 SVD and autograd (equation 3), the
completeness identity of path methods, the closed form of IG on a linear model, the
closed-form deletion/insertion areas of a linear scorer, and scipy's Gaussian filter.
"""
import numpy as np
import pytest
import torch
from torch import nn

import rankcore
from rankcore import attribution as A


def small_cnn(seed=0, classes=5, dtype=torch.float64):
    """A small smooth CNN (tanh, average pooling) on 3-channel images."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(32, classes))
    return net.to(dtype).eval()


def images(n=3, size=12, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images so that low ranks carry most of the energy, as photos do
    base = torch.rand(n, 3, 4, 4, generator=g, dtype=dtype)
    up = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return (0.7 * up + 0.3 * torch.rand(n, 3, size, size, generator=g, dtype=dtype)).clamp(0, 1)


def rank_k_reference(x, k):
    """Rank-k image by a fresh float64 SVD of every channel (no rank engine), clamped."""
    u, s, vh = torch.linalg.svd(x.double(), full_matrices=False)
    s = s.clone()
    s[..., k:] = 0
    return ((u * s[..., None, :]) @ vh).clamp(0, 1).to(x.dtype)


def rig_reference(model, x, target, ks, weight, prob=True):
    """Equation 3 as written: loop over k, autograd of the softmax prob (or of the model's
    output as it is, ``prob=False``), max over channels."""
    total = torch.zeros(x.shape[0], *x.shape[2:], dtype=x.dtype)
    for k in ks:
        xk = rank_k_reference(x, k).requires_grad_(True)
        out = model(xk)
        p = (out.softmax(1) if prob else out)[torch.arange(len(x)), target].sum()
        g, = torch.autograd.grad(p, xk)
        total += weight(k) * g.max(dim=1).values
    return total


# ----------------------------------------------------------------------------- RIG

def test_rig_matches_explicit_equation_3():
    net, x = small_cnn(), images()
    w = x.shape[-1]
    target = net(x).argmax(1)
    ours = rankcore.rig(net, x, internal_batch_size=5)     # several ranks per pass
    ref = rig_reference(net, x, target, range(1, w + 1), lambda k: (w - k) / w)
    assert ours.shape == (3, w, w)
    assert ref.abs().max() > 1e-3                           # not trivially zero
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_rig_stride_is_riemann_sum_and_batching_does_not_matter():
    net, x = small_cnn(), images()
    w, s = x.shape[-1], 3
    target = torch.tensor([0, 2, 4])
    ours = rankcore.rig(net, x, target=target, ranks="3:max:3", internal_batch_size=2)
    ref = rig_reference(net, x, target, range(s, w, s), lambda k: (w - k) / w * s)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # every form of parse_ranks: a range, a list, a tensor give the same sum
    for spec in (range(3, w + 1, 3), [3, 6, 9, 12], torch.tensor([12, 9, 6, 3])):
        torch.testing.assert_close(rankcore.rig(net, x, target=target, ranks=spec), ours,
                                   atol=1e-10, rtol=0)
    one = rankcore.rig(net, x, target=target, ranks="3:max:3", internal_batch_size=1)
    torch.testing.assert_close(one, ours, atol=1e-10, rtol=0)


def test_rig_int_rank_is_one_rank():
    """An int is one rank (rank.parse_ranks), never a stride: rank k stands for ranks 1..k."""
    net, x = small_cnn(), images(n=2)
    w, k = x.shape[-1], 4
    target = torch.tensor([1, 3])
    ref = rig_reference(net, x, target, [k], lambda j: (w - j) / w * k)
    torch.testing.assert_close(rankcore.rig(net, x, target=target, ranks=k), ref,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(rankcore.rig(net, x, target=target, ranks="4"), ref,
                               atol=1e-6, rtol=0)


def test_rig_terms_add_up_to_rig():
    net, x = small_cnn(), images(n=2)
    w = x.shape[-1]
    ks, imgs, terms = A.rig_terms(net, x, f"1:{w - 1}")
    assert imgs.shape == (w - 1, *x.shape) and terms.shape == (w - 1, 2, w, w)
    torch.testing.assert_close(imgs[3], rank_k_reference(x, 4), atol=1e-10, rtol=0)
    torch.testing.assert_close(terms.sum(0), rankcore.rig(net, x), atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- path methods

def test_rank_ig_completeness_all_ranks():
    net, x = small_cnn(seed=3), images(n=2, size=16)
    target = net(x).argmax(1)
    f = lambda z: net(z)[torch.arange(len(z)), target]
    delta = (f(x) - f(torch.zeros_like(x))).detach()        # x_0 is black
    assert delta.abs().min() > 5e-2
    gaps = {}
    for substeps in (1, 2, 4):
        attr, gap = rankcore.rank_ig(net, x, output="logit", return_gap=True,
                                     substeps=substeps, internal_batch_size=7)
        assert attr.shape == x.shape
        torch.testing.assert_close(attr.flatten(1).sum(1) - delta, gap, atol=1e-10, rtol=0)
        gaps[substeps] = (gap.abs() / delta.abs()).max().item()
    assert gaps[4] < 0.01
    # the trapezoid rule is second order: halving every path step quarters the gap
    assert 3.0 < gaps[1] / gaps[2] < 5.0 and 3.0 < gaps[2] / gaps[4] < 5.0


def test_blur_ig_completeness_and_reduction():
    net, x = small_cnn(seed=4), images(n=2, size=16)
    attr, gap = A.blur_ig(net, x, output="logit", steps=40, sigma_max=4.0, return_gap=True)
    target = net(x).argmax(1)
    f = lambda z: net(z)[torch.arange(len(z)), target]
    delta = (f(x) - f(A.gaussian_blur(x, 4.0))).detach()
    assert (gap.abs() / delta.abs()).max() < 0.01
    summed = A.blur_ig(net, x, output="logit", steps=40, sigma_max=4.0, channel_reduce="sum")
    torch.testing.assert_close(summed, attr.sum(1), atol=1e-10, rtol=0)


def test_integrated_gradients_on_linear_model_is_exact():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4, bias=True)).double().eval()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([1, 3])
    attr = A.integrated_gradients(lin, x, target=target, output="logit", steps=7)
    weight = lin[1].weight.detach()[target].view(2, 3, 6, 6)
    torch.testing.assert_close(attr, x * weight, atol=1e-12, rtol=0)
    base = torch.full_like(x, 0.5)
    attr = A.integrated_gradients(lin, x, target=target, baseline=base, output="logit", steps=3)
    # captum's Gauss-Legendre weights are float32: exact up to their rounding (~3e-8)
    torch.testing.assert_close(attr, (x - 0.5) * weight, atol=1e-12, rtol=1e-7)


def test_gaussian_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64)
    for sigma in (0.7, 2.0, 20.0):   # 20 is wider than the image: mirror folding
        ref = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect", truncate=4.0)
        torch.testing.assert_close(A.gaussian_blur(x, sigma), torch.from_numpy(ref),
                                   atol=1e-12, rtol=0)
    assert A.gaussian_blur(x, 0.0) is x


# ----------------------------------------------------------------------------- captum baselines

def test_vanilla_gradient_and_smoothgrad():
    net, x = small_cnn(), images()
    target = net(x).argmax(1)
    xr = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(net(xr).softmax(1)[torch.arange(3), target].sum(), xr)
    torch.testing.assert_close(A.vanilla_gradient(net, x), g.abs().amax(1), atol=1e-12, rtol=0)
    state = torch.get_rng_state()
    a = A.smoothgrad(net, x, samples=6, noise=0.1, seed=3, internal_batch_size=4)
    b = A.smoothgrad(net, x, samples=6, noise=0.1, seed=3, internal_batch_size=64)
    assert torch.equal(torch.get_rng_state(), state)        # the global generator is untouched
    assert a.shape == (3, 12, 12)
    # noise=0 averages identical gradients: SmoothGrad reduces to the vanilla gradient
    torch.testing.assert_close(A.smoothgrad(net, x, samples=3, noise=0.0), g.abs().amax(1),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(a, A.smoothgrad(net, x, samples=6, noise=0.1, seed=3,
                                               internal_batch_size=4), atol=0, rtol=0)
    assert b.shape == a.shape


# ----------------------------------------------------------------------------- deletion / insertion

class LinearScore(nn.Module):
    """Two logits: sum(weight * x) over pixels and channels, and 0."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x):
        s = (x * self.weight).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


@pytest.mark.parametrize("steps", [16, 4])
def test_deletion_insertion_closed_form(steps):
    n = 16                                             # 4x4 pixels, weights 1..16
    weight = torch.arange(1, n + 1, dtype=torch.float64).view(1, 1, 4, 4)
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    model = LinearScore(weight).eval()
    di = A.deletion_insertion(model, x, weight[:, 0], target=0, steps=steps, output="logit",
                              insertion_start="black")
    removed = torch.arange(0, n + 1, n // steps)       # pixels removed at each point
    # deleting the i most salient pixels leaves 1 + 2 + ... + (n - i)
    left = (n - removed) * (n - removed + 1) / 2.0
    torch.testing.assert_close(di.deletion[0], left.double(), atol=1e-9, rtol=0)
    total = n * (n + 1) / 2
    torch.testing.assert_close(di.insertion[0], total - left.double(), atol=1e-9, rtol=0)
    if steps == n:   # closed form of the trapezoid area: (n+1)(n+2)/6 - (n+1)/4
        assert di.deletion_auc.item() == pytest.approx((n + 1) * (n + 2) / 6 - (n + 1) / 4)
    assert di.deletion_auc.item() + di.insertion_auc.item() == pytest.approx(total)
    worst = A.deletion_insertion(model, x, -weight[:, 0], target=0, steps=steps,
                                 output="logit", insertion_start="black")
    assert worst.deletion_auc.item() > di.deletion_auc.item()


def test_compare_methods_resumes_from_cache(tmp_path, monkeypatch):
    net, x = small_cnn(dtype=torch.float32), images(n=3, dtype=torch.float32)
    methods = {"vanilla": {}, "rig": {"ranks": "4:max:4"}}
    cache = tmp_path / "auc.pt"
    rows = A.compare_methods(net, x, methods, steps=4, batch=2, cache=cache, progress=False)
    assert len(rows) == 6 and {r["method"] for r in rows} == set(methods)
    # the shared curve ends give the same areas as deletion_insertion on its own
    direct = A.deletion_insertion(net, x[:2], A.vanilla_gradient(net, x[:2]), steps=4)
    got = [r for r in rows if r["method"] == "vanilla" and r["image"] < 2]
    assert [r["deletion_auc"] for r in got] == pytest.approx(direct.deletion_auc.tolist(), abs=1e-6)
    assert [r["insertion_auc"] for r in got] == pytest.approx(direct.insertion_auc.tolist(), abs=1e-6)
    with monkeypatch.context() as m:
        m.setattr(A.evaluation, "saliency_map", lambda *a, **k: pytest.fail("recomputed"))
        again = A.compare_methods(net, x, methods, steps=4, batch=2, cache=cache, progress=False)
    assert again == rows
    # a damaged cache is named in a warning, kept aside and rebuilt, never trusted
    cache.write_bytes(cache.read_bytes()[:600])
    with pytest.warns(RuntimeWarning, match="auc.pt"):
        rebuilt = A.compare_methods(net, x, methods, steps=4, batch=2, cache=cache,
                                    progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    assert strip(rebuilt) == strip(rows)
    assert torch.load(cache, weights_only=True)["rows"]          # rewritten, readable safely


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("fn", [rankcore.rig, rankcore.rank_ig, A.vanilla_gradient,
                                A.integrated_gradients, A.smoothgrad, A.blur_ig])
def test_bad_inputs_raise_clear_errors(fn):
    net, x = small_cnn(), images(n=2)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 4\].*got values in \[0, 5\]"):
        fn(net, x, target=[0, 5])
    with pytest.raises(ValueError, match=r"x must hold images in \[0, 1\]"):
        fn(net, x * 2)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\); got shape \(3, 12, 12\)"):
        fn(net, x[0])
    with pytest.raises(ValueError, match="one class per image"):
        fn(net, x, target=[0, 1, 2])
    with pytest.raises(TypeError, match="integer class"):
        fn(net, x, target=1.5)
    with pytest.raises(ValueError, match="output='softmax'"):
        fn(net, x, output="softmax")


def test_bad_ranks_and_saliency_raise():
    net, x = small_cnn(), images(n=2)
    with pytest.raises(ValueError, match=r"ranks=\[0, 3\]: RIG sums ranks 1..12"):
        rankcore.rig(net, x, ranks=[0, 3])
    with pytest.raises(ValueError, match=r"ranks=13.*\[0, 12\]"):
        rankcore.rank_ig(net, x, ranks=13)
    with pytest.raises(TypeError, match="ranks"):
        rankcore.rig(net, x, ranks=[3.7])
    with pytest.raises(ValueError, match=r"ranks=\[12\]: each rank must lie in 1..11"):
        A.rig_terms(net, x, [12])
    with pytest.raises(ValueError, match=r"saliency must have shape \(N, H, W\)"):
        A.deletion_insertion(net, x, torch.rand(2, 3, 12, 12))
    with pytest.raises(ValueError, match="method='gradcam'"):
        A.saliency_map("gradcam", net, x)


def test_edge_alignment_is_spearman_with_sobel_edges():
    from scipy.ndimage import sobel
    from scipy.stats import spearmanr
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 10, 10, generator=g, dtype=torch.float64)
    s = torch.randn(3, 10, 10, generator=g, dtype=torch.float64)
    s[0, :5] = 0                                   # ties
    ours = A.edge_alignment(x, s)
    for i in range(3):
        grey = x[i].mean(0).numpy()
        edges = np.hypot(sobel(grey, 0, mode="nearest"), sobel(grey, 1, mode="nearest"))
        ref = spearmanr(edges.ravel(), np.abs(s[i].numpy()).ravel()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)
    edges_as_map = torch.from_numpy(np.stack([np.hypot(sobel(x[i].mean(0).numpy(), 0, mode="nearest"),
                                                       sobel(x[i].mean(0).numpy(), 1, mode="nearest"))
                                              for i in range(3)]))
    torch.testing.assert_close(A.edge_alignment(x, edges_as_map), torch.ones(3, dtype=torch.float64))


def bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(),
                         nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5)).double()


@pytest.mark.parametrize("call", [
    lambda m, x: rankcore.rig(m, x, ranks="2:max:4"),
    lambda m, x: A.rig_terms(m, x, [2, 5]),
    lambda m, x: rankcore.rank_ig(m, x, ranks="0:max:6"),
    lambda m, x: A.vanilla_gradient(m, x),
    lambda m, x: A.integrated_gradients(m, x, steps=3),
    lambda m, x: A.smoothgrad(m, x, samples=2),
    lambda m, x: A.blur_ig(m, x, steps=3),
    lambda m, x: A.deletion_insertion(m, x, torch.rand(2, 12, 12, dtype=torch.float64), steps=4),
    lambda m, x: A.compare_methods(m, x, {"vanilla": {}}, steps=4, progress=False),
    lambda m, x: A.RankIntegratedGradients(m).attribute(x, ranks="2:max:4"),
])
def test_eval_mode_and_callers_mode_and_buffers_restored(call):
    """Attribution runs the model in eval mode (batch norm statistics untouched, no dropout)
    and gives the caller's train/eval flags back, module by module."""
    net, x = bn_net(), images(n=2)
    net.train()
    net[3].eval()                                   # a mixed set of flags to give back
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    a = call(net, x)
    assert [m.training for m in net.modules()] == flags
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "buffers changed"
    # and the answer is the eval-mode answer (deterministic despite dropout in train mode)
    b = call(net.eval(), x)
    first = a[0] if isinstance(a, tuple) else a
    second = b[0] if isinstance(b, tuple) else b
    if isinstance(first, torch.Tensor):
        torch.testing.assert_close(first, second, atol=1e-12, rtol=0)


class Seen(Exception):
    pass


class DeviceProbe(nn.Module):
    """A model whose weights live on the meta device; it records the device of its input."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3, device="meta"))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.device)
        raise Seen


@pytest.mark.parametrize("fn", [rankcore.rig, rankcore.rank_ig, A.vanilla_gradient,
                                A.integrated_gradients, A.smoothgrad, A.blur_ig])
def test_inputs_follow_the_models_device(fn):
    """The README's ``rankcore.rig(model, x[:1])`` with the model on an accelerator and x on
    the CPU: the images move to the model's device before the first forward pass."""
    probe = DeviceProbe()
    with pytest.raises(Seen):
        fn(probe, images(n=1, dtype=torch.float32))
    assert probe.seen and probe.seen[0].type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rig_on_cuda_model_with_cpu_images():
    net, x = small_cnn(), images(n=2)
    ref = rankcore.rig(net, x, ranks="2:max:3")
    got = rankcore.rig(net.cuda(), x, ranks="2:max:3")
    assert got.device == x.device
    torch.testing.assert_close(got, ref, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------- captum class

def test_rank_integrated_gradients_is_a_captum_attribution():
    from captum.attr import GradientAttribution
    net, x = small_cnn(), images()
    target = torch.tensor([0, 2, 4])
    rig = A.RankIntegratedGradients(net)
    assert isinstance(rig, GradientAttribution)
    attr = rig.attribute(x, target=target, ranks="3:max:3", output="prob")
    assert attr.shape == x.shape and attr.dtype == x.dtype
    ref = rig_reference(net, x, target, range(3, 12, 3), lambda k: (12 - k) / 12 * 3)
    for c in range(3):                               # the paper's map in every channel
        torch.testing.assert_close(attr[:, c], ref, atol=1e-5, rtol=0)
    per_channel = rig.attribute((x,), target=1, channel_reduce=None)
    assert isinstance(per_channel, tuple) and per_channel[0].shape == x.shape
    assert not rig.has_convergence_delta()


def test_the_captum_class_differentiates_what_the_forward_returns_by_default():
    """Like every captum attribution: a forward ending in softmax is not softmaxed again."""
    net, x = small_cnn(), images()
    target = torch.tensor([0, 2, 4])
    ends_in_softmax = nn.Sequential(net, nn.Softmax(1))
    ref = rig_reference(net, x, target, range(3, 12, 3), lambda k: (12 - k) / 12 * 3)
    got = A.RankIntegratedGradients(ends_in_softmax).attribute(x, target=target, ranks="3:max:3")
    torch.testing.assert_close(got[:, 0], ref, atol=1e-5, rtol=0)      # = the paper's RIG
    logits = rig_reference(net, x, target, range(3, 12, 3), lambda k: (12 - k) / 12 * 3, prob=False)
    torch.testing.assert_close(A.RankIntegratedGradients(net).attribute(
        x, target=target, ranks="3:max:3")[:, 0], logits, atol=1e-5, rtol=0)


class _Scaled(nn.Module):
    """A forward with captum-style extra arguments: a float and a per-example tensor."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, temperature, bias):
        return self.net(x) / temperature + bias                   # bias: (N, classes)


@pytest.mark.parametrize("cls", ["RankIntegratedGradients", "RankPathIntegratedGradients"])
def test_additional_forward_args_reach_the_forward_per_example(cls):
    net, x = small_cnn(), images()
    target = torch.tensor([0, 2, 4])
    bias = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    method = getattr(A, cls)
    ranks = "0:max:3" if cls == "RankPathIntegratedGradients" else "3:max:3"
    # small internal batches: several passes, each with its own slice of the bias
    got = method(_Scaled(net)).attribute(x, target=target, ranks=ranks, output="prob",
                                         additional_forward_args=(2.0, bias),
                                         internal_batch_size=2)
    for i in range(3):  # the same example alone, with its arguments baked into the model
        baked = nn.Sequential(net, _Affine(2.0, bias[i]))
        alone = method(baked).attribute(x[i:i + 1], target=target[i:i + 1], ranks=ranks,
                                        output="prob")
        torch.testing.assert_close(got[i:i + 1], alone, atol=1e-10, rtol=0)


class _Affine(nn.Module):
    def __init__(self, temperature, bias):
        super().__init__()
        self.temperature, self.bias = temperature, bias

    def forward(self, y):
        return y / self.temperature + self.bias


def test_rank_path_convergence_delta_is_captums():
    """The delta captum's own compute_convergence_delta gives for the rank path's start (the
    black image) and end (the input), with the extra forward arguments; and rank_ig's gap."""
    net, x = small_cnn(), images()
    target = torch.tensor([1, 0, 3])
    bias = torch.randn(3, 5, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    ig = A.RankPathIntegratedGradients(_Scaled(net))
    assert ig.has_convergence_delta()
    attr, delta = ig.attribute(x, target=target, ranks="0:max:2", substeps=2,
                               additional_forward_args=(1.5, bias),
                               return_convergence_delta=True)
    ref = ig.compute_convergence_delta(attr, torch.zeros_like(x), x, target=target,
                                       additional_forward_args=(1.5, bias))
    torch.testing.assert_close(delta, ref.to(delta.dtype), atol=1e-10, rtol=0)
    assert delta.abs().max() < 0.1 * ig.forward_func(x, 1.5, bias).abs().max()
    _, gap = rankcore.rank_ig(nn.Sequential(net, _Affine(1.5, bias[:1])), x[:1], target[:1],
                              ranks="0:max:2", substeps=2, output="logit", return_gap=True)
    torch.testing.assert_close(gap, delta[:1], atol=1e-10, rtol=0)


def test_noise_tunnel_over_rank_integrated_gradients_matches_explicit_mean():
    """captum's NoiseTunnel (SmoothGrad of RIG) against an independent computation: the
    mean, over the noisy copies captum drew, of equation 3 by an explicit float64 loop."""
    from captum.attr import NoiseTunnel
    from captum.log import log_usage
    net, x = small_cnn(), images(n=2)
    target = torch.tensor([1, 3])
    w = x.shape[-1]

    class Recording(A.RankIntegratedGradients):
        @log_usage()
        def attribute(self, inputs, **kwargs):
            seen.append(inputs.detach().clone())
            return super().attribute(inputs, **kwargs)

    seen = []
    torch.manual_seed(0)
    smooth = NoiseTunnel(Recording(net)).attribute(
        x, nt_type="smoothgrad", nt_samples=3, nt_samples_batch_size=3, stdevs=0.05,
        target=target, ranks="2:max:2", output="prob")
    assert smooth.shape == x.shape
    noisy = torch.cat(seen).view(len(x), 3, *x.shape[1:])          # (N, samples, C, H, W)
    assert (noisy - x[:, None]).abs().max() > 1e-3                  # noise was added
    expected = torch.stack([
        torch.stack([rig_reference(net, noisy[i, j:j + 1], target[i:i + 1], range(2, w, 2),
                                   lambda k: (w - k) / w * 2)[0] for j in range(3)]).mean(0)
        for i in range(len(x))])
    torch.testing.assert_close(smooth[:, 0], expected, atol=1e-5, rtol=0)


def test_spatial_coherence_matches_numpy():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 9, 7, generator=g, dtype=torch.float64)
    ours = A.spatial_coherence(s)
    for i in range(2):
        m = np.abs(s[i].numpy())
        ref = 0.5 * (np.corrcoef(m[:, :-1].ravel(), m[:, 1:].ravel())[0, 1]
                     + np.corrcoef(m[:-1].ravel(), m[1:].ravel())[0, 1])
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)
    yy, xx = torch.meshgrid(torch.arange(32.), torch.arange(32.), indexing="ij")
    blob = torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 50)[None]
    assert A.spatial_coherence(blob).item() > 0.95
    with pytest.raises(ValueError, match="H, W >= 2"):
        A.spatial_coherence(torch.rand(3, 1, 5))


def test_rank_integrated_gradients_in_captum_metrics_and_visualization():
    """captum.metrics.sensitivity_max (perturbed batches), infidelity and visualize_image_attr
    take it like any captum attribution."""
    import matplotlib
    matplotlib.use("Agg")
    from captum.attr import visualization as viz
    from captum.metrics import infidelity, sensitivity_max
    net, x = small_cnn(dtype=torch.float32), images(n=2, dtype=torch.float32)
    target = torch.tensor([1, 2])
    rig = A.RankIntegratedGradients(net)
    sens = sensitivity_max(rig.attribute, x, target=target, ranks="2:max:3", n_perturb_samples=3)
    assert sens.shape == (2,) and torch.isfinite(sens).all()
    attr = rig.attribute(x, target=target, ranks="2:max:3")
    noise = torch.full_like(x, 0.01)
    inf = infidelity(net, lambda inp: (noise[:len(inp)], inp - noise[:len(inp)]), x, attr,
                     target=target, n_perturb_samples=1)
    assert inf.shape == (2,) and torch.isfinite(inf).all()
    fig, _ = viz.visualize_image_attr(attr[0].permute(1, 2, 0).numpy(),
                                      x[0].permute(1, 2, 0).numpy(), method="blended_heat_map",
                                      sign="absolute_value", use_pyplot=False)
    assert fig is not None
