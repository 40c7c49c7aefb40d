"""Pure descriptions of procedural films: settings, characters, shots. No pixels here.

A FilmSpec fully determines every frame: the renderer and the ground truth are closed-form
functions of (spec, frame index), which is what makes rendering streaming-friendly and
byte-for-byte reproducible. World units: 1.0 is the frame height of a wide shot; x grows to
the right, y grows downwards; characters stand on `catalog.FLOOR_Y`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from cinecli.world.catalog import RGB


@dataclass(frozen=True)
class Prop:
    """One piece of scenery; `x` is its centre, `y` its base line, `w`/`h` its extent."""

    kind: str
    x: float
    y: float
    w: float
    h: float
    rgb: RGB
    rgb2: RGB


@dataclass(frozen=True)
class Texture:
    """A seeded ground pattern (hidden detail): stripes, dots or noise."""

    kind: str
    rgb: RGB
    scale: float
    angle: float
    seed: int
    strength: float


@dataclass(frozen=True)
class Band:
    """A horizontal band between horizon and foreground, e.g. the sea or a road."""

    y0: float
    y1: float
    rgb_top: RGB
    rgb_bottom: RGB


@dataclass(frozen=True)
class Setting:
    """A place. `kind` may be captioned; everything else is hidden identity of the film."""

    id: str
    kind: str
    light: str
    sky_top: RGB
    sky_bottom: RGB
    ground_top: RGB
    ground_bottom: RGB
    horizon: float
    texture: Texture
    tint: tuple[float, float, float]
    bands: tuple[Band, ...]
    props: tuple[Prop, ...]
    sky_seed: int


@dataclass(frozen=True)
class Character:
    """A character. Role, shape, colour name and size class may be captioned; `rgb` (the
    exact jittered hue) and the marking are hidden identity."""

    id: str
    role: str
    shape: str
    colour_name: str
    rgb: RGB
    size_name: str
    size: float
    marking: str
    marking_rgb: RGB


@dataclass(frozen=True)
class Motion:
    """What one character does over shot-local frames [start, end).

    Positions are resolved at sampling time so a frame's pose is a closed form of t.
    """

    character_id: str
    start: int
    end: int
    action: str
    x0: float
    x1: float
    facing: int
    scale0: float
    scale1: float
    side: str | None = None


@dataclass(frozen=True)
class CameraSpec:
    """Camera path over a shot: centre and zoom eased from (x0, y0, zoom0) to (x1, y1, zoom1);
    with `follow`, x tracks `subject` instead (close-ups keep their character framed)."""

    kind: str
    x0: float
    y0: float
    zoom0: float
    x1: float
    y1: float
    zoom1: float
    subject: str | None = None
    follow: bool = False


@dataclass(frozen=True)
class Event:
    """A mid-shot prompt change at shot-local frame `at_frame`, with the action changes it
    describes as (character id, new action) pairs."""

    at_frame: int
    prompt: str
    changes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ShotSpec:
    """One shot: a setting, a cast with their motions, a camera, a prompt and events."""

    id: str
    setting_id: str
    start_frame: int
    duration_frames: int
    cut: str
    prompt: str
    camera: CameraSpec
    cast: tuple[str, ...]
    motions: tuple[Motion, ...]
    events: tuple[Event, ...] = ()

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.duration_frames

    def prompt_at(self, local: int) -> str:
        """The prompt in force at a shot-local frame (the latest event at or before it)."""
        prompt = self.prompt
        for event in self.events:
            if event.at_frame <= local:
                prompt = event.prompt
        return prompt

    def motion_at(self, character_id: str, local: int) -> Motion:
        """The motion segment of a cast member covering a shot-local frame."""
        segments = [m for m in self.motions if m.character_id == character_id]
        for m in segments:
            if m.start <= local < m.end:
                return m
        return segments[-1] if local >= segments[-1].end else segments[0]


@dataclass(frozen=True)
class FilmSpec:
    """A whole film: its world (settings, characters) and its shots, back to back."""

    seed: int
    title: str
    fps: int
    width: int
    height: int
    settings: tuple[Setting, ...]
    characters: tuple[Character, ...]
    shots: tuple[ShotSpec, ...]

    @property
    def total_frames(self) -> int:
        return self.shots[-1].end_frame if self.shots else 0

    def setting(self, setting_id: str) -> Setting:
        return next(s for s in self.settings if s.id == setting_id)

    def character(self, character_id: str) -> Character:
        return next(c for c in self.characters if c.id == character_id)

    def shot_index_at(self, frame: int) -> int:
        """Index of the shot containing a film frame (frames past the end map to the last)."""
        starts = [s.start_frame for s in self.shots]
        return max(0, bisect.bisect_right(starts, frame) - 1)


def sample_film(seed: int, *, duration_s: float = 30.0, fps: int = 12, width: int = 192,
                height: int = 128, returns: bool = True) -> FilmSpec:
    """A seeded multi-shot film. The sampling rules live in `sampler` so that this module
    stays a plain description others can import without pulling in the grammar."""
    from cinecli.world.sampler import build_film

    return build_film(seed, duration_s=duration_s, fps=fps, width=width, height=height,
                      returns=returns)
