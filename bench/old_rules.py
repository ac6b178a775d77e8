"""The "before" half of a before/after scorecard table: a6b537f's verdict rules applied to
a new build's measurements, so that the table shows what the rule changes did and nothing
else (no retraining, no other images).

Runs with a6b537f's code on the path (a detached worktree of that commit; its chapter
modules and their verdict functions are what ``import rankcore.book.ch0x_...`` gives)::

    git -C REPO worktree add --detach /work/wt/old a6b537f
    PYTHONPATH=/work/wt/old python bench/old_rules.py \\
        NEW_RESULTS OUT_RESULTS --profile quick
    PYTHONPATH=. python bench/scorecard_diff.py OUT_RESULTS NEW_RESULTS --profile quick

Reads ``NEW_RESULTS/<profile>/<chapter>/`` (the scorecard rows and the tables saved beside
them) and writes ``OUT_RESULTS/<profile>/<chapter>/scorecard.json``: every row that
a6b537f's notebook would have recorded on these measurements, in its wording, with the old
rule's verdict and ``kind`` = ``paper claim`` (a6b537f counted every row). A new row with
no a6b537f counterpart is left out (the diff lists it as added); a row that a6b537f worded
differently (Figure 7a's robust saturation rows, judged against the natural value) is
written in the old wording (the diff lists one gone and one added). Chapter 08 did not
exist at a6b537f. What the saved tables cannot give is taken from the new row and said so
in the note (Figure 2's equality flag, Figure 9's energy to 0.1%), and Table 1's "is the data
a proxy" from the new rows' notes (a6b537f probed the data folder).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from rankcore import _io
from rankcore.book import (ch00_setup as ch00, ch01_rank_images as ch01,
                           ch02_rank_spectrum as ch02, ch03_rig as ch03,
                           ch04_high_rank_training as ch04, ch05_low_rank_training as ch05,
                           ch06_low_rank_robustness as ch06, ch07_appendix as ch07, paper)

TAG = "a6b537f's rule on this build's measurements (bench/old_rules.py)"
NEEDS = "needs GPU or data"


class Capture:
    """Stands in for a6b537f's ``Results``: collects what ``score`` would have written."""

    def __init__(self, chapter: str, profile: str):
        self.chapter, self.profile, self.rows = chapter, profile, []

    def score(self, ref: str, item: str, paper: object, ours: object, verdict: str,
              note: str = "", unit: str = "") -> None:
        self.rows = [r for r in self.rows if (r["ref"], r["item"]) != (ref, item)]
        self.rows.append({"ref": ref, "item": item, "paper": paper, "ours": ours,
                          "unit": unit, "verdict": verdict, "note": note,
                          "chapter": self.chapter, "profile": self.profile})


def _new(rows: list[dict], ref: str, item_start: str = "") -> dict | None:
    """The first new row of ``ref`` whose item starts with ``item_start``."""
    return next((r for r in rows if r["ref"] == ref and r["item"].startswith(item_start)), None)


def _copy(res: Capture, row: dict | None, why: str) -> None:
    """A new row the old notebook recorded alike (same item, no measurement to judge)."""
    if row is not None:
        res.score(row["ref"], row["item"], row["paper"], row["ours"], row["verdict"],
                  note=f"{why}; {row.get('note', '')}", unit=row.get("unit", ""))


def _ch00(d: Path, new: list[dict], res: Capture) -> None:
    table = pd.read_csv(d / "table1_accuracy.csv")
    for c in ("how to get", "skipped", "evaluated on"):
        if c in table:
            table[c] = table[c].astype(object).where(table[c].notna(), "")
    # Whether the data is a proxy (JPEG CIFAR-10, an ImageNet subset) decides "reproduced"
    # against "same trend"; a6b537f probed the data folder for it. Read it from the build's
    # own notes (the same wording) so that the verdict follows the build, not this machine.
    notes = {r["item"].split(": clean top-1")[0]: str(r.get("note") or "") for r in new
             if r["ref"] == "table1"}
    proxies = {}
    measured = table[table["measured top-1"].notna()]
    for model, source in zip(measured["model"], measured["evaluated on"]):
        note = notes.get(model, "")
        proxies.setdefault(source, note.split("; ", 1)[1] if "; " in note else "")
    probe, ch00.proxy_note = ch00.proxy_note, lambda source, root=None: proxies.get(source, "")
    try:
        verdicts = ch00.table1_verdicts(table)
    finally:
        ch00.proxy_note = probe
    ch00.record_scores(res, table, verdicts, ch00.depth_order(table))


