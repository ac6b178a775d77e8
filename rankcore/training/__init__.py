"""The parts of the one trainer (:func:`rankcore.train.train`; ImageNet's recipe and command:
:mod:`rankcore.imagenet_training`): the rank transform as a value (:class:`Transform`), the
two batch sources of its epoch loop, in-memory CIFAR-10 and streamed ImageNet
(:mod:`.sources`), the one checkpoint format (:mod:`.checkpoint`), and a run that owns its
folder (:class:`Run`, whose :meth:`Run.get_or_train` returns a :class:`RunResult`)."""
from .run import Run, RunResult, load_data, run_folder
from .transform import KINDS, Transform, transform_rank

__all__ = ["Transform", "KINDS", "transform_rank", "Run", "RunResult", "run_folder", "load_data"]
