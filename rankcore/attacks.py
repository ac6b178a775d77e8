"""Projected gradient descent (Madry et al. 2018) and the robustness numbers of Table 2.

The paper attacks its low-rank-trained ResNet-50s with a *targeted* 20-step L-inf PGD of
radius 4/255 (Section 5.3, Table 2) and reports, per model:

- attack success rate: the adversarial image is classified as the attack's target;
- recovery rate: the adversarial image is still classified as its true label
  (success + recovery < 100%: the rest goes to other classes);
- top-1 accuracy on the clean, full-rank test images.

:func:`pgd` makes the adversarial images; :func:`evaluate` computes those rates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .torch_utils import model_device

NORMS = ("linf", "l2")
KEEP = ("best", "last")


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int = 20,
        step_size: float | None = None, norm: str = "linf", targeted: bool = False,
        target: Tensor | None = None, random_start: bool = True, restarts: int = 1,
        seed: int = 0, keep: str = "best") -> Tensor:
    """Projected gradient descent in an L-inf or L2 ball, untargeted or targeted.

    Each step moves along the sign of the loss gradient (L-inf) or its per-image unit
    vector (L2), then projects onto the eps-ball around ``x`` and onto [0, 1]. Untargeted
    steps increase the cross-entropy of ``y``; targeted steps decrease that of ``target``.

    Args:
        model (nn.Module): classifier taking images in [0, 1] and returning logits
            ``(N, classes)``. Put in eval mode for the attack and restored afterwards.
        x (Tensor): clean images ``(N, C, H, W)`` in [0, 1]; dimension 0 indexes examples.
        y (Tensor): true labels ``(N,)`` int64.
        eps (float): radius of the ball (e.g. 4/255 for L-inf, 0.5 for L2).
        steps (int, optional): gradient steps per restart. Default: 20.
        step_size (float, optional): step length. Default: ``2.5 * eps / steps`` (the
            ``robustness`` library's choice, which lets a start on the sphere cross the ball).
        norm (str, optional): ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        targeted (bool, optional): minimise the loss of ``target``. Default: False.
        target (Tensor, optional): target labels ``(N,)``; with ``targeted=True`` and no
            target, a seeded random class different from ``y`` (see :func:`random_targets`).
        random_start (bool, optional): start at a uniform random point of the ball
            (L-inf) or a random point of it (L2). Default: True.
        restarts (int, optional): independent random starts. Default: 1.
        seed (int, optional): seed of the random starts and targets. Default: 0.
        keep (str, optional): ``"best"`` keeps, per example, the best iterate over all
            steps and restarts (first successful ones, then by loss; the ``robustness``
            library's behaviour); ``"last"`` returns the final iterate of the last
            restart (torchattacks' behaviour). Default: ``"best"``.

    Returns:
        Tensor: adversarial images, shape and dtype of ``x``, in [0, 1] and within ``eps``
        of ``x`` in the chosen norm.

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
        >>> x_adv = rankcore.pgd(model, x, y, eps=4 / 255, steps=5)
    """
    _check_inputs(x, y, eps, steps, norm, restarts, keep)
    step_size = 2.5 * eps / steps if step_size is None else float(step_size)
    if not step_size >= 0:
        raise ValueError(f"step_size={step_size!r}; expected a non-negative number")
    gen = torch.Generator(device=x.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        if targeted:
            target = _targets(model, x, y, target, seed)
        return _pgd_core(model, x, y, eps=float(eps), steps=int(steps), step_size=step_size,
                         norm=norm, targeted=targeted,
                         target=target.to(x.device) if targeted else None,
                         random_start=random_start, restarts=int(restarts), keep=keep,
                         generator=gen)
    finally:
        model.train(was_training)


def random_targets(y: Tensor, classes: int, seed: int = 0) -> Tensor:
    """A seeded uniformly random class different from ``y`` for every example.

    Args:
        y (Tensor): labels ``(N,)``.
        classes (int): number of classes (>= 2).
        seed (int, optional): Default: 0.
    """
    if classes < 2:
        raise ValueError(f"classes={classes!r}; a target different from y needs >= 2")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, classes, y.shape, generator=g).to(y.device)
    return (y + shift) % classes


def _targets(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, seed: int) -> Tensor:
    """``target`` checked, or seeded random wrong classes when it is None."""
    if target is None:
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        return random_targets(y, classes, seed=seed)
    if not torch.is_tensor(target) or target.shape != y.shape:
        raise ValueError(f"target must be a tensor of shape {tuple(y.shape)}; got "
                         f"{getattr(target, 'shape', type(target).__name__)}")
    return target.to(y.device)


def _check_inputs(x, y, eps, steps, norm, restarts, keep) -> None:
    if not (torch.is_tensor(x) and x.ndim >= 2 and x.is_floating_point()):
        raise ValueError(f"x must be a float tensor (N, ...); got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not (torch.is_tensor(y) and y.shape == x.shape[:1]):
        raise ValueError(f"y must be a tensor of shape ({x.shape[0]},); got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if not eps >= 0:
        raise ValueError(f"eps={eps!r}; expected a non-negative number")
    if int(steps) < 0:
        raise ValueError(f"steps={steps!r}; expected an integer >= 0")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}; expected one of {NORMS}")
    if int(restarts) < 1:
        raise ValueError(f"restarts={restarts!r}; expected an integer >= 1")
    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; expected one of {KEEP}")


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


def _random_start(x: Tensor, eps: float, norm: str, gen: torch.Generator) -> Tensor:
    if norm == "linf":
        delta = (torch.rand(x.shape, device=x.device, generator=gen) * 2 - 1) * eps
    else:
        # Uniform direction, radius eps * u^(1/d): a uniform point of the L2 ball.
        d = torch.randn(x.shape, device=x.device, generator=gen)
        r = torch.rand(x.shape[0], device=x.device, generator=gen) ** (1.0 / x[0].numel())
        delta = d / _per_image_norm(d) * (eps * r).view(-1, *[1] * (x.ndim - 1))
    return _project(delta.to(x.dtype), x, eps, norm)


def _objective(logits: Tensor, label: Tensor, targeted: bool) -> tuple[Tensor, Tensor]:
    """Per-example (loss to ascend, success flag)."""
    loss = F.cross_entropy(logits, label, reduction="none")
    pred = logits.argmax(1)
    if targeted:
        return -loss, pred == label
    return loss, pred != label


def _pgd_core(model, x, y, *, eps, steps, step_size, norm, targeted, target, random_start,
              restarts, keep, generator) -> Tensor:
    """PGD without validation or mode changes (the training loop calls it in train mode)."""
    label = target if targeted else y
    x = x.detach()
    best = x.clone()
    best_loss = torch.full((len(x),), -float("inf"), device=x.device)
    best_ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def consider(x_adv: Tensor, logits: Tensor) -> None:
        # Successful iterates beat unsuccessful ones; among equals, the higher loss wins.
        loss, ok = _objective(logits.detach(), label, targeted)
        better = (ok & ~best_ok) | ((ok == best_ok) & (loss > best_loss))
        best[better] = x_adv[better].detach()
        best_loss[better], best_ok[better] = loss[better], ok[better]

    for _ in range(restarts):
        delta = _random_start(x, eps, norm, generator) if random_start else torch.zeros_like(x)
        for _ in range(steps):
            # enable_grad: callers often evaluate under torch.no_grad().
            with torch.enable_grad():
                delta.requires_grad_(True)
                logits = model(x + delta)
                loss, _ = _objective(logits, label, targeted)
                grad, = torch.autograd.grad(loss.sum(), delta)
            if keep == "best":
                consider(x + delta.detach(), logits)
            if norm == "linf":
                step = grad.sign()
            else:
                step = grad / _per_image_norm(grad)
            delta = _project(delta.detach() + step_size * step, x, eps, norm)
        if keep == "best":
            with torch.no_grad():
                consider(x + delta, model(x + delta))
    return best if keep == "best" else (x + delta).detach()


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, x: Tensor, y: Tensor, eps: float = 4 / 255, steps: int = 20,
             norm: str = "linf", targeted: bool = True, target: Tensor | None = None,
             batch_size: int = 256, seed: int = 0, progress: bool = False,
             **pgd_kwargs) -> dict:
    """Table 2's robustness numbers for one model (paper Section 5.3).

    Args:
        model (nn.Module): classifier on [0, 1] images (eval mode during the call).
        x (Tensor): clean test images ``(N, C, H, W)`` in [0, 1].
        y (Tensor): labels ``(N,)``.
        eps, steps, norm: the attack (Default: targeted 20-step L-inf 4/255, as Table 2).
        targeted (bool, optional): Default: True.
        target (Tensor, optional): targets ``(N,)``; default a seeded random wrong class.
        batch_size (int, optional): images per attack batch. Default: 256.
        seed (int, optional): seed of targets and random starts. Default: 0.
        progress (bool, optional): tqdm bar over batches. Default: False.
        **pgd_kwargs: passed to :func:`pgd` (``step_size``, ``restarts``, ``keep``, ...).

    Returns:
        dict, all rates in percent over the N images:
        ``top1`` (clean accuracy), ``adv_top1`` (accuracy on adversarial images),
        ``success`` (adversarial prediction == target; for an untargeted attack,
        != label), ``recovery`` (adversarial prediction == true label), ``other``
        (100 - success - recovery, targeted only), the same three restricted to the
        images the model classified correctly before the attack
        (``success_on_correct``, ``recovery_on_correct``), and ``n``, ``n_correct``.
    """
    _check_inputs(x, y, eps, steps, norm, pgd_kwargs.get("restarts", 1),
                  pgd_kwargs.get("keep", "best"))
    was_training = model.training
    model.eval()
    try:
        if targeted:
            target = _targets(model, x, y, target, seed)
        clean, adv = [], []
        batches = range(0, len(x), batch_size)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="pgd", leave=False)
        for b, i in enumerate(batches):
            sl = slice(i, i + batch_size)
            xa = pgd(model, x[sl], y[sl], eps, steps=steps, norm=norm, targeted=targeted,
                     target=target[sl] if targeted else None, seed=seed + b, **pgd_kwargs)
            clean.append(_predict(model, x[sl], batch_size))
            adv.append(_predict(model, xa, batch_size))
    finally:
        model.train(was_training)
    clean, adv = torch.cat(clean), torch.cat(adv)
    y = y.to(clean.device)
    ok = adv == target.to(adv.device) if targeted else adv != y
    rec = adv == y
    correct = clean == y

    def pct(mask: Tensor, among: Tensor | None = None) -> float:
        among = torch.ones_like(mask) if among is None else among
        return 100.0 * (mask & among).sum().item() / max(1, among.sum().item())

    out = {"n": len(y), "n_correct": int(correct.sum()), "top1": pct(correct),
           "adv_top1": pct(rec), "success": pct(ok), "recovery": pct(rec),
           "success_on_correct": pct(ok, correct), "recovery_on_correct": pct(rec, correct)}
    if targeted:
        out["other"] = 100.0 - out["success"] - out["recovery"]
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
        DataFrame, one row per model: ``run``, the rates of :func:`evaluate`, ``seconds``.
    """
    import time

    import pandas as pd
    rows = []
    items = models.items()
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="attack", total=len(models), leave=False)
    for name, model in items:
        device = model_device(model)
        t0 = time.perf_counter()
        r = evaluate(model, x.to(device), y.to(device), **kwargs)
        rows.append({"run": name, **r, "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows)
