"""The ``rankcore`` command line: ``rankcore <command> ...`` or ``python -m rankcore <command>``.

    rankcore --version
    rankcore models                      # every model: source, input size, weights here?
    rankcore data                        # every data set: where it is found here
    rankcore spectrum --model efficientnet_lite0 --data imagenet-val --n 100 \\
        --ranks 0:20:2,30:max:10,max --out lite0.csv
    rankcore spectrum --model timm:convnext_tiny --weights convnext.pth --data imagenet-val ...
    torchrun --nproc_per_node 4 -m rankcore spectrum --model resnet50 --data imagenet-val \\
        --n 1000 --out r50.csv

The library's commands live in :data:`COMMANDS` (name -> ``(help, add_arguments, run)``).
A caller may add more (``main(argv, commands=...)``, each a ``register(subparsers)`` that
adds its parser and sets ``run``): the book's ``rankcore.book.cli`` adds ``book`` and
``train`` and is what the ``rankcore`` console script runs; the library never imports it.
A user mistake (``ValueError``, ``TypeError``, a missing file or checkpoint) prints one
line naming the argument and exits with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from . import __version__

if TYPE_CHECKING:
    import torch

# Nothing heavy is imported here: the parser, --help and --version run without torch,
# pandas or timm (about 2.6 s of imports); each command imports what it needs when it runs.

#: Which classes a data set's labels index: data name -> label space.
LABEL_SPACE = {"cifar10": "cifar10", "imagenet-val": "imagenet", "imagenet": "imagenet",
               "imagenet-auto": "imagenet", "samples": "imagenet"}


class UsageError(ValueError):
    """A mistake in the command's arguments (exit status 2)."""


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """``--device`` (cpu, cuda, cuda:N, mps, auto); ``args.device`` becomes a ``torch.device``."""
    def device(text: str) -> torch.device:
        from .torch_utils import resolve_device
        try:
            return resolve_device(text, name="--device")
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    p.add_argument("--device", type=device, default=None, metavar="DEVICE",
                   help="cpu, cuda, cuda:N, mps or auto (default: auto = cuda:LOCAL_RANK if "
                        "CUDA, else cpu)")


def _int_at_least(minimum: int, what: str):
    """An argparse type: an int >= ``minimum``, else a one-line error saying what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive = _int_at_least(1, "a positive int")
_seed = _int_at_least(0, "an int >= 0")


# ---------------------------------------------------------------------------- spectrum

def _spectrum_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="a name of `rankcore models`, or timm:NAME / torchvision:NAME")
    p.add_argument("--weights", default=None, help="checkpoint file (or folder) for the model")
    p.add_argument("--data", required=True, choices=sorted(LABEL_SPACE),
                   help="data set (rankcore.data; see `rankcore data`)")
    p.add_argument("--split", default="test", help="data split (default: test)")
    p.add_argument("--root", default=None, help="data root (default: $RANKCORE_DATA or data/)")
    p.add_argument("--n", type=_positive, default=None, help="random subset of N images (default: all)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the subset (default: 0)")
    p.add_argument("--ranks", default="all",
                   help="'all', 'start:stop[:step]' (inclusive; 'max' = min(H, W)) or "
                        "'10,20,50', combinable with commas (default: all)")
    p.add_argument("--batch-size", type=_positive, default=None,
                   help="images per forward pass (default: by image size and device)")
    p.add_argument("--block", type=_positive, default=None,
                   help="images per checkpointed block (default: automatic)")
    add_device_argument(p)
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"],
                   help="autocast dtype (default: auto = bf16 on CUDA, float32 on CPU)")
    p.add_argument("--checkpoint", default=None,
                   help="resume file; a re-run after a kill continues (default: none)")
    p.add_argument("--agreement-only", action="store_true",
                   help="score agreement with the full-rank prediction only, no labels: lets a "
                        "model meet a data set of other classes")
    p.add_argument("--no-download", action="store_true", help="never download weights or data")
    p.add_argument("--dry-run", action="store_true",
                   help="check the arguments (model, data, ranks, device), run nothing")
    p.add_argument("--out", required=True, help="CSV file for the table (one row per rank)")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also draw agreement (and top-1 where labelled) against rank into FILE "
                        "(.png, .pdf, .svg; needs matplotlib: pip install 'rankcore[plot]')")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def check_classes(model_name: str, data_name: str, agreement_only: bool) -> None:
    """A model scored on labels of other classes is an error unless only agreement is asked."""
    from . import models
    cfg = models.get_cfg(model_name)
    space = LABEL_SPACE[data_name]
    if agreement_only or cfg.dataset == space:
        return
    raise UsageError(f"--model {model_name} predicts {cfg.dataset} classes ({cfg.num_classes}) but "
                     f"--data {data_name} has {space} labels: its top-1 would be meaningless; "
                     f"pass --agreement-only to compare predictions across ranks only")


class _Unlabelled:
    """A data set's images with label -1 (unlabelled): only agreement is scored (map-style)."""

    def __init__(self, data):
        self.data, self.source = data, getattr(data, "source", "data")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i][0], -1


