"""rankcore/book/paper_values.yml against the paper's own text, and the lookups the chapters use."""
import re
from pathlib import Path

import pytest

from rankcore.book import paper

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "000_5aaf2e02b2189c44.txt"


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside the checkout")
def test_table_values_appear_in_the_paper_text():
    text = PAPER.read_text()
    for dataset in ("cifar10", "imagenet"):
        for row in paper.get(f"table2.{dataset}").values():
            for value in row.values():
                assert f"{value:.2f}%" in text, value
    for removed, top1 in paper.get("table3").items():
        assert re.search(rf"^{removed}\s+{top1:.2f}%", text, re.M), (removed, top1)


def test_table2_row_maps_run_names_to_rows():
    assert paper.table2_row("natural") == {"success": 99.93, "recovery": 0.03, "top1": 95.21}
    assert paper.table2_row("low_rank:5")["top1"] == 91.54
    assert paper.table2_row("low_rank:100", "imagenet")["recovery"] == 7.07
    assert paper.table2_row("adv") == {} and paper.table2_row("low_rank:3") == {}


def test_get_and_describe_fail_clearly():
    with pytest.raises(KeyError, match="no 'nope'"):
        paper.get("table2.nope")
    assert paper.describe("fig3").startswith("Paper Figure 3:")
    with pytest.raises(KeyError, match="unknown figure"):
        paper.describe("fig99")
