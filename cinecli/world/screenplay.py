"""Export a procedural film as a cinecli screenplay, so a generated film can be compared with
the world's own rendering of the same script (same shots, timing and prompts)."""

from __future__ import annotations

import yaml

from cinecli.world.spec import FilmSpec


def to_screenplay_yaml(film: FilmSpec, locations: bool = False) -> str:
    """A screenplay whose shots and events reproduce the film's timing and prompts exactly:
    durations and event times are written in frames (`48f`, `at: 24f`). With `locations`, each
    shot also names its setting (`location:`), as a screenplay's scene headings would."""
    names = location_names(film)
    shots = []
    for shot in film.shots:
        entry: dict[str, object] = {
            "id": shot.id,
            "duration": f"{shot.duration_frames}f",
            "prompt": shot.prompt,
            "cut": shot.cut,
        }
        if locations:
            entry["location"] = names[shot.setting_id]
        if shot.events:
            entry["events"] = [{"at": f"{e.at_frame}f", "prompt": e.prompt} for e in shot.events]
        shots.append(entry)
    doc = {
        "film": {"title": film.title, "resolution": f"{film.width}x{film.height}",
                 "fps": film.fps, "seed": film.seed},
        "shots": shots,
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=False, width=1000)


def location_names(film: FilmSpec) -> dict[str, str]:
    """A readable location name per setting: its kind ("harbour"), numbered where a film has two
    settings of one kind ("harbour 2")."""
    seen: dict[str, int] = {}
    names: dict[str, str] = {}
    for setting in film.settings:
        seen[setting.kind] = seen.get(setting.kind, 0) + 1
        names[setting.id] = setting.kind if seen[setting.kind] == 1 else f"{setting.kind} {seen[setting.kind]}"
    return names
