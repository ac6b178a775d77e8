"""The static rank explorer in a real headless Chromium at 1280 px: the slider draws the image
that ``rankcore.low_rank`` computes for the rank the test chooses, and the top-5 the page holds.

Reuses ``test_browser``'s DevTools client and fixtures: the book test runs on the smoke book
(``built_book``) or on an already built one (``RANKCORE_BOOK_HTML``, e.g. a quick build); a
standalone page (one explorer, a small model) checks the script without building a book.
"""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from torch import nn

from rankcore.book import explorer, widgets
from rankcore.rank import low_rank

from test_browser import CHROMIUM, Browser, _screenshot_dir, browser, html_root, pages, server  # noqa: F401
from test_widgets import quantisation_bound

pytestmark = pytest.mark.browser

# Move explorer J's slider to rank K; return its canvas (RGBA, base64) and the top-5 shown.
MOVE = """(async () => {
  const root = document.querySelectorAll('.rank-explorer')[%(j)d];
  root.scrollIntoView();
  for (let t = 0; t < 400 && root.dataset.ready !== '1'; t++) await new Promise(r => setTimeout(r, 50));
  const s = root.querySelector('.rx-slider');
  s.value = %(k)d;
  s.dispatchEvent(new Event('input', {bubbles: true}));
  const c = root.querySelector('.rx-image'), box = c.getBoundingClientRect();
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let bin = '';
  for (let i = 0; i < px.length; i += 8192) bin += String.fromCharCode(...px.subarray(i, i + 8192));
  return {ready: root.dataset.ready || '', k: root.querySelector('.rx-k').textContent,
          pixels: btoa(bin), viewport: innerWidth, right: box.right, shown: box.width,
          top: Array.from(root.querySelectorAll('.rx-model'), m => Array.from(
            m.querySelectorAll('li'), li => [li.querySelector('.rx-name').textContent,
                                             li.querySelector('.rx-p').textContent]))};
})()"""


def _ranks(r: int) -> list[int]:
    """The ranks the test moves to: 37 (a rank no 12-frame animation had) or an odd one
    inside ``1..r-1``, and the full rank."""
    return sorted({37 if r > 40 else max(1, r // 3), r})


def check_explorer(b: Browser, data: dict, j: int, k: int) -> list[str]:
    """Problems with explorer ``j`` on the open page at rank ``k``; empty when it is right."""
    out = b.js(MOVE % {"j": j, "k": k})
    where = f"explorer {j} at rank {k}"
    if out["ready"] != "1":
        return [f"{where}: the page never decoded its image"]
    problems = []
    if out["viewport"] != 1280:
        problems.append(f"{where}: viewport {out['viewport']} px, expected 1280")
    if out["shown"] <= 0 or out["right"] > out["viewport"]:
        problems.append(f"{where}: canvas not fully on the page ({out['shown']} px wide, right edge {out['right']})")
    if out["k"] != str(k):
        problems.append(f"{where}: the page says rank {out['k']}")
    C, H, W, r = data["c"], data["h"], data["w"], data["r"]
    from PIL import Image
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["png"]))), dtype=np.float64)
    x = torch.from_numpy(png.reshape(H, W, C)).permute(2, 0, 1) / 255          # (C, H, W)
    px = np.frombuffer(base64.b64decode(out["pixels"]), np.uint8).reshape(H, W, 4)
    px = px[..., :C].transpose(2, 0, 1).astype(np.float64)
    ref = 255 * low_rank(x[None], k, clamp=True)[0].numpy()   # float64: the exact rank-k image
    # Quantisation error of the factors, plus 8-bit rounding of the canvas (half a level).
    allowed = 255 * quantisation_bound(explorer.decode(data), k) + 0.5 + 1e-6
    err = np.abs(px - ref)
    if k >= r and not np.array_equal(px, ref):
        problems.append(f"{where}: the full rank is not the image itself (max error {err.max():.2f})")
    if not (err <= allowed).all():
        problems.append(f"{where}: {(err > allowed).sum()} pixels beyond the quantisation bound "
                        f"(max error {err.max():.2f} levels, allowed there "
                        f"{allowed.flat[np.argmax(err - allowed)]:.2f})")
    for m, shown in zip(data["models"], out["top"]):
        table = [(m["classes"][c], 100 * p) for c, p in m["top"][k]]
        names = [n for n, _ in shown]
        if names != [n for n, _ in table]:
            problems.append(f"{where}: {m['name']} shows {names}, the table holds {table}")
        elif any(abs(float(t.rstrip("%")) - p) > 0.05 + 1e-9 for (_, t), (_, p) in zip(shown, table)):
            problems.append(f"{where}: {m['name']} shows {shown}, the table holds {table}")
    if len(out["top"]) != len(data["models"]):
        problems.append(f"{where}: {len(out['top'])} top-5 panels for {len(data['models'])} models")
    return problems


def test_book_explorer_draws_low_rank_and_the_precomputed_top5(html_root, browser, server):
    checked = {}
    for page in pages(html_root):
        text = page.read_text(errors="replace")
        payloads = explorer.read_payload(text)
        if not payloads:
            continue
        rel = page.relative_to(html_root).as_posix()
        browser.goto(f"{server}/{rel}")
        problems = [p for j, data in enumerate(payloads) for k in _ranks(data["r"])
                    for p in check_explorer(browser, data, j, k)]
        assert not problems, f"{rel}:\n" + "\n".join(problems)
        checked[rel] = len(payloads)
        browser.screenshot(_screenshot_dir() / ("explorer__" + rel.replace("/", "__").removesuffix(".html") + ".png"))
    assert checked, ("no page holds a static rank explorer (rankcore.book.widgets.rank_explorer("
                     "..., static=True)); chapters 01 and 02 should")


@pytest.fixture(scope="module")
def own_browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    b = Browser(tmp_path_factory.mktemp("chromium-explorer"))
    yield b
    b.close()


@pytest.mark.parametrize("channels", [3, 1])
def test_standalone_explorer_page_draws_every_chosen_rank(own_browser, tmp_path, channels):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * 24 * 30, 6)).eval()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(channels, 24, 30, generator=g)
    html = widgets.rank_explorer(x, {"lin": model}, static=True, classes=list("abcdef")).data
    page = tmp_path / "explorer.html"
    page.write_text(f"<!doctype html><html><body>{html}</body></html>")
    own_browser.goto(page.as_uri())
    [data] = explorer.read_payload(html)
    problems = [p for k in (0, 1, 5, 13, 23, 24) for p in check_explorer(own_browser, data, 0, k)]
    assert not problems, "\n".join(problems)
