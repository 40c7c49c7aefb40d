"""The fixed benchmark set: films reproducible from seeds, never stored as video.

Composition of v1 (112 films, all 192x128 at 12 fps):
  * 24 short films: 12 of 16-20 s with returns, 12 of 10-14 s without (a no-memory baseline);
  * 40 medium films, 30-60 s, with returns;
  * 36 long films, 60-100 s, with returns;
  * 12 films of exactly 2 minutes, with returns.
Every film with returns is checked (by `film_returns`) to contain a scene or character return
after a gap of 2 to 10 shots; seeds that do not are skipped deterministically.
Sampling the whole set takes well under a second; rendering it is left to the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

from cinecli.world.spec import FilmSpec, sample_film

BENCHMARK_VERSION = "v1"
_BASE_SEED = {"v1": 910_000}


@dataclass(frozen=True)
class Return:
    """Something seen before comes back: `kind` is "scene" or "character", `gap` is the number
    of shots between its last appearance (`previous_shot`) and its return (`shot`)."""

    kind: str
    id: str
    shot: int
    previous_shot: int
    gap: int


def film_returns(film: FilmSpec, min_gap: int = 2, max_gap: int = 10) -> list[Return]:
    """Scene and character returns whose gap in shots lies in [min_gap, max_gap]."""
    found: list[Return] = []
    last: dict[tuple[str, str], int] = {}
    for i, shot in enumerate(film.shots):
        keys = [("scene", shot.setting_id)] + [("character", c) for c in shot.cast]
        for key in keys:
            prev = last.get(key)
            if prev is not None and min_gap <= i - prev <= max_gap:
                found.append(Return(key[0], key[1], i, prev, i - prev))
            last[key] = i
    return found


def _durations() -> list[tuple[float, bool]]:
    """(duration in seconds, returns) for every benchmark slot, in order."""
    slots: list[tuple[float, bool]] = []
    slots += [(16.0 + (i % 3) * 2.0 if i % 2 == 0 else 10.0 + (i % 3) * 2.0, i % 2 == 0)
              for i in range(24)]
    slots += [(30.0 + (i % 7) * 5.0, True) for i in range(40)]
    slots += [(60.0 + (i % 9) * 5.0, True) for i in range(36)]
    slots += [(120.0, True) for _ in range(12)]
    return slots


def benchmark_films(version: str = BENCHMARK_VERSION) -> list[FilmSpec]:
    """The benchmark films of a version, identical on every machine."""
    if version not in _BASE_SEED:
        raise ValueError(f"unknown benchmark version {version!r}; known: {sorted(_BASE_SEED)}")
    films: list[FilmSpec] = []
    seed = _BASE_SEED[version]
    for duration, returns in _durations():
        for _ in range(200):  # a few seeds at most; the bound only guards against a bad rule
            film = sample_film(seed, duration_s=duration, returns=returns)
            seed += 1
            if not returns or film_returns(film):
                break
        films.append(film)
    return films
