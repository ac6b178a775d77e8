"""Evidence that a trainer refactor keeps the weights: the quick profile's runs, trained a
few dozen steps by an old checkout and by this one, compared tensor by tensor.

For each run name of a profile (default ``quick``: the book's eleven trainings) the same
configuration, shrunk to ``--n-train`` images (``--n-test`` for the per-epoch top-1 and the
overfitting guard) and otherwise as the profile has it (its epochs, batch, recipe, bfloat16
autocast), is trained through ``rankcore.book.runs.cached`` (the book's whole path: data
loading, the rank transform and its cache, the trainer, the checkpoint) once with
``PYTHONPATH=OLD_CHECKOUT`` and once with this checkout (the two at once), all runs of one
checkout in one fresh process with one thread and its own empty cache under ``--work`` (only the decoded CIFAR-10 is shared).
Printed per run: steps, whether every
tensor of the state dict is equal (``torch.equal``), the largest difference otherwise, and
both final test top-1s.

Run: ``python bench/train_equivalence.py /work/qb-base [--profile quick] [--n-train 2048]``
(the data: ``RANKCORE_DATA``). A few minutes on one CPU core at the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

# Runs in the child process: train every shrunk named run, save its weights and history.
CHILD = r"""
import json, sys, time, torch
from rankcore.book import runs
profile, n_train, n_test, batch, out = sys.argv[1:6]
extra = {"batch_size": int(batch)} if int(batch) else {}
for name in sys.argv[6:]:
    t0 = time.perf_counter()
    cfg = runs.preset(name, profile, n_train=int(n_train), n_test=int(n_test), **extra)
    if hasattr(runs, "get_or_train"):   # a result value since issue 23; before, attributes
        result = runs.get_or_train(cfg, progress=False, device="cpu")
        model, history = result.model, result.history
    else:
        model = runs.cached(cfg, progress=False, device="cpu")
        history = model.train_history
    stem = out + "-" + name.replace(":", "")
    torch.save(model.state_dict(), stem + ".pt")
    with open(stem + ".json", "w") as f:
        json.dump({"history": history, "dir": str(runs.run_dir(cfg)),
                   "seconds": time.perf_counter() - t0}, f)
"""


def start(checkout: Path, names: list[str], args, work: Path, tag: str) -> subprocess.Popen:
    """Every run in one process of ``checkout`` (one import, one data load), started."""
    # One decoded copy of CIFAR-10 for both checkouts (data.py is not what is compared);
    # models and rank-transformed images stay in each checkout's own cache.
    (work / "data-cache").mkdir(exist_ok=True)
    (work / f"cache-{tag}").mkdir(exist_ok=True)
    if not (work / f"cache-{tag}" / "data").exists():
        (work / f"cache-{tag}" / "data").symlink_to(work / "data-cache", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(checkout), "RANKCORE_CACHE": str(work / f"cache-{tag}"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-W", "always", "-c", CHILD, args.profile,
                             str(args.n_train), str(args.n_test), str(args.batch_size),
                             str(work / tag), *names], env=env, cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, names: list[str], work: Path, tag: str) -> dict:
    """Wait for :func:`start`'s process: name -> info (history, dir, seconds, state)."""
    _, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{tag} failed:\n{stderr[-3000:]}")
    out = {}
    for name in names:
        stem = f"{work / tag}-{name.replace(':', '')}"
        out[name] = {**json.loads(Path(stem + ".json").read_text()), "state": stem + ".pt"}
    out["warnings"] = [line for line in stderr.splitlines()
                       if "RuntimeWarning" in line or "UserWarning" in line]
    return out


def compare(a: str, b: str) -> tuple[bool, float]:
    import torch
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    if sa.keys() != sb.keys():
        return False, float("inf")
    worst, same = 0.0, True
    for k in sa:
        if not torch.equal(sa[k], sb[k]):
            same = False
            if sa[k].is_floating_point():
                worst = max(worst, (sa[k].double() - sb[k].double()).abs().max().item())
    return same, worst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path, help="the old checkout (e.g. /work/qb-base at a6b537f)")
    p.add_argument("--profile", default="quick")
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-test", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=0,
                   help="override the profile's batch (more steps per image; 0: the profile's)")
    p.add_argument("--only", nargs="*", default=None, help="run names (default: the profile's)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    from rankcore.book import runs
    names = args.only or runs.names(args.profile)
    work = args.work or Path(tempfile.mkdtemp(prefix="train-equivalence-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"old {args.old} vs new {HERE}; profile {args.profile}, n_train {args.n_train}, "
          f"n_test {args.n_test}, batch {args.batch_size or 'as profiled'}; work {work}")
    # Both checkouts at once, one thread each.
    procs = {tag: start(checkout, names, args, work, tag)
             for tag, checkout in (("old", args.old), ("new", HERE))}
    old_runs, new_runs = (finish(procs[tag], names, work, tag) for tag in ("old", "new"))
    rows = []
    for name in names:
        old, new = old_runs[name], new_runs[name]
        same, worst = compare(old["state"], new["state"])
        top = [r["history"][-1].get("test_top1") for r in (old, new)]
        guard = [[h.get("guard_pgd_acc") for h in r["history"]] for r in (old, new)]
        row = {"run": name, "epochs": len(new["history"]), "same_weights": same,
               "max_abs_diff": worst, "old_top1": top[0], "new_top1": top[1],
               "same_key": Path(old["dir"]).name == Path(new["dir"]).name,
               "old_s": round(old["seconds"], 1), "new_s": round(new["seconds"], 1)}
        if any(g is not None for g in guard[0]):
            row.update(old_guard=guard[0], new_guard=guard[1],
                       methods=[[h.get("adv_method") for h in r["history"]] for r in (old, new)])
        rows.append(row)
        print(json.dumps(row), flush=True)
    for tag, found in (("old", old_runs), ("new", new_runs)):
        for line in found["warnings"]:
            print(f"{tag}: {line}")
    n_same = sum(r["same_weights"] for r in rows)
    print(f"{n_same}/{len(rows)} runs with the same weights, bit for bit; "
          f"{sum(r['same_key'] for r in rows)}/{len(rows)} with the same cache folder")
    return 0 if n_same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
