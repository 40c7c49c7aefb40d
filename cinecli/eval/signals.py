"""Per-frame signals every metric builds on: thumbnails, frame differences, colour
histograms, sharpness. Computed once per film, all vectorised over frames."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

BLOCK = 4       # thumbnail block size in pixels: averages away codec noise and 1-px jitter
HIST_LEVELS = 4  # colour histogram levels per channel (64 bins)
SOFT_BLOCK = 64  # frames per block of soft histograms (bounds their working memory)


@dataclass(frozen=True)
class Signals:
    """`diff[t]` and `hist_dist[t]` compare frame t with frame t-1 (0 for t = 0); `hist` holds
    soft colour histograms of full frames (a decoder's small frame-to-frame colour wobble moves
    mass between neighbouring bins a little instead of flipping whole flat regions across a bin
    edge); `thumb` is a block-averaged float32 copy; `thumb_hist` the hard colour histograms of
    the thumbnails (block averaging removes codec noise that flips pixels between bins);
    `sharpness` is the Laplacian variance of full frames."""

    thumb: np.ndarray
    diff: np.ndarray
    hist: np.ndarray
    thumb_hist: np.ndarray
    hist_dist: np.ndarray
    mean_rgb: np.ndarray
    sharpness: np.ndarray


def thumbnails(frames: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Block means, float32 [T, H//block, W//block, 3]."""
    t, h, w, _ = frames.shape
    hh, ww = h // block, w // block
    x = frames[:, :hh * block, :ww * block].astype(np.float32)
    return x.reshape(t, hh, block, ww, block, 3).mean(axis=(2, 4))


def colour_histograms(frames: np.ndarray, levels: int = HIST_LEVELS) -> np.ndarray:
    """Normalised joint RGB histograms, float32 [T, levels**3]."""
    shift = 8 - int(np.log2(levels))
    q = (frames >> shift).astype(np.int64)
    bins = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    t = frames.shape[0]
    idx = bins.reshape(t, -1) + (np.arange(t) * levels ** 3)[:, None]
    hist = np.bincount(idx.ravel(), minlength=t * levels ** 3).reshape(t, -1)
    return (hist / bins[0].size).astype(np.float32)


def soft_colour_histograms(frames: np.ndarray, levels: int = HIST_LEVELS) -> np.ndarray:
    """Joint RGB histograms with every pixel's mass shared between the two nearest bin centres
    of each channel (trilinear), float32 [T, levels**3], each summing to 1.

    With hard bins a flat region sitting near a bin edge jumps whole into the next bin when a
    decoder shifts its colour by one or two levels, and the histogram distance of every frame
    pair then looks like a small cut; shared mass makes that distance proportional to the shift.
    """
    # a block of frames at a time: the per-pixel float arrays of a whole 2-minute film would take
    # gigabytes, and every frame's histogram is its own
    return np.concatenate([_soft_block(frames[i:i + SOFT_BLOCK], levels)
                           for i in range(0, max(1, len(frames)), SOFT_BLOCK)])


def _soft_block(frames: np.ndarray, levels: int) -> np.ndarray:
    t = frames.shape[0]
    x = frames.reshape(t, -1, 3).astype(np.float32)
    pos = np.clip(x * (levels / 256.0) - 0.5, 0.0, levels - 1.0)  # in bin-centre units
    low = np.minimum(np.floor(pos).astype(np.int64), levels - 2)
    upper = pos - low
    offsets = (np.arange(t) * levels ** 3)[:, None]
    hist = np.zeros(t * levels ** 3, np.float64)
    for bits in itertools.product((0, 1), repeat=3):  # the 8 corners of the RGB cell
        weight = np.ones(x.shape[:2], np.float32)
        index = np.zeros(x.shape[:2], np.int64)
        for c, bit in enumerate(bits):
            weight = weight * (upper[..., c] if bit else 1.0 - upper[..., c])
            index = index * levels + low[..., c] + bit
        hist += np.bincount((index + offsets).ravel(), weights=weight.ravel(), minlength=t * levels ** 3)
    return (hist.reshape(t, -1) / x.shape[1]).astype(np.float32)


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of luma per frame: a blur-sensitive sharpness."""
    y = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2]
           - y[:, 1:-1, 2:])
    return lap.reshape(lap.shape[0], -1).var(axis=1)


def compute_signals(frames: np.ndarray) -> Signals:
    """All per-frame signals of a film, uint8 [T, H, W, 3] in."""
    thumb = thumbnails(frames)
    hist = soft_colour_histograms(frames)
    diff = np.zeros(len(frames), np.float32)
    hist_dist = np.zeros(len(frames), np.float32)
    if len(frames) > 1:
        diff[1:] = np.abs(thumb[1:] - thumb[:-1]).mean(axis=(1, 2, 3))
        hist_dist[1:] = 0.5 * np.abs(hist[1:] - hist[:-1]).sum(axis=1)
    return Signals(thumb=thumb, diff=diff, hist=hist,
                   thumb_hist=colour_histograms(np.rint(thumb).astype(np.uint8)), hist_dist=hist_dist,
                   mean_rgb=frames.reshape(len(frames), -1, 3).mean(axis=1).astype(np.float32),
                   sharpness=laplacian_variance(frames).astype(np.float32))
