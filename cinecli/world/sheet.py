"""Contact sheets of procedural films: a few frames per shot with the prompt, for eyeballing
legibility and for debugging the sampler."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cinecli.world.render import render_frames
from cinecli.world.spec import FilmSpec


def contact_sheet(film: FilmSpec, per_shot: int = 4, max_shots: int | None = None,
                  scale: int = 1) -> Image.Image:
    """One row per shot: `per_shot` evenly spaced frames, then the shot's prompt beneath."""
    shots = film.shots[:max_shots] if max_shots else film.shots
    w, h = film.width * scale, film.height * scale
    text_h = 14
    sheet = Image.new("RGB", (w * per_shot, (h + text_h) * len(shots)), (16, 16, 16))
    draw = ImageDraw.Draw(sheet)
    for row, shot in enumerate(shots):
        picks = np.linspace(shot.start_frame, shot.end_frame - 1, per_shot).round().astype(int)
        for col, k in enumerate(picks):
            img = Image.fromarray(render_frames(film, int(k), int(k) + 1)[0])
            if scale != 1:
                img = img.resize((w, h), Image.NEAREST)
            sheet.paste(img, (col * w, row * (h + text_h)))
        label = f"{shot.id} [{shot.cut}, {shot.setting_id}] {shot.prompt}"
        if shot.events:
            label += "  | " + " | ".join(f"@{e.at_frame}: {e.prompt}" for e in shot.events)
        draw.text((2, row * (h + text_h) + h + 1), label, fill=(230, 230, 230))
    return sheet
