"""The ``rankcore`` command line: ``rankcore <command> ...`` or ``python -m rankcore <command>``.

Commands live in :data:`COMMANDS`, name -> ``(help, add_arguments, run)``. To add one,
write its two functions and add an entry; :func:`main` builds the parser from the table.

    python -m rankcore spectrum --model efficientnet_lite0 --data imagenet-auto --n 100 \\
        --ranks 0:20:2,30:max:10,max --out lite0.csv
    torchrun --nproc_per_node 4 -m rankcore spectrum --model resnet50 --weights R50.pth \\
        --data imagenet-val --n 1000 --out r50.csv
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import torch

# ---------------------------------------------------------------------------- spectrum


def _spectrum_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a name of rankcore.models, e.g. efficientnet_lite0")
    p.add_argument("--weights", default=None, help="checkpoint file for models that need one")
    p.add_argument("--data", required=True,
                   help="cifar10, imagenet-val, imagenet-auto or samples (rankcore.data)")
    p.add_argument("--split", default="test", help="data split (default: test)")
    p.add_argument("--root", default=None, help="data root (default: $RANKCORE_DATA or data/)")
    p.add_argument("--n", type=int, default=None, help="random subset of N images (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset (default: 0)")
    p.add_argument("--ranks", default="all",
                   help="'all', 'start:stop[:step]' (inclusive; 'max' = min(H, W)) or "
                        "'10,20,50', combinable with commas (default: all)")
    p.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default: 128)")
    p.add_argument("--block", type=int, default=None,
                   help="images per checkpointed block (default: min(16, batch size))")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if CUDA, else cpu")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "none"],
                   help="autocast dtype (default: auto = bf16 on CUDA, float32 on CPU)")
    p.add_argument("--checkpoint", default=None,
                   help="resume file; a re-run after a kill continues (default: none)")
    p.add_argument("--out", required=True, help="CSV file for the table (one row per rank)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _spectrum_run(args: argparse.Namespace) -> int:
    from . import _io, data, models
    from .spectrum import rank_spectrum, summary

    device = torch.device(args.device) if args.device else _default_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # nccl's collectives use the current device
    model = models.load(args.model, weights=args.weights, device=device)
    # The model's own preprocessing (size, resize before the crop, interpolation).
    config = getattr(model, "data_config", {"size": tuple(model.input_size)[-1]})
    loaded = data.load(args.data, split=args.split, n=args.n, seed=args.seed, root=args.root,
                       progress=not args.no_progress, **config)
    df = rank_spectrum(model, loaded, ranks=args.ranks, batch_size=args.batch_size,
                       device=device, progress=not args.no_progress, checkpoint=args.checkpoint,
                       block=args.block, amp=None if args.amp == "none" else args.amp)
    import torch.distributed as dist

    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    if rank0:
        _io.write_text(args.out, df.to_csv(index=False))
        s = summary(df)
        top1 = summary(df, "top1")["full"] if df["top1"].notna().all() else float("nan")
        source = getattr(loaded, "source", args.data)
        print(f"{args.model} on {len(df['rank'])} ranks x {int(df['n'].iloc[0])} {source} "
              f"images: agreement 50% at rank {s['rank_50']:g}, 90% at rank {s['rank_90']:g}, "
              f"AUC {s['auc']:.3f}; top-1 at rank {s['max_rank']:g}: {top1:.3f} -> {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------- table

#: name -> (help, add_arguments(parser), run(args) -> exit status)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "spectrum": ("accuracy and agreement against input rank (Algorithm 1) -> CSV",
                 _spectrum_arguments, _spectrum_run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rankcore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns its status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
