"""Deciding where a render continues from, and rebuilding the generation state there.

Resuming an interrupted render and re-rendering an edited screenplay are one operation: find
the first chunk whose frames could differ from what the state holds (none for an unchanged
screenplay; the chunk holding the first changed shot's first latent frame after an edit), then
continue from the latest saved position at or before it. Saved positions are chunk boundaries:
the start, the shot restore points and the last checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import torch

from cinecli.state.files import (
    CHUNKS_DIR,
    RESTORE_DIR,
    decode_chunk_file,
    decode_position_file,
    read_verified,
)
from cinecli.state.manifest import (
    ChunkRecord,
    FileRef,
    Position,
    ShotRecord,
    StateError,
    StateManifest,
    manifest_file,
)
from cinecli.state.settings import settings_diff
from cinecli.screenplay.timeline import Plan

__all__ = [
    "ResumePoint", "shot_records", "check_compatible", "first_changed_shot", "first_dirty_chunk",
    "choose_point", "rewound", "remove_unlisted", "clear_state", "load_session", "describe_point",
]


@dataclass(frozen=True)
class ResumePoint:
    """Where generation continues: chunks [0, position.next_chunk) come from the state folder."""

    position: Position
    file: FileRef | None  # decoder cache at the position (None at the start of the film)
    source: str  # "checkpoint", "restore point after shot N", or "start"
    first_changed_shot: int | None  # None: the screenplay's shots are unchanged


def shot_records(plan: Plan, hashes: Sequence[str]) -> tuple[ShotRecord, ...]:
    return tuple(ShotRecord(s.index, s.id, h, s.latent_start, s.latent_end, s.frame_start, s.frame_end)
                 for s, h in zip(plan.shots, hashes))


def check_compatible(manifest: StateManifest, settings: dict[str, object], where: Path) -> None:
    """Refuse a state made by another model, other weights or other frame-changing settings."""
    diff = settings_diff(manifest.settings, settings)
    if not diff:
        return
    model_keys = ("model:", "weights_id:", "card_sha256:")
    what = "another model or other weights" if any(d.startswith(model_keys) for d in diff) else "other settings"
    raise StateError(f"{where}: this state was rendered with {what} ({'; '.join(diff)}); resuming would mix "
                     f"two different films. Pass --fresh to start over, or --state to use another folder")


def first_changed_shot(old: Sequence[ShotRecord], new: Sequence[ShotRecord]) -> int | None:
    """The first shot whose content hash or placement differs; None when all shots are the same.

    Hashes are chained (shot i covers shots 0..i), so everything before the first difference is
    unchanged. Placement is compared too: the last shot ends where the film ends, which moves
    when a shot is appended or removed even though its own hash does not.
    """
    for a, b in zip(old, new):
        if a != replace(b, id=a.id, index=a.index):  # ids change no pixel
            return b.index
    if len(new) > len(old):
        return len(old)
    return None


def first_dirty_chunk(manifest: StateManifest, plan: Plan, changed: int | None) -> int:
    """The first chunk of `plan` whose frames may differ from the state's: generation starts here at the latest."""
    if changed is not None:
        return plan.chunk_of_latent(plan.shots[changed].latent_start)
    if len(plan.latents) != manifest.latents:  # shots removed from the end: a shorter last chunk differs
        return len(plan.latents) // plan.chunk_frames
    return plan.num_chunks


def choose_point(manifest: StateManifest, limit: int, changed: int | None) -> ResumePoint:
    """The latest saved position whose chunks all come before `limit`."""
    best = ResumePoint(Position(), None, "start", changed)
    for r in manifest.restore_points:
        if best.position.next_chunk < r.position.next_chunk <= limit:
            best = ResumePoint(r.position, r.file, f"restore point after shot {r.shot + 1}", changed)
    p = manifest.position
    if manifest.checkpoint is not None and best.position.next_chunk <= p.next_chunk <= limit:
        best = ResumePoint(p, manifest.checkpoint, "checkpoint", changed)
    return best


def rewound(manifest: StateManifest, point: ResumePoint, **fields: object) -> StateManifest:
    """The manifest after moving back to `point` (and taking the new screenplay's `fields`)."""
    n = point.position.next_chunk
    return replace(
        manifest, position=point.position, checkpoint=point.file,
        chunks=tuple(c for c in manifest.chunks if c.chunk < n),
        restore_points=tuple(r for r in manifest.restore_points if r.position.next_chunk <= n),
        **fields,  # type: ignore[arg-type]
    )


