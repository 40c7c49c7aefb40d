"""Small line plots as PNG, drawn with Pillow only.

Metric-over-time reports and benchmark pictures need a handful of lines with
axes and a legend; pulling in matplotlib for that would add a heavy dependency
to a render tool. Drawing happens at 2x and is downsampled, which gives smooth
lines without an antialiasing rasteriser.

Also home of two helpers the contact sheet shares: font loading that never
fails, and atomic PNG writes.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "line_plot", "render_line_plot", "nice_ticks",
    "load_font", "fit_text", "font_px", "text_width", "save_png_atomic",
]

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Okabe-Ito: distinguishable for colour-blind readers and in greyscale print.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167),
    (230, 159, 0), (86, 180, 233), (120, 120, 120), (240, 228, 66),
)

_FONT_FILES = {
    False: ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    True: ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
}


def load_font(size: int, *, bold: bool = False) -> Font:
    """A TrueType font with wide Unicode coverage if one is installed, else Pillow's default.

    Never raises: a render must not fail because a machine lacks fonts.
    """
    for name in _FONT_FILES[bold]:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def fit_text(font: Font, text: str) -> str:
    """``text`` if the font can lay it out, else with unencodable characters as '?'.

    FreeType fonts draw a placeholder box for missing glyphs, but Pillow's
    bitmap fallback font only knows Latin-1 and raises on anything else.
    """
    try:
        font.getbbox(text)
        return text
    except (UnicodeError, ValueError):
        return "".join(c if _encodable(font, c) else "?" for c in text)


def _encodable(font: Font, char: str) -> bool:
    try:
        font.getbbox(char)
        return True
    except (UnicodeError, ValueError):
        return False


def font_px(font: Font) -> int:
    """Nominal pixel size of a font; Pillow's bitmap fallback has no ``size``, so measure it."""
    size = getattr(font, "size", None)
    if size:
        return int(size)
    left, top, right, bottom = font.getbbox("Ag")
    return int(bottom - top) or 11


def text_width(font: Font, text: str) -> float:
    """Advance width in pixels of text already passed through :func:`fit_text`."""
    return float(font.getlength(text))


def save_png_atomic(image: Image.Image, path: Path) -> Path:
    """Write a PNG so that ``path`` is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ValueError(f"bad tick range {lo}..{hi}")
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _format_tick(value: float, step: float) -> str:
    """Shortest label that still distinguishes neighbouring ticks."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    scaled = step * 10**decimals
    if abs(scaled - round(scaled)) > 1e-6:  # steps like 2.5 need one more digit
        decimals += 1
    return f"{value:,.{decimals}f}"


@dataclass(frozen=True)
class _Range:
    lo: float
    hi: float

    def at(self, value: float, a: float, b: float) -> float:
        """Map value in [lo, hi] to pixel coordinate in [a, b]."""
        return a + (value - self.lo) / (self.hi - self.lo) * (b - a)


