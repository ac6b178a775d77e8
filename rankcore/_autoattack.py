"""AutoAttack (Croce & Hein 2020) through torchattacks: :func:`autoattack`, re-exported
by :mod:`rankcore.attacks` (``rankcore.attacks.autoattack``) and used by its ``evaluate``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import cast_inside, check_inputs, check_labels, is_int, num_classes
from .torch_utils import evaluating, model_device

#: :func:`autoattack` versions: ``"standard"`` is RobustBench's protocol (APGD-CE, APGD-T,
#: FAB-T and Square with the reference budgets); ``"fast"`` is its first two attacks with a
#: smaller budget, for CPU books.
AUTOATTACK_VERSIONS = ("standard", "fast")


def _torchattacks():
    try:
        import torchattacks
    except ImportError as e:
        raise ImportError("AutoAttack needs torchattacks, which rankcore installs as the "
                          "optional extra 'attacks': pip install 'rankcore[attacks]'") from e
    return torchattacks


def _ensemble(ta, model: nn.Module, *, eps: float, norm: str, version: str, steps: int | None,
              targets: int | None, classes: int, seed: int):
    """torchattacks' attacks of one AutoAttack version, run in turn by ``MultiAttack``.

    Built here rather than with ``torchattacks.AutoAttack``, whose APGD and FAB take 10
    steps: the reference implementation (Croce & Hein 2020) gives them 100.
    """
    n = {"linf": "Linf", "l2": "L2"}[norm]
    steps = (100 if version == "standard" else 20) if steps is None else steps
    targets = min(classes - 1, 9 if version == "standard" else 3 if targets is None else targets)
    apgd = ta.APGD(model, norm=n, eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce")
    apgdt = ta.APGDT(model, norm=n, eps=eps, steps=steps, n_restarts=1, seed=seed,
                     n_classes=classes)
    apgdt.n_target_classes = targets             # torchattacks fixes it at classes - 1
    chain = [apgd, apgdt]
    if version == "standard":
        fab = ta.FAB(model, norm=n, eps=eps, steps=steps, n_restarts=1, seed=seed,
                     multi_targeted=True, n_classes=classes)
        fab.n_target_classes = targets
        chain += [fab, ta.Square(model, norm=n, eps=eps, n_queries=5000, n_restarts=1,
                                 seed=seed)]
    return ta.MultiAttack(chain)


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, norm: str = "linf",
               version: str = "standard", steps: int | None = None,
               targets: int | None = None, seed: int = 0) -> Tensor:
    """AutoAttack (Croce & Hein 2020, the RobustBench protocol), untargeted, through
    torchattacks (the optional extra ``attacks``).

    The attacks run in turn; each attacks only the images every earlier one left correct,
    so the result is at least as strong as its strongest member. APGD chooses its own step
    sizes, which is why it exposes gradient masking that a fixed-step PGD can hide.

    Args:
        model (nn.Module): classifier on [0, 1] images returning logits ``(N, classes)``;
            in eval mode for the attack, the caller's modes restored (as :func:`pgd`).
        x (Tensor): clean images ``(N, C, H, W)`` in [0, 1], finite.
        y (Tensor): true labels ``(N,)``, integers in ``[0, classes)``.
        eps (float): radius of the ball (8/255 L-inf, 0.5 L2 on CIFAR-10), ``>= 0``.
        norm (str, optional): ``"linf"`` or ``"l2"``. Default: ``"linf"``.
        version (str, optional): one of :data:`AUTOATTACK_VERSIONS`. ``"standard"``:
            APGD-CE, APGD-T (9 targets), FAB-T (9 targets), 100 steps each, and Square
            with 5,000 queries; ``"fast"``: APGD-CE and APGD-T only. Default: ``"standard"``.
        steps (int, optional): APGD/FAB iterations. Default: 100 (standard), 20 (fast).
        targets (int, optional): target classes of APGD-T in the fast version (the top
            wrong classes by logit). Default: 3; the standard version always uses 9.
        seed (int, optional): seed of the random starts; the global RNG is left as it was.
            Default: 0.

    Returns:
        Tensor: adversarial images, shape, dtype and device of ``x``, within ``eps``.

    Raises:
        ImportError: torchattacks is not installed (names the extra).
        TypeError, ValueError: as :func:`pgd` for the images, labels, ``eps`` and ``norm``;
            ValueError for an unknown ``version``.
    """
    check_inputs(x, y, eps, 0 if steps is None else steps, norm, 1, "best")
    if version not in AUTOATTACK_VERSIONS:
        raise ValueError(f"version={version!r}; expected one of {AUTOATTACK_VERSIONS}")
    if targets is not None and (not is_int(targets) or targets < 1):
        raise ValueError(f"targets={targets!r}; expected an integer >= 1")
    ta = _torchattacks()
    home, device = x.device, model_device(model)
    x, y = x.detach().to(device), y.to(device)
    rng_devices = [device] if device.type == "cuda" else []
    with evaluating(model), torch.random.fork_rng(devices=rng_devices):
        classes = num_classes(model, x)
        check_labels("y", y, classes)
        if classes < 4:      # APGD-T's targeted DLR loss reads the 3rd and 4th largest logits
            raise ValueError(f"AutoAttack needs a model with >= 4 classes; this one has {classes}")
        attack = _ensemble(ta, model, eps=float(eps), norm=norm, version=version, steps=steps,
                           targets=targets, classes=classes, seed=seed)
        adv = attack(x.float(), y).detach().to(torch.float64)
    return cast_inside(adv, x).to(home)
