"""The state folder's manifest: what a render is, how far it got, and which files hold it.

`manifest.json` is the only file a reader trusts first. It is rewritten (atomically) after every
checkpoint and names, with a sha256 each, the files that make up the generation state:

* ``chunks/cNNNNNN.safetensors``: what chunk N added (its memory-bank frames and any contact
  sheet frames), written once, so a checkpoint costs the new chunk, never the whole past;
* ``checkpoint-NNNNNN.safetensors``: the decoder cache at chunk N (the only state that is not
  an append), replaced at every checkpoint;
* ``restore/shot-XXXX.safetensors``: the decoder cache at the end of the chunk that finished
  shot X, kept for re-rendering an edited screenplay from the first changed shot.

Anything on disk that the manifest does not name is leftover from a killed process and ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from cinecli.state.atomic import write_json_atomic

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "StateError", "FileRef", "ShotRecord", "ChunkRecord",
    "Position", "RestorePoint", "StateManifest", "read_manifest", "write_manifest", "manifest_file",
]

FORMAT = "cinecli-render-state"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class StateError(Exception):
    """A state folder cannot be used as asked; the message names the file and what to do."""


@dataclass(frozen=True)
class FileRef:
    """A file of the state folder (path relative to it) and the digest it had when written."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ShotRecord:
    """A shot as the state rendered it: its chained content hash and where it landed."""

    index: int
    id: str
    hash: str
    latent_start: int
    latent_end: int
    frame_start: int
    frame_end: int


@dataclass(frozen=True)
class ChunkRecord:
    """The file holding what chunk `chunk` added: latent frames [latent_start, latent_end)."""

    chunk: int
    latent_start: int
    latent_end: int
    file: FileRef


@dataclass(frozen=True)
class Position:
    """How far a render got: chunks [0, next_chunk) are generated, decoded and on disk."""

    next_chunk: int = 0
    frames_done: int = 0
    seconds: float = 0.0  # generation wall time so far, across resumes


@dataclass(frozen=True)
class RestorePoint:
    """The state at the end of the chunk that finished `shot` (a chunk boundary, so reusable)."""

    shot: int
    position: Position
    latent: int  # first latent frame after the point: next_chunk * chunk_frames
    file: FileRef


@dataclass(frozen=True)
class StateManifest:
    """Everything `manifest.json` holds. `request` is replayed by `cinecli resume`."""

    screenplay: str  # absolute path of the screenplay file
    screenplay_sha256: str
    output: str
    request: Mapping[str, Any]
    settings: Mapping[str, Any]  # everything that changes frames besides the screenplay's shots
    shots: tuple[ShotRecord, ...]
    frames: int
    latents: int
    chunks_total: int
    chunk_frames: int
    position: Position = Position()
    checkpoint: FileRef | None = None
    chunks: tuple[ChunkRecord, ...] = ()
    restore_points: tuple[RestorePoint, ...] = ()
    format_version: int = FORMAT_VERSION
    cinecli_version: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Every chunk is generated (the film can be assembled from the segments alone)."""
        return self.position.next_chunk >= self.chunks_total

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": FORMAT, **d}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "StateManifest":
        """Parse a manifest; raises KeyError/TypeError/ValueError on a malformed one (the reader names the file)."""
        def file_ref(d: Mapping[str, Any] | None) -> FileRef | None:
            return None if d is None else FileRef(str(d["path"]), str(d["sha256"]), int(d["bytes"]))

        def position(d: Mapping[str, Any]) -> Position:
            return Position(int(d["next_chunk"]), int(d["frames_done"]), float(d["seconds"]))

        chunks = tuple(
            ChunkRecord(int(c["chunk"]), int(c["latent_start"]), int(c["latent_end"]), file_ref(c["file"]))  # type: ignore[arg-type]
            for c in data["chunks"]
        )
        restore = tuple(
            RestorePoint(int(r["shot"]), position(r["position"]), int(r["latent"]), file_ref(r["file"]))  # type: ignore[arg-type]
            for r in data["restore_points"]
        )
        shots = tuple(ShotRecord(int(s["index"]), str(s["id"]), str(s["hash"]), int(s["latent_start"]),
                                 int(s["latent_end"]), int(s["frame_start"]), int(s["frame_end"]))
                      for s in data["shots"])
        return StateManifest(
            screenplay=str(data["screenplay"]), screenplay_sha256=str(data["screenplay_sha256"]),
            output=str(data["output"]), request=dict(data["request"]), settings=dict(data["settings"]),
            shots=shots, frames=int(data["frames"]), latents=int(data["latents"]),
            chunks_total=int(data["chunks_total"]), chunk_frames=int(data["chunk_frames"]),
            position=position(data["position"]), checkpoint=file_ref(data.get("checkpoint")),
            chunks=chunks, restore_points=restore, format_version=int(data["format_version"]),
            cinecli_version=str(data.get("cinecli_version", "")), notes=tuple(data.get("notes", ())),
        )

    def with_checkpoint(self, position: Position, checkpoint: FileRef | None, chunks: tuple[ChunkRecord, ...],
                        restore_points: tuple[RestorePoint, ...]) -> "StateManifest":
        return replace(self, position=position, checkpoint=checkpoint, chunks=chunks, restore_points=restore_points)


def manifest_file(state_dir: Path) -> Path:
    return Path(state_dir) / MANIFEST_NAME


def read_manifest(path: Path) -> StateManifest:
    """Read and check a state manifest; every failure is a StateError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"{path}: no state manifest here") from None
    except OSError as err:
        raise StateError(f"{path}: cannot read the state manifest: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise StateError(f"{path}: the state manifest is not valid JSON ({err.msg} at line {err.lineno}); "
                         f"it was damaged or edited") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateError(f"{path}: not a cinecli state manifest (format {data.get('format') if isinstance(data, dict) else None!r})")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise StateError(f"{path}: the state manifest has no format version; it was damaged or edited")
    if version > FORMAT_VERSION:
        raise StateError(f"{path}: written by a newer cinecli (state format {version}; this one reads up to "
                         f"{FORMAT_VERSION}); upgrade cinecli, or pass --fresh to start over")
    try:
        return StateManifest.from_json(data)
    except (KeyError, TypeError, ValueError) as err:
        raise StateError(f"{path}: the state manifest is incomplete or damaged ({type(err).__name__}: {err})") from None


def write_manifest(state_dir: Path, manifest: StateManifest) -> Path:
    """Atomically replace the manifest: the commit point of every checkpoint."""
    return write_json_atomic(manifest_file(state_dir), manifest.to_json())