def _data_range(values: Sequence[float], *, include_zero: bool) -> _Range:
    """Padded range; zero included for y so bars of speed/memory are not exaggerated."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return _Range(0.0, 1.0)
    lo, hi = min(finite), max(finite)
    if include_zero and lo > 0 and lo < hi * 0.6:
        lo = 0.0
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        return _Range(lo - pad, hi + pad)
    ticks = nice_ticks(lo, hi)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo)
    return _Range(math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step)


def render_line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (800, 480),
) -> Image.Image:
    """The plot as an RGB image of exactly ``size``; non-finite points break the line."""
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"plot size {width}x{height} too small (min 200x150)")
    ss = 2  # supersampling factor
    W, H = width * ss, height * ss
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f_title = load_font(15 * ss, bold=True)
    f_label = load_font(12 * ss)
    f_tick = load_font(11 * ss)

    names = [fit_text(f_label, str(n)) for n in series]
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xr = _data_range(xs, include_zero=False)
    yr = _data_range(ys, include_zero=True)
    xticks = [t for t in nice_ticks(xr.lo, xr.hi) if xr.lo - 1e-9 <= t <= xr.hi + 1e-9]
    yticks = [t for t in nice_ticks(yr.lo, yr.hi) if yr.lo - 1e-9 <= t <= yr.hi + 1e-9]
    xstep = xticks[1] - xticks[0] if len(xticks) > 1 else 1.0
    ystep = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    ylabels = [fit_text(f_tick, _format_tick(t, ystep)) for t in yticks]

    swatch = 22 * ss
    legend_w = (max((text_width(f_label, n) for n in names), default=0) + swatch + 24 * ss) if names else 0
    legend_w = min(legend_w, W * 0.35)
    left = 16 * ss + font_px(f_label) + 10 * ss + max((text_width(f_tick, s) for s in ylabels), default=0) + 8 * ss
    right = W - 28 * ss - legend_w
    top = 20 * ss + font_px(f_title) + 14 * ss
    bottom = H - (14 * ss + font_px(f_label) + 10 * ss + font_px(f_tick) + 8 * ss)

    # Title, centred over the plot area.
    t = fit_text(f_title, title)
    draw.text(((left + right) / 2, 16 * ss), t, font=f_title, fill=(20, 20, 20), anchor="ma")

    grid, axis, ink = (228, 228, 228), (90, 90, 90), (40, 40, 40)
    for tick, label in zip(yticks, ylabels):
        y = yr.at(tick, bottom, top)
        draw.line([(left, y), (right, y)], fill=grid, width=ss)
        draw.text((left - 8 * ss, y), label, font=f_tick, fill=ink, anchor="rm")
    for tick in xticks:
        x = xr.at(tick, left, right)
        draw.line([(x, top), (x, bottom)], fill=grid, width=ss)
        draw.line([(x, bottom), (x, bottom + 5 * ss)], fill=axis, width=ss)
        draw.text((x, bottom + 8 * ss), fit_text(f_tick, _format_tick(tick, xstep)),
                  font=f_tick, fill=ink, anchor="ma")
    draw.line([(left, top), (left, bottom), (right, bottom)], fill=axis, width=ss)

    # Axis labels; the y label is drawn on its own image and rotated.
    draw.text(((left + right) / 2, H - 12 * ss), fit_text(f_label, xlabel), font=f_label,
              fill=ink, anchor="md")
    ytext = fit_text(f_label, ylabel)
    tw = int(text_width(f_label, ytext)) + 4 * ss
    label_img = Image.new("RGBA", (max(tw, 1), font_px(f_label) + 6 * ss), (255, 255, 255, 0))
    ImageDraw.Draw(label_img).text((2 * ss, 1 * ss), ytext, font=f_label, fill=ink + (255,))
    label_img = label_img.rotate(90, expand=True)
    img.paste(label_img, (14 * ss, int((top + bottom) / 2 - label_img.height / 2)), label_img)

    # Series.
    for i, (pts, name) in enumerate(zip(series.values(), names)):
        color = PALETTE[i % len(PALETTE)]
        finite = sorted((x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y))
        run: list[tuple[float, float]] = []
        for x, y in sorted(pts, key=lambda p: p[0] if math.isfinite(p[0]) else math.inf):
            if math.isfinite(x) and math.isfinite(y):
                run.append((xr.at(x, left, right), yr.at(y, bottom, top)))
                continue
            _polyline(draw, run, color, 2 * ss)
            run = []
        _polyline(draw, run, color, 2 * ss)
        if len(finite) <= 40:
            r = 3 * ss
            for x, y in finite:
                px, py = xr.at(x, left, right), yr.at(y, bottom, top)
                draw.ellipse([px - r, py - r, px + r, py + r], fill=color)
        # Legend entry.
        ly = top + 6 * ss + i * (font_px(f_label) + 10 * ss)
        lx = right + 16 * ss
        draw.line([(lx, ly + font_px(f_label) / 2), (lx + swatch - 6 * ss, ly + font_px(f_label) / 2)],
                  fill=color, width=3 * ss)
        draw.text((lx + swatch, ly), _ellipsise(f_label, name, legend_w - swatch - 20 * ss),
                  font=f_label, fill=ink)

    return img.resize((width, height), Image.Resampling.LANCZOS)


def _polyline(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]],
              color: tuple[int, int, int], width: int) -> None:
    if len(pts) >= 2:
        draw.line(pts, fill=color, width=width, joint="curve")


def _ellipsise(font: Font, text: str, max_width: float) -> str:
    """Cut text to fit max_width, marking the cut with an ellipsis."""
    if text_width(font, text) <= max_width:
        return text
    mark = fit_text(font, "…")
    while text and text_width(font, text + mark) > max_width:
        text = text[:-1]
    return text.rstrip() + mark


def line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    path: Path,
    size: tuple[int, int] = (800, 480),
) -> Path:
    """Draw named (x, y) series as lines with axes and a legend; write a PNG atomically."""
    image = render_line_plot(series, title=title, xlabel=xlabel, ylabel=ylabel, size=size)
    return save_png_atomic(image, Path(path))
