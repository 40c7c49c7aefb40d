"""Writing checkpoints while a render runs.

The director calls :meth:`Checkpointer.after_chunk` when a chunk is complete (its segments are on
disk). The chunk's new memory-bank frames are copied out at once (a small copy: one chunk), and
a checkpoint is written when the policy says so, always at the end of a chunk that finishes a
shot (that checkpoint is also kept as the shot's restore point) and at the last chunk.

Order of writes, each one atomic: chunk files, the checkpoint file, restore files, and the
manifest last. A kill before the manifest leaves the previous manifest and every file it names
untouched, so the last complete checkpoint always stays usable.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cinecli.state.files import (
    ChunkContents,
    checkpoint_name,
    chunk_name,
    encode_chunk,
    encode_position_file,
    is_checkpoint_name,
    restore_name,
    write_file,
)
from cinecli.state.manifest import ChunkRecord, Position, RestorePoint, StateManifest, write_manifest

if TYPE_CHECKING:
    from cinecli.render.director import ChunkOutcome, Director

__all__ = ["CheckpointPolicy", "Checkpointer", "CheckpointStats"]

_POLICY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|seconds|chunks?)?\s*$")


@dataclass(frozen=True)
class CheckpointPolicy:
    """Checkpoint after every `chunks` chunks, or when `seconds` have passed since the last one."""

    chunks: int | None = 1
    seconds: float | None = None

    @staticmethod
    def parse(text: str) -> "CheckpointPolicy":
        """'1' or '3 chunks' (chunks), '30s' (seconds). Raises ValueError with the accepted forms."""
        m = _POLICY_RE.match(text)
        if m is None or float(m.group(1)) <= 0:
            raise ValueError(f"--checkpoint-every must be a positive number of chunks (3) or seconds (30s), not {text!r}")
        value, unit = m.group(1), (m.group(2) or "chunks")
        if unit.startswith("s"):
            return CheckpointPolicy(chunks=None, seconds=float(value))
        if "." in value:
            raise ValueError(f"--checkpoint-every needs a whole number of chunks, not {text!r}")
        return CheckpointPolicy(chunks=int(value), seconds=None)

    def due(self, pending: int, since_last: float) -> bool:
        if self.chunks is not None and pending >= self.chunks:
            return True
        return self.seconds is not None and since_last >= self.seconds


@dataclass(frozen=True)
class CheckpointStats:
    """How much checkpointing cost: compare `seconds` with the render's generation time."""

    writes: int
    seconds: float
    bytes_written: int


@dataclass(frozen=True)
class _Pending:
    outcome: "ChunkOutcome"
    contents: ChunkContents


class Checkpointer:
    """Turns finished chunks into checkpoints of one state folder. Mutable: it owns the manifest."""

    def __init__(self, state_dir: Path, manifest: StateManifest, policy: CheckpointPolicy = CheckpointPolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state_dir = Path(state_dir)
        self.manifest = manifest
        self.policy = policy
        self.clock = clock
        self._pending: list[_Pending] = []
        self._last = clock()
        self._writes = 0
        self._seconds = 0.0
        self._bytes = 0

    @property
    def stats(self) -> CheckpointStats:
        return CheckpointStats(self._writes, self._seconds, self._bytes)

    def after_chunk(self, director: "Director", outcome: "ChunkOutcome") -> None:
        """The director's hook: remember what the chunk added, checkpoint when due."""
        t0 = time.perf_counter()
        contents = ChunkContents(
            outcome.chunk, outcome.latent_start, outcome.latent_end,
            director.session.bank.to_tensors(outcome.latent_start, outcome.latent_end),
            tuple((k.shot, k.index, k.length, k.frame) for k in outcome.kept),
        )
        self._pending.append(_Pending(outcome, contents))
        self._seconds += time.perf_counter() - t0
        last_chunk = outcome.next_chunk >= self.manifest.chunks_total
        if outcome.shots_finished or last_chunk or self.policy.due(len(self._pending), self.clock() - self._last):
            self.flush()

    def flush(self) -> None:
        """Write everything pending as one checkpoint (nothing to do when nothing is pending).

        Pending chunks are dropped only after the manifest is written, so calling this again
        after an interruption mid-write simply writes the same checkpoint.
        """
        if not self._pending:
            return
        t0 = time.perf_counter()
        m = self.manifest
        chunks = [c for c in m.chunks if c.chunk < self._pending[0].outcome.chunk]
        written = 0
        for p in self._pending:
            data = encode_chunk(p.contents)
            chunks.append(ChunkRecord(p.outcome.chunk, p.outcome.latent_start, p.outcome.latent_end,
                                      write_file(self.state_dir, chunk_name(p.outcome.chunk), data)))
            written += len(data)
        last = self._pending[-1].outcome
        position = Position(last.next_chunk, last.frames_done, round(last.seconds, 6))
        data = encode_position_file(last.decode_state, position)
        checkpoint = write_file(self.state_dir, checkpoint_name(position.next_chunk), data)
        written += len(data)
        restore = [r for r in m.restore_points if r.position.next_chunk <= m.position.next_chunk and r.shot not in last.shots_finished]
        for shot in last.shots_finished:
            ref = write_file(self.state_dir, restore_name(shot), data)
            restore.append(RestorePoint(shot, position, position.next_chunk * m.chunk_frames, ref))
            written += len(data)
        restore.sort(key=lambda r: r.shot)
        self.manifest = m.with_checkpoint(position, checkpoint, tuple(chunks), tuple(restore))
        write_manifest(self.state_dir, self.manifest)
        self._pending.clear()
        remove_stale_checkpoints(self.state_dir, keep=checkpoint.path)
        self._last = self.clock()
        self._writes += 1
        self._bytes += written
        self._seconds += time.perf_counter() - t0


def remove_stale_checkpoints(state_dir: Path, keep: str | None) -> None:
    """Delete top-level checkpoint files other than `keep` (left by earlier checkpoints or kills)."""
    for entry in os.scandir(state_dir):
        if is_checkpoint_name(entry.name) and entry.name != keep:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
