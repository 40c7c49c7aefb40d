"""What a model can render, described without loading it.

The screenplay is validated and planned against a `FilmFormat` long before any
weights are read, so a typo in a 2-hour film fails in milliseconds instead of
after minutes of model loading. The model package builds these; the screenplay
package only reads them (it depends on nothing else in cinecli).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class TemporalGrid:
    """How latent frames map onto video frames.

    Cuts and prompt changes can only happen where a latent frame starts, so the
    planner snaps scripted frames onto this grid.
    """

    stride: int
    first_alone: bool

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"a temporal stride must be at least 1, got {self.stride}")

    def frame_start(self, latent: int) -> int:
        """First video frame decoded from latent frame `latent` (valid for latent = count too, as an end)."""
        if latent <= 0:
            return 0
        if self.first_alone:
            return 1 + (latent - 1) * self.stride
        return latent * self.stride

    def frames_in(self, latent: int) -> int:
        """Video frames decoded from latent frame `latent`."""
        if self.first_alone and latent == 0:
            return 1
        return self.stride

    def latents_for(self, frames: int) -> int:
        """Fewest latent frames whose video covers `frames` frames (the excess is trimmed)."""
        if frames <= 0:
            return 0
        if self.first_alone:
            return 1 + -(-(frames - 1) // self.stride)
        return -(-frames // self.stride)

    def snap(self, frame: int) -> int:
        """Latent frame whose start is nearest to video frame `frame`; a tie goes to the later one.

        Ties go later so that a shot never starts before its scripted time by
        more than it could start after it.
        """
        if frame <= 0:
            return 0
        s = self.stride
        if self.first_alone:
            # Starts are 0, 1, 1+s, 1+2s...; any frame >= 1 is nearer to 1 than to 0.
            return 1 + (2 * (frame - 1) + s) // (2 * s)
        return (2 * frame + s) // (2 * s)


@dataclass(frozen=True)
class FilmFormat:
    """The envelope a model can render in: grid, chunking, sizes, rates and vocabulary."""

    model: str
    grid: TemporalGrid
    chunk_frames: int
    spatial_multiple: int
    resolutions: tuple[tuple[int, int], ...] | None
    fps: tuple[int, ...] | None
    default_resolution: tuple[int, int]
    default_fps: int
    default_steps: int
    max_pixels: int
    vocabulary: frozenset[str] | None


def seconds_text(seconds: float | Fraction) -> str:
    """Seconds the way a film-maker writes them (4s, 2.5s, 4.17s), for messages and tables."""
    value = f"{float(seconds):.2f}".rstrip("0").rstrip(".")
    return f"{value}s"
