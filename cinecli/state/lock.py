"""One render per state folder at a time.

Two processes checkpointing into one folder would interleave chunk files from two positions. An
advisory lock (flock) on ``<state>/lock`` is held for the whole render; the kernel drops it when
the process dies, so a killed render never leaves a stale lock behind.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cinecli.state.manifest import StateError

__all__ = ["state_lock", "LOCK_NAME"]

LOCK_NAME = "lock"


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold the folder's lock, or raise StateError naming the folder when another render has it."""
    import fcntl

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            raise StateError(f"{state_dir}: another render (pid {holder}) is using this state folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        os.close(fd)
