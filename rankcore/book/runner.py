"""Run the book: execute the chapters with papermill, then render them with Jupyter Book.

Usage::

    python -m rankcore.book run   [--profile quick] [--only CHAPTER ...] [-p CHAPTER.key=value ...] [--force]
    python -m rankcore.book build [--profile quick]
    python -m rankcore.book list  [--profile quick]

``run`` executes the chapters of ``_toc.yml`` in order, with the parameters of the
profile (``rankcore/book/profiles/<profile>.yml``) and the ``-p`` overrides, into
``_build/executed/<profile>/`` (each notebook written atomically, never one with an error
cell). A chapter whose notebook, parameters and library source are unchanged since its
last successful run is skipped (``--force`` re-runs it). ``build`` renders the executed
notebooks into ``_build/html`` with ``jupyter-book build -W``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import __version__, _io
from ..paths import REPO_ROOT

ROOT = REPO_ROOT or Path.cwd()
PROFILES = Path(__file__).with_name("profiles")
# Chapters that read other chapters' results re-run whenever any earlier chapter does.
READS_ALL_RESULTS = {"scorecard"}


@dataclass(frozen=True)
class Chapter:
    name: str        # e.g. "02_rank_spectrum"
    source: Path     # book/02_rank_spectrum.ipynb (or .md, which is copied, not run)

    @property
    def is_notebook(self) -> bool:
        return self.source.suffix == ".ipynb"


class BookError(RuntimeError):
    """A problem with the book's configuration or a chapter's execution."""


# ---------------------------------------------------------------------------- configuration

def chapters(root: Path | None = None, strict: bool = True) -> list[Chapter]:
    """The book's pages in ``_toc.yml`` order (``strict=False`` skips missing files)."""
    root = root or ROOT
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]] + [entry["file"] for entry in _toc_entries(toc)]
    out = []
    for f in files:
        matches = [root / f"{f}{ext}" for ext in (".ipynb", ".md") if (root / f"{f}{ext}").exists()]
        if not matches:
            if not strict:
                continue
            raise BookError(f"_toc.yml lists {f!r} but neither {f}.ipynb nor {f}.md exists")
        out.append(Chapter(Path(f).name, matches[0]))
    return out


def _toc_entries(node: dict) -> list[dict]:
    entries = []
    for key in ("chapters", "sections"):
        for entry in node.get(key, []):
            if "file" in entry:
                entries.append(entry)
            entries.extend(_toc_entries(entry))
    for part in node.get("parts", []):
        entries.extend(_toc_entries(part))
    return entries


def load_profile(name: str) -> dict[str, dict[str, Any]]:
    path = PROFILES / f"{name}.yml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES.glob("*.yml"))
        raise BookError(f"unknown profile {name!r}; known profiles: {', '.join(known)}")
    return {k: dict(v or {}) for k, v in (yaml.safe_load(path.read_text()) or {}).items()}


def notebook_parameters(chapter: Chapter) -> dict[str, dict]:
    """The chapter's declared parameters (name -> papermill's inferred type, default, help)."""
    import papermill
    return papermill.inspect_notebook(str(chapter.source))


def parse_overrides(items: list[str], names: list[str], only: list[str]) -> dict[str, dict[str, Any]]:
    """``["02_rank_spectrum.n_images=500"]`` -> ``{"02_rank_spectrum": {"n_images": 500}}``.

    Values are read as YAML (``500`` is an int, ``[1, 2]`` a list, ``true`` a bool). An
    unqualified ``key=value`` is allowed when exactly one chapter is selected with --only.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise BookError(f"-p {item!r}: expected CHAPTER.key=value")
        key, value = item.split("=", 1)
        if "." in key and key.split(".", 1)[0] in names:
            chapter, param = key.split(".", 1)
        elif len(only) == 1:
            chapter, param = only[0], key
        else:
            raise BookError(f"-p {item!r}: name the chapter, e.g. -p 02_rank_spectrum.{key}=...; "
                            f"chapters: {', '.join(names)}")
        out.setdefault(chapter, {})[param] = yaml.safe_load(value)
    return out


def resolve_parameters(chapter: Chapter, profile: str, values: dict[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the chapter's parameters cell; add ``profile``."""
    declared = notebook_parameters(chapter)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise BookError(f"{chapter.name}: unknown parameter(s) {unknown}; "
                        f"known: {sorted(declared) or 'none'}")
    params = dict(values)
    if "profile" in declared:
        params["profile"] = profile
    return params


