"""Before/after table of a scorecard: every row whose verdict or kind changed between two
results folders (e.g. the book built before and after a change to the verdict rules).

Rows are matched by ``(ref, item)``; a row only in one folder is listed as added or gone
(an item whose wording changed shows as one of each). Old records without a ``kind`` read as
``paper claim`` (they were all counted). Printed as a Markdown table, then the counts of
paper claims per verdict before and after::

    PYTHONPATH=. python bench/scorecard_diff.py OLD_RESULTS NEW_RESULTS [--profile quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rankcore.book import scorecard


def _card(root: Path, profile: str):
    df = scorecard.scorecard(profile, root=root, fallback=())
    return df[df["verdict"] != scorecard.MISSING]


def diff(old_root: Path, new_root: Path, profile: str):
    """The changed rows: ``ref, item, verdict before, kind before, verdict after, kind
    after, ours before, ours after, note after``."""
    import pandas as pd

    keys = ["ref", "item"]
    old, new = _card(old_root, profile), _card(new_root, profile)
    m = old.merge(new, on=keys, how="outer", suffixes=(" before", " after"), indicator=True)
    changed = m[(m["_merge"] != "both") | (m["verdict before"] != m["verdict after"])
                | (m["kind before"] != m["kind after"])]
    cols = keys + ["verdict before", "kind before", "verdict after", "kind after",
                   "ours before", "ours after", "note after"]
    out = changed[cols].fillna({"verdict before": "(gone: no such row)",
                                "verdict after": "(gone: no such row)"})
    out = out.assign(_k=out["ref"].map(scorecard._ref_key)).sort_values(["_k", "item"])
    return out.drop(columns="_k").reset_index(drop=True), old, new


def _md(df) -> str:
    def cell(v):
        s = "" if v is None or (isinstance(v, float) and v != v) else str(v)
        return s.replace("|", "/").replace("\n", " ")[:160]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="results folder before (holds <profile>/<chapter>/)")
    ap.add_argument("new", type=Path, help="results folder after")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--short", action="store_true", help="leave out the ours and note columns")
    args = ap.parse_args(argv)
    for p in (args.old, args.new):
        if not (p / args.profile).is_dir():
            ap.error(f"{p}: no {args.profile}/ folder of chapter results")
    changed, old, new = diff(args.old, args.new, args.profile)
    if args.short:
        changed = changed[["ref", "item", "verdict before", "kind before", "verdict after",
                           "kind after"]]
    print(f"## {args.profile}: {len(changed)} rows changed verdict or kind "
          f"({len(old)} rows before, {len(new)} after)\n")
    print(_md(changed))
    import pandas as pd
    counts = pd.DataFrame({"before": scorecard.counts(old), "after": scorecard.counts(new)})
    print("\nPaper claims per verdict (illustrations and zoo checks apart):\n")
    print(_md(counts.reset_index().rename(columns={"index": "verdict"})))
    print("\nAfter, every kind:\n")
    print(_md(scorecard.kind_counts(new).reset_index()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
