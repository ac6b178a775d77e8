"""Issue 14 for attribution and attacks: every bad input gets a clear error naming the argument.

Table-driven: each row is an entry point, a bad input and the error it must give (type
and the argument's name in the message). Property tests (hypothesis) throw random shapes,
dtypes, ranks and labels at the entry points: they either work (and then their output
obeys the documented contract) or raise ValueError/TypeError naming the argument.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import rankcore
from rankcore import attacks
from rankcore import attribution as A


def net(classes=5, channels=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, classes)).eval()


X = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 3])
MODEL = net()
NAN = X.clone()
NAN[0, 0, 0, 0] = float("nan")
SAL = torch.rand(2, 8, 8)

# (id, call, error type, text the message must contain: the argument's name)
ROWS = [
    # ---- RIG and rank-path IG
    ("rig 0-255 images", lambda: rankcore.rig(MODEL, X * 255), ValueError, "x must hold images in [0, 1]"),
    ("rig NaN images", lambda: rankcore.rig(MODEL, NAN), ValueError, "x must be finite"),
    ("rig int images", lambda: rankcore.rig(MODEL, (X * 255).to(torch.uint8)), TypeError, "x must be a floating"),
    ("rig 3-D images", lambda: rankcore.rig(MODEL, X[0]), ValueError, "x must have shape (N, C, H, W)"),
    ("rig empty batch", lambda: rankcore.rig(MODEL, X[:0]), ValueError, "x is empty"),
    ("rig list images", lambda: rankcore.rig(MODEL, X.tolist()), TypeError, "x must be a torch.Tensor"),
    ("rig model not a module", lambda: rankcore.rig(lambda z: z, X), TypeError, "model must be"),
    ("rig target out of range", lambda: rankcore.rig(MODEL, X, target=5), ValueError, "target must lie in [0, 4]"),
    ("rig target -100", lambda: rankcore.rig(MODEL, X, target=-100), ValueError, "target must lie"),
    ("rig float target", lambda: rankcore.rig(MODEL, X, target=1.5), TypeError, "target"),
    ("rig bool target", lambda: rankcore.rig(MODEL, X, target=True), TypeError, "target"),
    ("rig target count", lambda: rankcore.rig(MODEL, X, target=[0, 1, 2]), ValueError, "target must be an int or hold one class per image"),
    ("rig string target", lambda: rankcore.rig(MODEL, X, target="cat"), TypeError, "target"),
    ("rig rank 0", lambda: rankcore.rig(MODEL, X, ranks=0), ValueError, "ranks=0"),
    ("rig rank above w", lambda: rankcore.rig(MODEL, X, ranks=9), ValueError, "ranks=9"),
    ("rig fractional rank", lambda: rankcore.rig(MODEL, X, ranks=3.7), TypeError, "ranks"),
    ("rig fractional rank list", lambda: rankcore.rig(MODEL, X, ranks=[3.7]), TypeError, "ranks"),
    ("rig bad rank string", lambda: rankcore.rig(MODEL, X, ranks="2:x"), ValueError, "ranks='2:x'"),
    ("rig zero step string", lambda: rankcore.rig(MODEL, X, ranks="1:8:0"), ValueError, "step must be >= 1"),
    ("rig output", lambda: rankcore.rig(MODEL, X, output="softmax"), ValueError, "output='softmax'"),
    ("rig channel_reduce", lambda: rankcore.rig(MODEL, X, channel_reduce="mean"), ValueError, "channel_reduce='mean'"),
    ("rig batch 0", lambda: rankcore.rig(MODEL, X, internal_batch_size=0), ValueError, "internal_batch_size"),
    ("rig batch float", lambda: rankcore.rig(MODEL, X, internal_batch_size=2.0), TypeError, "internal_batch_size"),
    ("rig_terms rank w", lambda: A.rig_terms(MODEL, X, [8]), ValueError, "ranks=[8]"),
    ("rank_ig rank above w", lambda: rankcore.rank_ig(MODEL, X, ranks=[3, 20]), ValueError, "ranks=[3, 20]"),
    ("rank_ig substeps 0", lambda: rankcore.rank_ig(MODEL, X, substeps=0), ValueError, "substeps"),
    # ---- captum class
    ("captum 3-D inputs", lambda: A.RankIntegratedGradients(MODEL).attribute(X[0]), ValueError, "inputs must have shape"),
    ("captum NaN inputs", lambda: A.RankIntegratedGradients(MODEL).attribute(NAN), ValueError, "inputs must be finite"),
    ("captum two inputs", lambda: A.RankIntegratedGradients(MODEL).attribute((X, X)), ValueError, "inputs must be one"),
    ("captum forward args", lambda: A.RankIntegratedGradients(MODEL).attribute(X, additional_forward_args=(torch.zeros(len(X) + 1),)), ValueError, "additional_forward_args[0] is a tensor of shape (3,)"),
    ("captum target", lambda: A.RankIntegratedGradients(MODEL).attribute(X, target=7), ValueError, "target must lie"),
    ("captum ranks", lambda: A.RankIntegratedGradients(MODEL).attribute(X, ranks="0:4"), ValueError, "ranks='0:4'"),
    # ---- baselines
    ("vanilla 0-255", lambda: A.vanilla_gradient(MODEL, X * 255), ValueError, "x must hold images"),
    ("ig steps 0", lambda: A.integrated_gradients(MODEL, X, steps=0), ValueError, "steps"),
    ("ig baseline shape", lambda: A.integrated_gradients(MODEL, X, baseline=torch.zeros(5, 5)), ValueError, "baseline"),
    ("smoothgrad negative noise", lambda: A.smoothgrad(MODEL, X, noise=-0.1), ValueError, "noise"),
    ("smoothgrad samples 0", lambda: A.smoothgrad(MODEL, X, samples=0), ValueError, "samples"),
    ("blur_ig sigma_max 0", lambda: A.blur_ig(MODEL, X, sigma_max=0.0), ValueError, "sigma_max"),
    ("blur_ig steps float", lambda: A.blur_ig(MODEL, X, steps=2.5), TypeError, "steps"),
    ("gaussian_blur sigma", lambda: A.gaussian_blur(X, -1.0), ValueError, "sigma"),
    ("gaussian_blur NaN sigma", lambda: A.gaussian_blur(X, float("nan")), ValueError, "sigma"),
    # ---- evaluation
    ("deletion saliency shape", lambda: A.deletion_insertion(MODEL, X, torch.rand(2, 3, 8, 8)), ValueError, "saliency must have shape"),
    ("deletion start", lambda: A.deletion_insertion(MODEL, X, SAL, insertion_start="grey"), ValueError, "insertion_start='grey'"),
    ("deletion steps 0", lambda: A.deletion_insertion(MODEL, X, SAL, steps=0), ValueError, "steps"),
    ("deletion target", lambda: A.deletion_insertion(MODEL, X, SAL, target=9), ValueError, "target must lie"),
    ("compare unknown method", lambda: A.compare_methods(MODEL, X, {"gradcam": {}}, progress=False), ValueError, "gradcam"),
    ("compare no method", lambda: A.compare_methods(MODEL, X, {}, progress=False), ValueError, "methods"),
    ("saliency_map method", lambda: A.saliency_map("gradcam", MODEL, X), ValueError, "method='gradcam'"),
    ("auc_summary empty", lambda: A.auc_summary([]), ValueError, "rows"),
    ("auc_summary reference", lambda: A.auc_summary([{"image": 0, "method": "rig", "target": 0, "deletion_auc": 0.1, "insertion_auc": 0.2, "seconds": 1.0}]), ValueError, "reference='vanilla'"),
    ("edge_alignment shape", lambda: A.edge_alignment(X, torch.rand(2, 7, 8)), ValueError, "saliency must have shape"),
    ("edge_alignment 0-255", lambda: A.edge_alignment(X * 255, SAL), ValueError, "x must hold images"),
    ("coherence 2-D", lambda: A.spatial_coherence(torch.rand(8, 8)), ValueError, "saliency must have shape"),
    ("reduce_channels how", lambda: A.reduce_channels(X, "median"), ValueError, "channel_reduce='median'"),
    # ---- PGD
    ("pgd 0-255 images", lambda: rankcore.pgd(MODEL, X * 255, Y, 4 / 255), ValueError, "x must hold images in [0, 1]"),
    ("pgd NaN images", lambda: rankcore.pgd(MODEL, NAN, Y, 4 / 255), ValueError, "x must be finite"),
    ("pgd int images", lambda: rankcore.pgd(MODEL, (X * 255).to(torch.uint8), Y, 4 / 255), TypeError, "x must be a float tensor"),
    ("pgd y=-100", lambda: rankcore.pgd(MODEL, X, torch.tensor([-100, 1]), 4 / 255), ValueError, "y must lie in [0, 4]"),
    ("pgd y too large", lambda: rankcore.pgd(MODEL, X, torch.tensor([0, 5]), 4 / 255), ValueError, "y must lie in [0, 4]"),
    ("pgd float labels", lambda: rankcore.pgd(MODEL, X, Y.float(), 4 / 255), TypeError, "y must hold integer"),
    ("pgd y shape", lambda: rankcore.pgd(MODEL, X, Y[:1], 4 / 255), ValueError, "y must be a tensor of shape (2,)"),
    ("pgd target out of range", lambda: rankcore.pgd(MODEL, X, Y, 4 / 255, targeted=True, target=torch.tensor([1, 9])), ValueError, "target must lie"),
    ("pgd negative eps", lambda: rankcore.pgd(MODEL, X, Y, -0.1), ValueError, "eps=-0.1"),
    ("pgd NaN eps", lambda: rankcore.pgd(MODEL, X, Y, float("nan")), ValueError, "eps=nan"),
    ("pgd steps -1", lambda: rankcore.pgd(MODEL, X, Y, 0.1, steps=-1), ValueError, "steps=-1"),
    ("pgd steps float", lambda: rankcore.pgd(MODEL, X, Y, 0.1, steps=2.5), TypeError, "steps"),
    ("pgd restarts 0", lambda: rankcore.pgd(MODEL, X, Y, 0.1, restarts=0), ValueError, "restarts=0"),
    ("pgd step_size", lambda: rankcore.pgd(MODEL, X, Y, 0.1, step_size=-1.0), ValueError, "step_size=-1.0"),
    ("pgd norm", lambda: rankcore.pgd(MODEL, X, Y, 0.1, norm="l1"), ValueError, "norm='l1'"),
    ("evaluate y out of range", lambda: attacks.evaluate(MODEL, X, torch.tensor([0, 5]), steps=1), ValueError, "y must lie in [0, 4]"),
    ("evaluate y=-100", lambda: attacks.evaluate(MODEL, X, torch.tensor([-100, 0]), steps=1), ValueError, "y must lie"),
    ("evaluate batch 0", lambda: attacks.evaluate(MODEL, X, Y, steps=1, batch_size=0), ValueError, "batch_size"),
    ("evaluate_models empty", lambda: attacks.evaluate_models({}, X, Y), ValueError, "models"),
    ("random_targets one class", lambda: attacks.random_targets(Y, 1), ValueError, "classes=1"),
]


@pytest.mark.parametrize("call,error,text", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_gives_a_clear_error(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value), f"{info.value!r} does not name {text!r}"


# ----------------------------------------------------------------------------- issue 28: the cache file

def test_compare_methods_cache_not_ours_is_refused_untouched(tmp_path):
    weights = tmp_path / "model.pt"
    torch.save(MODEL.state_dict(), weights)             # the model's weights passed by mistake
    before = weights.read_bytes()
    with pytest.raises(ValueError, match="model.pt.*not a deletion/insertion cache"):
        A.compare_methods(MODEL, X, {"vanilla": {}}, steps=2, cache=weights, progress=False)
    assert weights.read_bytes() == before
    with pytest.raises(ValueError, match="cache=.*is a directory"):
        A.compare_methods(MODEL, X, {"vanilla": {}}, steps=2, cache=tmp_path, progress=False)


def test_compare_methods_damaged_cache_is_moved_aside(tmp_path):
    cache = tmp_path / "auc.pt"
    rows = A.compare_methods(MODEL, X, {"vanilla": {}}, steps=2, cache=cache, progress=False)
    cache.write_bytes(cache.read_bytes()[:600])           # cut short
    torn = cache.read_bytes()
    with pytest.warns(RuntimeWarning, match="damaged.*auc.pt.corrupt-"):
        again = A.compare_methods(MODEL, X, {"vanilla": {}}, steps=2, cache=cache, progress=False)
    assert [f.read_bytes() for f in tmp_path.glob("auc.pt.corrupt-*")] == [torn]
    assert [r["deletion_auc"] for r in again] == [r["deletion_auc"] for r in rows]


# ----------------------------------------------------------------------------- issue 14 cases made right

def test_pgd_steps_zero_returns_the_start():
    assert torch.equal(rankcore.pgd(MODEL, X, Y, 0.1, steps=0, random_start=False), X)
    start = rankcore.pgd(MODEL, X, Y, 0.1, steps=0, keep="last", seed=4)
    assert (start - X).abs().max() <= 0.1 and not torch.equal(start, X)


def test_pgd_float16_stays_inside_eps():
    """The issue's case: float16 images overshot eps (0.01587 vs 0.01569)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 3, 8, 8, generator=g).half()
    y = torch.randint(0, 5, (16,), generator=g)
    for norm, eps in (("linf", 4 / 255), ("l2", 0.05)):
        adv = rankcore.pgd(MODEL, x, y, eps, steps=4, norm=norm)
        assert adv.dtype == torch.float16
        d = adv.double() - x.double()
        size = d.abs().flatten(1).amax(1) if norm == "linf" else d.flatten(1).norm(dim=1)
        assert size.max().item() <= eps and size.max().item() > 0.5 * eps
        assert adv.min() >= 0 and adv.max() <= 1


