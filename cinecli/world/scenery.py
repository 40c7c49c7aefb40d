"""Static background layers: sky, ground, bands, texture and props of a setting.

A layer is rendered once per shot (2x supersampled, box-filtered) over the whole region the
camera sees during the shot, then every frame is a crop or resample of it. All drawing works
in world coordinates, so a setting looks the same from every camera position and in every
shot that returns to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from cinecli.world.catalog import RGB
from cinecli.world.spec import Prop, Setting

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class View:
    """World rectangle -> canvas pixels: world (x0, y0) is the canvas's top-left corner."""

    x0: float
    y0: float
    scale: float
    w: int
    h: int


def _paint(canvas: np.ndarray, view: View, box: tuple[float, float, float, float], mask: Mask,
           rgb: RGB | np.ndarray, alpha: float = 1.0) -> None:
    """Fill `mask(X, Y)` (world coordinates of pixel centres) inside a world box."""
    x0, y0, x1, y1 = box
    i0 = max(0, int(math.floor((y0 - view.y0) * view.scale)))
    i1 = min(view.h, int(math.ceil((y1 - view.y0) * view.scale)) + 1)
    j0 = max(0, int(math.floor((x0 - view.x0) * view.scale)))
    j1 = min(view.w, int(math.ceil((x1 - view.x0) * view.scale)) + 1)
    if i0 >= i1 or j0 >= j1:
        return
    ys = (view.y0 + (np.arange(i0, i1, dtype=np.float32) + 0.5) / view.scale)[:, None]
    xs = (view.x0 + (np.arange(j0, j1, dtype=np.float32) + 0.5) / view.scale)[None, :]
    m = np.broadcast_to(mask(xs, ys), (i1 - i0, j1 - j0))
    region = canvas[i0:i1, j0:j1]
    colour = np.asarray(rgb, dtype=np.float32)
    if alpha >= 1.0:
        region[m] = colour
    else:
        region[m] = region[m] * (1.0 - alpha) + colour * alpha


def rect(canvas: np.ndarray, view: View, x0: float, y0: float, x1: float, y1: float, rgb: RGB) -> None:
    _paint(canvas, view, (x0, y0, x1, y1), lambda X, Y: (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1), rgb)