def _ch01(d: Path, new: list[dict], res: Capture) -> None:
    fig2 = _new(new, "fig2")
    if fig2 is not None:
        # the equality flag is not saved; the new rule on it is the same function
        res.score("fig2", fig2["item"], "illustration", fig2["ours"],
                  ch01.fig2_verdict(fig2["verdict"] == "reproduced"),
                  note="equality flag read from this build's verdict (the same rule)")
    if (d / "fig3_error.csv").exists():
        errors = pd.read_csv(d / "fig3_error.csv")
        res.score("fig3", "image quality rises with rank (PSNR against the original)",
                  "rises with rank", " < ".join(f"{v:.1f}" for v in errors["psnr_db"]) + " dB",
                  ch01.fig3_verdict(errors["psnr_db"]))
    if (d / "fig5_l2.json").exists():
        f5 = json.loads((d / "fig5_l2.json").read_text())
        res.score("fig5", "noise and patch L2 norms equal", "identical",
                  f"{f5['l2_noise']:.3f} vs {f5['l2_patch']:.3f}",
                  ch01.fig5_verdict(f5["l2_noise"], f5["l2_patch"]))
    fig9 = _new(new, "fig9")
    if fig9 is not None:
        left = float(re.match(r"([\d.]+)%", str(fig9["ours"])).group(1)) / 100
        res.score("fig9", fig9["item"], "largely imperceptible", fig9["ours"],
                  ch01.fig9_verdict(left), note=f"energy left read from the row (0.1%); "
                                                 f"{fig9.get('note', '')}")


_CIFAR = {"natural": "natural", "linf": "L-inf robust", "l2": "L2 robust"}


def _ch02(d: Path, new: list[dict], res: Capture) -> None:
    fig4 = _new(new, "fig4")
    if fig4 is not None:
        top5 = pd.read_csv(d / "fig4_top5.csv") if (d / "fig4_top5.csv").exists() else None
        rank = int(re.search(r"rank-(\d+)", fig4["item"]).group(1))
        res.score(**ch02.figure4_row(top5 is not None and top5["model"].nunique() > 1, rank))
    read = lambda pattern: {p.stem[len(pattern) - 1:]: pd.read_csv(p)
                            for p in sorted(d.glob(pattern + ".csv"))}
    imagenet, archs = read("spectrum_imagenet_*"), read("spectrum_arch_*")
    found = read("spectrum_cifar10_*")
    extra = {r["item"].split(", ", 1)[1]: None for r in new if r["ref"] == "fig7a"
             and r["item"].startswith("CIFAR-10 saturation rank, ")}
    extra = [k for k in extra if k not in _CIFAR.values()]
    # the notebook's order: natural, L-inf, L2, then the extras (ResNet-20 in smoke/quick)
    cifar = {_CIFAR[k]: found.pop(k) for k in _CIFAR if k in found}
    for stem, df in found.items():
        label = next((e for e in extra if stem in e.lower().replace("-", "")), stem)
        cifar[label] = df
    first = {k: next(iter(t.values()), None) for k, t in (("imagenet", imagenet), ("cifar", cifar))}
    n = {k: 0 if t is None else int(t["n"].iloc[0]) for k, t in first.items()}
    # as a6b537f's notebook called it (its cell "rows = ch02.paper_comparison(...)")
    kw = dict(natural="natural", robust="robust", skipped={},
              imagenet_has_labels=first["imagenet"] is not None
              and not first["imagenet"]["top1"].isna().all(),
              cifar_pairs={k: (k, "natural") for k in ("L-inf robust", "L2 robust") if k in cifar},
              notes={"imagenet": f"{n['imagenet']} ImageNet images",
                     "cifar": f"{n['cifar']} CIFAR-10 test images (JPEG)"})
    for r in ch02.paper_comparison(paper.get, imagenet, cifar, archs, **kw):
        res.score(r["ref"], r["item"], r["paper"], r["ours"], r["verdict"], note=r["note"])


