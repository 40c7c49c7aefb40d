"""Stopping a render on SIGINT / SIGTERM without losing or corrupting work.

The first signal only asks: the render finishes the chunk in flight, writes a checkpoint and
stops. A second signal abandons the chunk in flight (KeyboardInterrupt); the last checkpoint
stands. Handlers are installed only around the render and the previous ones restored after,
so importing cinecli or using it as a library never changes a process's signal handling.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["StopRequest", "stop_on_signals", "EXIT_CODES"]

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, what shells report


@dataclass
class StopRequest:
    """Set by the handlers; read by the render loop between chunks."""

    signal: str | None = None
    count: int = field(default=0)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal or "SIGINT", 130)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install SIGINT/SIGTERM handlers for the duration of the block (main thread only)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        stop.count += 1
        if stop.signal is None:
            stop.signal = signal.Signals(signum).name
        if stop.count == 2:  # a second signal: stop now; later ones are ignored while we clean up
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