#: Images per split of CIFAR-10 (the dry run checks ``--n`` without decoding the set).
_CIFAR10_IMAGES = {"train": 50_000, "test": 10_000, "val": 10_000}
_PLOT_FORMATS = (".png", ".pdf", ".svg")


def _check_plot(path: str | None) -> None:
    if path is None:
        return
    if not path.lower().endswith(_PLOT_FORMATS):
        raise UsageError(f"--plot {path}: expected a file ending in {', '.join(_PLOT_FORMATS)}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'rankcore[plot]'") from None


def _weights_state(args: argparse.Namespace, cfg) -> str:
    """Where the dry run's weights would come from; a ``UsageError`` when from nowhere."""
    from . import models
    path = models.find_weights(args.model, args.weights)
    if path is not None:
        return f"weights {path}"
    if args.weights is not None:  # a folder without the file, or a missing path
        raise UsageError(f"--weights {args.weights} holds no {cfg.file or 'weight file'} for "
                         f"{args.model}")
    if cfg.weights in ("none", "embedded") or not cfg.url:
        raise UsageError(f"no weights for {args.model} here; {models.how_to_get(cfg)}")
    if args.no_download:
        raise UsageError(f"no weights for {args.model} here and --no-download: pass --weights "
                         f"FILE, or drop --no-download to fetch {cfg.url}")
    return f"weights not here: downloaded from {cfg.url} when the run starts (needs the network)"


def _images_state(args: argparse.Namespace) -> str:
    """How many images the run would read; a ``UsageError`` when ``--n`` exceeds the set."""
    from . import data
    source = data.resolve(args.data, args.root)
    if source == "cifar10":
        if data.find_cifar10(args.root) is None and args.no_download:
            raise UsageError("--data cifar10 is not under the data root and --no-download")
        total = _CIFAR10_IMAGES[args.split]
    else:
        total = len(data.dataset(args.data, split=args.split, root=args.root, download=False,
                                 progress=False))
    if args.n is not None and args.n > total:
        raise UsageError(f"--n {args.n} but --data {args.data} ({source}, split {args.split}) "
                         f"has {total} images")
    return f"{args.n or total} of {total} {source} images"


def _spectrum_run(args: argparse.Namespace) -> int:
    import torch

    from . import _io, data, models
    from .rank import parse_ranks
    from .spectrum import rank_spectrum
    from .torch_utils import resolve_device

    check_classes(args.model, args.data, args.agreement_only)
    cfg = models.get_cfg(args.model)
    parse_ranks(args.ranks, min(cfg.input_size[-2:]), name="--ranks")
    _check_plot(args.plot)
    for flag, value in (("--out", args.out), ("--checkpoint", args.checkpoint),
                        ("--plot", args.plot)):
        if value is not None:  # before the work, not after it
            _io.check_writable(value, flag)
    device = args.device or resolve_device(None)
    if args.dry_run:
        print(f"would run the rank spectrum of {args.model} ({cfg.dataset}, input "
              f"{'x'.join(map(str, cfg.input_size))}; {_weights_state(args, cfg)}) on "
              f"{_images_state(args)} (ranks {args.ranks}) on {device} -> {args.out}"
              + (f", {args.plot}" if args.plot else ""))
        return 0
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl's collectives use the current device
    model = models.load(args.model, weights=args.weights, device=device,
                        download=not args.no_download)
    loaded = data.dataset(args.data, split=args.split, n=args.n, seed=args.seed, root=args.root,
                          download=not args.no_download, progress=not args.no_progress,
                          **models.data_kwargs(model))
    images = _Unlabelled(loaded) if args.agreement_only else loaded
    df = rank_spectrum(model, images, ranks=args.ranks, batch_size=args.batch_size, device=device,
                       progress=not args.no_progress, checkpoint=args.checkpoint,
                       block=args.block, amp=None if args.amp == "none" else args.amp)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        _io.write_text(args.out, df.to_csv(index=False))
        if args.plot:
            _write_plot(df, args.plot, f"{args.model} on {getattr(loaded, 'source', args.data)}")
        print(spectrum_line(df, args.model, getattr(loaded, "source", args.data)) +
              f" -> {args.out}" + (f", {args.plot}" if args.plot else "") +
              f" (weights: {model.source})")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def spectrum_line(df, model: str, source: str) -> str:
    """The one-line summary of a spectrum table; top-1 says ``n/a, no labels`` when the
    images had none (its column is NaN), never ``nan``."""
    from .spectrum import summary
    s = summary(df)
    top1 = "n/a, no labels" if df["top1"].isna().all() else f"{summary(df, 'top1')['full']:.3f}"
    return (f"{model} on {len(df['rank'])} ranks x {int(df['n'].iloc[0])} {source} images: "
            f"agreement 50% at rank {s['rank_50']:g}, 90% at rank {s['rank_90']:g}, AUC "
            f"{s['auc']:.3f}; top-1 at rank {s['max_rank']:g}: {top1}")


