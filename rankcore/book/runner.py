"""Run the book: execute the chapters with papermill, then render them with Jupyter Book.

Usage::

    python -m rankcore.book run   [--profile quick] [--only CHAPTER ...] [-p CHAPTER.key=value ...] [--force]
    python -m rankcore.book build [--profile quick]
    python -m rankcore.book list  [--profile quick]
    python -m rankcore.book check [--profile paper]

``run`` executes the chapters of ``_toc.yml`` in order, with the parameters of the
profile (``rankcore/book/profiles/<profile>.yml``) and the ``-p`` overrides, into
``_build/executed/<profile>/`` (each notebook written atomically, never one with an error
cell). Every parameter is checked against the type its parameters cell declares before
anything runs. A chapter whose fingerprint (its code cells, parameters, the library's
source, ``paper_values.yml``, the data sources' listings and the versions of torch,
torchvision, timm and captum) is unchanged since its last success is skipped (``--force``
re-runs it); a Markdown-only edit re-renders without re-executing. A chapter writes its
results into a fresh folder that replaces ``results/<profile>/<chapter>/`` only when the
chapter succeeds, with ``meta.json`` (parameters, commit, versions, device, wall time).
``build`` renders the executed notebooks into ``_build/html`` with ``jupyter-book build -W``.
``check`` lists what a profile needs (:mod:`rankcore.book.check`).
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import _io
from ..paths import REPO_ROOT
from . import profiles
from .provenance import (RunState, data_sources, device_info, fingerprint, git_state,
                         library_digest, one_runner_per_results_folder, recover, results_dir,
                         staging_dir, swap_in, versions)

#: The book's folder (``_toc.yml``, ``book/``): ``$RANKCORE_BOOK_ROOT``, else the checkout.
ROOT = Path(os.environ.get("RANKCORE_BOOK_ROOT") or REPO_ROOT or Path.cwd())
# Chapters that read other chapters' results re-run whenever any earlier chapter does.
READS_ALL_RESULTS = {"scorecard"}
#: Environment variables through which the runner tells :class:`~rankcore.book.results.Results`
#: to write a chapter into its staging folder.
STAGE_ENV = ("RANKCORE_STAGE_CHAPTER", "RANKCORE_STAGE_PROFILE", "RANKCORE_STAGE_DIR")


@dataclass(frozen=True)
class Chapter:
    name: str        # e.g. "02_rank_spectrum"
    source: Path     # book/02_rank_spectrum.ipynb (or .md, which is copied, not run)

    @property
    def is_notebook(self) -> bool:
        return self.source.suffix == ".ipynb"


class BookError(RuntimeError):
    """A problem with the book's configuration or a chapter's execution (exit status 1)."""


class UsageError(BookError, ValueError):
    """A mistake in what was asked for: a parameter, profile or chapter (exit status 2)."""


# ---------------------------------------------------------------------------- configuration

def chapters(root: Path | None = None, strict: bool = True) -> list[Chapter]:
    """The book's pages in ``_toc.yml`` order (``strict=False`` skips missing files)."""
    root = root or ROOT
    out = []
    for f in toc_files(root):
        matches = [root / f"{f}{ext}" for ext in (".ipynb", ".md") if (root / f"{f}{ext}").exists()]
        if not matches:
            if not strict:
                continue
            raise BookError(f"_toc.yml lists {f!r} but neither {f}.ipynb nor {f}.md exists")
        out.append(Chapter(Path(f).name, matches[0]))
    return out


def toc_files(root: Path | None = None) -> list[str]:
    toc = yaml.safe_load(((root or ROOT) / "_toc.yml").read_text())
    return [toc["root"]] + [entry["file"] for entry in _toc_entries(toc)]


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
    """Chapter -> parameters of profile ``name`` (see :mod:`rankcore.book.profiles`)."""
    try:
        return profiles.chapters(name)
    except (profiles.ProfileError, TypeError) as err:
        raise UsageError(str(err)) from None


