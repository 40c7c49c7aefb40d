"""The film metrics other than cuts: text alignment, intra- and inter-shot consistency,
motion over time, drift and judder. Each is a small pure function of measurements and frame ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinecli.eval.measure import Measures
from cinecli.eval.prompts import PromptRefs, parse_prompt
from cinecli.eval.signals import Signals

PRESENT_FRACTION = 0.3   # a named character must show in this share of a segment's frames
CLOSE_FULL, CLOSE_ZERO = 0.30, 0.15  # close-up: tallest character's height (frame fraction)
WIDE_FULL, WIDE_ZERO = 0.45, 0.70    # wide: tallest character at most this tall
UNCHECKED_COLOURS = ("white",)  # white bodies look like eyes, clouds and snow to a colour test
# Intra-shot jitter is scored beyond an allowance: about the 90th percentile of ground-truth
# world shots, raw or H.264-encoded at crf 18 (spins and jumps legitimately change a histogram
# a little from frame to frame; the codec adds colour noise to characters).
INTRA_ALLOW, INTRA_TAU = 0.03, 0.04        # half-L1 thumbnail histogram second difference
INTRA_RGB_ALLOW, INTRA_RGB_TAU = 2.5, 4.0  # character mean-colour step, RGB units
# Returns: score exp(-max(0, d - allow) / tau); the allowances absorb H.264 noise (crf 18).
CHAR_ALLOW, CHAR_TAU = 4.0, 12.0      # returning character: RGB distance (excess over truth)
SCENE_ALLOW, SCENE_TAU = 0.03, 0.12   # returning scene: half-L1 background histogram distance
DRIFT_RGB_TAU = 8.0     # drift: mean RGB distance growth
DRIFT_SHARP_TAU = 0.5   # drift: |log sharpness ratio| growth
WINDOW_S = 2.0          # motion and drift windows
EDGE_S = 20.0           # "first / last 20 s"


@dataclass(frozen=True)
class Part:
    """One checked claim of a prompt: `what` (setting:forest, look:red, cast, framing:closeup)
    and its score in [0, 1]."""

    what: str
    score: float


@dataclass(frozen=True)
class Segment:
    """Frames [start, end) of a shot under one prompt."""

    start: int
    end: int
    prompt: str


# --------------------------------------------------------------------------- alignment


def _ramp(x: float, zero: float, full: float) -> float:
    """0 at `zero`, 1 at `full`, linear between (either direction)."""
    return float(np.clip((x - zero) / (full - zero), 0.0, 1.0))


def segment_parts(m: Measures, seg: Segment, refs: PromptRefs) -> list[Part]:
    """Score each checkable claim of a prompt over its frames."""
    sl = slice(seg.start, seg.end)
    parts: list[Part] = []
    if refs.setting is not None:
        p = m.setting[sl].mean(axis=0)
        parts.append(Part(f"setting:{refs.setting}", float(p[m.kinds.index(refs.setting)] / p.max())))
    present = m.present[sl]
    for look in refs.looks:
        if look.colour in UNCHECKED_COLOURS:
            continue
        frac = float(present[:, m.colours.index(look.colour)].mean())
        parts.append(Part(f"look:{look.colour} {look.shape}", min(1.0, frac / PRESENT_FRACTION)))
    if refs.roles:
        frac = float(present.any(axis=1).mean())
        parts.append(Part("cast:" + ",".join(refs.roles), min(1.0, frac / PRESENT_FRACTION)))
    seen_frames = present.any(axis=1)
    # Framing is judged only where characters are seen at all: an undetected subject is
    # already scored by its look or role claim, and must not be counted twice.
    if refs.framing in ("closeup", "wide") and seen_frames.mean() >= PRESENT_FRACTION:
        tall = np.where(present, m.height[sl], 0.0).max(axis=1)
        size = float(np.median(tall[seen_frames]))
        if refs.framing == "closeup":
            parts.append(Part("framing:closeup", _ramp(size, CLOSE_ZERO, CLOSE_FULL)))
        else:
            parts.append(Part("framing:wide", _ramp(size, WIDE_ZERO, WIDE_FULL)))
    return parts


def shot_alignment(m: Measures, segments: list[Segment]) -> tuple[float | None, tuple[Part, ...]]:
    """Frame-weighted mean over a shot's prompt segments of the mean part score; None when
    no prompt in the shot says anything checkable."""
    total = weight = 0.0
    parts: list[Part] = []
    for seg in segments:
        seg_parts = segment_parts(m, seg, parse_prompt(seg.prompt))
        parts.extend(seg_parts)
        if seg_parts and seg.end > seg.start:
            total += (seg.end - seg.start) * float(np.mean([p.score for p in seg_parts]))
            weight += seg.end - seg.start
    return (total / weight if weight else None), tuple(parts)


# ---------------------------------------------------------------------- intra-shot


def intra_shot(sig: Signals, m: Measures, start: int, end: int) -> float | None:
    """Stability inside one shot: exp(-excess jitter / tau) of the colour histogram (second
    difference, so smooth pans and zooms cost nothing and flicker or popping does) times the
    same for the visible characters' mean colours. None for shots under 3 frames."""
    if end - start < 3:
        return None
    hist = sig.thumb_hist[start:end].astype(np.float64)
    bg = 0.5 * np.abs(hist[2:] - 2 * hist[1:-1] + hist[:-2]).sum(axis=1).mean()
    rgb = m.rgb[start:end].astype(np.float64)
    ok = m.present[start:end]
    both = ok[1:] & ok[:-1]
    step = np.abs(rgb[1:] - rgb[:-1]).mean(axis=-1)
    char = float(step[both].mean()) if both.any() else 0.0
    return float(np.exp(-max(0.0, bg - INTRA_ALLOW) / INTRA_TAU)
                 * np.exp(-max(0.0, char - INTRA_RGB_ALLOW) / INTRA_RGB_TAU))


