"""The validated screenplay: plain frozen values, every time already in frames.

Everything downstream (planning, rendering, resume hashes) works in integer
frames at the film's fps, so conversions from "2.5s" happen exactly once, here,
where the film-maker's line numbers are still known for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MemoryPolicy = Literal["camr", "window", "full", "none"]
Quantize = Literal["none", "int8"]
CutKind = Literal["cut", "continue"]

MEMORY_POLICIES: tuple[str, ...] = ("camr", "window", "full", "none")
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")
CUT_KINDS: tuple[str, ...] = ("cut", "continue")


@dataclass(frozen=True)
class MemorySettings:
    """Which past latent frames a chunk may attend to (see cinecli/memory)."""

    policy: MemoryPolicy = "camr"
    recent_chunks: int = 3
    top_k: int = 5
    sink_frames: int = 0
    shot_window: bool = False  # the recent window never reaches back across the shot's hard cut


@dataclass(frozen=True)
class FilmSettings:
    """Film-wide settings; `steps` and `guidance` None mean the model's own default."""

    title: str
    model: str
    width: int
    height: int
    fps: int
    seed: int
    memory: MemorySettings
    quantize: Quantize
    steps: int | None
    guidance: float | None = None  # classifier-free guidance against the empty prompt (1: none)
    cut_guidance: float | None = None  # chunks that hold a hard cut pushed away from their draw without the cut (1: none)


@dataclass(frozen=True)
class Event:
    """A prompt change inside a shot; `at_frame` counts from the shot's first scripted frame."""

    at_frame: int
    prompt: str
    line: int


@dataclass(frozen=True)
class Shot:
    """One shot as scripted; `line` is where it starts in the file, for later error messages."""

    index: int
    id: str
    duration_frames: int
    prompt: str
    cut: CutKind
    seed: int | None
    events: tuple[Event, ...]
    line: int
    location: str | None = None  # where the shot takes place; earlier frames of the same location are remembered first


@dataclass(frozen=True)
class Screenplay:
    """A screenplay that passed validation; `sha256` identifies the exact file bytes.

    `notes` are harmless adjustments made while loading (e.g. a duration rounded
    to whole frames) that the film-maker should still hear about.
    """

    path: Path
    film: FilmSettings
    shots: tuple[Shot, ...]
    sha256: str
    notes: tuple[str, ...] = ()

    @property
    def frames(self) -> int:
        """Total scripted length in video frames."""
        return sum(shot.duration_frames for shot in self.shots)

    @property
    def seconds(self) -> float:
        """Total scripted length in seconds."""
        return self.frames / self.film.fps
