"""Reporters: turn the director's events into something a person or a farm reads.

* :class:`RichReporter` - a terminal: a film bar and a current-shot bar with
  generated frames per second and ETA; shot starts as log lines above the bars.
* :class:`JsonLinesReporter` - anything else: one JSON object per line, flushed
  per line so a farm log shows progress live (pipes are block-buffered).
* :class:`QuietReporter` - nothing but errors and interruptions, one line each.

Reporters are context managers so the live display is always torn down, also
when the render raises or is interrupted; the terminal is never left with a
hidden cursor or half-drawn bars.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Iterable, Literal, Protocol, runtime_checkable

from cinecli.render.events import (
    BaseEvent,
    ChunkDone,
    Error,
    Finished,
    Interrupted,
    Note,
    RenderStarted,
    ShotDone,
    ShotStarted,
)

__all__ = [
    "Reporter",
    "JsonLinesReporter",
    "RichReporter",
    "QuietReporter",
    "ReporterStyle",
    "make_reporter",
    "report",
    "format_duration",
    "eta_seconds",
]

ReporterStyle = Literal["auto", "rich", "json", "quiet"]


@runtime_checkable
class Reporter(Protocol):
    """Consumes events; use as a context manager around the render."""

    def __enter__(self) -> "Reporter": ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def handle(self, event: BaseEvent) -> None: ...


def report(reporter: Reporter, events: Iterable[BaseEvent]) -> None:
    """Feed a stream of events to a reporter inside its context."""
    with reporter:
        for event in events:
            reporter.handle(event)


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` style, ``-:--`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "-:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(frames_left: int, frames_generated: int, seconds_generating: float) -> float | None:
    """Remaining time at the average generation speed so far; None before any speed is known."""
    if frames_left <= 0:
        return 0.0
    if frames_generated <= 0 or seconds_generating <= 0:
        return None
    return frames_left * seconds_generating / frames_generated


class JsonLinesReporter:
    """One JSON object per line (``{"event": kind, "t": ..., ...}``), flushed every line.

    ASCII-only JSON, so a farm log in any locale stays valid and greppable.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __enter__(self) -> "JsonLinesReporter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stream.flush()

    def handle(self, event: BaseEvent) -> None:
        self.stream.write(json.dumps(event.to_json(), allow_nan=False, separators=(",", ":")) + "\n")
        self.stream.flush()


