"""What ``rankcore book`` shows: ``book list`` as a table, the live status line of ``book run``."""
from __future__ import annotations

import io

from tqdm import tqdm

from rankcore.book import profiles, runner


def test_book_list_is_a_table_of_parameter_type_default_and_profile_value():
    text = runner.parameter_table("smoke")
    assert "{" not in text.split("\n", 1)[0]  # no dict reprs
    blocks = {b.split("\n", 1)[0]: b for b in text.split("\n\n")}
    chapter = "02_rank_spectrum"
    rows = blocks[chapter].splitlines()
    assert rows[1].split() == ["parameter", "type", "default", "profile", "smoke"]
    declared = runner.notebook_parameters(next(c for c in runner.chapters() if c.name == chapter))
    mine = profiles.chapters("smoke")[chapter]
    by_name = {r.split()[0]: r.split() for r in rows[2:]}
    assert set(by_name) == set(declared)
    for name, spec in declared.items():
        assert by_name[name][1] == spec["inferred_type_name"]
        shown = " ".join(by_name[name][2:])
        assert shown.startswith(str(spec["default"]))
        assert shown.endswith(repr(mine[name]) if name in mine else "= default")


def test_book_run_status_names_the_chapter_the_cells_and_the_time():
    out = io.StringIO()
    bar = tqdm(total=17, file=out, **runner.status_line("02_rank_spectrum"))
    bar.update(4)
    bar.refresh()
    assert "02_rank_spectrum: 4 of 17 cells done, 00:00 elapsed" in out.getvalue()
