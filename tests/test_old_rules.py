"""bench/old_rules.py: a6b537f's verdict rules on a made-up new build, against verdicts worked
out by hand from a6b537f's constants (CIFAR-10 saturation within 5 ranks of 15, else "same
trend" before full rank; the gap's lower bound above 20 points; Table 2 rates within 2
points, else >= 80% success / <= 10% recovery; Table 3 within 3 points, else a fall of at
most 2 points per step). The script needs a6b537f's code on its path, so it runs in a
subprocess on that commit's ``rankcore/`` taken from the repository's own history
(``git archive``), or from ``RANKCORE_OLD_TREE``; skipped where neither exists (an
installed wheel, a shallow clone)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "a6b537f"


def _old_tree(dest: Path) -> Path | None:
    """a6b537f's ``rankcore/`` under ``dest`` (or ``$RANKCORE_OLD_TREE``), else None."""
    if os.environ.get("RANKCORE_OLD_TREE"):
        return Path(os.environ["RANKCORE_OLD_TREE"])
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "rankcore"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    tree = _old_tree(tmp_path_factory.mktemp("a6b537f"))
    if tree is None or "def full_rank_verdict" not in (
            tree / "rankcore/book/ch02_rank_spectrum.py").read_text(errors="replace"):
        pytest.skip(f"no checkout of {OLD_COMMIT} (not in this repository's history; "
                    "set RANKCORE_OLD_TREE)")
    return tree


PROFILE = "smoke"


def _row(chapter, ref, item, verdict="differs"):
    return {"chapter": chapter, "ref": ref, "item": item, "kind": "paper claim", "note": "",
            "ours": 0, "paper": 0, "profile": PROFILE, "unit": "", "verdict": verdict}


def _curve(sat: int, full: float, n: int = 10_000, max_rank: int = 32) -> pd.DataFrame:
    """top-1 rising linearly to 0.95 * full at rank ``sat``, then flat at ``full``."""
    ranks = np.arange(max_rank + 1)
    top1 = np.where(ranks < sat, 0.9 * full * ranks / sat, full)
    return pd.DataFrame({"rank": ranks, "top1": top1, "n": n})


def _build(root: Path) -> None:
    d = root / PROFILE
    (d / "02_rank_spectrum").mkdir(parents=True)
    _curve(16, 0.90).to_csv(d / "02_rank_spectrum/spectrum_cifar10_natural.csv", index=False)
    # robust: 80% from rank 4, where natural has 20%: 60 points ahead on 10,000 images
    _curve(4, 0.80).to_csv(d / "02_rank_spectrum/spectrum_cifar10_linf.csv", index=False)
    ch02 = "02_rank_spectrum"
    rows02 = [_row(ch02, "fig7a", "CIFAR-10 saturation rank, natural"),
              _row(ch02, "fig7a", "CIFAR-10: L-inf robust saturates earlier than natural")]
    (d / "04_high_rank_training").mkdir()
    pd.DataFrame({"removed": [2, 5], "paper_top1": [31.71, 13.54], "ours_top1": [30.0, 20.0],
                  "chance": 10.0}).to_csv(d / "04_high_rank_training/table3.csv", index=False)
    ch04 = "04_high_rank_training"
    rows04 = [_row(ch04, "fig14", "test accuracy against epoch, high-rank training")]
    (d / "06_low_rank_robustness").mkdir()
    pd.DataFrame({"run": ["natural", "low_rank:5", "adv"], "success": [85.0, 99.0, 30.0],
                  "recovery": [5.0, 15.0, 60.0], "top1": [90.0, 88.0, 80.0]}).to_csv(
        d / "06_low_rank_robustness/table2_ours.csv", index=False)
    (d / "00_setup").mkdir()
    pd.DataFrame({"model": ["cifar_resnet20", "cifar_resnet32", "efficientnet_lite0", "vgg19"],
                  "evaluated on": ["cifar10", "cifar10", "imagenet-val", "imagenet-val"],
                  "images": 200, "measured top-1": [0.915, 0.80, 0.75, np.nan],
                  "published top-1": [0.9173, 0.9263, 0.7538, 0.7238],
                  "how to get": ["", "", "", "download it"], "skipped": ""}).assign(
        difference=lambda t: t["measured top-1"] - t["published top-1"]).to_csv(
        d / "00_setup/table1_accuracy.csv", index=False)
    jpeg = "200 images; JPEG copy of the CIFAR-10 test set (compression removes fine detail)"
    rows00 = [dict(_row("00_setup", "table1", f"{m}: clean top-1"), note=n) for m, n in
              (("cifar_resnet20", jpeg), ("cifar_resnet32", jpeg),
               ("efficientnet_lite0", "200 images"), ("vgg19", "download it"))]
    (d / "08_rank_as_a_metric").mkdir()
    for ch, rows in (("00_setup", rows00), (ch02, rows02), (ch04, rows04), ("06_low_rank_robustness", []),
                     ("08_rank_as_a_metric", [_row("08_rank_as_a_metric", "beyond", "x")])):
        (d / ch / "scorecard.json").write_text(json.dumps(rows))