# ---------------------------------------------------------------------------- caching

def _library_digest() -> str:
    """Hash of the rankcore sources: a library change re-runs the chapters."""
    h = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parents[1].rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(chapter: Chapter, params: dict[str, Any], library: str, upstream: str = "") -> str:
    h = hashlib.sha256()
    h.update(chapter.source.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(library.encode())
    # Where data comes from changes what a chapter computes.
    h.update(os.environ.get("RANKCORE_DATA", "").encode())
    h.update(upstream.encode())
    return h.hexdigest()


class RunState:
    """``state.json`` beside the executed notebooks: the fingerprint of each chapter's last success."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def unchanged(self, name: str, fp: str, output: Path) -> bool:
        return output.exists() and self.data.get(name, {}).get("fingerprint") == fp

    def record(self, name: str, fp: str, seconds: float) -> None:
        self.data[name] = {"fingerprint": fp, "seconds": round(seconds, 1),
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _io.write_json(self.path, self.data)


# ---------------------------------------------------------------------------- running

def executed_dir(profile: str, out: Path | None = None) -> Path:
    return Path(out) if out else ROOT / "_build" / "executed" / profile


def _execute(chapter: Chapter, params: dict[str, Any], output: Path, progress: bool) -> None:
    import papermill
    tmp = output.with_name(f".{output.name}.running.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(chapter.source), str(tmp), parameters=params,
                                   kernel_name="python3", cwd=str(ROOT),
                                   progress_bar=progress, log_output=False)
    except papermill.PapermillExecutionError as err:
        failed = output.with_name(f"{output.stem}.failed.ipynb")
        os.replace(tmp, failed)
        raise BookError(f"{chapter.name} failed in cell {err.exec_count}: {err.ename}: "
                        f"{err.evalue}\n(the failed notebook is at {failed}; nothing was published)") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)


def run(profile: str = "quick", only: list[str] | None = None, overrides: list[str] | None = None,
        force: bool = False, out: Path | None = None, progress: bool | None = None) -> Path:
    """Execute the book's chapters; returns the folder of executed notebooks.

    Args:
        profile (str): ``smoke``, ``quick`` or ``paper`` (``book/profiles/<name>.yml``).
        only (list[str], optional): run just these chapters (by name, e.g. ``02_rank_spectrum``).
        overrides (list[str], optional): ``CHAPTER.key=value`` parameter overrides.
        force (bool): re-run chapters even when nothing changed.
        out (path, optional): where executed notebooks go. Default: ``_build/executed/<profile>``.
        progress (bool, optional): papermill's per-cell progress bar. Default: on a terminal.
    """
    pages = chapters(strict=not only)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    names = [Path(f).name for f in [toc["root"]] + [e["file"] for e in _toc_entries(toc)]]
    only = list(only or [])
    missing = [o for o in only if o not in names]
    if missing:
        raise BookError(f"--only {missing}: no such chapter; chapters: {', '.join(names)}")
    profile_values = load_profile(profile)
    stray = sorted(set(profile_values) - set(names))
    if stray:
        raise BookError(f"profile {profile!r} names unknown chapter(s) {stray}; chapters: {', '.join(names)}")
    extra = parse_overrides(overrides or [], names, only)
    folder = executed_dir(profile, out)
    state = RunState(folder)
    library = _library_digest()
    progress = sys.stderr.isatty() if progress is None else progress
    notebooks = [c for c in pages if c.is_notebook]
    # Validate every selected chapter's parameters before running anything.
    plan = []
    for chapter in notebooks:
        if only and chapter.name not in only:
            continue
        values = {**profile_values.get(chapter.name, {}), **extra.get(chapter.name, {})}
        plan.append((chapter, resolve_parameters(chapter, profile, values)))
    if not plan:
        raise BookError("nothing to run")
    upstream = ""
    for i, (chapter, params) in enumerate(plan, 1):
        output = folder / chapter.source.relative_to(ROOT)
        dependency = upstream if chapter.name in READS_ALL_RESULTS else ""
        fp = fingerprint(chapter, params, library, dependency)
        label = f"[{i}/{len(plan)}] {chapter.name}"
        if not force and state.unchanged(chapter.name, fp, output):
            print(f"{label}: unchanged since its last run (parameters, notebook, library); "
                  "skipped (--force re-runs)", flush=True)
            upstream += fp
            continue
        shown = {k: v for k, v in params.items() if k != "profile"}
        print(f"{label}: running with profile={profile} {shown}", flush=True)
        start = time.time()
        _execute(chapter, params, output, progress)
        seconds = time.time() - start
        state.record(chapter.name, fp, seconds)
        upstream += fp
        print(f"{label}: done in {seconds:.0f} s -> {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}",
              flush=True)
    return folder


def build(profile: str = "quick", out: Path | None = None, html_root: Path | None = None) -> Path:
    """Render the executed notebooks of ``profile`` to HTML; returns the ``html`` folder.

    Markdown pages are copied beside the executed notebooks, then ``jupyter-book build -W``
    runs on that folder with the top-level ``_config.yml`` and ``_toc.yml``.
    """
    folder = executed_dir(profile, out)
    missing = []
    for chapter in chapters():
        target = folder / chapter.source.relative_to(ROOT)
        if chapter.is_notebook:
            if not target.exists():
                missing.append(chapter.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(chapter.source, target)
    if missing:
        raise BookError(f"not executed yet for profile {profile!r}: {missing}; "
                        f"run `python -m rankcore.book run --profile {profile}` first")
    # Pictures a Markdown page refers to (the intro's figure) travel with it.
    for asset in (ROOT / "book").glob("*.png"):
        shutil.copy2(asset, folder / "book" / asset.name)
    html_root = Path(html_root) if html_root else ROOT
    exe = Path(sys.executable).parent / "jupyter-book"
    exe = str(exe) if exe.exists() else shutil.which("jupyter-book")
    if exe is None:
        raise BookError("jupyter-book is not installed (pip install 'jupyter-book<2')")
    cmd = [exe, "build", str(folder), "-W", "--keep-going",
           "--config", str(ROOT / "_config.yml"), "--toc", str(ROOT / "_toc.yml"),
           "--path-output", str(html_root)]
    if subprocess.run(cmd).returncode != 0:
        raise BookError("jupyter-book build failed (warnings are errors); see the log above")
    html = html_root / "_build" / "html"
    print(f"book built: {html / 'index.html'}")
    return html


# ---------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rankcore.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute the chapters with papermill")
    p_run.add_argument("--profile", default="quick", help="smoke, quick (default) or paper")
    p_run.add_argument("--only", action="append", default=[], metavar="CHAPTER",
                       help="run only this chapter (repeatable)")
    p_run.add_argument("-p", "--param", action="append", default=[], metavar="CHAPTER.KEY=VALUE",
                       help="override a chapter parameter (value read as YAML)")
    p_run.add_argument("--force", action="store_true", help="re-run unchanged chapters too")
    p_run.add_argument("--out", type=Path, help="folder for executed notebooks")
    p_run.add_argument("--build", action="store_true", help="render the HTML afterwards")
    p_build = sub.add_parser("build", help="render executed chapters to _build/html")
    p_build.add_argument("--profile", default="quick")
    p_build.add_argument("--out", type=Path, help="folder of executed notebooks")
    p_build.add_argument("--html-root", type=Path, help="write <DIR>/_build/html (default: repository)")
    p_list = sub.add_parser("list", help="list chapters and their parameters")
    p_list.add_argument("--profile", default="quick")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(args.profile, args.only, args.param, args.force, args.out)
            if args.build:
                build(args.profile, args.out)
        elif args.command == "build":
            build(args.profile, args.out, args.html_root)
        else:
            values = load_profile(args.profile)
            for chapter in chapters():
                if chapter.is_notebook:
                    declared = {k: v["default"] for k, v in notebook_parameters(chapter).items()}
                    print(f"{chapter.name}: defaults {declared}; profile {args.profile}: "
                          f"{values.get(chapter.name, {})}")
                else:
                    print(f"{chapter.name}: (text page)")
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
