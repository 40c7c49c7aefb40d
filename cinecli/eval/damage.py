"""Controlled damage to ground-truth films, each aimed at one metric, so the metrics can be
shown to fail where they should (tests, benchmarks/eval_damage.py)."""

from __future__ import annotations

import colorsys
import dataclasses
import random

import numpy as np

from cinecli.screenplay import Plan
from cinecli.world.catalog import MARKINGS
from cinecli.world.render import render_frames
from cinecli.world.spec import Character, FilmSpec


def freeze_second_half(frames: np.ndarray, plan: Plan) -> np.ndarray:
    """From the middle of the film on, every shot holds its first frame (cuts stay): the
    stagnation a long autoregressive render can fall into."""
    out = frames.copy()
    half = len(frames) // 2
    for s in plan.shots:
        a = max(s.frame_start, half)
        if a < s.frame_end:
            out[a:s.frame_end] = frames[a]
    return out


def shuffle_shots(frames: np.ndarray, plan: Plan, seed: int = 0) -> np.ndarray:
    """The shots' frames in a different order, so cuts land where the script has none."""
    order = list(range(len(plan.shots)))
    rng = random.Random(seed)
    while len(order) > 1 and order == sorted(order):
        rng.shuffle(order)
    return np.concatenate([frames[plan.shots[i].frame_start:plan.shots[i].frame_end] for i in order])


def dissolve_cuts(frames: np.ndarray, plan: Plan, length: int = 12) -> np.ndarray:
    """Every hard cut becomes a cross-dissolve of `length` frames centred on it: a model
    that morphs between shots instead of cutting."""
    out = frames.astype(np.float32)
    for s in plan.shots[1:]:
        if s.cut != "cut":
            continue
        c = s.frame_start
        a, b = max(0, c - length // 2), min(len(frames), c + length // 2)
        before, after = frames[max(0, a - 1)].astype(np.float32), frames[min(len(frames) - 1, b)].astype(np.float32)
        for t in range(a, b):
            w = (t - a + 1) / (b - a + 1)
            out[t] = before * (1 - w) + after * w
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def colour_drift(frames: np.ndarray, strength: float = 0.3) -> np.ndarray:
    """A slow warm cast growing linearly over the film (red up, blue down by `strength`)."""
    ramp = np.linspace(0.0, strength, len(frames), dtype=np.float32)[:, None, None]
    out = frames.astype(np.float32)
    out[..., 0] *= 1 + ramp
    out[..., 2] *= 1 - ramp
    return np.clip(out, 0, 255).astype(np.uint8)


def flicker(frames: np.ndarray, amount: float = 0.12, seed: int = 0) -> np.ndarray:
    """Random brightness per frame: unstable within every shot."""
    gain = 1 + np.random.default_rng(seed).uniform(-amount, amount, len(frames)).astype(np.float32)
    return np.clip(frames.astype(np.float32) * gain[:, None, None, None], 0, 255).astype(np.uint8)


def _recoloured(ch: Character) -> Character:
    """Same colour name and shape, different hidden identity: hue and value moved, another
    marking."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in ch.rgb))
    r, g, b = colorsys.hsv_to_rgb((h + 0.05) % 1.0, min(1.0, s * 0.8), max(0.0, v - 0.15))
    marking = MARKINGS[(MARKINGS.index(ch.marking) + 1) % len(MARKINGS)]
    return dataclasses.replace(ch, rgb=(round(r * 255), round(g * 255), round(b * 255)), marking=marking)


def recolour_returns(film: FilmSpec, frames: np.ndarray) -> np.ndarray:
    """Characters come back (after a gap of at least one shot) with another hidden hue and
    marking: the frames of every shot from a character's first return on are re-rendered
    with the changed characters."""
    seen: dict[str, int] = {}
    first_return: dict[str, int] = {}
    for i, shot in enumerate(film.shots):
        for cid in shot.cast:
            if cid in seen and i - seen[cid] >= 2 and cid not in first_return:
                first_return[cid] = i
            seen[cid] = i
    if not first_return:
        return frames.copy()
    changed = tuple(_recoloured(c) if c.id in first_return else c for c in film.characters)
    other = dataclasses.replace(film, characters=changed)
    out = frames.copy()
    for i, shot in enumerate(film.shots):
        if any(first_return.get(c, len(film.shots)) <= i for c in shot.cast):
            out[shot.start_frame:shot.end_frame] = render_frames(other, shot.start_frame, shot.end_frame)
    return out


def swap_prompts(film: FilmSpec, other: FilmSpec) -> FilmSpec:
    """The film's timing with another film's prompts (cyclically): a wrong screenplay."""
    shots = tuple(dataclasses.replace(s, prompt=other.shots[(i + 1) % len(other.shots)].prompt,
                                      events=()) for i, s in enumerate(film.shots))
    return dataclasses.replace(film, shots=shots)
