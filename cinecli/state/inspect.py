"""What a state folder or a film manifest holds, as plain data for `cinecli inspect`.

Kept apart from the CLI so the same summary backs the rich table and `--json`, and so tests can
check it without parsing terminal output. Reads only JSON and file sizes: inspecting a state of
a feature film is instant, and `verify=True` is the opt-in full sha256 check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cinecli.state.manifest import MANIFEST_NAME, FORMAT, StateError, StateManifest, read_manifest
from cinecli.state.atomic import sha256_file

__all__ = ["folder_bytes", "inspect_path", "state_summary", "verify_files"]


def folder_bytes(folder: Path) -> int:
    """Bytes of all files under `folder` (the disk cost of a state folder)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def verify_files(state_dir: Path, manifest: StateManifest) -> list[str]:
    """Problems with the files the manifest names (missing, wrong size, wrong sha256); empty when sound."""
    refs = [c.file for c in manifest.chunks] + [r.file for r in manifest.restore_points]
    if manifest.checkpoint is not None:
        refs.append(manifest.checkpoint)
    problems = []
    for ref in dict.fromkeys(refs):
        path = Path(state_dir) / ref.path
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != ref.bytes:
            problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {ref.bytes}")
        elif sha256_file(path) != ref.sha256:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def state_summary(state_dir: Path, manifest: StateManifest, *, verify: bool = False) -> dict[str, Any]:
    """A state folder as JSON-ready data: position, settings, shots with their restore points, sizes."""
    state_dir = Path(state_dir)
    restore = {r.shot: r for r in manifest.restore_points}
    frames_done = manifest.position.frames_done
    shots = []
    for s in manifest.shots:
        r = restore.get(s.index)
        shots.append({
            "index": s.index, "id": s.id, "hash": s.hash, "frame_start": s.frame_start, "frame_end": s.frame_end,
            "status": "done" if s.frame_end <= frames_done else ("partial" if s.frame_start < frames_done else "pending"),
            "restore_point": None if r is None else {"next_chunk": r.position.next_chunk, "latent": r.latent, "file": r.file.path},
        })
    segments = state_dir / "segments"
    summary: dict[str, Any] = {
        "kind": "state", "path": str(state_dir), "format_version": manifest.format_version,
        "screenplay": manifest.screenplay, "screenplay_sha256": manifest.screenplay_sha256, "output": manifest.output,
        "complete": manifest.complete,
        "position": {"next_chunk": manifest.position.next_chunk, "chunks": manifest.chunks_total,
                     "frames_done": frames_done, "frames": manifest.frames,
                     "generation_seconds": manifest.position.seconds},
        "checkpoint": manifest.checkpoint.path if manifest.checkpoint else None,
        "settings": dict(manifest.settings), "request": dict(manifest.request), "shots": shots,
        "bytes": {
            "total": folder_bytes(state_dir),
            "chunks": sum(c.file.bytes for c in manifest.chunks),
            "restore_points": sum(r.file.bytes for r in manifest.restore_points),
            "checkpoint": manifest.checkpoint.bytes if manifest.checkpoint else 0,
            "segments": folder_bytes(segments) if segments.is_dir() else 0,
        },
    }
    if verify:
        summary["problems"] = verify_files(state_dir, manifest)
    return summary


def inspect_path(path: Path, *, verify: bool = False) -> dict[str, Any]:
    """Summary of a state folder, a state `manifest.json`, or a film's `.manifest.json`."""
    path = Path(path)
    if path.is_dir():
        return state_summary(path, read_manifest(path / MANIFEST_NAME), verify=verify)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"{path}: no such file or folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StateError(f"{path}: not a readable JSON manifest ({err})") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return state_summary(path.parent, read_manifest(path), verify=verify)
    if isinstance(data, dict) and "manifest_version" in data:
        return {"kind": "film", "path": str(path), **data}
    raise StateError(f"{path}: neither a state folder, a state manifest nor a film manifest")