def _ch03(d: Path, new: list[dict], res: Capture) -> None:
    fig10 = _new(new, "fig10")
    m = re.match(r"ranks \[([\d, ]+)\] of (\d+)", str(fig10["ours"])) if fig10 else None
    ks, w = ([int(k) for k in m.group(1).split(",")], int(m.group(2))) if m else ([], 0)
    auc = ch03.auc_verdicts(pd.read_csv(d / "table_deletion_insertion.csv"))
    align = (ch03.alignment_verdicts(pd.read_csv(d / "table_edge_alignment.csv"))
             if (d / "table_edge_alignment.csv").exists() else None)
    note = lambda ref: (_new(new, ref) or {}).get("note", "")
    fig17 = _new(new, "fig17")
    fig18 = [r for r in new if r["ref"] == "fig18"]
    inet_align = None
    if (d / "table_edge_alignment_imagenet.csv").exists():
        inet_align = ch03.alignment_verdicts(pd.read_csv(d / "table_edge_alignment_imagenet.csv"))
    ch03.record_scores(res, auc, ks, w, pair_note=note("fig11"), cifar_align=align,
                       imagenet_align=inet_align,
                       imagenet_note=fig18[0].get("note", "") if fig18 else "",
                       fig17_ok=fig17 is not None and fig17["verdict"] != NEEDS,
                       auc_note=note("fig1"))
    if fig10 is None:   # the new build had no Figure 10 row: neither did its old rule
        res.rows = [r for r in res.rows if r["ref"] != "fig10"]


def _ch04(d: Path, new: list[dict], res: Capture) -> None:
    old_t3 = pd.read_csv(d / "table3.csv")
    top1 = {f"high_rank:{int(r.removed)}": float(r.ours_top1) for r in old_t3.itertuples()}
    if "ours_natural_top1" in old_t3:
        top1["natural"] = float(old_t3["ours_natural_top1"].iloc[0])
    t3 = ch04.table3(top1, [int(k) for k in old_t3["removed"]])
    verdicts, falls = ch04.table3_verdicts(t3)
    for r in t3.itertuples():
        item = f"CIFAR-10, {r.removed} largest singular values removed: full-rank top-1"
        res.score("table3", item, r.paper_top1, round(r.ours_top1, 2), verdicts[r.removed],
                  unit="%", note="accuracy falls as more are removed" if falls
                  else "no monotone fall")
    fig14 = _new(new, "fig14")
    if fig14 is not None:
        res.score("fig14", fig14["item"], fig14["paper"], fig14["ours"], ch04.fig14_verdict(falls))


def _ch05(d: Path, new: list[dict], res: Capture) -> None:
    old_t2 = pd.read_csv(d / "table2_top1.csv")
    top1 = {"natural" if k == "full" else f"low_rank:{k}": float(v)
            for k, v in zip(old_t2["trained_on"].astype(str), old_t2["ours_top1"])}
    ranks = [int(k) for k in old_t2["trained_on"].astype(str) if k != "full"]
    t2 = ch05.table2_top1(top1, ranks)
    verdicts, shrinks = ch05.table2_top1_verdicts(t2)
    for r in t2.itertuples():
        if r.trained_on in verdicts:
            res.score("table2", f"CIFAR-10, trained on rank {r.trained_on}: full-rank top-1",
                      r.paper_top1, round(r.ours_top1, 2), verdicts[r.trained_on], unit="%",
                      note=f"gap to full rank {r.ours_gap:.2f} (paper {r.paper_gap})")
    res.score("fig16", "CIFAR-10 accuracy against epoch, low-rank training",
              "rank 10, 20 and full rank identical; rank 5 a few points lower",
              ", ".join(f"rank {r.trained_on}: gap {r.ours_gap:.1f}" for r in t2.itertuples()
                        if r.trained_on != "full"), ch05.fig16_verdict(shrinks))
    _copy(res, _new(new, "fig15"), "not run in this build; a6b537f recorded it alike")
    if any(r["ref"] == "table2" and r["item"].startswith("ImageNet") for r in new):
        # rows that exist only where the ImageNet runs do (none on CPU profiles)
        raise ValueError("ImageNet Table 2 top-1 rows were measured: not rescored here "
                         "(table2_top1_imagenet.csv and ch05.table2_top1_verdicts)")


