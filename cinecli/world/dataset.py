"""An endless stream of rendered multi-shot training clips."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cinecli.world.render import render_frames
from cinecli.world.spec import FilmSpec, sample_film


@dataclass(frozen=True)
class Clip:
    """A window of a procedural film. `prompts[k]` is the prompt in force at frame k,
    `cuts[k]` is True on the first frame of each hard cut, `shot_index[k]` is the film's shot
    index; `film` and `start` allow ground truth (`frame_truth(film, start + k)`)."""

    frames: np.ndarray
    prompts: tuple[str, ...]
    cuts: np.ndarray
    shot_index: np.ndarray
    film: FilmSpec
    start: int


def clip_of(film: FilmSpec, start: int, frames: int) -> Clip:
    """Render frames [start, start + frames) of a film with their per-frame labels."""
    prompts: list[str] = []
    cuts = np.zeros(frames, dtype=bool)
    index = np.zeros(frames, dtype=np.int64)
    for k in range(frames):
        f = start + k
        si = film.shot_index_at(f)
        shot = film.shots[si]
        local = f - shot.start_frame
        prompts.append(shot.prompt_at(local))
        cuts[k] = local == 0 and shot.cut == "cut"
        index[k] = si
    return Clip(frames=render_frames(film, start, start + frames), prompts=tuple(prompts),
                cuts=cuts, shot_index=index, film=film, start=start)


def training_clips(seed: int, *, frames: int, width: int = 192, height: int = 128,
                   fps: int = 12) -> Iterator[Clip]:
    """Endless clips: each from a fresh film somewhat longer than the clip, starting on a
    latent-frame boundary (half the time at the film's start, so openings are common)."""
    rng = random.Random(seed)
    while True:
        film_seed = rng.randrange(2**62)
        duration = frames / fps * rng.uniform(1.0, 1.6)
        film = sample_film(film_seed, duration_s=max(duration, 1.0), fps=fps, width=width,
                           height=height, returns=rng.random() < 0.85)
        slack = film.total_frames - frames
        start = 0 if slack <= 0 or rng.random() < 0.5 else 4 * rng.randint(0, slack // 4)
        if film.total_frames < frames:
            continue
        yield clip_of(film, start, frames)