def remove_unlisted(state_dir: Path, manifest: StateManifest) -> None:
    """Delete chunk, restore and checkpoint files the manifest does not name (call after writing it)."""
    from cinecli.state.checkpoint import remove_stale_checkpoints

    keep = {c.file.path for c in manifest.chunks} | {r.file.path for r in manifest.restore_points}
    for sub in (CHUNKS_DIR, RESTORE_DIR):
        folder = Path(state_dir) / sub
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.endswith(".safetensors") and f"{sub}/{entry.name}" not in keep:
                    _unlink(Path(entry.path))
    remove_stale_checkpoints(state_dir, manifest.checkpoint.path if manifest.checkpoint else None)


def clear_state(state_dir: Path) -> None:
    """Forget a state (--fresh): delete only files this package or the segment store writes.

    Never a recursive delete: --state may point at a folder that holds other things.
    """
    from cinecli.render.segments import SegmentStore

    state_dir = Path(state_dir)
    _unlink(manifest_file(state_dir))
    for sub in (CHUNKS_DIR, RESTORE_DIR):
        folder = state_dir / sub
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.endswith(".safetensors"):
                    _unlink(Path(entry.path))
    from cinecli.state.checkpoint import remove_stale_checkpoints

    if state_dir.is_dir():
        remove_stale_checkpoints(state_dir, None)
    segments = state_dir / "segments"
    if segments.is_dir():
        SegmentStore(segments, 1, 2, 2).discard_from(0)


def load_session(state_dir: Path, manifest: StateManifest, point: ResumePoint, session: "object",
                 device: torch.device) -> None:
    """Fill a fresh `RenderSession` with the state at `point` (every file checked against its sha256).

    The bank is the concatenation of the chunk files before the point, the contact sheet is fed
    the frames those chunks kept, and the decoder cache comes from the point's file.
    """
    n = point.position.next_chunk
    records = [c for c in manifest.chunks if c.chunk < n]
    _check_chunks_cover(records, n, manifest_file(state_dir))
    contents = [decode_chunk_file(read_verified(state_dir, r.file), Path(state_dir) / r.file.path) for r in records]
    bank = session.bank  # type: ignore[attr-defined]
    if contents:
        keys = contents[0].bank.keys()
        try:
            tensors = {k: torch.cat([c.bank[k] for c in contents], dim=1) for k in keys}
        except (KeyError, RuntimeError) as err:
            raise StateError(f"{manifest_file(state_dir)}: chunk files do not fit together ({err}); pass --fresh") from None
        frames = records[-1].latent_end
        if next(iter(tensors.values())).shape[1] != frames:
            raise StateError(f"{manifest_file(state_dir)}: chunk files hold the wrong number of latent frames; pass --fresh")
        bank.load_tensors(tensors, frames)
    for c in contents:
        for shot, index, length, frame in c.kept:
            session.sheet.offer(shot, index, length, frame)  # type: ignore[attr-defined]
    if point.file is not None:
        where = Path(state_dir) / point.file.path
        decode_state, saved = decode_position_file(read_verified(state_dir, point.file), where, device)
        if saved.next_chunk != n:
            raise StateError(f"{where}: holds chunk {saved.next_chunk}, the manifest says {n}; pass --fresh")
        session.decode_state = decode_state  # type: ignore[attr-defined]
    session.next_chunk = n  # type: ignore[attr-defined]
    session.frames_done = point.position.frames_done  # type: ignore[attr-defined]
    session.seconds = point.position.seconds  # type: ignore[attr-defined]


def describe_point(point: ResumePoint, plan: Plan, reused: Iterable[int]) -> str:
    """One line for the Note event: where the render continues and what it keeps."""
    shots = list(reused)
    kept = "no shots" if not shots else (f"shot {shots[0] + 1}" if len(shots) == 1 else f"shots {shots[0] + 1}–{shots[-1] + 1}")
    n = point.position.next_chunk
    if n >= plan.num_chunks:
        return f"every chunk is already rendered ({point.source}): reusing {kept}"
    return (f"continuing from the {point.source} at chunk {n + 1} of {plan.num_chunks} "
            f"(frame {point.position.frames_done} of {plan.frames}): reusing {kept}")


def _check_chunks_cover(records: Sequence[ChunkRecord], n: int, where: Path) -> None:
    if [c.chunk for c in records] != list(range(n)):
        raise StateError(f"{where}: chunk files for chunks 0..{n - 1} are not all listed; the state is "
                         f"incomplete; pass --fresh to start over")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