# ---------------------------------------------------------------------- inter-shot


@dataclass(frozen=True)
class ReturnScore:
    """A scene or character seen first in `first_shot` and again in `shot` after at least
    one other shot; `distance` is the hidden-detail change (minus ground truth's change when
    the film's truth is known), `score` = exp(-max(0, distance - allowance) / tau)."""

    kind: str
    entity: str
    first_shot: int
    shot: int
    distance: float
    score: float


def returns_of(appearances: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """(entity, first shot, returning shot) for every appearance after a gap of >= 1 shot."""
    out: list[tuple[str, int, int]] = []
    for entity, shots in appearances.items():
        shots = sorted(set(shots))
        for prev, cur in zip(shots, shots[1:]):
            if cur - prev >= 2:
                out.append((entity, shots[0], cur))
    return out


def character_signature(m: Measures, colour: int, start: int, end: int) -> np.ndarray | None:
    """Pixel-weighted mean colour of a character over a shot (its exact hidden hue and the
    tint of its light), or None if it never shows."""
    cnt = np.where(m.present[start:end, colour], m.count[start:end, colour], 0).astype(np.float64)
    if cnt.sum() <= 0:
        return None
    rgb = np.nan_to_num(m.rgb[start:end, colour].astype(np.float64))
    return (rgb * cnt[:, None]).sum(axis=0) / cnt.sum()


def scene_signature(m: Measures, start: int, end: int) -> np.ndarray:
    """Mean background colour histogram of a shot (sky, ground, texture, props)."""
    return m.background_hist[start:end].astype(np.float64).mean(axis=0)


def inter_shot(m: Measures, bounds: list[tuple[int, int]], scenes: dict[str, list[int]],
               characters: dict[str, list[int]], colour_of: dict[str, int],
               truth: Measures | None) -> tuple[ReturnScore, ...]:
    """Score every return: the film's change between first appearance and return, minus
    the ground truth's change over the same shots when the truth is known."""
    out: list[ReturnScore] = []
    for entity, i, j in returns_of(scenes):
        delta = scene_signature(m, *bounds[j]) - scene_signature(m, *bounds[i])
        if truth is not None:
            delta -= scene_signature(truth, *bounds[j]) - scene_signature(truth, *bounds[i])
        d = 0.5 * float(np.abs(delta).sum())
        out.append(ReturnScore("scene", entity, i, j, d,
                               float(np.exp(-max(0.0, d - SCENE_ALLOW) / SCENE_TAU))))
    for entity, i, j in returns_of(characters):
        c = colour_of[entity]
        a, b = character_signature(m, c, *bounds[i]), character_signature(m, c, *bounds[j])
        ref = None
        if truth is not None:
            ta, tb = character_signature(truth, c, *bounds[i]), character_signature(truth, c, *bounds[j])
            if ta is None or tb is None:
                continue  # not visible to the detector even in the truth: nothing to compare
            ref = tb - ta
        if a is None or b is None:
            d = float("inf")  # it should be there and cannot be found
        else:
            d = float(np.linalg.norm((b - a) - (ref if ref is not None else 0.0)))
        out.append(ReturnScore("character", entity, i, j, d,
                               float(np.exp(-max(0.0, d - CHAR_ALLOW) / CHAR_TAU))))
    return tuple(out)


# ---------------------------------------------------------------------- over time


@dataclass(frozen=True)
class Series:
    """A named time series: window start times in seconds and values."""

    name: str
    seconds: tuple[float, ...]
    values: tuple[float, ...]


def windowed(values: np.ndarray, valid: np.ndarray, fps: int,
             window_s: float = WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
    """Means of valid values per window: (window start seconds, means; NaN if empty)."""
    n = max(1, int(round(window_s * fps)))
    idx = np.arange(len(values)) // n
    k = int(idx[-1]) + 1 if len(values) else 0
    s = np.bincount(idx[valid], weights=values[valid].astype(np.float64), minlength=k)
    c = np.bincount(idx[valid], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arange(k) * n / fps, np.where(c > 0, s / np.maximum(c, 1), np.nan)


def edge_means(values: np.ndarray, valid: np.ndarray, fps: int,
               edge_s: float = EDGE_S) -> tuple[float, float]:
    """Means of valid values over the first and the last min(edge_s, half the film)."""
    n = len(values)
    k = max(1, min(int(round(edge_s * fps)), n // 2))
    head, tail = values[:k][valid[:k]], values[n - k:][valid[n - k:]]
    return (float(head.mean()) if len(head) else float("nan"),
            float(tail.mean()) if len(tail) else float("nan"))


def within_shot_pairs(frames: int, cuts: set[int]) -> np.ndarray:
    """bool [T]: frame pair (t-1, t) lies inside one shot (t > 0 and t is no cut)."""
    ok = np.ones(frames, bool)
    ok[0] = False
    for t in cuts:
        if 0 <= t < frames:
            ok[t] = False
    return ok


def drift_distances(sig: Signals, ref_rgb: np.ndarray, ref_sharp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: mean |RGB mean - reference| and |log sharpness ratio| to the reference."""
    colour = np.abs(sig.mean_rgb.astype(np.float64) - ref_rgb).mean(axis=1)
    sharp = np.abs(np.log((sig.sharpness.astype(np.float64) + 1.0) / (ref_sharp + 1.0)))
    return colour, sharp


def drift_score(colour: np.ndarray, sharp: np.ndarray, fps: int) -> tuple[float, float, float]:
    """(score, colour growth, sharpness growth): growth = last-20-s mean minus first-20-s
    mean (never below 0), score = exp(-(colour/8 + sharp/0.5))."""
    ok = np.ones(len(colour), bool)
    c0, c1 = edge_means(colour, ok, fps)
    s0, s1 = edge_means(sharp, ok, fps)
    gc, gs = max(0.0, c1 - c0), max(0.0, s1 - s0)
    return float(np.exp(-(gc / DRIFT_RGB_TAU + gs / DRIFT_SHARP_TAU))), gc, gs


# ---------------------------------------------------------------------- judder


def judder(change: np.ndarray, stride: int, skip: frozenset[int] = frozenset()) -> float:
    """Share of a video's frame-to-frame change that lands between two latent frames.

    `change[t - 1]` is the change into frame t; frames 0, stride, 2·stride, … start a latent
    frame. Smooth motion spreads change evenly, so the share is that of such frames among all
    (1/stride in long videos); a decoder or generator that draws each latent's frames alike and
    jumps to the next pushes it towards 1, and the film judders. Transitions into the frames in
    `skip` (scripted cuts) are left out, so a film's cuts do not count as judder.
    """
    into = np.arange(1, len(change) + 1)
    keep = ~np.isin(into, list(skip))
    total = float(change[keep].sum())
    return float(change[keep & (into % stride == 0)].sum() / max(total, 1e-12))