def ellipse(canvas: np.ndarray, view: View, cx: float, cy: float, rx: float, ry: float, rgb: RGB,
            alpha: float = 1.0, below: float | None = None) -> None:
    """Filled ellipse; with `below`, only the part above that y (a mound on a base line)."""
    lim = cy + ry if below is None else below
    _paint(canvas, view, (cx - rx, cy - ry, cx + rx, lim),
           lambda X, Y: (((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 <= 1.0) & (Y <= lim), rgb, alpha)


def polygon(canvas: np.ndarray, view: View, pts: list[tuple[float, float]], rgb: RGB) -> None:
    """Filled convex polygon (any winding) via half-planes."""
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    n = len(pts)
    area = sum(pts[i][0] * pts[(i + 1) % n][1] - pts[(i + 1) % n][0] * pts[i][1] for i in range(n))
    sign = 1.0 if area > 0 else -1.0

    def mask(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        inside = np.ones(np.broadcast_shapes(X.shape, Y.shape), dtype=bool)
        for i in range(n):
            (ax, ay), (bx, by) = pts[i], pts[(i + 1) % n]
            inside &= sign * ((bx - ax) * (Y - ay) - (by - ay) * (X - ax)) >= 0
        return inside

    _paint(canvas, view, (min(xs), min(ys), max(xs), max(ys)), mask, rgb)


def _shade(rgb: RGB, k: float) -> RGB:
    return tuple(int(min(255, max(0, c * k))) for c in rgb)  # type: ignore[return-value]


# --------------------------------------------------------------------------------- props


def _draw_prop(c: np.ndarray, v: View, p: Prop) -> None:
    """One prop, by kind; shapes are chunky so they read at 192x128."""
    x, y, w, h = p.x, p.y, p.w, p.h
    k = p.kind
    if k == "lighthouse":
        polygon(c, v, [(x - w / 2, y), (x + w / 2, y), (x + w * 0.32, y - h), (x - w * 0.32, y - h)], p.rgb)
        for f in (0.25, 0.6):
            rect(c, v, x - w / 2, y - h * (f + 0.12), x + w / 2, y - h * f, p.rgb2)
        rect(c, v, x - w * 0.3, y - h - 0.04, x + w * 0.3, y - h, (250, 230, 120))
        polygon(c, v, [(x - w * 0.4, y - h - 0.04), (x + w * 0.4, y - h - 0.04), (x, y - h - 0.08)], p.rgb2)
    elif k == "boat":
        hull_top = y - h * 0.28
        polygon(c, v, [(x - w / 2, hull_top), (x + w / 2, hull_top), (x + w * 0.36, y), (x - w * 0.36, y)], p.rgb)
        rect(c, v, x - 0.006, y - h, x + 0.006, hull_top, (70, 50, 35))
        polygon(c, v, [(x + 0.01, y - h), (x + 0.01, hull_top - 0.015), (x + w * 0.38, hull_top - 0.015)], p.rgb2)
        polygon(c, v, [(x - 0.01, y - h * 0.85), (x - 0.01, hull_top - 0.015), (x - w * 0.3, hull_top - 0.015)], _shade(p.rgb2, 0.9))
    elif k == "post":
        rect(c, v, x - w / 2, y - h, x + w / 2, y, p.rgb)
        ellipse(c, v, x, y - h, w * 0.7, w * 0.35, p.rgb2)
    elif k == "box":
        rect(c, v, x - w / 2, y - h, x + w / 2, y, p.rgb2)
        rect(c, v, x - w * 0.4, y - h * 0.9, x + w * 0.4, y - h * 0.1, p.rgb)
        polygon(c, v, [(x - w * 0.4, y - h * 0.1), (x - w * 0.28, y - h * 0.1), (x + w * 0.4, y - h * 0.9), (x + w * 0.28, y - h * 0.9)], p.rgb2)
    elif k == "tree":
        rect(c, v, x - w * 0.09, y - h * 0.55, x + w * 0.09, y, p.rgb2)
        ellipse(c, v, x, y - h * 0.68, w / 2, h * 0.33, p.rgb)
        ellipse(c, v, x - w * 0.12, y - h * 0.76, w * 0.26, h * 0.16, _shade(p.rgb, 1.25))
    elif k == "bush":
        ellipse(c, v, x, y, w / 2, h, p.rgb, below=y)
        ellipse(c, v, x - w * 0.15, y - h * 0.45, w * 0.2, h * 0.35, _shade(p.rgb, 1.3))
    elif k in ("dune", "hill"):
        ellipse(c, v, x, y, w / 2, h, p.rgb, below=y + 0.004)
    elif k == "cactus":
        cw = w * 0.35
        rect(c, v, x - cw / 2, y - h, x + cw / 2, y, p.rgb)
        ellipse(c, v, x, y - h, cw / 2, cw / 2, p.rgb)
        rect(c, v, x - w / 2, y - h * 0.55, x - cw / 2, y - h * 0.45, p.rgb)
        rect(c, v, x - w / 2, y - h * 0.8, x - w / 2 + cw * 0.6, y - h * 0.5, p.rgb)
        rect(c, v, x + cw / 2, y - h * 0.4, x + w / 2, y - h * 0.3, p.rgb)
        rect(c, v, x + w / 2 - cw * 0.6, y - h * 0.65, x + w / 2, y - h * 0.35, p.rgb)
        rect(c, v, x - cw * 0.1, y - h, x + cw * 0.1, y, p.rgb2)
    elif k == "rock":
        ellipse(c, v, x, y, w / 2, h, p.rgb, below=y)
        ellipse(c, v, x - w * 0.12, y - h * 0.55, w * 0.2, h * 0.25, _shade(p.rgb, 1.2))
    elif k == "mountain":
        polygon(c, v, [(x - w / 2, y), (x + w / 2, y), (x, y - h)], p.rgb)
        polygon(c, v, [(x - w * 0.15, y - h * 0.7), (x + w * 0.15, y - h * 0.7), (x, y - h)], p.rgb2)
    elif k == "pine":
        rect(c, v, x - w * 0.08, y - h * 0.2, x + w * 0.08, y, (90, 62, 40))
        for i, (f0, f1) in enumerate(((0.15, 0.6), (0.4, 0.82), (0.62, 1.0))):
            ww = w * (0.5 - 0.12 * i)
            polygon(c, v, [(x - ww, y - h * f0), (x + ww, y - h * f0), (x, y - h * f1)], p.rgb)
            polygon(c, v, [(x - ww * 0.3, y - h * (f1 - 0.12)), (x + ww * 0.3, y - h * (f1 - 0.12)), (x, y - h * f1)], p.rgb2)
    elif k == "snowman":
        ellipse(c, v, x, y - h * 0.28, w * 0.55, h * 0.28, p.rgb)
        ellipse(c, v, x, y - h * 0.72, w * 0.38, h * 0.2, p.rgb)
        polygon(c, v, [(x + 0.005, y - h * 0.74), (x + 0.005, y - h * 0.69), (x + w * 0.5, y - h * 0.71)], p.rgb2)
        rect(c, v, x - 0.012, y - h * 0.8, x - 0.004, y - h * 0.77, (20, 20, 20))
    elif k == "building":
        x0, x1, top = x - w / 2, x + w / 2, y - h
        rect(c, v, x0, top, x1, y, p.rgb)
        rect(c, v, x0, top, x1, top + 0.015, _shade(p.rgb, 0.65))
        cw, ch = 0.06, 0.07
        win = p.rgb2

        def windows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            fx = ((X - x0 - 0.02) / cw) % 1.0
            fy = ((Y - top - 0.035) / ch) % 1.0
            return (fx > 0.3) & (fx < 0.8) & (fy > 0.25) & (fy < 0.75) & (X > x0 + 0.02) & (X < x1 - 0.03) & (Y > top + 0.03) & (Y < y - 0.07)

        _paint(c, v, (x0, top, x1, y), windows, win)
        rect(c, v, x - 0.025, y - 0.065, x + 0.025, y, _shade(p.rgb, 0.45))
    elif k == "lamp":
        rect(c, v, x - 0.007, y - h, x + 0.007, y, p.rgb)
        rect(c, v, x - 0.007, y - h, x + 0.04, y - h + 0.012, p.rgb)
        ellipse(c, v, x + 0.04, y - h + 0.02, 0.018, 0.014, p.rgb2)
    elif k == "fence":
        x0 = x - w / 2

        def fence(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            post = (((X - x0) / 0.13) % 1.0 < 0.18) & (Y >= y - h) & (Y <= y)
            rail = ((np.abs(Y - (y - h * 0.75)) < h * 0.1) | (np.abs(Y - (y - h * 0.3)) < h * 0.1)) & (X >= x0)
            return post | rail

        _paint(c, v, (x0, y - h, x0 + w, y), fence, p.rgb)
    elif k == "flower":
        ellipse(c, v, x, y - h, w * 0.5, w * 0.5, p.rgb)
        ellipse(c, v, x, y - h, w * 0.2, w * 0.2, p.rgb2)
    elif k == "stalactite":
        rect(c, v, x - w / 2, y - 0.3, x + w / 2, y, p.rgb)
        polygon(c, v, [(x - w / 2, y), (x + w / 2, y), (x, y + h)], p.rgb)
        polygon(c, v, [(x, y), (x + w / 2, y), (x, y + h)], p.rgb2)
    elif k == "stalagmite":
        polygon(c, v, [(x - w / 2, y), (x + w / 2, y), (x, y - h)], p.rgb)
        polygon(c, v, [(x, y), (x + w / 2, y), (x, y - h)], p.rgb2)
    elif k == "crystal":
        ellipse(c, v, x, y - h / 2, w * 1.2, h * 0.8, p.rgb, alpha=0.25)
        polygon(c, v, [(x, y), (x + w / 2, y - h / 2), (x, y - h), (x - w / 2, y - h / 2)], p.rgb)
        polygon(c, v, [(x, y - h * 0.2), (x + w * 0.2, y - h / 2), (x, y - h * 0.8)], p.rgb2)
    elif k == "palm":
        top = (x + w * 0.2, y - h)
        polygon(c, v, [(x - 0.014, y), (x + 0.014, y), (top[0] + 0.01, top[1]), (top[0] - 0.01, top[1])], p.rgb2)
        for ang in (-2.7, -2.1, -1.2, -0.5, 0.2, 2.9):
            tip = (top[0] + math.cos(ang) * w * 0.6, top[1] + math.sin(ang) * h * 0.3 + 0.05)
            nx, ny = -math.sin(ang) * 0.018, math.cos(ang) * 0.018
            polygon(c, v, [(top[0] + nx, top[1] + ny), (top[0] - nx, top[1] - ny), tip], p.rgb)
    elif k == "umbrella":
        rect(c, v, x - 0.005, y - h, x + 0.005, y, (90, 80, 70))
        cy = y - h * 0.75

        def canopy(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
            return (((X - x) / (w / 2)) ** 2 + ((Y - cy) / (h * 0.3)) ** 2 <= 1.0) & (Y <= cy)

        _paint(c, v, (x - w / 2, cy - h * 0.3, x + w / 2, cy), canopy, p.rgb)
        _paint(c, v, (x - w / 2, cy - h * 0.3, x + w / 2, cy),
               lambda X, Y: canopy(X, Y) & ((((X - x) / (w / 6)) % 2.0) < 1.0), p.rgb2)


# ------------------------------------------------------------------------------ ground


def _hash01(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic per-cell random numbers in [0, 1) (integer hash, platform independent)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (seed & 0x7FFFFFFF)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float32) / 65536.0


def _texture_amount(setting: Setting, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """How strongly the ground texture shows at each point, in [0, 1]."""
    t = setting.texture
    if t.kind == "stripes":
        d = X * math.cos(t.angle) + Y * math.sin(t.angle)
        return ((d / (t.scale * 1.6)) % 1.0 < 0.45).astype(np.float32)
    if t.kind == "dots":
        gx, gy = X / t.scale, Y / t.scale
        ci, cj = np.floor(gx), np.floor(gy)
        ox = 0.25 + 0.5 * _hash01(ci, cj, t.seed)
        oy = 0.25 + 0.5 * _hash01(ci, cj, t.seed + 7)
        return (((gx - ci - ox) ** 2 + (gy - cj - oy) ** 2) < 0.05).astype(np.float32)
    gx, gy = X / (t.scale * 1.5), Y / (t.scale * 1.5)
    ci, cj = np.floor(gx), np.floor(gy)
    fx, fy = gx - ci, gy - cj
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash01(ci, cj, t.seed), _hash01(ci + 1, cj, t.seed)
    c, d = _hash01(ci, cj + 1, t.seed), _hash01(ci + 1, cj + 1, t.seed)
    n = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    return np.clip((n - 0.35) * 2.0, 0.0, 1.0)


def _sky_details(c: np.ndarray, v: View, s: Setting) -> None:
    """Sun, moon, stars, clouds: seeded by the setting, so they too return unchanged."""
    if s.kind == "cave":
        return
    rng = np.random.default_rng(s.sky_seed)
    sx, sy = rng.uniform(-0.3, 1.8), rng.uniform(0.1, 0.25)
    if s.light == "day":
        ellipse(c, v, sx, sy, 0.065, 0.065, (255, 240, 150))
        for _ in range(int(rng.integers(3, 6))):
            cx, cy, r = rng.uniform(-0.7, 2.2), rng.uniform(0.08, s.horizon - 0.15), rng.uniform(0.04, 0.07)
            for dx, dy, k in ((-1.0, 0.2, 0.8), (0.0, 0.0, 1.0), (1.0, 0.25, 0.75)):
                ellipse(c, v, cx + dx * r, cy + dy * r, r * k * 1.3, r * k * 0.8, (250, 250, 252), alpha=0.9)
    elif s.light == "dusk":
        ellipse(c, v, sx, s.horizon - 0.03, 0.1, 0.1, (255, 170, 80))
    else:
        n = 90
        xs, ys = rng.uniform(-0.8, 2.3, n), rng.uniform(-0.3, s.horizon - 0.05, n)
        for x, y in zip(xs, ys):
            rect(c, v, x - 0.004, y - 0.004, x + 0.004, y + 0.004, (235, 235, 200))
        ellipse(c, v, sx, sy, 0.05, 0.05, (240, 240, 215))
        ellipse(c, v, sx + 0.022, sy - 0.012, 0.045, 0.045, tuple(s.sky_top))  # type: ignore[arg-type]


def _gradient(top: RGB, bottom: RGB, t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)[..., None]
    return np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t


def draw_setting(setting: Setting, view: View) -> np.ndarray:
    """The setting over a view as float32 [h, w, 3], untinted, in draw order back to front."""
    ys = (view.y0 + (np.arange(view.h, dtype=np.float32) + 0.5) / view.scale)[:, None]
    xs = (view.x0 + (np.arange(view.w, dtype=np.float32) + 0.5) / view.scale)[None, :]
    hz = setting.horizon
    sky = _gradient(setting.sky_top, setting.sky_bottom, (ys[:, 0] + 0.2) / (hz + 0.2))
    ground = _gradient(setting.ground_top, setting.ground_bottom, (ys[:, 0] - hz) / (1.2 - hz))
    below = ys[:, 0] >= hz
    col = np.where(below[:, None], ground, sky)
    canvas = np.repeat(col[:, None, :], view.w, axis=1).astype(np.float32)
    _sky_details(canvas, view, setting)
    canvas[below] = col[below][:, None, :]  # sky details never spill onto the ground
    floor_top = max([hz] + [b.y1 for b in setting.bands])
    rows = ys[:, 0] >= floor_top
    if rows.any():
        amount = _texture_amount(setting, xs, ys[rows]) * setting.texture.strength
        tex = np.asarray(setting.texture.rgb, np.float32)
        canvas[rows] = canvas[rows] * (1 - amount[..., None]) + tex * amount[..., None]
    for band in setting.bands:
        sel = (ys[:, 0] >= band.y0) & (ys[:, 0] < band.y1)
        if sel.any():
            t = (ys[sel, 0] - band.y0) / max(1e-6, band.y1 - band.y0)
            canvas[sel] = _gradient(band.rgb_top, band.rgb_bottom, t)[:, None, :]
    for prop in sorted(setting.props, key=lambda p: (p.kind not in ("dune", "hill", "mountain", "stalactite"), p.y)):
        _draw_prop(canvas, view, prop)
    return canvas


@lru_cache(maxsize=24)
def layer(setting: Setting, x0: float, y0: float, scale: float, w: int, h: int) -> np.ndarray:
    """Tinted uint8 [h, w, 3] background at `scale` pixels per world unit, drawn 2x
    supersampled. Memoised (a pure function of its arguments) because every frame of a shot,
    and every streaming chunk of it, crops the same layer."""
    big = draw_setting(setting, View(x0, y0, scale * 2.0, w * 2, h * 2))
    small = big.reshape(h, 2, w, 2, 3).mean(axis=(1, 3))
    small *= np.asarray(setting.tint, np.float32)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)
