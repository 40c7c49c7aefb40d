"""Export a procedural film as a cinecli screenplay, so a generated film can be compared with
the world's own rendering of the same script (same shots, timing and prompts)."""

from __future__ import annotations

import yaml

from cinecli.world.spec import FilmSpec


def to_screenplay_yaml(film: FilmSpec) -> str:
    """A screenplay whose shots and events reproduce the film's timing and prompts exactly:
    durations and event times are written in frames (`48f`, `at: 24f`)."""
    shots = []
    for shot in film.shots:
        entry: dict[str, object] = {
            "id": shot.id,
            "duration": f"{shot.duration_frames}f",
            "prompt": shot.prompt,
            "cut": shot.cut,
        }
        if shot.events:
            entry["events"] = [{"at": f"{e.at_frame}f", "prompt": e.prompt} for e in shot.events]
        shots.append(entry)
    doc = {
        "film": {"title": film.title, "resolution": f"{film.width}x{film.height}",
                 "fps": film.fps, "seed": film.seed},
        "shots": shots,
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=False, width=1000)
