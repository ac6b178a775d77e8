"""rankcore.models.weights: checkpoints with pickled code, corrupt files, digests, downloads.

Every checkpoint here is written in the test, in the real third-party layout (torch's zip
and legacy pickle formats; the ``robustness`` dict with a dill-style ``__main__`` function).
"""
from __future__ import annotations

import dataclasses
import http.server
import sys
import threading
import types
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch

from rankcore import models
from rankcore.models import registry, weights

NAME = "robust_resnet50_cifar_l2_0.25"  # a checkpoint the issue names (dill functions)


@pytest.fixture(autouse=True)
def _models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKCORE_MODELS", str(tmp_path / "models-cache"))
    monkeypatch.setenv("RANKCORE_DATA", str(tmp_path / "data"))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY",
                "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------------------- payloads

class _Exec:
    """A ``__reduce__`` payload: unpickling it runs Python that creates ``target``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.fixture
def fake_dill(monkeypatch):
    """A stand-in ``dill._dill`` module whose constructors record every call.

    ``robustness`` checkpoints hold functions from ``__main__`` pickled by value with dill
    (``dill._dill._create_function(_create_code(...), globals, name)``). The module stays
    importable during loading, so a normal unpickler *would* call it.
    """
    calls = []
    mod = types.ModuleType("dill._dill")

    def _create_code(*args):
        calls.append(("_create_code", args))
        return compile("lambda epoch: 0.1", "<dill>", "eval")

    def _create_function(code, globs, name):
        calls.append(("_create_function", name))
        return lambda epoch: 0.1

    for fn in (_create_code, _create_function):
        fn.__module__, fn.__qualname__ = "dill._dill", fn.__name__
    mod._create_code, mod._create_function = _create_code, _create_function
    monkeypatch.setitem(sys.modules, "dill", types.ModuleType("dill"))
    monkeypatch.setitem(sys.modules, "dill._dill", mod)
    return mod, calls


class _DillFunction:
    """Pickles as dill pickles a ``__main__`` function: nested REDUCEs of dill globals."""

    def __init__(self, mod):
        self.mod = mod

    def __reduce__(self):
        code = _DillCode(self.mod)
        return (self.mod._create_function, (code, {"__name__": "__main__"}, "lr_schedule"))


class _DillCode:
    def __init__(self, mod):
        self.mod = mod

    def __reduce__(self):
        return (self.mod._create_code, (1, 0, 0, 1, 2, 67, b"d\x01S\x00", (None, 0.1)))


def _robustness_with_code(tmp_path, mod, target, legacy=False, name="ckpt.pt", payload=False):
    """A robustness-format checkpoint whose schedule is a dill function (plus, with
    ``payload``, an ``exec`` that would create ``target``)."""
    source = models.create(NAME).eval()
    g = torch.Generator().manual_seed(0)
    for m in source.net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
    clean = models.save_robustness_format(source, tmp_path / "clean.pt")
    blob = torch.load(clean, weights_only=True)
    blob["schedule"] = _DillFunction(mod)
    blob["args"] = {"lr_schedule": _DillFunction(mod), "eps": 0.25}
    if payload:
        blob["payload"] = _Exec(target)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path, _use_new_zipfile_serialization=not legacy)
    return source, path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_dill_checkpoint_loads_tensors_and_runs_nothing(tmp_path, fake_dill, legacy):
    """Issue 11 point 3: tensors kept, dill functions dropped, never run."""
    mod, calls = fake_dill
    source, path = _robustness_with_code(tmp_path, mod, tmp_path / "pwned.txt", legacy=legacy)
    with pytest.warns(models.DroppedObjectsWarning) as record:
        loaded = models.load(NAME, weights=path, device="cpu")
    message = str(record[0].message)
    assert "schedule" in message and "args.lr_schedule" in message
    assert "dill._dill._create_function" in message
    assert calls == []
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
    # what was kept: the state dict and the plain values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", models.DroppedObjectsWarning)
        blob = weights.load_file(path)
    assert blob["args"] == {"eps": 0.25} and blob["epoch"] == 0 and "schedule" not in blob


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_code_beside_dill_functions_refuses_the_file(tmp_path, fake_dill, legacy):
    """Issue 28 item 1: beyond dill's function constructors nothing is read, the globals
    that block it are named, and nothing runs."""
    mod, calls = fake_dill
    target = tmp_path / "pwned.txt"
    _, path = _robustness_with_code(tmp_path, mod, target, legacy=legacy, payload=True)
    with pytest.raises(models.UnsafeCheckpointError) as e:
        models.load(NAME, weights=path, device="cpu")
    assert "builtins.exec" in str(e.value) and "trust=True" in str(e.value)
    assert str(path) in str(e.value) and calls == [] and not target.exists()


def test_trust_is_the_only_way_to_run_pickled_code(tmp_path, fake_dill):
    mod, calls = fake_dill
    target = tmp_path / "pwned.txt"
    _, path = _robustness_with_code(tmp_path, mod, target, payload=True)
    models.load(NAME, weights=path, device="cpu", trust=True)
    assert target.read_text() == "pwned" and calls  # the payload is real


def test_trust_without_dill_says_what_is_missing(tmp_path, fake_dill, monkeypatch):
    """The issue's trust=True failure on a machine without dill: a clear WeightsError."""
    mod, calls = fake_dill
    _, path = _robustness_with_code(tmp_path, mod, tmp_path / "pwned.txt")
    monkeypatch.delitem(sys.modules, "dill._dill")
    monkeypatch.delitem(sys.modules, "dill")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "dill" not in p])
    with pytest.raises(models.UnsafeCheckpointError, match="dill") as e:
        models.load(NAME, weights=path, device="cpu", trust=True)
    assert "without trust=True" in str(e.value)
    with pytest.warns(models.DroppedObjectsWarning):  # and the safe route still works
        models.load(NAME, weights=path, device="cpu")