class QuietReporter:
    """No progress; errors and interruptions still get one line each on ``stream`` if given.

    A silent failure is never acceptable in a Unix tool, even with ``--quiet``.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def __enter__(self) -> "QuietReporter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.stream is not None:
            self.stream.flush()

    def handle(self, event: BaseEvent) -> None:
        if self.stream is None:
            return
        if isinstance(event, Error):
            self.stream.write(f"error: {event.message}\n")
        elif isinstance(event, Interrupted):
            self.stream.write(f"interrupted by {event.signal}; resume with: {event.resume_command}\n")


@dataclass(frozen=True)
class _Speed:
    """Frames generated and seconds spent generating them (reused shots excluded)."""

    frames: int = 0
    seconds: float = 0.0

    def add(self, frames: int, seconds: float) -> "_Speed":
        return _Speed(self.frames + max(frames, 0), self.seconds + max(seconds, 0.0))


class RichReporter:
    """Film bar and current-shot bar with frames/s and ETA on a rich console."""

    def __init__(self, console: "object") -> None:
        from rich.console import Console  # rich is imported only where bars are drawn

        if not isinstance(console, Console):
            raise TypeError("RichReporter needs a rich.console.Console")
        self.console = console
        self._progress = None
        self._film = None
        self._shot = None
        self._shot_span = (0, 0)
        self._frames_total = 0
        self._speed = _Speed()
        self._last_done = 0

    def __enter__(self) -> "RichReporter":
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[speed]}", style="cyan"),
            TextColumn("{task.fields[eta]}", style="magenta"),
            console=self.console,
            transient=False,
            expand=True,
        )
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _print(self, *args: object, **kwargs: object) -> None:
        """Print above the live bars (or plainly before/after the display)."""
        target = self._progress.console if self._progress is not None else self.console
        target.print(*args, **kwargs)

    def handle(self, event: BaseEvent) -> None:
        from rich.markup import escape

        if isinstance(event, RenderStarted):
            self._frames_total = event.frames
            self._print(
                f"[bold]{escape(event.title)}[/bold]  {event.frames} frames, {event.shots} shots, "
                f"{event.chunks} chunks, {event.width}x{event.height} @ {event.fps} fps\n"
                f"[dim]model {escape(event.model)} on {escape(event.device)}, memory "
                f"{escape(event.policy)}; state {escape(event.state_dir)} -> {escape(event.output)}[/dim]",
                highlight=False,
            )
            self._film = self._add_task("film", event.frames)
        elif isinstance(event, ShotStarted):
            length = max(event.frame_end - event.frame_start, 0)
            self._shot_span = (event.frame_start, event.frame_end)
            self._print(
                f"[bold]shot {event.shot + 1}[/bold] {escape(event.id)} "
                f"[dim]frames {event.frame_start}-{event.frame_end - 1}[/dim]  {escape(_clip(event.prompt, 200))}",
                highlight=False, no_wrap=True, overflow="ellipsis",
            )
            label = f"shot {event.shot + 1}"
            if self._shot is None:
                self._shot = self._add_task(label, length)
            elif self._progress is not None:
                self._progress.reset(self._shot, total=length, description=label, speed="", eta="")
        elif isinstance(event, ChunkDone):
            self._on_chunk(event)
        elif isinstance(event, ShotDone):
            if event.reused:
                # Reused frames were not generated: keep them out of the speed estimate.
                self._last_done = max(self._last_done, self._shot_span[1])
                self._update(self._film, completed=self._last_done)
                self._print(f"[dim]shot {event.shot + 1} {escape(event.id)}: {event.frames} frames reused[/dim]",
                            highlight=False)
            self._update(self._shot, completed=self._shot_span[1] - self._shot_span[0])
        elif isinstance(event, Note):
            self._print(f"[yellow]note:[/yellow] [yellow]{escape(event.message)}[/yellow]", highlight=False)
        elif isinstance(event, Error):
            self._print(f"[bold red]error:[/bold red] [red]{escape(event.message)}[/red]", highlight=False)
        elif isinstance(event, Interrupted):
            self._print(
                f"[yellow]interrupted by {escape(event.signal)}[/yellow]; resume with:\n"
                f"  [bold]{escape(event.resume_command)}[/bold]",
                highlight=False,
            )
        elif isinstance(event, Finished):
            self._update(self._film, completed=event.frames, eta="")
            self._update(self._shot, eta="")
            self._print(
                f"[green]wrote[/green] [bold]{escape(event.output)}[/bold]: {event.frames} frames in "
                f"{format_duration(event.seconds)} ({_fps(event.gen_fps)} generated)\n"
                f"[dim]manifest {escape(event.manifest)}[/dim]",
                highlight=False,
            )

    def _on_chunk(self, event: ChunkDone) -> None:
        generated = event.frames_done - self._last_done
        self._last_done = event.frames_done
        self._speed = self._speed.add(generated, event.chunk_seconds)
        left = event.frames_total - event.frames_done
        eta = eta_seconds(left, self._speed.frames, self._speed.seconds)
        speed = _fps(event.gen_fps)
        self._update(self._film, total=event.frames_total, completed=event.frames_done,
                     speed=speed, eta=f"ETA {format_duration(eta)}",
                     description=f"film  chunk {event.chunk + 1}/{event.chunks}")
        start, end = self._shot_span
        in_shot = min(max(event.frames_done - start, 0), max(end - start, 0))
        shot_left = max(end - start - in_shot, 0)
        self._update(self._shot, completed=in_shot, speed=speed,
                     eta=f"ETA {format_duration(eta_seconds(shot_left, self._speed.frames, self._speed.seconds))}")

    def _add_task(self, label: str, total: int) -> object:
        if self._progress is None:
            return None
        return self._progress.add_task(label, total=max(total, 0), speed="", eta="")

    def _update(self, task: object, **kwargs: object) -> None:
        if self._progress is not None and task is not None:
            self._progress.update(task, **kwargs)  # type: ignore[arg-type]


def _fps(value: float) -> str:
    return f"{value:.1f} fr/s" if value == value and value >= 0 else "- fr/s"


def _clip(text: str, limit: int) -> str:
    """One-line prompt for log lines: whitespace collapsed, ellipsised."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def make_reporter(style: ReporterStyle, stream: IO[str]) -> Reporter:
    """The reporter for ``--progress``: auto is rich on a terminal, JSON lines otherwise."""
    if style == "auto":
        isatty = getattr(stream, "isatty", None)
        style = "rich" if callable(isatty) and isatty() else "json"
    if style == "json":
        return JsonLinesReporter(stream)
    if style == "quiet":
        return QuietReporter(stream)
    if style == "rich":
        from rich.console import Console

        return RichReporter(Console(file=stream))
    raise ValueError(f"unknown progress style {style!r}; choose auto, rich, json or quiet")
