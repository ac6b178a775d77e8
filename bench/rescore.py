"""Re-apply today's verdict rules to a results folder built by an older book, without re-running
any chapter: the "after" half of a before/after table while the book is being rebuilt.

Reads each chapter's saved tables (``results/<profile>/<chapter>/*.csv``, ``*.json``) and
writes ``OUT/<profile>/<chapter>/scorecard.json`` with the rules of ``rankcore.book.ch0*``.
What old results cannot give is said in the notes: no per-image outcomes (Figure 7c keeps
its unpaired interval), Figure 11's alignment without per-image values, the old training
lengths. A rebuilt book is the real "after"; this is a preview of the rules alone::

    PYTHONPATH=. python bench/rescore.py OLD_RESULTS OUT_RESULTS --profile quick
    PYTHONPATH=. python bench/scorecard_diff.py OLD_RESULTS OUT_RESULTS --profile quick
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from rankcore import _io
from rankcore.book import (ch02_rank_spectrum as ch02, ch03_rig as ch03,
                           ch04_high_rank_training as ch04, ch05_low_rank_training as ch05,
                           ch06_low_rank_robustness as ch06, ch07_appendix as ch07, paper,
                           runs, seed_scatter, verdicts)

PREVIEW = "rescored from the old run's tables (bench/rescore.py)"


def _rec(old: dict, **new) -> dict:
    out = {**old, **new}
    v = out["verdict"]
    why = verdicts.reason(v)
    out["verdict"] = str(v)
    out["note"] = "; ".join(x for x in (why, out.get("note", ""), PREVIEW) if x)
    out.setdefault("kind", verdicts.COUNTED)
    return out


def _kinds(old: list[dict], kind: str) -> list[dict]:
    return [_rec(r, kind=kind) for r in old]


def _ch02(d: Path, old: list[dict], profile: str) -> list[dict]:
    cifar_names = {"natural": "natural", "linf": "L-inf robust", "l2": "L2 robust",
                   "resnet20": "ResNet-20 (published)"}
    cifar = {cifar_names.get(p.stem[len("spectrum_cifar10_"):], p.stem): pd.read_csv(p)
             for p in sorted(d.glob("spectrum_cifar10_*.csv"))}
    imagenet = {p.stem[len("spectrum_imagenet_"):]: pd.read_csv(p)
                for p in sorted(d.glob("spectrum_imagenet_*.csv"))}
    archs = {p.stem[len("spectrum_arch_"):]: pd.read_csv(p) for p in sorted(d.glob("spectrum_arch_*.csv"))}
    has_labels = bool(imagenet) and not next(iter(imagenet.values()))["top1"].isna().all()
    pairs = {k: (k, "natural") for k in ("L-inf robust", "L2 robust") if k in cifar}
    specs = {"natural": "train:natural", "L-inf robust": "train:adv", "L2 robust": "train:adv_l2"}
    lengths = {k: ch02.train_epochs(v, profile) for k, v in specs.items() if k in cifar}
    n_inet = int(next(iter(imagenet.values()))["n"].iloc[0]) if imagenet else 0
    n_cifar = int(next(iter(cifar.values()))["n"].iloc[0]) if cifar else 0
    rows = ch02.paper_comparison(
        paper.get, imagenet, cifar, archs, natural="natural", robust="robust",
        imagenet_has_labels=has_labels, cifar_pairs=pairs, skipped={},
        notes={"imagenet": f"{n_inet} ImageNet images",
               "cifar": f"{n_cifar} CIFAR-10 test images (JPEG); no per-image outcomes in the "
                        "old run: unpaired interval"},
        lengths=lengths, seed_sd=seed_scatter.low_rank_sd(profile) or 0.0)
    fig4 = [_rec(r, kind="illustration") for r in old if r["ref"] == "fig4"]
    return fig4 + [_rec({"chapter": "02_rank_spectrum", "profile": profile, "unit": ""}, **r)
                   for r in rows]


def _ch03(d: Path, old: list[dict], profile: str) -> list[dict]:
    out = []
    rows = json.loads((d / "deletion_insertion_per_image.json").read_text())
    auc = ch03.auc_verdicts(rows)
    align = pd.read_csv(d / "table_edge_alignment.csv") if (d / "table_edge_alignment.csv").exists() else None
    for r in old:
        if r["ref"] in ("fig10", "fig17"):
            out.append(_rec(r, kind="illustration",
                            verdict="same trend" if r["ref"] == "fig17" and
                            r["verdict"] != "needs GPU or data" else r["verdict"]))
        elif r["ref"] in ("fig1", "fig8"):
            v, rig_m, van_m, (dd, lo, hi) = auc["insertion" if r["ref"] == "fig1" else "deletion"]
            out.append(_rec(r, verdict=v, ours=f"RIG {rig_m:.3f} vs vanilla {van_m:.3f}; "
                                               f"paired difference {dd:+.3f} [{lo:+.3f}, {hi:+.3f}]"))
        elif r["ref"] == "fig11" and align is not None:
            n = int(align["images"].iloc[0])
            v = (verdicts.not_meaningful(f"{n} images; a paired interval needs {ch03.MIN_IMAGES}")
                 if n < ch03.MIN_IMAGES else r["verdict"])
            out.append(_rec(r, verdict=v))
        else:
            out.append(_rec(r))
    return out


def _training_rows(old: list[dict], ref: str, pattern: str, key, v: dict, note: str,
                   fig: str, fig_verdict: str) -> list[dict]:
    """Rows of a training table (``ref``, items matching ``pattern``) re-judged by ``v``
    (``key(match)`` -> verdict), the figure ``fig`` by ``fig_verdict``."""
    out = []
    for r in old:
        m = re.match(pattern, r["item"])
        if r["ref"] == ref and m:
            out.append(_rec(r, verdict=v[key(m)], note=f"{r.get('note', '')}; {note}"))
        elif r["ref"] == fig:
            out.append(_rec(r, verdict=fig_verdict))
        else:
            out.append(_rec(r))
    return out


def _ch04(d: Path, old: list[dict], profile: str) -> list[dict]:
    t3 = pd.read_csv(d / "table3.csv")
    close, note = seed_scatter.tolerance(profile, "high_rank:3", ch04.TABLE3_CLOSE)
    v, falls = ch04.table3_verdicts(t3, close=close)
    return _training_rows(old, "table3", r"CIFAR-10, (\d+) largest", lambda m: int(m.group(1)),
                          v, note, "fig14", ch04.fig14_verdict(
                              falls, list(v.values()), why=ch04.training_evidence(
                                  t3["ours_natural_top1"].iloc[0] if "ours_natural_top1" in t3
                                  else None)))


def _ch05(d: Path, old: list[dict], profile: str) -> list[dict]:
    t2 = pd.read_csv(d / "table2_top1.csv")
    t2["trained_on"] = [x if x == "full" else int(x) for x in t2["trained_on"]]
    close, note = max(seed_scatter.tolerance(profile, run, ch05.TOP1_CLOSE)
                      for run in ("natural", "low_rank:5"))
    v, shrinks = ch05.table2_top1_verdicts(t2, close=close)
    return _training_rows(old, "table2", r"CIFAR-10, trained on rank (\w+): full-rank top-1",
                          lambda m: m.group(1) if m.group(1) == "full" else int(m.group(1)),
                          v, note, "fig16", ch05.fig16_verdict(
                              shrinks, list(v.values()),
                              why=ch04.training_evidence(t2["ours_top1"].iloc[0])))


def _ch06(d: Path, old: list[dict], profile: str) -> list[dict]:
    ours = pd.read_csv(d / "table2_ours.csv")
    t2 = pd.read_csv(d / "table2.csv")
    if "n" not in t2:
        t2 = t2.merge(ours[["run", "n"]], on="run")
    v = ch06.table2_verdicts(t2)
    out = []
    for r in old:
        m = re.match(r"CIFAR-10, trained on (.+): targeted PGD (success|recovery) rate", r["item"])
        if r["ref"] == "table2" and m:
            run = t2.loc[t2["trained_on"] == m.group(1), "run"].iloc[0]
            out.append(_rec(r, verdict=v[(run, m.group(2))]))
        elif r["ref"] == "table2" and r["item"].startswith("adversarial training"):
            a, low = t2.set_index("run").loc["adv"], t2[t2.run != "adv"]
            out.append(_rec(r, verdict=ch06.adv_verdict(a.ours_success, low.ours_success.min(),
                                                        n=int(a.n))))
        else:
            out.append(_rec(r))
    return out


def _ch07(d: Path, old: list[dict], profile: str) -> list[dict]:
    out = []
    for r in old:
        if r["ref"] == "fig12" and r["item"].startswith("seconds per"):
            out.append(_rec(r, verdict=ch07.time_verdict(float(r["ours"]))))
        elif r["ref"] == "fig12" and "independent of k" in r["item"]:
            trend = float(re.search(r":\s*([\d.]+)$", str(r["ours"])).group(1))
            out.append(_rec(r, verdict=ch07.k_independence_verdict(trend)))
        elif r["ref"] == "sec9.1" and (d / "table_rank_bound.csv").exists():
            f = ch07.bound_findings(pd.read_csv(d / "table_rank_bound.csv"))
            out.append(_rec(r, verdict=ch07.bound_verdict(f)))
        else:
            out.append(_rec(r))
    return out


CHAPTERS = {"00_setup": lambda d, old, p: _kinds(old, "zoo check"),
            "01_rank_images": lambda d, old, p: _kinds(old, "illustration"),
            "02_rank_spectrum": _ch02, "03_rig": _ch03, "04_high_rank_training": _ch04,
            "05_low_rank_training": _ch05, "06_low_rank_robustness": _ch06,
            "07_appendix": _ch07}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--profile", default="quick")
    args = ap.parse_args(argv)
    runs.families(args.profile)  # a profile with a runs block (raises otherwise)
    for chapter, fn in CHAPTERS.items():
        d = args.old / args.profile / chapter
        if not (d / "scorecard.json").exists():
            print(f"{chapter}: no results, skipped")
            continue
        old = json.loads((d / "scorecard.json").read_text())
        try:
            new = fn(d, old, args.profile)
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"{chapter}: cannot rescore ({type(e).__name__}: {e}); copied with kinds")
            new = [_rec(r) for r in old]
        _io.write_json(args.out / args.profile / chapter / "scorecard.json", new)
        print(f"{chapter}: {len(old)} -> {len(new)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
