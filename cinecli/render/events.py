"""Progress of a render as plain data.

The director yields these events; reporters (:mod:`cinecli.render.progress`)
turn them into progress bars, JSON lines, or nothing. Keeping progress as data
means the render loop never formats text, the JSON log of a farm job is the
same information a terminal shows, and tests can assert on what happened.

The JSON form is a public interface (farm dashboards parse it): field names are
snake_case and stable; new fields may be added, existing ones are not renamed.
Indices (``shot``, ``chunk``) are 0-based; frame ranges are half-open
``[frame_start, frame_end)``; ``t`` is seconds since the render started.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

__all__ = [
    "BaseEvent",
    "RenderStarted",
    "ShotStarted",
    "ChunkDone",
    "ShotDone",
    "Finished",
    "Error",
    "Interrupted",
    "Note",
    "Event",
    "EVENT_TYPES",
    "event_fields",
    "from_json",
    "stamp",
]


def _json_value(value: Any) -> Any:
    """JSON-safe value: paths as strings, non-finite floats as null (JSON has no NaN)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


@dataclass(frozen=True)
class BaseEvent:
    """Common part of all events: the kind name and the time stamp."""

    kind: ClassVar[str] = "event"
    t: float = field(default=0.0, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """``{"event": kind, "t": ..., <fields>}`` with JSON-safe values, in a fixed order."""
        out: dict[str, Any] = {"event": self.kind, "t": round(self.t, 3)}
        for f in dataclasses.fields(self):
            if f.name != "t":
                out[f.name] = _json_value(getattr(self, f.name))
        return out


@dataclass(frozen=True)
class RenderStarted(BaseEvent):
    """The plan is known and the model is loaded; nothing generated yet."""

    kind: ClassVar[str] = "render_started"
    title: str
    frames: int
    shots: int
    chunks: int
    fps: int
    width: int
    height: int
    model: str
    device: str
    policy: str
    state_dir: str
    output: str


@dataclass(frozen=True)
class ShotStarted(BaseEvent):
    """The first frame of a shot is about to be generated (or reused)."""

    kind: ClassVar[str] = "shot_started"
    shot: int
    id: str
    prompt: str
    frame_start: int
    frame_end: int


@dataclass(frozen=True)
class ChunkDone(BaseEvent):
    """A chunk was generated, decoded and written as segments; its state is checkpointed."""

    kind: ClassVar[str] = "chunk_done"
    chunk: int
    chunks: int
    shot: int
    frames_done: int
    frames_total: int
    chunk_seconds: float
    gen_fps: float
    active_tokens: int
    memory_frames: int


@dataclass(frozen=True)
class ShotDone(BaseEvent):
    """All frames of a shot are on disk; ``reused`` when they came from an earlier render."""

    kind: ClassVar[str] = "shot_done"
    shot: int
    id: str
    frames: int
    seconds: float
    reused: bool


@dataclass(frozen=True)
class Finished(BaseEvent):
    """The film was published at ``output``; the last event of a successful render."""

    kind: ClassVar[str] = "finished"
    output: str
    frames: int
    seconds: float
    gen_fps: float
    manifest: str


@dataclass(frozen=True)
class Error(BaseEvent):
    """The render failed; the process exits with ``exit_code``."""

    kind: ClassVar[str] = "error"
    message: str
    exit_code: int


@dataclass(frozen=True)
class Interrupted(BaseEvent):
    """A signal stopped the render after a consistent checkpoint; ``resume_command`` continues it."""

    kind: ClassVar[str] = "interrupted"
    signal: str
    resume_command: str
    exit_code: int


@dataclass(frozen=True)
class Note(BaseEvent):
    """Something the user should know that does not stop the render (e.g. a cut was snapped)."""

    kind: ClassVar[str] = "note"
    message: str


Event = Union[RenderStarted, ShotStarted, ChunkDone, ShotDone, Finished, Error, Interrupted, Note]

EVENT_TYPES: dict[str, type[BaseEvent]] = {
    cls.kind: cls
    for cls in (RenderStarted, ShotStarted, ChunkDone, ShotDone, Finished, Error, Interrupted, Note)
}


def event_fields(cls: type[BaseEvent]) -> tuple[str, ...]:
    """JSON keys of an event type, in output order (``event`` and ``t`` first)."""
    return ("event", "t", *(f.name for f in dataclasses.fields(cls) if f.name != "t"))


def from_json(obj: dict[str, Any]) -> BaseEvent:
    """Parse one JSON line's object back into an event (for tools reading farm logs).

    Unknown keys are ignored so that logs from newer versions still parse.
    """
    kind = obj.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in obj.items() if k in names}
    missing = names - values.keys() - {"t"}
    if missing:
        raise ValueError(f"{kind} event lacks fields: {', '.join(sorted(missing))}")
    if values.get("t") is None:
        values["t"] = 0.0
    for f in dataclasses.fields(cls):  # null stands for a non-finite float
        if f.type in ("float", float) and values.get(f.name) is None:
            values[f.name] = math.nan
    return cls(**values)


def stamp(event: BaseEvent, t: float) -> BaseEvent:
    """A copy of ``event`` time-stamped ``t`` seconds after the start of the render."""
    return dataclasses.replace(event, t=t)
