"""Projected gradient descent (Madry et al. 2018) and the robustness numbers of Table 2.

The paper attacks its low-rank-trained ResNet-50s with a *targeted* 20-step L-inf PGD of
radius 4/255 (Section 5.3, Table 2) and reports, per model:

- attack success rate: the adversarial image is classified as the attack's target;
- recovery rate: the adversarial image is still classified as its true label
  (success + recovery < 1: the rest goes to other classes);
- top-1 accuracy on the clean, full-rank test images.

:func:`pgd` makes the adversarial images; :func:`evaluate` computes those rates, as
fractions in [0, 1] (the book shows them in percent); :func:`autoattack` (its own module,
``rankcore._autoattack``) is the stronger check. :func:`perturb` is the bare loop
for callers that have checked their inputs; :func:`adversarial`, the training-time attack,
takes the same projected step (:func:`_step`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# NORMS, KEEP and AUTOATTACK_VERSIONS are re-exported: rankcore.attacks is where users find them
from ._checks import (KEEP, NORMS, cast_inside, check_inputs, check_labels, model_dtype,
                             num_classes)
from ._autoattack import AUTOATTACK_VERSIONS, autoattack
from .torch_utils import evaluating, model_device, predict

HALF = (torch.float16, torch.bfloat16)  # attacked in float64, then rounded towards x


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 20,
        step_size: float | None = None, norm: str = "linf", targeted: bool = False,
        target: Tensor | None = None, random_start: bool = True, restarts: int = 1,
        seed: int = 0, keep: str = "best") -> Tensor:
    """Projected gradient descent in an L-inf or L2 ball, untargeted or targeted.

    Each step moves along the sign of the loss gradient (L-inf) or its per-image unit
    vector (L2), then projects onto the eps-ball around ``x`` and onto [0, 1]. Untargeted
    steps increase the cross-entropy of ``y``; targeted steps decrease that of ``target``.
    The perturbation is computed in float64 (the model sees its own dtype) and rounded
    towards ``x``, so float32 and float16 images stay inside the ball after rounding. 13
    positional parameters because each is a setting with a default (pass them by name).

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits
            ``(N, classes)``. Put in eval mode for the attack; the caller's modes are
            restored afterwards.
        x (Tensor): clean images ``(N, C, H, W)`` in [0, 1], finite; dimension 0 indexes
            examples. Moved to the model's device for the attack.
        y (Tensor): true labels ``(N,)``, integers in ``[0, classes)``.
        eps (float): radius of the ball (e.g. 4/255 for L-inf, 0.5 for L2), ``>= 0``.
        steps (int, optional): gradient steps per restart, ``>= 0``; 0 returns the start
            (``x``, or its random start). Default: 20.
        step_size (float, optional): step length. Default: ``2.5 * eps / steps`` (the
            ``robustness`` library's choice, which lets a start on the sphere cross the ball).
        norm (str, optional): ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        targeted (bool, optional): minimise the loss of ``target``. Default: False.
        target (Tensor, optional): target labels ``(N,)``, only with ``targeted=True``; with
            ``targeted=True`` and no target, a seeded random class different from ``y``
            (see :func:`random_targets`).
        random_start (bool, optional): start at a uniform random point of the ball
            (L-inf) or a random point of it (L2). Default: True.
        restarts (int, optional): independent random starts, ``>= 1``. Default: 1.
        seed (int, optional): seed of the random starts and targets. Default: 0.
        keep (str, optional): ``"best"`` keeps, per example, the best iterate over all
            steps and restarts (first successful ones, then by loss; the ``robustness``
            library's behaviour); ``"last"`` returns the final iterate of the last
            restart (torchattacks' behaviour). Default: ``"best"``.

    Returns:
        Tensor: adversarial images, shape, dtype and device of ``x``, in [0, 1] and within
        ``eps`` of ``x`` in the chosen norm.

    Raises:
        TypeError: ``x`` not a float tensor, ``y``/``target`` not integer, ``steps`` or
            ``restarts`` not an int.
        ValueError: images outside [0, 1] (e.g. 0-255) or not finite, labels outside the
            model's classes (e.g. ``y=-100``), a bad ``eps``, ``norm`` or ``keep``, a
            ``target`` without ``targeted=True``.

    Examples::

        >>> import rankcore
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
        >>> x_adv = rankcore.pgd(model, x, y, eps=4 / 255, steps=5)
        >>> bool(((x_adv - x).abs().max() <= 4 / 255 + 1e-6) and x_adv.min() >= 0)
        True
    """
    check_inputs(x, y, eps, steps, norm, restarts, keep)
    _check_target_mode(target, targeted)
    step_size = 2.5 * eps / max(1, steps) if step_size is None else step_size
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size >= 0:
        raise ValueError(f"step_size={step_size!r}; expected a non-negative number")
    home = x.device
    device = model_device(model)
    x, y = x.detach().to(device), y.to(device)
    with evaluating(model):
        classes = num_classes(model, x)
        check_labels("y", y, classes)
        if targeted:
            target = _targets(model, x, y, target, seed, classes)
        gen = torch.Generator(device=device).manual_seed(seed)
        # float64 arithmetic, then rounded towards x: the ball holds in x's own dtype
        adv = perturb(model, x.double(), y, eps=float(eps), steps=steps,
                      step_size=float(step_size), norm=norm, targeted=targeted,
                      target=target if targeted else None, random_start=random_start,
                      restarts=restarts, keep=keep, generator=gen)
    return cast_inside(adv, x).to(home)


def _check_target_mode(target, targeted: bool) -> None:
    if target is not None and not targeted:
        raise ValueError("target is given but targeted=False: the attack would ignore it; "
                         "pass targeted=True to steer towards target, or drop target")


def random_targets(y: Tensor, classes: int, seed: int = 0) -> Tensor:
    """A seeded uniformly random class different from ``y`` for every example.

    Args:
        y (Tensor): labels ``(N,)``.
        classes (int): number of classes (>= 2).
        seed (int, optional): Default: 0.
    """
    if isinstance(classes, bool) or not isinstance(classes, int):
        raise TypeError(f"classes must be an int; got {type(classes).__name__} {classes!r}")
    if classes < 2:
        raise ValueError(f"classes={classes!r}; a target different from y needs >= 2")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, classes, y.shape, generator=g).to(y.device)
    return (y + shift) % classes


def _targets(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, seed: int,
             classes: int) -> Tensor:
    """``target`` checked, or seeded random wrong classes when it is None."""
    if target is None:
        return random_targets(y, classes, seed=seed)
    if not torch.is_tensor(target) or target.shape != y.shape:
        raise ValueError(f"target must be a tensor of shape {tuple(y.shape)}; got "
                         f"{getattr(target, 'shape', type(target).__name__)}")
    check_labels("target", target, classes)
    return target.to(y.device)


def _per_image_norm(v: Tensor) -> Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (v.ndim - 1))


def _project(delta: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``delta`` onto the eps-ball, then so that ``x + delta`` lies in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _per_image_norm(delta)).clamp(max=1.0)
    # Clipping to the box after the ball keeps both constraints for L-inf, and for L2
    # only shrinks the perturbation, so the result stays inside the ball.
    return (x + delta).clamp(0, 1) - x


def _random_start(x: Tensor, eps: float, norm: str, gen: torch.Generator,
                  l2_radius: str = "ball") -> Tensor:
    """A random start ``delta`` (``x``'s shape and dtype), projected like every step.

    L-inf: uniform in the cube. L2, ``l2_radius="ball"``: a uniform point of the ball
    (Gaussian direction, radius ``eps * u^(1/d)``); ``"uniform"``: the training recipe's
    start (direction normalised from the cube, radius ``eps * u``), kept for its weights.
    """
    if norm == "linf":
        delta = (torch.rand(x.shape, device=x.device, generator=gen) * 2 - 1) * eps
    elif l2_radius == "ball":
        d = torch.randn(x.shape, device=x.device, generator=gen)
        r = torch.rand(x.shape[0], device=x.device, generator=gen) ** (1.0 / x[0].numel())
        delta = d / _per_image_norm(d) * (eps * r).view(-1, *[1] * (x.ndim - 1))
    else:
        d = torch.rand(x.shape, device=x.device, generator=gen) * 2 - 1
        r = torch.rand(x.shape[0], device=x.device, generator=gen)
        delta = d / _per_image_norm(d) * r.view(-1, *[1] * (x.ndim - 1)) * eps
    return _project(delta.to(x.dtype), x, eps, norm)


def _step(delta: Tensor, grad: Tensor, x: Tensor, eps: float, step_size: float,
          norm: str) -> Tensor:
    """One projected ascent step: ``delta`` moves ``step_size`` along the sign of ``grad``
    (L-inf) or its per-image unit vector (L2), then :func:`_project`. The one step of
    :func:`pgd`, :func:`perturb` and the training-time :func:`adversarial`."""
    direction = grad.sign() if norm == "linf" else grad / _per_image_norm(grad)
    return _project(delta.detach() + step_size * direction, x, eps, norm)


def _objective(logits: Tensor, label: Tensor, targeted: bool) -> tuple[Tensor, Tensor]:
    """Per-example (loss to ascend, success flag)."""
    loss = F.cross_entropy(logits, label, reduction="none")
    pred = logits.argmax(1)
    if targeted:
        return -loss, pred == label
    return loss, pred != label


def perturb(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int,
            step_size: float, norm: str = "linf", targeted: bool = False,
            target: Tensor | None = None, random_start: bool = True, restarts: int = 1,
            keep: str = "best", generator: torch.Generator | None = None) -> Tensor:
    """PGD without validation, device moves or mode changes: the loop of :func:`pgd`.

    For callers that checked their inputs already; all tensors on the model's device, ``x``
    in the dtype the arithmetic should use. Arguments as in :func:`pgd`. (Adversarial
    training calls :func:`adversarial`, which takes the same :func:`_step`.)

    Returns:
        Tensor: adversarial images in ``x``'s dtype.
    """
    if x.dtype in HALF:
        # The ball projected in half precision can round past eps (0.01587 > 4/255 in
        # float16): the loop runs in float64, then each pixel is rounded towards x.
        return cast_inside(perturb(model, x.detach().double(), y, eps=eps, steps=steps,
                                    step_size=step_size, norm=norm, targeted=targeted,
                                    target=target, random_start=random_start,
                                    restarts=restarts, keep=keep, generator=generator), x)
    label = target if targeted else y
    x = x.detach()
    feed = model_dtype(model, x.dtype)        # float16 weights get float16 inputs
    best = x.clone()
    # float64 whatever the logits' dtype (float64 and parameter-free models give float64)
    best_loss = torch.full((len(x),), -float("inf"), dtype=torch.float64, device=x.device)
    best_ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def consider(x_adv: Tensor, logits: Tensor) -> None:
        # Successful iterates beat unsuccessful ones; among equals, the higher loss wins.
        loss, ok = _objective(logits.detach(), label, targeted)
        loss = loss.double()
        better = (ok & ~best_ok) | ((ok == best_ok) & (loss > best_loss))
        best[better] = x_adv[better].detach()
        best_loss[better], best_ok[better] = loss[better], ok[better]

    for _ in range(restarts):
        delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
        for _ in range(steps):
            # enable_grad: callers often evaluate under torch.no_grad().
            with torch.enable_grad():
                delta.requires_grad_(True)
                logits = model((x + delta).to(feed))
                loss, _ = _objective(logits, label, targeted)
                grad, = torch.autograd.grad(loss.sum(), delta)
            if keep == "best":
                consider(x + delta.detach(), logits)
            delta = _step(delta, grad, x, eps, step_size, norm)
        if keep == "best":
            with torch.no_grad():
                consider(x + delta, model((x + delta).to(feed)))
    return best if keep == "best" else (x + delta).detach()


def adversarial(model: nn.Module, x: Tensor, y: Tensor, *, method: str, norm: str, eps: float,
                steps: int, step_size: float | None, generator: torch.Generator) -> Tensor:
    """Training-time adversarial examples (re-exported as ``rankcore.train.adversarial``).

    In the model's current mode (train mode: batch-norm statistics of the attacked batch)
    and without :func:`pgd`'s validation: ``"fgsm-rs"`` (Wong et al. 2020: a uniform start,
    one signed step of ``step_size`` or 1.25 eps) or ``"pgd"`` (``steps`` steps of
    ``step_size`` or 2.5 eps / steps from a random start; L2 starts at radius ``eps * u``).
    Each step ascends the batch-mean cross-entropy of ``y`` by :func:`_step`, the step of
    :func:`pgd`: onto the ``norm`` ("linf"/"l2") ball of radius ``eps``, images in [0, 1].

    Args:
        x (Tensor): images ``(B, C, H, W)`` in [0, 1] on the model's device.
        y (Tensor): labels ``(B,)``.
        generator (torch.Generator): on ``x``'s device; draws the random start.

    Returns:
        Tensor: detached adversarial images, ``x``'s shape and dtype.
    """
    steps = 1 if method == "fgsm-rs" else steps
    alpha = step_size or (1.25 * eps if method == "fgsm-rs" else 2.5 * eps / steps)
    given, feed = x.detach(), x.dtype
    x = given.double() if feed in HALF else given  # as in perturb: no rounding past eps
    delta = _random_start(x, eps, norm, generator, l2_radius="uniform")
    for _ in range(steps):
        with torch.enable_grad():
            delta.requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(model((x + delta).to(feed)), y), delta)
        delta = _step(delta, grad, x, eps, alpha, norm)
    return cast_inside((x + delta).detach(), given)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, eps: float = 4 / 255, steps: int = 20,
             norm: str = "linf", targeted: bool = True, target: Tensor | None = None,
             batch_size: int = 256, seed: int = 0, progress: bool = False,
             attack: str = "pgd", *, per_image: bool = False, **pgd_kwargs) -> dict:
    """Table 2's robustness numbers for one model (paper Section 5.3).

    It takes 11 positional parameters because it is :func:`pgd`'s settings plus the
    batching, each with a default; pass all but the first three by name.

    Args:
        model (nn.Module): classifier on [0, 1] images (eval mode during the call, the
            caller's modes restored).
        x (Tensor): clean test images ``(N, C, H, W)`` in [0, 1].
        y (Tensor): labels ``(N,)``, integers in ``[0, classes)``.
        eps, steps, norm: the attack (Default: targeted 20-step L-inf 4/255, as Table 2).
        targeted (bool, optional): Default: True.
        target (Tensor, optional): targets ``(N,)``; default a seeded random wrong class.
        batch_size (int, optional): images per attack batch. Default: 256.
        seed (int, optional): seed of targets and random starts. Default: 0.
        progress (bool, optional): tqdm bar over batches. Default: False.
        attack (str, optional): ``"pgd"`` or ``"autoattack"`` (:func:`autoattack`,
            untargeted only; ``steps`` is then its version's, and ``pgd_kwargs`` may hold
            only ``version`` and ``targets``). Default: ``"pgd"``.
        per_image (bool, optional): also return each image's outcomes, for paired intervals
            between attacks or models on the same images. Default: False.
        **pgd_kwargs: passed to :func:`pgd` (``step_size``, ``restarts``, ``keep``, ...).

    Returns:
        dict, every rate a fraction in [0, 1] of the N images, each under one key:
        ``top1`` (clean accuracy), ``success`` (adversarial prediction == target; for an
        untargeted attack, != label), ``recovery`` (adversarial prediction == true label,
        i.e. the accuracy under attack), ``other`` (1 - success - recovery, targeted only),
        the two rates restricted to the images the model classified correctly before the
        attack (``success_on_correct``, ``recovery_on_correct``), and the counts ``n``,
        ``n_correct``. With ``per_image=True`` also ``per_image``: ``{"correct", "success",
        "recovery"}``, each an ``(N,)`` bool NumPy array whose mean is that rate.
    """
    check_inputs(x, y, eps, steps, norm, pgd_kwargs.get("restarts", 1),
                  pgd_kwargs.get("keep", "best"))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    device = model_device(model)
    x, y = x.detach().to(device), y.to(device)
    with evaluating(model):
        classes = num_classes(model, x)
        check_labels("y", y, classes)
        if targeted:
            target = _targets(model, x, y, target, seed, classes)
        adv = []
        batches = range(0, len(x), batch_size)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="pgd", leave=False)
        for b, i in enumerate(batches):
            sl = slice(i, i + batch_size)
            if attack == "autoattack":
                if targeted:
                    raise ValueError("attack='autoattack' is untargeted; pass targeted=False")
                xa = autoattack(model, x[sl], y[sl], eps, norm=norm, seed=seed + b, **pgd_kwargs)
            elif attack == "pgd":
                xa = pgd(model, x[sl], y[sl], eps, steps=steps, norm=norm, targeted=targeted,
                         target=target[sl] if targeted else None, seed=seed + b, **pgd_kwargs)
            else:
                raise ValueError(f"attack={attack!r}; expected 'pgd' or 'autoattack'")
            adv.append(predict(model, xa, batch_size, amp=False).argmax(1))
        clean = predict(model, x, batch_size, amp=False).argmax(1)
    adv = torch.cat(adv)
    ok = adv == target if targeted else adv != y
    rec = adv == y
    correct = clean == y

    def rate(mask: Tensor, among: Tensor | None = None) -> float:
        among = torch.ones_like(mask) if among is None else among
        return (mask & among).sum().item() / max(1, among.sum().item())

    out = {"n": len(y), "n_correct": int(correct.sum()), "top1": rate(correct),
           "success": rate(ok), "recovery": rate(rec),
           "success_on_correct": rate(ok, correct), "recovery_on_correct": rate(rec, correct)}
    if targeted:
        out["other"] = rate(~ok & ~rec)
    if per_image:
        out["per_image"] = {"correct": correct.cpu().numpy(), "success": ok.cpu().numpy(),
                            "recovery": rec.cpu().numpy()}
    return out


def evaluate_models(models: dict, x: Tensor, y: Tensor, progress: bool = True,
                    **kwargs) -> "pd.DataFrame":
    """:func:`evaluate` for several models on the same images and targets (Table 2).

    Args:
        models (dict): ``{name: model}``; each is attacked on its own device.
        x (Tensor): clean images ``(N, C, H, W)`` in [0, 1].
        y (Tensor): labels ``(N,)``.
        progress (bool, optional): tqdm bar over models. Default: True.
        **kwargs: passed to :func:`evaluate` (``eps``, ``steps``, ``seed``, ...).

    Returns:
        DataFrame, one row per model: ``run``, the keys of :func:`evaluate` (rates as
        fractions), ``seconds``.
    """
    if not isinstance(models, dict) or not models:
        raise ValueError(f"models must be a non-empty dict name -> model; got {models!r}")
    import time

    import pandas as pd
    rows = []
    items = models.items()
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="attack", total=len(models), leave=False)
    for name, model in items:
        t0 = time.perf_counter()
        r = evaluate(model, x, y, **kwargs)         # inputs follow each model's device
        rows.append({"run": name, **r, "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows)