def notebook_parameters(chapter: Chapter) -> dict[str, dict]:
    """The chapter's declared parameters (name -> papermill's inferred type, default, help)."""
    import papermill
    return papermill.inspect_notebook(str(chapter.source))


def parse_overrides(items: list[str], names: list[str], only: list[str]) -> dict[str, dict[str, Any]]:
    """``["02_rank_spectrum.imagenet_n=500"]`` -> ``{"02_rank_spectrum": {"imagenet_n": 500}}``.

    Values are read as YAML (``500`` is an int, ``[1, 2]`` a list, ``true`` a bool). An
    unqualified ``key=value`` is allowed when exactly one chapter is selected with --only.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"-p {item!r}: expected CHAPTER.key=value")
        key, value = item.split("=", 1)
        if "." in key and key.split(".", 1)[0] in names:
            chapter, param = key.split(".", 1)
        elif len(only) == 1:
            chapter, param = only[0], key
        else:
            raise UsageError(f"-p {item!r}: name the chapter, e.g. -p 02_rank_spectrum.{key}=...; "
                             f"chapters: {', '.join(names)}")
        try:
            out.setdefault(chapter, {})[param] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"-p {item!r}: the value is not valid YAML") from None
    return out


_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
          "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,), "None": (type(None),),
          "NoneType": (type(None),)}


def _accepted(type_name: str) -> tuple[type, ...] | None:
    """The Python types a declared annotation accepts; ``None`` when any value goes."""
    name = type_name.replace(" ", "")
    if name in ("", "None"):  # papermill's name for an unannotated parameter
        return None
    if name.startswith("Optional[") and name.endswith("]"):
        name = name[len("Optional["):-1] + "|None"
    out: tuple[type, ...] = ()
    for part in name.split("|"):
        part = part.split("[", 1)[0]   # list[int] -> list
        if part not in _TYPES:
            return None
        out += _TYPES[part]
    return out or None


def check_type(chapter: str, name: str, value: Any, type_name: str) -> None:
    """Raise :class:`UsageError` when ``value`` does not fit the declared ``type_name``."""
    accepted = _accepted(type_name)
    if accepted is None:
        return
    if isinstance(value, bool) and bool not in accepted:
        ok = False  # True is an int to Python, not to a parameters cell
    else:
        ok = isinstance(value, accepted)
    if not ok:
        raise UsageError(f"{chapter}.{name}={value!r}: expected {type_name} (the chapter's "
                         f"parameters cell), got {type(value).__name__}")


def resolve_parameters(chapter: Chapter, profile: str, values: dict[str, Any]) -> dict[str, Any]:
    """Check ``values`` against the chapter's parameters cell (names and types); add ``profile``."""
    declared = notebook_parameters(chapter)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise UsageError(f"{chapter.name}: unknown parameter(s) {unknown}; "
                         f"known: {sorted(declared) or 'none'}")
    for name, value in values.items():
        check_type(chapter.name, name, value, declared[name].get("inferred_type_name", "None"))
    params = dict(values)
    if "profile" in declared:
        params["profile"] = profile
    if "download" in declared and "download" not in values and \
            profiles.settings(profile).get("offline"):
        params["download"] = False  # an offline profile never downloads
    return params


def effective_parameters(chapter: Chapter, injected: dict[str, Any]) -> dict[str, Any]:
    """The notebook's defaults (where they are literals) overlaid with ``injected``."""
    out: dict[str, Any] = {}
    for name, info in notebook_parameters(chapter).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError, TypeError):
            out[name] = info["default"]   # an expression, recorded as written
    return {**out, **injected}


# ---------------------------------------------------------------------------- running

def executed_dir(profile: str, out: Path | None = None) -> Path:
    return Path(out) if out else ROOT / "_build" / "executed" / profile


def status_line(name: str) -> dict[str, Any]:
    """papermill's progress bar as one live line per chapter: the cell running (cells
    done + 1, of the notebook's cells) and the time since the chapter started."""
    return {"desc": f"  {name}", "unit": "cell", "leave": False, "dynamic_ncols": True,
            "bar_format": "{desc}: {n_fmt} of {total_fmt} cells done, {elapsed} elapsed"}


