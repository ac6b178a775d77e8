"""The trainer's parts shared by CIFAR-10 (:mod:`rankcore.train`) and ImageNet
(:mod:`rankcore.imagenet_training`) training: the rank transform as a value
(:class:`Transform`), the one checkpoint format (:mod:`.checkpoint`), and a run that owns
its folder (:class:`Run`, whose :meth:`Run.get_or_train` returns a :class:`RunResult`)."""
from .run import Run, RunResult, load_data, run_folder
from .transform import KINDS, Transform, transform_rank

__all__ = ["Transform", "KINDS", "transform_rank", "Run", "RunResult", "run_folder", "load_data"]