# ----------------------------------------------------------------------------- properties

SMALL = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _names(err: Exception, *names: str) -> bool:
    return any(n in str(err) for n in names)


@SMALL
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
       dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]),
       eps=st.floats(0, 0.2), steps=st.integers(0, 3), norm=st.sampled_from(["linf", "l2"]),
       targeted=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_pgd_output_stays_in_ball_and_box(n, c, h, w, dtype, eps, steps, norm, targeted, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the model's init too: hypothesis replays an example and must see the same one
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 4)).eval()
    x = torch.rand(n, c, h, w, generator=g).to(dtype)
    y = torch.randint(0, 4, (n,), generator=g)
    adv = rankcore.pgd(model, x, y, eps, steps=steps, norm=norm, targeted=targeted, seed=seed)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    d = adv.double() - x.double()
    size = d.abs().flatten(1).amax(1) if norm == "linf" else d.flatten(1).norm(dim=1)
    # exact in float32/float16 (rounded towards x); float64 itself rounds x + delta, by at
    # most half an ulp of 1 per element: sqrt(numel) of them in the L2 norm
    slack = 0.0 if dtype != torch.float64 else 2.0 ** -53 * (1 if norm == "linf" else math.sqrt(c * h * w))
    assert (size <= eps + slack).all(), (size.max().item(), eps)
    assert adv.min() >= 0 and adv.max() <= 1