def _execute(chapter: Chapter, params: dict[str, Any], output: Path, progress: bool,
             log_output: bool, stage: Path, profile: str) -> None:
    import papermill

    from ..torch_utils import ALLOCATOR_ENV  # here: `rankcore book --help` needs no torch
    tmp = output.with_name(f".{output.name}.running.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    # The kernel inherits this environment: the stage, and the allocator settings that keep
    # CPU forward passes off fresh mmaps (torch_utils.tune_allocator), unless the user set them.
    env = {**dict(zip(STAGE_ENV, (chapter.name, profile, str(stage)))),
           **{k: v for k, v in ALLOCATOR_ENV.items() if k not in os.environ}}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        papermill.execute_notebook(str(chapter.source), str(tmp), parameters=params,
                                   kernel_name="python3", cwd=str(ROOT),
                                   progress_bar=status_line(chapter.name) if progress else False,
                                   log_output=log_output)
    except papermill.PapermillExecutionError as err:
        failed = output.with_name(f"{output.stem}.failed.ipynb")
        os.replace(tmp, failed)
        raise BookError(f"{chapter.name} failed in cell {err.exec_count}: {err.ename}: "
                        f"{err.evalue}\n(the failed notebook is at {failed}; nothing was published)") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    os.replace(tmp, output)


#: The page's column holds about this many monospace characters (700 px at 14 px type).
RERUN_WIDTH = 72
RERUN_TAG = "rerun-block"


def _wrapped(name: str, value: Any, width: int = RERUN_WIDTH) -> str:
    """``name = value``, the value pretty-printed so that no line exceeds ``width``."""
    import pprint
    lead = f"{name} = "
    text = pprint.pformat(value, width=max(width - len(lead), 20), compact=True, sort_dicts=False)
    return lead + text.replace("\n", "\n" + " " * len(lead))


def rerun_markdown(meta: dict[str, Any], width: int = RERUN_WIDTH) -> str:
    """The "Re-run this chapter" block of a page: the command (with a ``-p`` for every
    value the profile does not set) and every parameter the page was built with, from the
    chapter's ``meta.json``; code lines wrapped to ``width`` characters for the column."""
    chapter, profile = meta["chapter"], meta["profile"]
    try:
        profile_values = profiles.chapters(profile).get(chapter, {})
    except (profiles.ProfileError, TypeError):
        profile_values = {}
    own = {k: v for k, v in meta.get("injected", {}).items()
           if k not in ("profile", "download") and profile_values.get(k, object()) != v}
    lines = [f"python -m rankcore.book run --profile {profile} --only {chapter}"]
    for k, v in own.items():
        value = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
        value = value[:-len("\n...")] if value.endswith("\n...") else value
        # A long value goes on inside its quotes: YAML reads a flow list across lines.
        arg = shlex.quote(f"{chapter}.{k}={value}")
        lines.append("\n      ".join(textwrap.wrap(f"-p {arg}", width - 6, break_long_words=False,
                                                    break_on_hyphens=False)))
    command = " \\\n    ".join(lines)
    params = "\n".join(_wrapped(k, v, width) for k, v in meta.get("params", {}).items())
    commit = (meta.get("git") or {}).get("commit")
    built = f" at commit `{commit[:10]}`" if commit else ""
    return (f"## Re-run this chapter\n\nThis page was built with the `{profile}` profile{built}"
            f" in {meta.get('wall_s', 0):.0f} s. To run it again:\n\n```bash\n{command}\n```\n\n"
            f"The parameters it ran with (its `meta.json`):\n\n```python\n{params}\n```\n")


def finish_page(notebook: Path, meta: dict[str, Any]) -> None:
    """Prepare an executed notebook for its page: papermill's injected-parameters cell is
    removed from the rendered page (``remove-cell``, as the defaults cell is) and the
    "Re-run this chapter" block of ``meta`` ends it (replacing one already there)."""
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nb.cells = [c for c in nb.cells if RERUN_TAG not in c.metadata.get("tags", [])]
    nb.cells.append(nbformat.v4.new_markdown_cell(rerun_markdown(meta), metadata={"tags": [RERUN_TAG]}))
    _io.write_text(notebook, nbformat.writes(nb))


def check_device(profile: str, allow_cpu: bool) -> None:
    """Refuse a profile that needs CUDA on a machine without it (unless ``allow_cpu``)."""
    if not profiles.settings(profile).get("needs_cuda") or allow_cpu:
        return
    import torch
    if not torch.cuda.is_available():
        raise UsageError(f"profile {profile!r} needs a CUDA GPU and torch {torch.__version__} sees "
                         f"none (it would train ResNets on the CPU for days); pass --allow-cpu to "
                         f"run it anyway, or use --profile quick")


@one_runner_per_results_folder
def run(profile: str = "quick", only: list[str] | None = None, overrides: list[str] | None = None,
        force: bool = False, out: Path | None = None, progress: bool | None = None,
        log_output: bool = False, allow_cpu: bool = False) -> Path:
    """Execute the book's chapters; returns the folder of executed notebooks.

    Args:
        profile (str): ``smoke``, ``quick``, ``gpu`` or ``paper`` (:mod:`rankcore.book.profiles`).
        only (list[str], optional): run just these chapters (by name, e.g. ``02_rank_spectrum``).
        overrides (list[str], optional): ``CHAPTER.key=value`` parameter overrides.
        force (bool): re-run chapters even when nothing changed.
        out (path, optional): where executed notebooks go. Default: ``_build/executed/<profile>``.
        progress (bool, optional): papermill's per-cell progress bar. Default: on a terminal.
        log_output (bool): stream each chapter's own output (its progress bars) to the terminal.
        allow_cpu (bool): run a profile that needs CUDA without it.

    Raises:
        UsageError: an unknown chapter, profile or parameter, a value of the wrong type, or a
            CUDA profile without CUDA; nothing has run.
        BookError: a chapter failed; earlier chapters' results stand, its own are untouched.
    """
    todo = validate(profile, only, overrides)
    check_device(profile, allow_cpu)
    folder = executed_dir(profile, out)
    state = RunState(folder)
    library = library_digest()
    environment = {"versions": versions(), "data": data_sources()}
    commit = git_state()
    progress = sys.stderr.isatty() if progress is None else progress
    upstream = ""
    for i, (chapter, params) in enumerate(todo, 1):
        output = folder / chapter.source.relative_to(ROOT)
        dependency = upstream if chapter.name in READS_ALL_RESULTS else ""
        fp = fingerprint(chapter.source, params, library, dependency, environment)
        label = f"[{i}/{len(todo)}] {chapter.name}"
        final = results_dir(profile, chapter.name)
        recover(final)
        if not force and state.unchanged(chapter.name, fp, output):
            print(f"{label}: unchanged since its last run (code, parameters, library, data, "
                  "versions); skipped (--force re-runs)", flush=True)
            upstream += fp
            continue
        shown = {k: v for k, v in params.items() if k != "profile"}
        print(f"{label}: running with profile={profile} {shown}", flush=True)
        stage = staging_dir(final)
        stage.mkdir(parents=True)
        start = time.time()
        try:
            _execute(chapter, params, output, progress, log_output, stage, profile)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        seconds = time.time() - start
        meta = {"chapter": chapter.name, "profile": profile, "injected": params,
                "params": effective_parameters(chapter, params), "fingerprint": fp,
                "git": commit, **environment, "device": device_info(), "wall_s": round(seconds, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _io.write_json(stage / "meta.json", meta)
        finish_page(output, meta)
        swap_in(stage, final)
        state.record(chapter.name, fp, seconds)
        upstream += fp
        shown_out = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
        print(f"{label}: done in {seconds:.0f} s -> {shown_out}", flush=True)
    return folder


def copy_landing(profile: str, dest: Path) -> Path:
    """Put the landing page's result beside ``book/intro.md`` in ``dest``: the text and figure
    that this profile's scorecard chapter wrote (:func:`rankcore.book.scorecard.write_landing`),
    or a line saying that it has not run; never a result of another build. Returns the text."""
    from .scorecard import LANDING_FIGURE, LANDING_TEXT
    source = results_dir(profile, "scorecard")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / LANDING_FIGURE).unlink(missing_ok=True)
    if (source / LANDING_TEXT).exists():
        if (source / LANDING_FIGURE).exists():
            shutil.copy2(source / LANDING_FIGURE, dest / LANDING_FIGURE)
        text = (source / LANDING_TEXT).read_text()
    else:
        text = (f"*The scorecard chapter has not run for the `{profile}` profile yet; "
                f"`python -m rankcore.book run --profile {profile}` runs it.*\n")
    _io.write_text(dest / LANDING_TEXT, text)
    return text


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
    # Pictures a Markdown page refers to (the intro's figure) travel with it, and the
    # book's style sheet goes where Jupyter Book looks for one (<source>/_static/*.css).
    for asset in (ROOT / "book").glob("*.png"):
        shutil.copy2(asset, folder / "book" / asset.name)
    (folder / "_static").mkdir(parents=True, exist_ok=True)
    for asset in (ROOT / "book" / "_static").glob("*.css"):
        shutil.copy2(asset, folder / "_static" / asset.name)
    copy_landing(profile, folder / "book")
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

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run|build|list|check`` subcommands, on ``python -m rankcore.book`` or ``rankcore book``."""
    sub = parser.add_subparsers(dest="book_command", required=True, metavar="{run,build,list,check}")
    known = ", ".join(profiles.names())
    p_run = sub.add_parser("run", help="execute the chapters with papermill")
    p_run.add_argument("--profile", default="quick", help=f"{known} (default: quick)")
    p_run.add_argument("--only", action="append", default=[], metavar="CHAPTER",
                       help="run only this chapter (repeatable)")
    p_run.add_argument("-p", "--param", action="append", default=[], metavar="CHAPTER.KEY=VALUE",
                       help="override a chapter parameter (value read as YAML, checked against its type)")
    p_run.add_argument("--force", action="store_true", help="re-run unchanged chapters too")
    p_run.add_argument("--out", type=Path, help="folder for executed notebooks")
    p_run.add_argument("--build", action="store_true", help="render the HTML afterwards")
    p_run.add_argument("--log-output", action="store_true",
                       help="stream each chapter's own output (its progress bars) to the terminal")
    p_run.add_argument("--allow-cpu", action="store_true",
                       help="run a profile that needs CUDA (paper, gpu) on a machine without it")
    p_run.add_argument("--dry-run", action="store_true",
                       help="check chapters, profile and parameters, print the plan, run nothing")
    p_build = sub.add_parser("build", help="render executed chapters to _build/html")
    p_build.add_argument("--profile", default="quick")
    p_build.add_argument("--out", type=Path, help="folder of executed notebooks")
    p_build.add_argument("--html-root", type=Path, help="write <DIR>/_build/html (default: repository)")
    p_build.add_argument("--dry-run", action="store_true",
                         help="say which chapters are executed and what would be rendered; render nothing")
    p_list = sub.add_parser("list", help="list chapters and their parameters")
    p_list.add_argument("--profile", default="quick")
    p_check = sub.add_parser("check", help="what a profile needs: data, checkpoints, trainings")
    p_check.add_argument("--profile", default="paper")
    p_check.add_argument("--offline", action="store_true", help="do not probe the network")
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed ``run|build|list|check`` command; returns the exit status (a failed
    chapter or build: one line and 1; a usage mistake raises :class:`UsageError`)."""
    try:
        return _run_command(args)
    except UsageError:
        raise
    except BookError as err:
        if getattr(args, "debug", False):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run_command(args: argparse.Namespace) -> int:
    if args.book_command == "run":
        if args.log_output:
            logging.basicConfig(level=logging.INFO, format="%(message)s")
        if args.dry_run:
            plan(args.profile, args.only, args.param, args.allow_cpu)
            return 0
        run(args.profile, args.only, args.param, args.force, args.out,
            log_output=args.log_output, allow_cpu=args.allow_cpu)
        if args.build:
            build(args.profile, args.out)
    elif args.book_command == "build":
        if args.dry_run:
            folder = executed_dir(args.profile, args.out)
            load_profile(args.profile)
            todo = [c.name for c in chapters() if c.is_notebook
                    and not (folder / c.source.relative_to(ROOT)).exists()]
            print(f"would render {folder} into {(args.html_root or ROOT) / '_build' / 'html'}; "
                  + (f"not executed yet: {todo}" if todo else "every chapter is executed"))
            return 0
        build(args.profile, args.out, args.html_root)
    elif args.book_command == "check":
        from . import check
        return check.main(args.profile, offline=args.offline)
    else:
        print(parameter_table(args.profile))
    return 0


def parameter_table(profile: str) -> str:
    """``book list``: per chapter, a table of its parameters with their declared type, the
    notebook's default and the profile's value (``= default`` when the profile keeps it)."""
    values = load_profile(profile)
    out = []
    for chapter in chapters():
        if not chapter.is_notebook:
            out.append(f"{chapter.name}  (text page, no parameters)\n")
            continue
        declared = notebook_parameters(chapter)
        rows = [("parameter", "type", "default", f"profile {profile}")]
        for name, spec in declared.items():
            mine = values.get(chapter.name, {})
            value = repr(mine[name]) if name in mine else "= default"
            rows.append((name, spec.get("inferred_type_name") or "any", spec["default"], value))
        widths = [min(max(len(str(r[i])) for r in rows), 40) for i in range(3)]
        out.append(chapter.name)
        for r in rows:
            cells = [str(c).ljust(w) for c, w in zip(r[:3], widths)] + [str(r[3])]
            out.append("  " + "  ".join(cells).rstrip())
        out.append("")
    return "\n".join(out).rstrip()


def validate(profile: str, only: list[str] | None = None,
             overrides: list[str] | None = None) -> list[tuple[Chapter, dict[str, Any]]]:
    """Check chapters, profile and parameters (names and types); the run's plan, or UsageError."""
    names = [Path(f).name for f in toc_files()]
    only = list(only or [])
    missing = [o for o in only if o not in names]
    if missing:
        raise UsageError(f"--only {missing}: no such chapter; chapters: {', '.join(names)}")
    values = load_profile(profile)
    stray = sorted(set(values) - set(names))
    if stray:
        raise UsageError(f"profile {profile!r} names unknown chapter(s) {stray}; chapters: {', '.join(names)}")
    extra = parse_overrides(overrides or [], names, only)
    out = []
    for chapter in chapters(strict=not only):
        if chapter.is_notebook and (not only or chapter.name in only):
            out.append((chapter, resolve_parameters(chapter, profile, {**values.get(chapter.name, {}),
                                                                       **extra.get(chapter.name, {})})))
    if not out:
        raise UsageError("nothing to run")
    return out


def plan(profile: str, only: list[str] | None = None, overrides: list[str] | None = None,
         allow_cpu: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Validate a ``run`` without executing it; prints and returns ``[(chapter, params)]``."""
    out = [(c.name, p) for c, p in validate(profile, only, overrides)]
    check_device(profile, allow_cpu)
    for name, params in out:
        print(f"would run {name} with {params}")
    return out


def register_cli(subparsers) -> None:
    """Adds ``rankcore book run|build|list|check`` to a ``rankcore`` parser (:mod:`rankcore.book.cli`)."""
    p = subparsers.add_parser("book", help="run, build, list or check the companion book",
                              description=__doc__.split("\n")[0])
    add_arguments(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rankcore.book", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except UsageError as err:  # (a failed chapter is reported by run_command: status 1)
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
