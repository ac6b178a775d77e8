"""Hostile file systems for the bad-input tables: a read-only folder and a full disk.

Tests run as root in CI containers, where ``chmod`` cannot make a folder read-only, so
the refusals are simulated at the system calls that meet them (``mkstemp``/``open`` for
new files, ``fsync``/``write`` for a full disk), with the errno the kernel gives.
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import tempfile
from pathlib import Path


def read_only(monkeypatch, folder: Path) -> None:
    """Make creating or writing files under ``folder`` fail with EROFS (as a ro mount does)."""
    folder = Path(folder).resolve()

    def inside(p) -> bool:
        try:
            return Path(os.fspath(p)).resolve().is_relative_to(folder)
        except TypeError:  # a file descriptor
            return False

    def refuse(p):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))

    real_mkstemp, real_open, real_mkdir = tempfile.mkstemp, builtins.open, os.mkdir
    real_os_open, real_replace, real_rename = os.open, os.replace, os.rename

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded(real):
        def call(src, dst, *args, **kwargs):
            if inside(src) or inside(dst):
                refuse(dst)
            return real(src, dst, *args, **kwargs)
        return call

    def mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)  # pathlib's
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(os, "replace", guarded(real_replace))
    monkeypatch.setattr(os, "rename", guarded(real_rename))
    monkeypatch.setattr(os, "mkdir", mkdir)


def full_disk(monkeypatch) -> None:
    """Make ``fsync`` (where a full disk's delayed allocation surfaces) fail with ENOSPC."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", fsync)
