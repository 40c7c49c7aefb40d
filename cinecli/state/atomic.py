"""Durable, all-or-nothing file writes for the state folder.

A render can be killed at any instant (SIGKILL, power loss). Every file here is written to a
temporary name in the same folder, flushed, renamed over its final name and the folder flushed,
so a reader sees either the old file or the new one, never half of one. The state manifest is
written last, so it only ever names files that are already complete on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["write_bytes_atomic", "write_json_atomic", "fsync_dir", "sha256_file", "sha256_bytes", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


def fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable; skipped where a folder cannot be opened (some platforms)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that a crash leaves either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    return path


def write_json_atomic(path: Path, value: object) -> Path:
    """Pretty, UTF-8 JSON (prompts stay readable) written with :func:`write_bytes_atomic`."""
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Digest of a file read in blocks (checkpoint files can be hundreds of megabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