def test_pickled_module_is_unsafe_not_run(tmp_path):
    """A whole pickled network (torch.save(model)) needs code: refused, naming trust=True."""
    target = tmp_path / "pwned.txt"
    path = tmp_path / "whole.pt"
    torch.save({"model": _Exec(target)}, path)
    with pytest.raises(models.UnsafeCheckpointError) as e:
        models.load("cifar_resnet8", weights=path, device="cpu")
    assert "builtins.exec" in str(e.value)
    assert "trust=True" in str(e.value)
    assert not target.exists()
    path2 = tmp_path / "top.pt"
    torch.save(_Exec(target), path2)
    with pytest.raises(models.UnsafeCheckpointError, match="trust=True"):
        weights.load_file(path2)
    assert not target.exists()


@pytest.mark.parametrize("where", ["file", "folder", "RANKCORE_MODELS", "data root"])
def test_payload_never_runs_from_any_model_location(tmp_path, fake_dill, monkeypatch, where):
    """Issue 14: a payload-bearing checkpoint in each place weights are found never runs."""
    mod, calls = fake_dill
    target = tmp_path / "pwned.txt"
    cfg = models.get_cfg(NAME)
    folder = {"file": tmp_path / "w", "folder": tmp_path / "w",
              "RANKCORE_MODELS": tmp_path / "models-cache",
              "data root": tmp_path / "data" / "models" / "robustness"}[where]
    source, path = _robustness_with_code(folder, mod, target, name=cfg.file, payload=True)
    weights_arg = {"file": path, "folder": folder}.get(where)
    with pytest.raises(models.UnsafeCheckpointError, match=str(path)):
        models.load(NAME, weights=weights_arg, device="cpu", download=False)
    assert calls == [] and not target.exists()


# ---------------------------------------------------------------------------- not checkpoints

def test_text_file_is_not_a_checkpoint(tmp_path):
    """Issue 14: a text file given as weights= says so (not 'pass trust=True')."""
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights\n")
    with pytest.raises(models.CorruptCheckpointError) as e:
        models.load("cifar_resnet8", weights=path, device="cpu")
    assert "not a checkpoint" in str(e.value) and str(path) in str(e.value)
    assert "trust" not in str(e.value) and isinstance(e.value, ValueError)


