"""Fit the world detectors (`detectors.npz`) on ground-truth world renders only.

    python -m cinecli.eval.fit [--films 300]

Films come from seeds far away from the benchmark and test seeds. Character body pixels are
found exactly: the same frame is rendered with and without its cast, and a changed pixel
close to a cast member's (tinted) body colour inside its ground-truth box is that
character's; every other pixel, markings and eyes included, counts as background. The
colour table is counted per setting kind and light, because dusk and night tints move a
character's colour towards its neighbours' (a yellow at dusk looks orange in daylight).
"""

from __future__ import annotations

import argparse
import dataclasses
import random

import numpy as np

from cinecli.eval.detectors import (LEVELS, Detectors, colour_bins, save_detectors,
                                    setting_features)
from cinecli.world.catalog import COLOURS, LIGHTS, SETTING_KINDS
from cinecli.world.render import frame_truth, render_frames
from cinecli.world.spec import FilmSpec, sample_film

FIT_SEED = 7_300_000
BODY_DISTANCE = 40.0
PRIOR_WEIGHT = 0.05
LIGHT_PRIOR = 0.3  # max per-channel distance from the tinted body colour


def without_cast(film: FilmSpec) -> FilmSpec:
    """The same film with nobody on stage (cameras still follow their subjects)."""
    return dataclasses.replace(film, shots=tuple(dataclasses.replace(s, cast=()) for s in film.shots))


def body_labels(film: FilmSpec, frame: int, img: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Per pixel: 1 + colour index of the character body there, 0 for background, -1 to
    ignore (changed by a character but not its body: outline, shadow)."""
    names = list(COLOURS)
    labels = np.zeros(img.shape[:2], np.int64)
    changed = np.abs(img.astype(np.int16) - empty.astype(np.int16)).max(-1) > 2
    tint = np.asarray(film.setting(film.shots[film.shot_index_at(frame)].setting_id).tint)
    for ch in frame_truth(film, frame).characters:
        x0, y0, x1, y1 = ch.bbox
        body = np.clip(np.asarray(ch.rgb, np.float32) * tint, 0, 255)
        reg = img[y0:y1, x0:x1].astype(np.float32)
        near = np.abs(reg - body).max(-1) <= BODY_DISTANCE
        sub = labels[y0:y1, x0:x1]
        chg = changed[y0:y1, x0:x1]
        sub[chg & ~near & (sub == 0)] = -1
        mark = np.abs(reg - np.clip(np.asarray(ch.marking_rgb, np.float32) * tint, 0, 255)).max(-1) <= 30
        sub[chg & mark & ~near] = 0  # markings and eyes are what a body colour is not
        sub[chg & near] = 1 + names.index(ch.colour_name)
    return labels


def fit_detectors(films: int = 300, frames_per_shot: int = 3, seed: int = FIT_SEED) -> Detectors:
    """Count colour posteriors and train the setting classifier; deterministic for a seed."""
    rng = random.Random(seed)
    names = tuple(COLOURS)
    counts = np.zeros((len(SETTING_KINDS), len(LIGHTS), LEVELS ** 3, 1 + len(names)), np.float64)
    feats: list[np.ndarray] = []
    kinds: list[int] = []
    lights: list[int] = []
    for i in range(films):
        film = sample_film(seed + i, duration_s=rng.choice((20.0, 40.0, 60.0)))
        empty_film = without_cast(film)
        for shot in film.shots:
            picks = sorted(rng.sample(range(shot.start_frame, shot.end_frame),
                                      min(frames_per_shot, shot.duration_frames)))
            for k in picks:
                img = render_frames(film, k, k + 1)[0]
                empty = render_frames(empty_film, k, k + 1)[0]
                lab = body_labels(film, k, img, empty)
                keep = lab >= 0
                setting = film.setting(shot.setting_id)
                kind, light = SETTING_KINDS.index(setting.kind), LIGHTS.index(setting.light)
                np.add.at(counts[kind, light], (colour_bins(img)[keep], lab[keep]), 1.0)
                feats.append(setting_features(img[None])[0])
                kinds.append(kind)
                lights.append(light)
    # Per (setting kind, light), with the kind's counts over all lights and the counts over
    # everything as weak priors (a colour seldom seen in one place and light borrows from
    # the others); a small floor keeps unseen bins background.
    counts = (counts + LIGHT_PRIOR * counts.sum(axis=1, keepdims=True)
              + PRIOR_WEIGHT * counts.sum(axis=(0, 1), keepdims=True))
    counts[..., 0] += 0.5
    lut = (counts / counts.sum(axis=-1, keepdims=True)).astype(np.float32)
    x = np.stack(feats)
    mean, std = x.mean(0), x.std(0) + 1e-4
    z = (x - mean) / std
    w, b = _softmax_regression(z, np.asarray(kinds), len(SETTING_KINDS))
    lw, lb = _softmax_regression(z, np.asarray(lights), len(LIGHTS))
    return Detectors(colour_names=names, colour_lut=lut.reshape(-1, *lut.shape[2:]),
                     setting_kinds=SETTING_KINDS, lights=LIGHTS,
                     feat_mean=mean.astype(np.float32), feat_std=std.astype(np.float32),
                     weights=w, bias=b, light_weights=lw, light_bias=lb)


def _softmax_regression(x: np.ndarray, y: np.ndarray, k: int, steps: int = 1500,
                        lr: float = 0.5, l2: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent on the cross-entropy; small data, so no framework."""
    n, f = x.shape
    w = np.zeros((f, k), np.float64)
    b = np.zeros(k, np.float64)
    onehot = np.eye(k)[y]
    for _ in range(steps):
        logits = x @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(0)
    return w.astype(np.float32), b.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=300)
    args = parser.parse_args()
    path = save_detectors(fit_detectors(args.films))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