def _ch06(d: Path, new: list[dict], res: Capture) -> None:
    t2 = ch06.table2(pd.read_csv(d / "table2_ours.csv"))
    for (run, what), verdict in ch06.table2_verdicts(t2).items():
        r = t2.set_index("run").loc[run]
        res.score("table2", f"CIFAR-10, trained on {r.trained_on}: targeted PGD {what} rate",
                  r[f"paper_{what}"], round(r[f"ours_{what}"], 2), verdict, unit="%")
    if "adv" in set(t2["run"]):
        a, low = t2.set_index("run").loc["adv"], t2[t2.run != "adv"]
        res.score("table2", "adversarial training vs low-rank training (success rate)",
                  "adversarial training is stronger (Section 5.3, qualitative)",
                  f"{a.ours_success:.1f}% vs >= {low.ours_success.min():.1f}%",
                  ch06.adv_verdict(a.ours_success, low.ours_success.min()))
    for r in new:
        if r["ref"] == "table2" and r["item"].startswith("ImageNet"):
            if r["verdict"] != NEEDS:
                raise ValueError("ImageNet Table 2 rows were measured: not rescored here "
                                 "(table2_imagenet.csv and ch06.imagenet_verdicts)")
            _copy(res, r, "not run in this build; a6b537f recorded it alike")


def _ch07(d: Path, new: list[dict], res: Capture) -> None:
    if (d / "table_rank_bound.csv").exists():
        f = ch07.bound_findings(pd.read_csv(d / "table_rank_bound.csv"))
        res.score("sec9.1", "rank of a k x k Fourier low-pass image",
                  paper.get("text.fourier_rank_bound.value"),
                  "<= k for a complex result or an odd window"
                  + (f"; k + {f['even_extra']} for an even window on a real image"
                     if f["even_extra"] > 0 else ""), ch07.bound_verdict(f))
    if (d / "table_fig12_times.csv").exists():
        timings = ch07.timing_findings(pd.read_csv(d / "table_fig12_times.csv"),
                                       pd.read_csv(d / "table_fig12_summary.csv"))
        for device, t in timings.items():
            res.score("fig12", f"seconds per rank-k 224x224x3 image, per-k SVD ({device})",
                      paper.get("text.rank_k_time_gpu.value"), round(t["per_image"], 4),
                      ch07.time_verdict(t["per_image"]), unit="s")
            res.score("fig12", f"per-k SVD time independent of k ({device})", "independent of k",
                      f"median time, k > {t['half']} over k <= {t['half']}: {t['trend']:.2f}",
                      ch07.k_independence_verdict(t["trend"]))


CHAPTERS = {"00_setup": _ch00, "01_rank_images": _ch01, "02_rank_spectrum": _ch02,
            "03_rig": _ch03, "04_high_rank_training": _ch04, "05_low_rank_training": _ch05,
            "06_low_rank_robustness": _ch06, "07_appendix": _ch07}


def old_rows(d: Path, chapter: str, profile: str) -> tuple[list[dict], list[dict]]:
    """(a6b537f's rows on the measurements in ``d``, the new rows read there)."""
    new = json.loads((d / "scorecard.json").read_text())
    res = Capture(chapter, profile)
    CHAPTERS[chapter](d, new, res)
    out = [{**r, "kind": "paper claim",
            "note": "; ".join(x for x in (TAG, str(r.get("note") or "")) if x)} for r in res.rows]
    return out, new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("new", type=Path, help="results folder of the new build (<profile>/<chapter>/)")
    ap.add_argument("out", type=Path, help="where a6b537f's verdicts on it go")
    ap.add_argument("--profile", default="quick")
    args = ap.parse_args(argv)
    if not (args.new / args.profile).is_dir():
        ap.error(f"new={str(args.new)!r}: no {args.profile}/ folder of chapter results")
    if not hasattr(ch02, "full_rank_verdict") or hasattr(ch02, "robust_saturation_verdict"):
        ap.error("rankcore on the path is not a6b537f's: run with PYTHONPATH=<a6b537f worktree>")
    for d in sorted((args.new / args.profile).iterdir()):
        if not (d / "scorecard.json").exists():
            continue
        if d.name not in CHAPTERS:
            print(f"{d.name}: no such chapter at a6b537f (its rows show as added)")
            continue
        out, new = old_rows(d, d.name, args.profile)
        _io.write_json(args.out / args.profile / d.name / "scorecard.json", out)
        keys = {(r["ref"], r["item"]) for r in out}
        added = [r for r in new if (r["ref"], r["item"]) not in keys]
        gone = keys - {(r["ref"], r["item"]) for r in new}
        print(f"{d.name}: {len(new)} new rows -> {len(out)} rows by a6b537f's rules; "
              f"no such row at a6b537f: {len(added)}; old wording: {len(gone)}")
        for r in added:
            print(f"  no such row at a6b537f: {r['ref']} | {r['item']}")
        for ref, item in sorted(gone):
            print(f"  old wording: {ref} | {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
