"""An endless stream of rendered multi-shot training clips.

Two kinds of clip. A *window* is a contiguous stretch of one film. A *montage* takes the
film's shots in order but only the first second or two of each, so a clip a few seconds long
spans several scene blocks and returns to an earlier scene after other shots: films build a
scene over several shots before cutting away, so contiguous windows almost never contain a
return, and a model trained only on them never learns to bring a scene back from memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cinecli.world.render import render_frames
from cinecli.world.spec import FilmSpec, sample_film


@dataclass(frozen=True)
class Clip:
    """Frames of a procedural film. `prompts[k]` is the prompt in force at frame k,
    `cuts[k]` is True on the first frame of each hard cut, `shot_index[k]` is the film's shot
    index; `film_frames[k]` is the film frame clip frame k shows, for ground truth
    (`frame_truth(film, film_frames[k])`); `start` is the first of them."""

    frames: np.ndarray
    prompts: tuple[str, ...]
    cuts: np.ndarray
    shot_index: np.ndarray
    film: FilmSpec
    start: int
    film_frames: np.ndarray


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
                cuts=cuts, shot_index=index, film=film, start=start,
                film_frames=np.arange(start, start + frames, dtype=np.int64))


def montage_pieces(film: FilmSpec, frames: int, rng: random.Random) -> list[tuple[int, int]]:
    """(start, end) film-frame ranges: the opening 8–20 frames of each shot, in order.

    Pieces start where shots start, so they stay on the 4-frame latent grid.
    """
    pieces: list[tuple[int, int]] = []
    total = 0
    for shot in film.shots:
        if total >= frames:
            break
        length = min(shot.duration_frames, 4 * rng.randint(2, 5), frames - total)
        pieces.append((shot.start_frame, shot.start_frame + length))
        total += length
    return pieces


def montage_of(film: FilmSpec, pieces: list[tuple[int, int]]) -> Clip:
    """A clip made of film pieces; a jump between pieces is a hard cut even where the film continued."""
    parts = [clip_of(film, a, b - a) for a, b in pieces]
    cuts = np.concatenate([p.cuts for p in parts])
    offset = 0
    for i, (p, (a, _)) in enumerate(zip(parts, pieces)):
        if i > 0 and a != pieces[i - 1][1]:
            cuts[offset] = True
        offset += len(p.cuts)
    return Clip(frames=np.concatenate([p.frames for p in parts]),
                prompts=tuple(x for p in parts for x in p.prompts), cuts=cuts,
                shot_index=np.concatenate([p.shot_index for p in parts]), film=film,
                start=pieces[0][0], film_frames=np.concatenate([p.film_frames for p in parts]))


def training_clips(seed: int, *, frames: int, width: int = 192, height: int = 128,
                   fps: int = 12, montage: float = 0.5) -> Iterator[Clip]:
    """Endless clips: a share `montage` of montages of longer films with returns, the rest
    windows of a fresh film somewhat longer than the clip, starting on a latent-frame boundary
    (half the time at the film's start, so openings are common)."""
    rng = random.Random(seed)
    while True:
        if rng.random() < montage:
            film = sample_film(rng.randrange(2**62), duration_s=max(3 * frames / fps, 20.0), fps=fps,
                               width=width, height=height, returns=True)
            pieces = montage_pieces(film, frames, rng)
            if sum(b - a for a, b in pieces) == frames:
                yield montage_of(film, pieces)
            continue
        film_seed = rng.randrange(2**62)
        duration = frames / fps * rng.uniform(1.0, 1.6)
        film = sample_film(film_seed, duration_s=max(duration, 1.0), fps=fps, width=width,
                           height=height, returns=rng.random() < 0.85)
        slack = film.total_frames - frames
        start = 0 if slack <= 0 or rng.random() < 0.5 else 4 * rng.randint(0, slack // 4)
        if film.total_frames < frames:
            continue
        yield clip_of(film, start, frames)


def run_starts(scenes: list[str]) -> list[int]:
    """Per unit of a clip: where its run of one scene began."""
    starts: list[int] = []
    for i, scene in enumerate(scenes):
        starts.append(starts[-1] if i and scene == scenes[i - 1] else i)
    return starts


def returning(scenes: list[str], recent: int) -> list[bool]:
    """Per unit (video or latent frame) of a clip: is it part of a run of one scene that was on
    screen earlier in the clip but not in the `recent` units before the run began?

    Those runs are what only a memory reaching past a window of `recent` can draw right: the
    returns that content-aware routing exists for.
    """
    return [scene in scenes[: max(0, start - recent)] and scene not in scenes[max(0, start - recent) : start]
            for scene, start in zip(scenes, run_starts(scenes))]


def first_sightings(scenes: list[str]) -> list[bool]:
    """Per unit of a clip: is it part of a run of a scene never on screen before, after a cut?

    Those are where memory holds only other scenes: the model must draw the new one from its
    prompt rather than carry the look of what came before.
    """
    return [start > 0 and scene not in scenes[:start] for scene, start in zip(scenes, run_starts(scenes))]


def clip_scenes(clip: Clip) -> list[str]:
    """The setting each frame of a clip shows."""
    return [clip.film.shots[int(si)].setting_id for si in clip.shot_index]


def character_cells(clip: Clip, stride: int, cell: int) -> np.ndarray:
    """bool [F, H/cell, W/cell]: latent cells a character covers in any of the `stride` video
    frames of latent frame F (bounding boxes from the world's ground truth).

    Characters are a few percent of a frame's pixels but every claim a prompt makes about
    looks and cast is about them: the loss can weigh these cells up (`character_weight`).
    """
    from cinecli.world.render import frame_truth

    t, h, w = clip.frames.shape[:3]
    cells = np.zeros((t // stride, -(-h // cell), -(-w // cell)), dtype=bool)
    for k in range(cells.shape[0] * stride):
        for ch in frame_truth(clip.film, int(clip.film_frames[k])).characters:
            x0, y0, x1, y1 = ch.bbox
            cells[k // stride, y0 // cell : -(-y1 // cell), x0 // cell : -(-x1 // cell)] = True
    return cells