def test_html_saved_as_pt_and_truncated_file(tmp_path):
    html = tmp_path / "cifar_l2_0_25.pt"
    html.write_text("<!DOCTYPE html><html><body>Dropbox - sign in</body></html>")
    with pytest.raises(models.CorruptCheckpointError, match="HTML"):
        models.load(NAME, weights=html, device="cpu")
    good = tmp_path / "good.pt"
    torch.save(models.create("cifar_resnet8").net.state_dict(), good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(models.CorruptCheckpointError, match="unreadable"):
        models.load("cifar_resnet8", weights=cut, device="cpu")


def test_registry_sha256_checked_on_load(tmp_path):
    """A file under a published name whose digest differs is refused, naming both."""
    cfg = models.get_cfg("cifar_resnet20")
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save({"state_dict": models.create("cifar_resnet20").net.state_dict()},
               folder / cfg.file)
    with pytest.raises(models.CorruptCheckpointError, match="SHA-256") as e:
        models.load("cifar_resnet20", weights=folder, device="cpu")
    assert cfg.sha256[:16] in str(e.value)
    renamed = folder / "my_resnet20.th"  # the user's own file: no published digest
    (folder / cfg.file).rename(renamed)
    assert models.load("cifar_resnet20", weights=renamed, device="cpu").source == str(renamed)


# ---------------------------------------------------------------------------- downloads

class _Server:
    """A local HTTP server (optionally acting as a proxy) that serves one body."""

    def __init__(self, body: bytes, content_type: str = "application/octet-stream"):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _served_file(tmp_path) -> Path:
    src = tmp_path / "served.th"
    torch.save({"state_dict": models.create("cifar_resnet20").net.state_dict(),
                "best_prec1": 91.7}, src)
    return src


def _publish(monkeypatch, url: str, sha: str | None):
    """cifar_resnet20 with its URL pointing at ``url`` and digest ``sha``."""
    cfg = dataclasses.replace(models.get_cfg("cifar_resnet20"), url=url, sha256=sha)
    monkeypatch.setitem(registry._REGISTRY, "cifar_resnet20", cfg)
    return cfg


def test_download_lands_in_models_dir_and_is_found_again(tmp_path, monkeypatch):
    src = _served_file(tmp_path)
    server = _Server(src.read_bytes())
    try:
        cfg = _publish(monkeypatch, server.url + "/resnet20.th", weights.sha256(src))
        first = models.load("cifar_resnet20", device="cpu")
        target = weights.models_dir() / cfg.file
        assert first.source == str(target) and target.read_bytes() == src.read_bytes()
        assert not list(target.parent.glob("*.part")) and len(server.requests) == 1
        second = models.load("cifar_resnet20", device="cpu", download=False)
        assert second.source == str(target) and len(server.requests) == 1  # found again
    finally:
        server.close()


def test_download_of_html_names_url_and_file(tmp_path, monkeypatch):
    server = _Server(b"<!DOCTYPE html><html>quota exceeded</html>", "text/html")
    try:
        cfg = _publish(monkeypatch, server.url + "/cifar.th?dl=1", None)
        with pytest.raises(models.CorruptCheckpointError) as e:
            models.load("cifar_resnet20", device="cpu")
        msg = str(e.value)
        assert cfg.url in msg and cfg.file in msg and "HTML" in msg and "trust" not in msg
        assert not list(weights.models_dir().glob("*"))  # neither the file nor a .part
    finally:
        server.close()


def test_download_with_wrong_digest_is_discarded(tmp_path, monkeypatch):
    server = _Server(b"PK\x03\x04 not really a zip")
    try:
        _publish(monkeypatch, server.url + "/x.th", weights.sha256(_served_file(tmp_path)))
        with pytest.raises(models.CorruptCheckpointError, match="SHA-256"):
            models.load("cifar_resnet20", device="cpu")
        assert not list(weights.models_dir().glob("*"))
    finally:
        server.close()


def test_download_goes_through_the_proxy(tmp_path, monkeypatch):
    """Downloads honour HTTP(S)_PROXY: the request reaches the proxy with the full URL."""
    src = tmp_path / "served.th"
    torch.save({"state_dict": models.create("cifar_resnet8").net.state_dict()}, src)
    proxy = _Server(src.read_bytes())
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        # urllib reads the proxy variables when a process first opens a URL (a CLI run
        # starts with them set); earlier tests here opened URLs without them
        monkeypatch.setattr(urllib.request, "_opener", None)
        url = "http://weights.example.invalid/r8.th"
        path = weights.download(url, tmp_path / "got" / "r8.th", progress=False)
        assert proxy.requests == [url] and path.read_bytes() == src.read_bytes()
    finally:
        proxy.close()


def test_offline_download_error_says_how(tmp_path, monkeypatch):
    cfg = dataclasses.replace(models.get_cfg("cifar_resnet20"), url="http://127.0.0.1:9/r.th")
    monkeypatch.setitem(registry._REGISTRY, "cifar_resnet20", cfg)
    with pytest.raises(models.WeightsMissingError) as e:
        models.load("cifar_resnet20", device="cpu")
    assert cfg.url in str(e.value) and cfg.file in str(e.value) and "weights=PATH" in str(e.value)
    with pytest.raises(FileNotFoundError, match="imagenet_linf_4.pt"):
        models.load("robust_resnet50_imagenet_linf4", device="cpu", download=False)


def test_plain_extras_load_without_warning(tmp_path):
    """Training arguments (argparse.Namespace) and numpy scalars are data, not code."""
    import argparse

    import numpy as np
    net = models.create("cifar_resnet8").net
    path = tmp_path / "plain.th"
    torch.save({"state_dict": net.state_dict(), "args": argparse.Namespace(lr=0.1),
                "best_prec1": np.float64(91.7)}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blob = weights.load_file(path)
    assert blob["args"].lr == 0.1 and float(blob["best_prec1"]) == 91.7


def test_download_from_a_file_url_checks_the_published_prefix(tmp_path):
    """Issue 27: torch.hub's download with ``hash_prefix`` (the 8 hex digits a file name
    carries, or a full digest); a wrong digest leaves neither the file nor a part."""
    src = _served_file(tmp_path)
    digest = weights.sha256(src)
    got = weights.download(src.as_uri(), tmp_path / "a" / f"r20-{digest[:8]}.th",
                           sha=digest[:8].upper(), progress=False)
    assert got.read_bytes() == src.read_bytes()
    wrong = "0" * 64 if not digest.startswith("0") else "f" * 64
    target = tmp_path / "b" / "r20.th"
    with pytest.raises(models.CorruptCheckpointError, match="SHA-256") as e:
        weights.download(src.as_uri(), target, sha=wrong, progress=False)
    assert src.as_uri() in str(e.value) and not list(target.parent.iterdir())
    with pytest.raises(models.WeightsMissingError, match="could not download"):
        weights.download((tmp_path / "absent.th").as_uri(), target, progress=False)
    assert not list(target.parent.iterdir())
