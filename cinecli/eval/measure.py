"""Per-frame measurements of what a film shows: the setting kind and the characters seen by
colour (how many pixels, how tall, what exact colour). Everything the alignment and the
consistency metrics read comes from here, for generated and ground-truth frames alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinecli.eval.detectors import Detectors, colour_labels, label_tables, setting_probs

MIN_AREA = 0.0015   # a character needs at least this fraction of the frame's pixels
MIN_PIXELS = 24
ROW_PIXELS = 2      # a row belongs to a character's extent with at least this many pixels


@dataclass(frozen=True)
class Measures:
    """`setting[t]`: probabilities over `kinds`; per colour c of `colours`: `count[t, c]`
    pixels, `height[t, c]` rows spanned (fraction of frame height), `rgb[t, c]` mean colour
    (NaN where absent); `background_hist[t]` the colour histogram of non-character pixels."""

    kinds: tuple[str, ...]
    colours: tuple[str, ...]
    setting: np.ndarray
    count: np.ndarray
    height: np.ndarray
    rgb: np.ndarray
    background_hist: np.ndarray
    min_pixels: int

    @property
    def present(self) -> np.ndarray:
        """bool [T, C]: the colour covers enough pixels to count as a character."""
        return self.count >= self.min_pixels


def shot_tables(setting: np.ndarray, light: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Per frame, the colour table (kind * lights + light) voted by its whole shot: one
    table per shot is stabler than one per frame."""
    tables = np.zeros(len(setting), np.int64)
    for a, b in bounds:
        if b > a:
            kind = int(setting[a:b].mean(axis=0).argmax())
            tables[a:b] = kind * light.shape[1] + int(light[a:b].mean(axis=0).argmax())
    return tables


def measure(det: Detectors, frames: np.ndarray, bounds: list[tuple[int, int]]) -> Measures:
    """Measure every frame; `bounds` are the shots' [start, end) frame ranges."""
    t, h, w, _ = frames.shape
    probs, light = setting_probs(det, frames)
    labels = colour_labels(label_tables(det), frames, shot_tables(probs, light, bounds))
    c = len(det.colour_names)
    lab = labels.astype(np.int64) + 1  # 0 = background
    frame_ix = np.arange(t)[:, None, None]
    key = frame_ix * (c + 1) + lab
    count = np.bincount(key.ravel(), minlength=t * (c + 1)).reshape(t, c + 1)
    rows = np.bincount((key * h + np.arange(h)[None, :, None]).ravel(),
                       minlength=t * (c + 1) * h).reshape(t, c + 1, h)
    spans = rows >= ROW_PIXELS
    anyrow = spans.any(axis=2)
    first = spans.argmax(axis=2)
    last = h - 1 - spans[..., ::-1].argmax(axis=2)
    height = np.where(anyrow, (last - first + 1) / h, 0.0)
    sums = np.stack([np.bincount(key.ravel(), weights=frames[..., i].ravel().astype(np.float64),
                                 minlength=t * (c + 1)).reshape(t, c + 1) for i in range(3)], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = sums / count[..., None]
    bg = labels == -1
    q = (frames >> 6).astype(np.int64)
    bins = (q[..., 0] * 4 + q[..., 1]) * 4 + q[..., 2]
    bkey = np.where(bg, frame_ix * 64 + bins, t * 64)
    bh = np.bincount(bkey.ravel(), minlength=t * 64 + 1)[:t * 64].reshape(t, 64).astype(np.float64)
    bh /= np.maximum(bh.sum(axis=1, keepdims=True), 1.0)
    return Measures(kinds=det.setting_kinds, colours=det.colour_names, setting=probs,
                    count=count[:, 1:], height=height[:, 1:].astype(np.float32),
                    rgb=rgb[:, 1:].astype(np.float32), background_hist=bh.astype(np.float32),
                    min_pixels=max(MIN_PIXELS, int(MIN_AREA * h * w)))