def _write_plot(df, path: str, title: str) -> None:
    import io

    from matplotlib.figure import Figure

    from . import _io
    from .spectrum import plot
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    plot(df, ["agreement", "top1"], ax=fig.add_subplot(), title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format=path.rsplit(".", 1)[-1].lower(), dpi=150)
    _io.write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------- models, data

def _models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=["imagenet", "cifar10"], default=None,
                   help="only the models of this data set")
    p.add_argument("--all-columns", action="store_true",
                   help="also file, URL, SHA-256, licence and published accuracy")


def _text_table(df) -> str:
    """``df`` as aligned text: a header, then one row per line, every cell left-aligned
    (cells with spaces, such as ``weights by``, stay readable)."""
    rows = [list(map(str, df.columns))] + [[str(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _models_run(args: argparse.Namespace) -> int:
    from . import models
    table = models.registry_table()
    if args.dataset:
        table = table[table["dataset"] == args.dataset]
    table = table.assign(here=table["here"].map({True: "yes", False: "no"}))
    columns = list(table.columns) if args.all_columns else \
        ["model", "dataset", "input", "source", "here", "in paper", "weights by"]
    print(_text_table(table[columns]))
    print(f"{len(table)} models; also any timm:NAME or torchvision:NAME architecture "
          "(--weights FILE, or their download when online)")
    return 0


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="data root (default: $RANKCORE_DATA or data/)")


def _data_run(args: argparse.Namespace) -> int:
    from . import data
    from .paths import cache_dir, data_root
    root = data_root(args.root)
    print(f"data root: {root}{'' if root.is_dir() else ' (missing)'}")
    for name in data.names():
        try:
            resolved = data.resolve(name, args.root)
        except (OSError, ValueError) as err:
            print(f"  {name:14s} error: {err}")
            continue
        if resolved == "cifar10":
            where = data.find_cifar10(args.root)
            state = str(where) if where else "missing (downloaded by torchvision when online)"
        elif resolved == "imagenet-val":
            where = data.find_imagenet(args.root)
            state = str(where) if where else "missing (put the validation images under the root)"
        elif resolved == "imagenet":
            where = data.find_imagenet_train(args.root)
            state = str(where) if where else "missing (ImageFolder training set under the root)"
        else:
            state = "embedded photos (offline)"
        alias = f" -> {resolved}" if resolved != name else ""
        print(f"  {name + alias:26s} {state}")
    print(f"caches: {cache_dir()}")
    return 0


# ---------------------------------------------------------------------------- table

#: name -> (help, add_arguments(parser), run(args) -> exit status)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "spectrum": ("accuracy and agreement against input rank (Algorithm 1) -> CSV",
                 _spectrum_arguments, _spectrum_run),
    "models": ("list every model: data set, input size, weight source, weights here",
               _models_arguments, _models_run),
    "data": ("list every data set and where it is found here", _data_arguments, _data_run),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported on one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: A command added by a caller: ``register(subparsers)`` adds its parser and sets ``run``.
Register = Callable[[argparse._SubParsersAction], None]


def build_parser(commands: Sequence[Register] = ()) -> argparse.ArgumentParser:
    """The ``rankcore`` parser: :data:`COMMANDS`, then each of ``commands`` registered."""
    parser = _Parser(prog="rankcore", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"rankcore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    for register in commands:
        register(sub)
    return parser


#: The library's Python spellings -> the command line's, for errors raised under the command
#: line (``weights=PATH`` -> ``--weights PATH``). Applied to the printed message only.
# Each only where no "--" stands before it already: "--checkpoint='x'" stays as it is.
CLI_SPELLINGS: tuple[tuple[str, str], ...] = tuple((r"(?<![\w-])" + p, s) for p, s in (
    (r"download=False\b", "--no-download"), (r"weights=", "--weights "), (r"root=", "--root "),
    (r"n=(?=[\d'N])", "--n "), (r"seed=", "--seed "), (r"split=", "--split "),
    (r"ranks=", "--ranks "), (r"batch_size=", "--batch-size "), (r"block=", "--block "),
    (r"checkpoint=", "--checkpoint "), (r"device=", "--device "),
))


def cli_spelling(message: str) -> str:
    """``message`` with the library's argument spellings replaced by the command line's."""
    import re
    for pattern, spelling in CLI_SPELLINGS:
        message = re.sub(pattern, spelling, message)
    return message


def _user_errors() -> tuple[type[BaseException], ...]:
    # OSError: the file system refused (a directory, a read-only folder, a full disk)
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, KeyError)
    try:
        from .models import WeightsError
        errors += (WeightsError,)
    except ImportError:
        pass
    return errors


def main(argv: list[str] | None = None, commands: Sequence[Register] = ()) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns its status.
    ``commands``: more commands, as for :func:`build_parser`.

    User mistakes print ``rankcore <command>: error: ...`` (one line) and return 2, unless
    ``--debug`` is given.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    from . import torch_utils
    torch_utils.tune_allocator()  # rankcore is the application here: keep CPU activations off fresh mmaps
    try:
        return int(args.run(args) or 0)
    except _user_errors() as err:
        if args.debug:
            raise
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"rankcore {args.command}: error: {cli_spelling(' '.join(message.split()))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rankcore {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
