"""Linking screenplays and world films: a Plan for a FilmSpec, and the FilmSpec (with its
ground truth) behind a screenplay that the world exported.

The exported screenplay carries the film's seed, size, rate and every shot's prompt and
length; `sample_film` is deterministic, so the film is rebuilt from the seed and accepted
only if it reproduces the screenplay exactly. No marker in the file is needed, and a
hand-written screenplay can never be mistaken for a world film.
"""

from __future__ import annotations

from pathlib import Path

from cinecli.screenplay import FilmFormat, Plan, Screenplay, parse_screenplay_text, plan_film
from cinecli.world.screenplay import to_screenplay_yaml
from cinecli.world.spec import FilmSpec, sample_film


def default_format() -> FilmFormat:
    """The default model's format (what world films are planned against)."""
    from cinecli.model.formats import film_format

    return film_format("default", Path("."))


def plan_for_film(film: FilmSpec, fmt: FilmFormat | None = None) -> Plan:
    """The plan of the film's exported screenplay, as `cinecli eval --script` would build it."""
    fmt = fmt or default_format()
    sp = parse_screenplay_text(to_screenplay_yaml(film), Path(f"<{film.title}>"), fmt)
    return plan_film(sp, fmt)


def _matches(film: FilmSpec, sp: Screenplay) -> bool:
    if len(film.shots) != len(sp.shots):
        return False
    for a, b in zip(film.shots, sp.shots):
        if (a.prompt != b.prompt or a.duration_frames != b.duration_frames or a.cut != b.cut
                or len(a.events) != len(b.events)):
            return False
        if any(e.prompt != f.prompt for e, f in zip(a.events, b.events)):
            return False
    return True


def world_film_for(sp: Screenplay) -> FilmSpec | None:
    """The world film a screenplay was exported from, or None if it is not one."""
    film = sp.film
    seed = getattr(film, "seed", None)
    if seed is None or not sp.shots:
        return None
    fps = film.fps
    duration = sp.frames / fps
    for returns in (True, False):
        try:
            cand = sample_film(int(seed), duration_s=duration, fps=fps, width=film.width,
                               height=film.height, returns=returns)
        except (ValueError, IndexError):
            return None
        if cand.total_frames == sp.frames and _matches(cand, sp):
            return cand
    return None