RANK_SPECS = st.one_of(st.none(), st.integers(-3, 12), st.floats(-1, 12),
                       st.lists(st.integers(-2, 12), max_size=4),
                       st.sampled_from(["all", "max", "1:max:3", "2:6", "0:4", "x", "1:8:0",
                                        "3,5", ""]), st.booleans())


@SMALL
@given(ranks=RANK_SPECS, size=st.integers(3, 9))
def test_rig_ranks_work_or_name_ranks(ranks, size):
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    try:
        out = rankcore.rig(MODEL, x, ranks=ranks, internal_batch_size=8)
    except (ValueError, TypeError) as e:
        assert _names(e, "ranks"), repr(e)
    else:
        assert out.shape == (1, size, size) and torch.isfinite(out).all()


TARGETS = st.one_of(st.none(), st.integers(-200, 10), st.floats(-1, 6), st.booleans(),
                    st.lists(st.integers(-1, 6), max_size=3), st.text(max_size=2))


@SMALL
@given(target=TARGETS,
       fn=st.sampled_from([lambda x, t: rankcore.rig(MODEL, x, target=t, ranks="1:max:4"),
                           lambda x, t: A.vanilla_gradient(MODEL, x, target=t),
                           lambda x, t: A.RankIntegratedGradients(MODEL).attribute(x, target=t,
                                                                                  ranks="2:max:4")]))
def test_targets_work_or_name_target(target, fn):
    try:
        out = fn(X, target)
    except (ValueError, TypeError) as e:
        assert _names(e, "target"), repr(e)
    else:
        assert out.shape[0] == len(X) and torch.isfinite(out).all()


@SMALL
@given(labels=st.lists(st.integers(-200, 8), min_size=2, max_size=2),
       scale=st.sampled_from([1.0, 255.0, -1.0, math.nan]))
def test_pgd_labels_and_ranges_work_or_name_the_argument(labels, scale):
    x = X * scale
    y = torch.tensor(labels)
    try:
        adv = rankcore.pgd(MODEL, x, y, 4 / 255, steps=1)
    except (ValueError, TypeError) as e:
        assert _names(e, "x must", "y must"), repr(e)
    else:
        assert 0 <= min(labels) and max(labels) < 5 and scale == 1.0
        assert (adv - x).abs().max() <= 4 / 255 + 1e-7
