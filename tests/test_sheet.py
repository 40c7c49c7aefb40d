"""Contact sheet and line plots: streaming selection, Unicode safety, atomic PNGs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from cinecli.render import plots, sheet as sheet_mod
from cinecli.render.plots import fit_text, line_plot, nice_ticks, render_line_plot
from cinecli.render.sheet import ContactSheet, pick_frames, sheet_from_video, thumb_size

SHOTS = [
    ("opening", "A lighthouse on a cliff at dusk, waves crashing below, slow dolly in toward the lamp"),
    ("東京の夜", "ネオンの街を歩く女性 — rain-slicked street at night 🌃, Ω≈∑, ﷽"),
    ("finale", ""),
]


def film(lengths: list[int], h: int = 32, w: int = 48) -> np.ndarray:
    """Each frame filled with a distinct value so thumbnails can be traced to frames."""
    total = sum(lengths)
    frames = np.zeros((total, h, w, 3), np.uint8)
    for t in range(total):
        frames[t] = (t * 7) % 256
        frames[t, :, : w // 2, 1] = 255 - (t * 7) % 256
    return frames


def test_pick_frames() -> None:
    assert pick_frames(33, 4) == (0, 11, 21, 32)
    assert pick_frames(3, 4) == (0, 1, 2)
    assert pick_frames(1, 4) == (0,)
    assert pick_frames(10, 1) == (0,)
    assert pick_frames(0, 4) == ()
    for length in range(1, 60):
        picks = pick_frames(length, 5)
        assert list(picks) == sorted(set(picks))
        assert picks[0] == 0 and picks[-1] == length - 1 or length == 1
    with pytest.raises(ValueError):
        pick_frames(10, 0)


def test_thumb_size() -> None:
    assert thumb_size(96, 64, None) == (192, 128)  # small films at 2x
    assert thumb_size(320, 192, None) == (320, 192)  # native
    assert thumb_size(1280, 720, None) == (480, 270)  # capped
    assert thumb_size(832, 480, 208) == (208, 120)


def test_offer_keeps_only_the_shown_frames() -> None:
    lengths = [33, 17, 3]
    frames = film(lengths)
    sheet = ContactSheet([(i, p) for i, p in SHOTS], per_shot=4)
    kept = []
    start = 0
    for s, length in enumerate(lengths):
        for k in range(length):
            assert sheet.wants(s, k, length) == (k in pick_frames(length, 4))
            if sheet.offer(s, k, length, frames[start + k]):
                kept.append((s, k))
        start += length
    assert kept == [(0, 0), (0, 11), (0, 21), (0, 32), (1, 0), (1, 5), (1, 11), (1, 16),
                    (2, 0), (2, 1), (2, 2)]
    assert len(sheet._thumbs) == len(kept)
    assert all(t.size == (96, 64) for t in sheet._thumbs.values())


def test_offer_validates() -> None:
    sheet = ContactSheet(SHOTS[:1])
    frame = film([1])[0]
    with pytest.raises(IndexError):
        sheet.offer(1, 0, 5, frame)
    with pytest.raises(IndexError):
        sheet.offer(0, 5, 5, frame)
    sheet.offer(0, 0, 5, frame)
    with pytest.raises(ValueError, match="length"):
        sheet.offer(0, 1, 6, frame)


def test_save_writes_png_atomically(tmp_path: Path) -> None:
    lengths = [33, 17, 3]
    frames = film(lengths)
    spans, start = [], 0
    for (sid, prompt), length in zip(SHOTS, lengths):
        spans.append((sid, prompt, start, start + length))
        start += length
    out = sheet_from_video(frames, spans).save(tmp_path / "out" / "sheet.png")
    assert sorted(p.name for p in out.parent.iterdir()) == ["sheet.png"]
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGB"
    assert img.width > 4 * 96 and img.height > 3 * 64
    # The first thumbnail is the 2x nearest-neighbour copy of frame 0.
    arr = np.asarray(img)
    x0 = 16 + 280 + 10
    assert np.array_equal(arr[16:16 + 64, x0:x0 + 96], np.repeat(np.repeat(frames[0], 2, 0), 2, 1)[:64, :96])


def test_streaming_and_from_video_agree() -> None:
    lengths = [9, 4, 6]
    frames = film(lengths)
    streamed = ContactSheet([(i, p) for i, p in SHOTS], per_shot=3)
    spans, start = [], 0
    for s, ((sid, prompt), length) in enumerate(zip(SHOTS, lengths)):
        for k in range(length):
            streamed.offer(s, k, length, frames[start + k])
        spans.append((sid, prompt, start, start + length))
        start += length
    whole = sheet_from_video(frames, spans, per_shot=3)
    assert np.array_equal(np.asarray(streamed.render()), np.asarray(whole.render()))


def test_unfinished_render_still_draws(tmp_path: Path) -> None:
    sheet = ContactSheet([(i, p) for i, p in SHOTS])
    sheet.save(tmp_path / "empty.png")  # nothing offered at all
    sheet.offer(0, 0, 10, film([1])[0])
    sheet.save(tmp_path / "partial.png")
    assert Image.open(tmp_path / "partial.png").size[0] > 0
    ContactSheet([]).save(tmp_path / "noshots.png")


def test_bitmap_font_does_not_crash_on_unicode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bitmap = getattr(ImageFont, "load_default_imagefont", None)
    if bitmap is None:
        pytest.skip("this Pillow has no separate bitmap default font")
    font = bitmap()
    assert fit_text(font, "東京 café") == "?? café"
    monkeypatch.setattr(sheet_mod, "load_font", lambda size, bold=False: font)
    sheet = ContactSheet([(i, p) for i, p in SHOTS])
    sheet.offer(1, 0, 1, film([1])[0])
    sheet.save(tmp_path / "bitmap.png")


def test_thumb_width_downscales() -> None:
    sheet = ContactSheet(SHOTS[:1], per_shot=2, thumb_width=24)
    sheet.offer(0, 0, 2, film([1], h=32, w=48)[0])
    assert sheet._thumbs[(0, 0)].size == (24, 16)


# ---- plots -------------------------------------------------------------------------------

def test_nice_ticks() -> None:
    assert nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0.5, 0.5004) == pytest.approx([0.5, 0.5001, 0.5002, 0.5003, 0.5004])
    with pytest.raises(ValueError):
        nice_ticks(1, 1)


def test_line_plot_writes_png_of_expected_size(tmp_path: Path) -> None:
    series = {
        "camr": [(i, 12 + 3 * math.sin(i / 5)) for i in range(60)],
        "window": [(i, 10 + 0.1 * i) for i in range(0, 60, 3)],
        "gappy": [(0, 5), (10, float("nan")), (20, 6), (30, 7)],
        "Ω unicode ≈": [(5, 1)],
    }
    out = line_plot(series, title="Speed", xlabel="chunk", ylabel="frames / s",
                    path=tmp_path / "plots" / "speed.png")
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (800, 480)
    assert sorted(p.name for p in out.parent.iterdir()) == ["speed.png"]
    small = line_plot(series, title="t", xlabel="x", ylabel="y", path=tmp_path / "s.png", size=(320, 200))
    assert Image.open(small).size == (320, 200)


def test_line_plot_degenerate_inputs() -> None:
    for series in ({}, {"a": []}, {"flat": [(0, 3), (1, 3)]}, {"one": [(2, 2)]},
                   {"inf": [(0, float("inf")), (1, 1)]}):
        img = render_line_plot(series, title="t", xlabel="x", ylabel="y", size=(300, 200))
        assert img.size == (300, 200)
    with pytest.raises(ValueError):
        render_line_plot({}, title="t", xlabel="x", ylabel="y", size=(10, 10))


def test_line_plot_draws_series_colours(tmp_path: Path) -> None:
    img = render_line_plot({"a": [(0, 0), (1, 1)]}, title="t", xlabel="x", ylabel="y")
    colours = {tuple(c) for c in np.asarray(img).reshape(-1, 3)}
    assert plots.PALETTE[0] in colours
