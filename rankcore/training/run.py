"""A training run that owns its folder: :class:`Run` and its :class:`RunResult`.

One configuration, one folder (``cache_dir("models")/<data>-<arch>-<name>-<key>`` unless
told otherwise) holding everything about it, written by the run alone::

    config.json     what was asked (the configuration and the code version)
    checkpoint.pt   the trainer's checkpoint (:mod:`rankcore.training.checkpoint`)
    log.jsonl       one line per finished epoch
    .lock           taken while training, so a second process waits and then loads

:meth:`Run.get_or_train` returns the finished model from the folder, else trains it
(resuming an interrupted run from its last epoch) and returns it. A corrupt or
code-bearing checkpoint is reported (RuntimeWarning naming the file) and trained again.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from torch import Tensor, nn

from .. import _io
from ..paths import cache_dir
from ..torch_utils import distributed, resolve_device
from . import checkpoint as checkpoints

__all__ = ["Run", "RunResult", "run_folder", "load_data"]

#: ``split`` ("train"/"test") -> ``(images uint8 (N, C, H, W), labels (N,))``.
DataSource = Callable[[str], "tuple[Tensor, Tensor]"]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :meth:`Run.get_or_train` returns.

    Attributes:
        model (nn.Module): the trained model in eval mode, on the requested device.
        history (list of dict): one row per epoch (epoch, lr, train_loss, train_acc,
            test_top1 as fractions, seconds, ...; see :func:`rankcore.train.train`).
        from_cache (bool): whether it was loaded (True) or trained by this call (False).
    """
    model: nn.Module
    history: list
    from_cache: bool


def run_folder(config) -> Path:
    """The default folder of a configuration: ``cache_dir("models")/<data>-<arch>-<name>-<key>``,
    ``<name>`` the transform (``low_rank5``), ``adv_linf``/``adv_l2`` or ``natural``."""
    name = config.transform or ("adv_" + config.adv_norm if config.adv else "natural")
    return cache_dir("models") / f"{config.dataset}-{config.arch}-{name.replace(':', '')}-{config.key()}"


def load_data(config, split: str, progress: bool = False):
    """The (untransformed) ``split`` images a configuration trains or tests on, as uint8
    ``(N, C, H, W)`` with labels ``(N,)``: ``n_train``/``n_test`` of them, seeded by
    ``data_seed``. ``progress``: a bar while a data set is decoded the first time (CIFAR-10's
    50,000 JPEGs take about 100 s on 2 cores; later calls read the decoded cache).
    ImageNet (``dataset="imagenet"``) streams: Datasets of its folders
    (:func:`rankcore.imagenet_training.train_data` / ``val_data``), not tensors."""
    from .. import data
    if config.dataset == "imagenet":
        from .. import imagenet_training
        return (imagenet_training.train_data(config) if split == "train"
                else imagenet_training.val_data(config))
    n = config.n_train if split == "train" else config.n_test
    # the decoded bytes themselves: a float copy turned back into bytes would hold the
    # whole set twice on the way
    x, y = data.load(config.dataset, split=split, n=n, seed=config.data_seed,
                     progress=progress, uint8=True)[:2]
    return x, y


class Run:
    """One training configuration and the folder it owns.

    Args:
        config (TrainConfig): the run (:class:`rankcore.train.TrainConfig`).
        folder (path, optional): Default: :func:`run_folder` of ``config``.
        data (callable, optional): ``split -> (x, y)`` for ``"train"`` and ``"test"``.
            Default: :func:`load_data` of ``config`` (with its decoding bar when
            :meth:`get_or_train` shows progress).

    Examples::

        run = Run(TrainConfig(arch="airbench_cpu", epochs=2, schedule="onecycle", lr=0.4))
        result = run.get_or_train(device="cpu")   # trains; a second call loads
        result.model, result.history[-1]["test_top1"], result.from_cache
    """

    def __init__(self, config, folder: str | os.PathLike | None = None,
                 data: DataSource | None = None):
        from ..train import TrainConfig
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
        self.config = config
        self.folder = Path(folder) if folder is not None else run_folder(config)
        self.data = data

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    def __repr__(self) -> str:
        return f"Run({self.folder.name})"

    def finished(self) -> bool:
        """Whether the folder holds a finished, readable checkpoint of this configuration."""
        try:
            return self.checkpoint.exists() and bool(
                checkpoints.load(self.checkpoint, self.config)["finished"])
        except ValueError:
            return False

    def load(self, device=None) -> RunResult | None:
        """The finished model from the folder, or None (not there, not finished, or
        unusable: then reported with a RuntimeWarning naming the file and removed)."""
        from ..train import build_model
        if not self.checkpoint.exists():
            return None
        device = resolve_device(device)
        try:
            ckpt = checkpoints.load(self.checkpoint, self.config, map_location=device)
        except ValueError as e:
            warnings.warn(f"cached run {self.checkpoint} is unusable ({e}); training it again",
                          RuntimeWarning, stacklevel=3)
            self.checkpoint.unlink(missing_ok=True)
            return None
        if not ckpt["finished"]:
            return None
        model = build_model(self.config).to(device)
        model.load_state_dict(ckpt["model"])
        return RunResult(model.eval(), list(ckpt["history"]), True)

    def get_or_train(self, device=None, progress: bool = True,
                     train_if_missing: bool = True) -> RunResult:
        """The finished model: loaded from the folder, else trained there (resuming).

        Args:
            device (optional): where to train and return the model. Default: CUDA if present.
            progress (bool, optional): progress bars. Default: True.
            train_if_missing (bool, optional): if False, raise FileNotFoundError instead of
                training. Default: True.

        One trainer per folder: a second process waits for the lock, then loads. Not
        under ``torchrun``, where every rank must enter training together.
        """
        from ..train import build_model, train
        device = resolve_device(device)
        found = self.load(device)
        if found is not None:
            return found
        if not train_if_missing:
            raise FileNotFoundError(f"no finished model for {self.config} in {self.folder}")
        with _Lock(self.folder / ".lock") if distributed()[1] == 1 else nullcontext():
            found = self.load(device)
            if found is not None:
                return found
            _io.write_json(self.folder / "config.json", {
                "config": dataclasses.asdict(self.config), "code_version": checkpoints.CODE_VERSION})
            c = self.config
            data = self.data or (lambda split: load_data(c, split, progress))
            model = train(build_model(c).to(device), data("train"), data("test"), c,
                          checkpoint=self.checkpoint, resume=True, log=self.folder / "log.jsonl",
                          progress=progress,
                          tag=f"{c.dataset}-train-{c.n_train or 'all'}-{c.data_seed}")
            # the history travels in the result; the model comes back as a loaded one does,
            # with no attributes stamped on it
            history = list(vars(model).pop("train_history"))
            return RunResult(model, history, False)


class _Lock:
    """An exclusive advisory file lock (POSIX ``flock``; a no-op where unavailable)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a")
        try:
            import fcntl
            fcntl.flock(self.f, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        self.f.close()  # closing releases the lock
