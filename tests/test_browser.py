"""The built book in a real headless Chromium: every page renders (the static rank explorer
has its own test, ``test_browser_explorer.py``).

Serves the smoke book (``built_book``, see ``conftest.py``) on 127.0.0.1 and drives Chromium
through the DevTools protocol over a pipe (``--remote-debugging-pipe``: no port, no extra
package). Screenshots of every chapter go to ``$RANKCORE_ARTIFACTS`` (default
``_build/screenshots``) for CI to keep. Skipped where no Chromium is installed.
"""
from __future__ import annotations

import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (os.environ.get("RANKCORE_CHROMIUM"), "/usr/bin/chromium",
                              shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1280,1000", "--remote-debugging-pipe"]
TIMEOUT = 60.0  # seconds for one page to load and settle


# ---------------------------------------------------------------------------- DevTools client

class Browser:
    """Headless Chromium driven over ``--remote-debugging-pipe`` (JSON messages, NUL-ended).

    Chromium reads commands from its fd 3 and writes replies and events to its fd 4.
    """

    def __init__(self, user_data_dir: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Move the child's ends above 3 and 4 first, so dup2 onto 3/4 cannot clobber them.
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        for fd in (to_chrome_r, from_chrome_w):
            os.close(fd)

        def child_fds():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        # stderr to a file: an unread pipe would fill up and stall Chromium.
        self._log = Path(user_data_dir).with_name(Path(user_data_dir).name + "-stderr.log")
        with open(self._log, "wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=child_fds, pass_fds=(3, 4, hi_r, hi_w))
        os.close(hi_r)
        os.close(hi_w)
        self._buf, self._next_id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("no reply from Chromium (exited: "
                                   f"{self.proc.poll()}); stderr: {self._stderr()}")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe; stderr: {self._stderr()}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def _stderr(self) -> str:
        return self._log.read_text(errors="replace")[-2000:]

    def call(self, method: str, session: bool = False, timeout: float = TIMEOUT, **params):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read(deadline)
            if e.get("method") == method:
                return e
            self.events.append(e)

    def goto(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str):
        """Evaluate ``expression`` in the page (promises awaited); returns its JSON value."""
        out = self.call("Runtime.evaluate", session=True, expression=expression,
                        awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"page script failed: {out['exceptionDetails']}")
        return out["result"].get("value")

    def screenshot(self, path: Path, max_height: int = 6000, scale: float = 0.75) -> None:
        """The whole page (up to ``max_height`` CSS pixels) as a PNG, scaled down.

        The window grows to the page's height for the capture and shrinks back after:
        Chromium's ``captureBeyondViewport`` lays the page out again for a tall viewport,
        and the theme's sticky sidebar then squeezed the text column off the left edge.
        """
        import base64
        width = self.js("window.innerWidth")
        view = self.js("window.innerHeight")
        height = min(max_height, self.js("document.documentElement.scrollHeight"))
        metrics = dict(width=width, deviceScaleFactor=1, mobile=False)
        self.call("Emulation.setDeviceMetricsOverride", session=True, height=height, **metrics)
        try:
            self.js("window.scrollTo(0, 0)")
            time.sleep(0.3)  # one layout and paint at the new height
            data = self.call("Page.captureScreenshot", session=True, format="png",
                             captureBeyondViewport=False,
                             clip=dict(x=0, y=0, width=width, height=height, scale=scale))["data"]
        finally:
            self.call("Emulation.setDeviceMetricsOverride", session=True, height=view, **metrics)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            os.close(fd)


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def html_root(request) -> Path:
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    env = os.environ.get("RANKCORE_BOOK_HTML")  # test an already built book
    root = Path(env) if env else request.getfixturevalue("built_book")
    if not (root / "index.html").exists():
        pytest.fail(f"{root} has no index.html; expected a built book (_build/html)")
    return root


@pytest.fixture(scope="module")
def server(html_root):
    handler = functools.partial(_QuietHandler, directory=str(html_root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: any free one
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def browser(html_root, tmp_path_factory):
    # Tests ask for the browser before the server: Chromium is forked before the server's
    # thread exists (forking with threads running is best avoided).
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))  # empty user-data dir
    yield b
    b.close()


def pages(root: Path) -> list[Path]:
    """The book's own pages: every ``.html`` outside Sphinx's folders and generated indexes,
    less redirect stubs (Jupyter Book's ``index.html`` only forwards to the root page)."""
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p for p in root.rglob("*.html")
                  if p.name not in skip
                  and not any(part.startswith("_") for part in p.relative_to(root).parts)
                  and 'http-equiv="refresh"' not in p.read_text(errors="replace")[:2000].lower())


# In-page checks (plain JavaScript, evaluated by Chromium).
BROKEN_IMAGES = """(async () => {
  const bad = [];
  for (const img of Array.from(document.images)) {
    if (!img.getAttribute('src')) continue;
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { bad.push(img.getAttribute('src').slice(0, 120)); continue; }
    if (img.naturalWidth === 0) bad.push(img.getAttribute('src').slice(0, 120));
  }
  return bad;
})()"""
ERROR_OUTPUTS = """Array.from(document.querySelectorAll(
  '.cell_output .traceback, .cell_output .output.error, .cell_output .output.stderr'))
  .filter(e => /Traceback|Error|Exception/.test(e.innerText))
  .map(e => e.innerText.slice(0, 300))"""
def _screenshot_dir() -> Path:
    d = Path(os.environ.get("RANKCORE_ARTIFACTS") or REPO / "_build" / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------- tests

def test_every_page_renders_without_broken_images_or_errors(html_root, browser, server):
    found = pages(html_root)
    assert found, f"no pages under {html_root}"
    shots, problems = _screenshot_dir(), []
    for page in found:
        rel = page.relative_to(html_root).as_posix()
        browser.goto(f"{server}/{rel}")
        broken = browser.js(BROKEN_IMAGES)
        errors = browser.js(ERROR_OUTPUTS)
        title = browser.js("document.querySelector('h1') ? document.querySelector('h1').innerText : ''")
        if broken:
            problems.append(f"{rel}: broken images {broken}")
        if errors:
            problems.append(f"{rel}: notebook error output {errors}")
        if not title:
            problems.append(f"{rel}: no heading, the page did not render")
        browser.screenshot(shots / (rel.replace("/", "__").removesuffix(".html") + ".png"))
    assert not problems, "\n".join(problems)
    assert len(list(shots.glob("*.png"))) >= len(found)


# ---------------------------------------------------------------------------- the reader's view

# Chapters whose opening (headline figure and verdict box) another helper writes: their
# first figure is not yet checked; nor their code cells until their tags follow
# (tests/test_book_pages.py: OPENING_PENDING, PENDING).
HEADLINE_PENDING: set[str] = set()
TAGS_PENDING: set[str] = set()
#: The screenshots the reader's acceptance names, top of the page at 1280 px.
READER_SHOTS = {"intro": "book/intro.html", "02_rank_spectrum": "book/02_rank_spectrum.html",
                "03_rig": "book/03_rig.html", "scorecard": "book/scorecard.html"}
FIRST_FIGURE_PX = 1000
READER = """(() => {
  const main = document.querySelector('main') || document.body;
  const visible = e => { const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'; };
  const img = Array.from(main.querySelectorAll('img')).find(visible);
  const code = Array.from(main.querySelectorAll('.cell_input, .cell .highlight-ipython3'))
    .filter(visible).map(e => e.innerText.slice(0, 80));
  const cut = Array.from(main.querySelectorAll('td, th')).map(e => e.innerText.trim())
    .filter(t => t.endsWith('...') || t.endsWith('\u2026')).map(t => t.slice(-80));
  const art = main.querySelector('article') || main;
  const edge = art.getBoundingClientRect().right + 2;
  const wide = Array.from(art.querySelectorAll('table, img, canvas')).filter(visible)
    .filter(e => e.getBoundingClientRect().right > edge)
    .map(e => `${e.tagName} ${Math.round(e.getBoundingClientRect().width)} px: ` +
              (e.innerText || e.src || '').slice(0, 60));
  return {width: window.innerWidth, scroll: document.documentElement.scrollWidth,
          first_image: img ? img.getBoundingClientRect().top + window.scrollY : null,
          code: code, cut: cut, wide: wide};
})()"""


def chapter_pages(root: Path) -> list[Path]:
    """The chapters' pages (``book/*.html``), in file order."""
    return sorted(p for p in pages(root) if p.parent.name == "book")


def test_reader_sees_results_first_no_code_no_cut_cells_nothing_wider_than_the_column(html_root, browser, server):
    browser.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=1000,
                 deviceScaleFactor=1, mobile=False)
    found = chapter_pages(html_root)
    assert len(found) >= 10, f"expected the intro and every chapter under {html_root}/book"
    problems = []
    for page in found:
        rel = page.relative_to(html_root).as_posix()
        browser.goto(f"{server}/{rel}")
        browser.js("window.scrollTo(0, 0)")
        got = browser.js(READER)
        assert got["width"] == 1280, got
        if got["code"] and page.stem not in TAGS_PENDING:
            problems.append(f"{rel}: code cells visible: {got['code'][:3]}")
        if got["cut"]:
            problems.append(f"{rel}: table cells cut with '...': {got['cut'][:3]}")
        if got["wide"]:
            problems.append(f"{rel}: wider than the text column: {got['wide'][:3]}")
        if page.stem not in HEADLINE_PENDING:
            top = got["first_image"]
            if top is None or top > FIRST_FIGURE_PX:
                problems.append(f"{rel}: first figure at {top} px; expected within "
                                f"{FIRST_FIGURE_PX} px at 1280 px")
    assert not problems, "\n".join(problems)


def test_reader_screenshots_of_the_acceptance_pages(html_root, browser, server):
    browser.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=1000,
                 deviceScaleFactor=1, mobile=False)
    shots = _screenshot_dir()
    for name, rel in READER_SHOTS.items():
        assert (html_root / rel).exists(), f"no {rel} in {html_root}"
        browser.goto(f"{server}/{rel}")
        path = shots / f"reader-1280-{name}.png"
        browser.screenshot(path, max_height=2400, scale=1.0)
        assert path.stat().st_size > 20_000, f"{path} looks empty"
