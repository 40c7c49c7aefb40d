"""The tensor files of a state folder: their names, their contents, and their integrity checks.

All are safetensors (no pickle: a state folder can come from anywhere) with a JSON string under
the metadata key ``cinecli`` saying what the file is. Files are written from bytes whose sha256
goes into the manifest, and read back only after the digest matches, so a truncated or edited
file is refused by name instead of producing a silently wrong film.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from cinecli.model.autoencoder import DecodeState
from cinecli.state.atomic import sha256_bytes, write_bytes_atomic
from cinecli.state.manifest import FileRef, Position, StateError

__all__ = [
    "CHUNKS_DIR", "RESTORE_DIR", "SEGMENTS_DIR", "chunk_name", "checkpoint_name", "restore_name",
    "is_checkpoint_name", "encode_chunk", "decode_chunk_file", "encode_position_file",
    "decode_position_file", "write_file", "read_verified", "ChunkContents", "KEY",
]

KEY = "cinecli"
CHUNKS_DIR = "chunks"
RESTORE_DIR = "restore"
SEGMENTS_DIR = "segments"
_CHECKPOINT_RE = re.compile(r"^checkpoint-\d{6,}\.safetensors$")


def chunk_name(chunk: int) -> str:
    return f"{CHUNKS_DIR}/c{chunk:06d}.safetensors"


def checkpoint_name(next_chunk: int) -> str:
    """Named by position so a new checkpoint never overwrites the one the manifest still names."""
    return f"checkpoint-{next_chunk:06d}.safetensors"


def restore_name(shot: int) -> str:
    return f"{RESTORE_DIR}/shot-{shot:04d}.safetensors"


def is_checkpoint_name(name: str) -> bool:
    return _CHECKPOINT_RE.match(name) is not None


@dataclass(frozen=True)
class ChunkContents:
    """What one chunk file holds: its bank frames and its contact-sheet frames."""

    chunk: int
    latent_start: int
    latent_end: int
    bank: dict[str, Tensor]
    kept: tuple[tuple[int, int, int, np.ndarray], ...]  # (shot, index in shot, shot length, frame)


def encode_chunk(contents: ChunkContents) -> bytes:
    tensors = {f"bank.{k}": v for k, v in contents.bank.items()}
    for shot, index, length, frame in contents.kept:
        tensors[f"sheet.{shot}.{index}.{length}"] = torch.from_numpy(np.ascontiguousarray(frame))
    meta = {"kind": "chunk", "chunk": contents.chunk, "latent_start": contents.latent_start,
            "latent_end": contents.latent_end}
    return st_save(tensors, metadata={KEY: json.dumps(meta)})


def decode_chunk_file(data: bytes, where: Path) -> ChunkContents:
    tensors, meta = _load(data, where, "chunk")
    bank = {k[len("bank."):]: v for k, v in tensors.items() if k.startswith("bank.")}
    kept = []
    for k, v in tensors.items():
        if k.startswith("sheet."):
            shot, index, length = (int(x) for x in k.split(".")[1:])
            kept.append((shot, index, length, v.numpy()))
    kept.sort(key=lambda item: (item[0], item[1]))
    return ChunkContents(int(meta["chunk"]), int(meta["latent_start"]), int(meta["latent_end"]), bank, tuple(kept))


def encode_position_file(decode_state: DecodeState, position: Position) -> bytes:
    """A checkpoint or restore point: the decoder cache and the position it belongs to."""
    tensors = {f"decode.{k}": v.detach().to("cpu").contiguous() for k, v in decode_state.to_tensors().items()}
    meta = {"kind": "position", "next_chunk": position.next_chunk, "frames_done": position.frames_done,
            "seconds": position.seconds}
    return st_save(tensors, metadata={KEY: json.dumps(meta)})


def decode_position_file(data: bytes, where: Path, device: torch.device) -> tuple[DecodeState, Position]:
    tensors, meta = _load(data, where, "position")
    state = DecodeState.from_tensors({k[len("decode."):]: v.to(device) for k, v in tensors.items() if k.startswith("decode.")})
    return state, Position(int(meta["next_chunk"]), int(meta["frames_done"]), float(meta["seconds"]))


def write_file(state_dir: Path, rel: str, data: bytes) -> FileRef:
    """Write `data` atomically under the state folder and describe it for the manifest."""
    write_bytes_atomic(Path(state_dir) / rel, data)
    return FileRef(rel, sha256_bytes(data), len(data))


def read_verified(state_dir: Path, ref: FileRef) -> bytes:
    """The bytes of a state file, after checking they are exactly what the manifest recorded."""
    path = Path(state_dir) / ref.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StateError(f"{path}: missing (the state manifest names it); pass --fresh to start over") from None
    if len(data) != ref.bytes:
        raise StateError(f"{path}: {len(data)} bytes, the state manifest recorded {ref.bytes}; the file was "
                         f"truncated or edited; pass --fresh to start over")
    if sha256_bytes(data) != ref.sha256:
        raise StateError(f"{path}: sha256 differs from the one in the state manifest; the file was damaged or "
                         f"edited; pass --fresh to start over")
    return data


def _load(data: bytes, where: Path, kind: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    try:
        tensors = st_load(data)
        meta = json.loads(_metadata(data).get(KEY, "{}"))
    except Exception as err:  # noqa: BLE001 - any parse failure means a damaged file
        raise StateError(f"{where}: not a readable state file ({err})") from None
    if meta.get("kind") != kind:
        raise StateError(f"{where}: expected a {kind} file, found {meta.get('kind')!r}")
    return tensors, meta


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's metadata (the format is: u64 length, then a JSON header)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return dict(header.get("__metadata__", {}))


def kept_frames(chunks: Iterable[ChunkContents]) -> list[tuple[int, int, int, np.ndarray]]:
    return [item for c in chunks for item in c.kept]