@pytest.fixture(scope="module")
def old_card(tmp_path_factory, old_tree):
    new, out = tmp_path_factory.mktemp("new"), tmp_path_factory.mktemp("out")
    _build(new)
    env = {**os.environ, "PYTHONPATH": str(old_tree), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(ROOT / "bench/old_rules.py"), str(new), str(out),
                        "--profile", PROFILE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    rows = [r for f in sorted((out / PROFILE).glob("*/scorecard.json"))
            for r in json.loads(f.read_text())]
    return {(r["ref"], r["item"]): r for r in rows}, new, out, p.stdout


def test_old_verdicts_by_hand(old_card):
    card = old_card[0]
    v = {k: r["verdict"] for k, r in card.items()}
    assert v[("fig7a", "CIFAR-10 saturation rank, natural")] == "reproduced"        # 16 vs 15
    assert v[("fig7a", "CIFAR-10 saturation rank, L-inf robust")] == "same trend"   # 4 vs 15
    assert v[("fig7c", "CIFAR-10: L-inf robust minus natural top-1, ranks 1-10 "
                       "(points, 95% interval)")] == "reproduced"
    assert v[("fig7a", "CIFAR-10: L-inf robust behind natural at full rank (points)")] \
        == "reproduced"                                                             # 80 < 90
    assert v[("table3", "CIFAR-10, 2 largest singular values removed: full-rank top-1")] \
        == "reproduced"                                                             # 30 vs 31.71
    assert v[("table3", "CIFAR-10, 5 largest singular values removed: full-rank top-1")] \
        == "same trend"                                                             # falls
    assert v[("fig14", "test accuracy against epoch, high-rank training")] == "same trend"
    t2 = "CIFAR-10, trained on {}: targeted PGD {} rate"
    assert v[("table2", t2.format("full rank", "success"))] == "same trend"         # 85 >= 80
    assert v[("table2", t2.format("full rank", "recovery"))] == "same trend"        # 5 <= 10
    assert v[("table2", t2.format("rank 5", "success"))] == "reproduced"            # 99 vs 99.27
    assert v[("table2", t2.format("rank 5", "recovery"))] == "differs"              # 15 > 10
    assert v[("table2", "adversarial training vs low-rank training (success rate)")] \
        == "same trend"                                                             # 30 < 85 - 10
    # within 1.5 points: on a proxy (the build's note says JPEG) "same trend", else "reproduced"
    assert v[("table1", "cifar_resnet20: clean top-1")] == "same trend"
    assert v[("table1", "efficientnet_lite0: clean top-1")] == "reproduced"
    assert v[("table1", "cifar_resnet32: clean top-1")] == "differs"
    assert v[("table1", "vgg19: clean top-1")] == "needs GPU or data"
    assert v[("table1", "akamaster ResNets: accuracy order by depth")] == "differs"  # 32 < 20
    assert all(r["kind"] == "paper claim" and "bench/old_rules.py" in r["note"]
               for r in card.values())


def test_rows_without_an_old_rule_are_left_out(old_card):
    card, _, out, stdout = old_card
    assert ("fig7a", "CIFAR-10: L-inf robust saturates earlier than natural") not in card
    assert "no such row at a6b537f: fig7a | CIFAR-10: L-inf robust saturates" in stdout
    assert not (out / PROFILE / "08_rank_as_a_metric").exists()
