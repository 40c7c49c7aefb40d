"""The manifest written beside a finished film: what was rendered, from what, and how.

A farm keeps it to answer "which screenplay, model, seed and settings made this file?" without
opening the video. Prompts are stored verbatim (UTF-8, not escaped) so any script survives.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import cinecli
from cinecli.screenplay.timeline import shot_hashes

if TYPE_CHECKING:
    from cinecli.render.director import Director

MANIFEST_VERSION = 1


def manifest_path(output: Path) -> Path:
    return output.with_suffix(".manifest.json")


def build_manifest(d: "Director", contact_sheet: Path) -> dict:
    sp, plan, bundle, opts = d.sp, d.plan, d.bundle, d.options
    hashes = shot_hashes(sp)
    shots = []
    for shot, h in zip(plan.shots, hashes):
        shots.append({
            "id": shot.id,
            "cut": shot.cut,
            "frame_start": shot.frame_start,
            "frame_end": shot.frame_end,
            "start_s": round(shot.frame_start / plan.fps, 4),
            "end_s": round(shot.frame_end / plan.fps, 4),
            "prompts": [{"frame": plan.grid.frame_start(lat), "prompt": plan.prompts[p]} for lat, p in plan.prompt_changes(shot.index)],
            "chunks": [plan.shot_chunks(shot.index).start, plan.shot_chunks(shot.index).stop],
            "hash": h,
        })
    s = d.session
    return {
        "manifest_version": MANIFEST_VERSION,
        "cinecli_version": cinecli.__version__,
        "title": sp.film.title,
        "screenplay": {"path": str(sp.path), "sha256": sp.sha256},
        "model": {"name": bundle.card.name, "weights": bundle.weights_id, "trained": bundle.trained, "card": asdict(bundle.card) | {"vocabulary": len(bundle.card.vocabulary)}},
        "seed": sp.film.seed,
        "settings": {
            "width": plan.width, "height": plan.height, "fps": plan.fps, "frames": plan.frames,
            "chunk_frames": plan.chunk_frames, "chunks": plan.num_chunks,
            "memory": asdict(sp.film.memory), "steps": d.generator.sampler.steps, "sampler": d.generator.sampler.mode,
            "quantize": sp.film.quantize, "history": opts.history, "device": opts.device,
            "torch": torch.__version__,
        },
        "shots": shots,
        "notes": list(plan.notes),
        "timings": {"generation_seconds": round(s.seconds, 3), "generated_fps": round(plan.frames / max(s.seconds, 1e-9), 3)},
        "outputs": {
            "film": str(opts.output),
            "contact_sheet": str(contact_sheet),
            "shots": str(opts.output.with_suffix(".shots")) if opts.split_shots else None,
            "state": str(opts.state_dir),
        },
    }


def write_manifest(d: "Director", contact_sheet: Path) -> Path:
    path = manifest_path(d.options.output)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(build_manifest(d, contact_sheet), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
