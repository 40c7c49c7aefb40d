"""Contact sheet: one row per shot, a few frames spread over each shot.

The sheet is fed while the film streams out of the decoder, so it decides up
front (from the shot's length) which frames it will show and keeps only
those, already shrunk to thumbnails: memory is a few thumbnails per shot, never
a chunk of frames. A sheet whose render was interrupted still saves, with
placeholders where frames never arrived, which is what you want to look at
when deciding whether to resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cinecli.render.plots import Font, fit_text, font_px, load_font, save_png_atomic, text_width

__all__ = ["ContactSheet", "Layout", "pick_frames", "thumb_size", "sheet_from_video"]

BACKGROUND = (18, 18, 20)
ROW_RULE = (48, 48, 54)
PLACEHOLDER = (38, 38, 44)
TEXT = (245, 245, 245)
MUTED = (150, 150, 160)

# Without an explicit thumb_width, small films are shown at 2x (nearest
# neighbour, so pixels stay honest) and large ones are capped to keep the
# sheet a reasonable size.
SMALL_WIDTH = 256
MAX_NATIVE_WIDTH = 480


@dataclass(frozen=True)
class Layout:
    """Spacing of the sheet in pixels."""

    pad: int = 16
    gap: int = 10
    label_width: int = 280
    caption_gap: int = 4


def pick_frames(shot_length: int, per_shot: int) -> tuple[int, ...]:
    """Frame indices in a shot to show: evenly spread, first and last included.

    The first and last frames are where a misplaced cut shows, so they are
    always on the sheet; short shots show every frame they have.
    """
    if per_shot < 1:
        raise ValueError(f"per_shot must be at least 1, got {per_shot}")
    if shot_length <= 0:
        return ()
    n = min(per_shot, shot_length)
    if n == 1:
        return (0,)
    return tuple(round(i * (shot_length - 1) / (n - 1)) for i in range(n))


def thumb_size(width: int, height: int, thumb_width: int | None) -> tuple[int, int]:
    """Thumbnail size for frames of ``width`` x ``height``, keeping the aspect ratio."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad frame size {width}x{height}")
    if thumb_width is None:
        if width < SMALL_WIDTH:
            return width * 2, height * 2
        thumb_width = min(width, MAX_NATIVE_WIDTH)
    return thumb_width, max(1, round(height * thumb_width / width))


def _to_thumb(frame: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Shrink (Lanczos) or enlarge by whole factors (nearest) a [H, W, 3] uint8 frame."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
    img = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    if img.size == size:
        return img
    w, h = img.size
    integer_upscale = size[0] % w == 0 and size[1] % h == 0 and size[0] > w
    method = Image.Resampling.NEAREST if integer_upscale else Image.Resampling.LANCZOS
    return img.resize(size, method)


def _ui_scale(thumb_height: int) -> float:
    """Text grows with large thumbnails so labels stay legible next to them."""
    return max(1.0, min(1.75, thumb_height / 160))


def _wrap(font: Font, text: str, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; overlong words are split; the last line is ellipsised."""
    if max_lines <= 0:
        return []
    words = " ".join(text.split()).split(" ") if text.strip() else []
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if text_width(font, candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while text_width(font, line) > width and len(line) > 1:
            cut = len(line)
            while cut > 1 and text_width(font, line[:cut]) > width:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    if line:
        lines.append(line)
    if len(lines) <= max_lines:
        return lines
    kept = lines[:max_lines]
    mark = fit_text(font, "…")
    last = kept[-1]
    while last and text_width(font, last + mark) > width:
        last = last[:-1]
    kept[-1] = last.rstrip() + mark
    return kept


class ContactSheet:
    """Accumulates the few frames a contact sheet shows, then draws it.

    ``shots`` is (id, prompt) per shot in film order. Mutable by design: it is
    an accumulator fed frame by frame; everything else here is pure.
    """

    def __init__(self, shots: Sequence[tuple[str, str]], per_shot: int = 4,
                 thumb_width: int | None = None, *, layout: Layout = Layout()) -> None:
        if per_shot < 1:
            raise ValueError(f"per_shot must be at least 1, got {per_shot}")
        if thumb_width is not None and thumb_width < 16:
            raise ValueError(f"thumb_width must be at least 16, got {thumb_width}")
        self.shots: tuple[tuple[str, str], ...] = tuple((str(i), str(p)) for i, p in shots)
        self.per_shot = per_shot
        self.thumb_width = thumb_width
        self.layout = layout
        self._lengths: dict[int, int] = {}
        self._thumbs: dict[tuple[int, int], Image.Image] = {}
        self._size: tuple[int, int] | None = None

    def wants(self, shot_index: int, frame_index_in_shot: int, shot_length: int) -> bool:
        """Whether :meth:`offer` would keep this frame; lets callers skip converting it."""
        return frame_index_in_shot in pick_frames(shot_length, self.per_shot)

    def offer(self, shot_index: int, frame_index_in_shot: int, shot_length: int,
              frame: np.ndarray) -> bool:
        """Keep ``frame`` as a thumbnail if it is one the sheet shows; True if kept."""
        if not 0 <= shot_index < len(self.shots):
            raise IndexError(f"shot {shot_index} out of range (sheet has {len(self.shots)} shots)")
        if not 0 <= frame_index_in_shot < shot_length:
            raise IndexError(f"frame {frame_index_in_shot} outside shot of {shot_length} frames")
        known = self._lengths.setdefault(shot_index, shot_length)
        if known != shot_length:
            raise ValueError(f"shot {shot_index} offered with length {shot_length}, earlier {known}")
        if not self.wants(shot_index, frame_index_in_shot, shot_length):
            return False
        if self._size is None:
            self._size = thumb_size(frame.shape[1], frame.shape[0], self.thumb_width)
        self._thumbs[(shot_index, frame_index_in_shot)] = _to_thumb(frame, self._size)
        return True

    def render(self) -> Image.Image:
        """The sheet as an RGB image; missing frames are drawn as placeholders."""
        tw, th = self._size or (thumb_size(160, 90, self.thumb_width))
        ui = _ui_scale(th)
        lay = Layout(pad=round(self.layout.pad * ui), gap=round(self.layout.gap * ui),
                     label_width=round(self.layout.label_width * ui),
                     caption_gap=round(self.layout.caption_gap * ui))
        f_id, f_meta = load_font(round(16 * ui), bold=True), load_font(round(12 * ui))
        f_prompt, f_cap = load_font(round(13 * ui)), load_font(round(11 * ui))
        cap_h = font_px(f_cap) + lay.caption_gap
        columns = self.per_shot
        row_h = max(th + cap_h, round(96 * ui))
        width = lay.pad * 2 + lay.label_width + lay.gap + columns * tw + (columns - 1) * lay.gap
        height = lay.pad * 2 + max(1, len(self.shots)) * row_h + max(0, len(self.shots) - 1) * lay.gap
        img = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(img)
        if not self.shots:
            draw.text((lay.pad, lay.pad), "no shots", font=f_meta, fill=MUTED)
        for row, (shot_id, prompt) in enumerate(self.shots):
            y = lay.pad + row * (row_h + lay.gap)
            if row:
                rule_y = y - lay.gap // 2 - 1
                draw.line([(lay.pad, rule_y), (width - lay.pad, rule_y)], fill=ROW_RULE, width=1)
            self._draw_label(draw, row, shot_id, prompt, (lay.pad, y), row_h, lay.label_width - lay.gap,
                             (f_id, f_meta, f_prompt))
            length = self._lengths.get(row)
            picks = pick_frames(length, self.per_shot) if length else ()
            for col in range(columns):
                x = lay.pad + lay.label_width + lay.gap + col * (tw + lay.gap)
                index = picks[col] if col < len(picks) else None
                thumb = self._thumbs.get((row, index)) if index is not None else None
                if thumb is not None:
                    img.paste(thumb, (x, y))
                    caption = fit_text(f_cap, f"frame {index}")
                    draw.text((x, y + th + lay.caption_gap), caption, font=f_cap, fill=MUTED)
                elif col < len(picks) or length is None:
                    draw.rectangle([x, y, x + tw - 1, y + th - 1], fill=PLACEHOLDER)
                    draw.text((x + tw / 2, y + th / 2), fit_text(f_cap, "not rendered"),
                              font=f_cap, fill=MUTED, anchor="mm")
        return img

    def _draw_label(self, draw: ImageDraw.ImageDraw, row: int, shot_id: str, prompt: str,
                    origin: tuple[int, int], row_h: int, width: int,
                    fonts: tuple[Font, Font, Font]) -> None:
        """Shot id (bold), a muted line with number and length, then the wrapped prompt."""
        f_id, f_meta, f_prompt = fonts
        x, y = origin
        title = _wrap(f_id, fit_text(f_id, shot_id), width, 1)
        draw.text((x, y), title[0] if title else "", font=f_id, fill=TEXT)
        y += font_px(f_id) + 4
        length = self._lengths.get(row)
        meta = f"shot {row + 1}" + (f" · {length} frames" if length else "")
        draw.text((x, y), fit_text(f_meta, meta), font=f_meta, fill=MUTED)
        y += font_px(f_meta) + 6
        line_h = font_px(f_prompt) + 4
        max_lines = max(0, (origin[1] + row_h - y) // line_h)
        for line in _wrap(f_prompt, fit_text(f_prompt, prompt), width, max_lines):
            draw.text((x, y), line, font=f_prompt, fill=TEXT)
            y += line_h

    def save(self, path: Path) -> Path:
        """Write the sheet as PNG atomically (a reader never sees half a file)."""
        return save_png_atomic(self.render(), Path(path))


def sheet_from_video(frames: np.ndarray, shots: Sequence[tuple[str, str, int, int]], *,
                     per_shot: int = 4, thumb_width: int | None = None) -> ContactSheet:
    """A sheet for a finished film: ``shots`` are (id, prompt, frame_start, frame_end), end exclusive."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be [T, H, W, 3], got {list(frames.shape)}")
    sheet = ContactSheet([(i, p) for i, p, _, _ in shots], per_shot, thumb_width)
    for index, (_, _, start, end) in enumerate(shots):
        if not 0 <= start < end <= frames.shape[0]:
            raise ValueError(f"shot {index} spans frames {start}..{end}, film has {frames.shape[0]}")
        length = end - start
        for k in pick_frames(length, per_shot):
            sheet.offer(index, k, length, frames[start + k])
    return sheet
