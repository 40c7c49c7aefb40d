"""What `cinecli models` reports: the known presets, and every file a model description names.

Each file is checked the way loading will need it (exists, readable, holds tensors) without
building any model, so a typo in a path or a truncated download shows up in seconds, in one table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cinecli.model.config import PRESETS


@dataclass(frozen=True)
class FileCheck:
    role: str
    path: Path
    ok: bool
    detail: str  # "1,234 tensors (generator_ema)", "missing", "unreadable: ..."
    size: int  # bytes (a folder: its files together)


@dataclass(frozen=True)
class PresetRow:
    name: str
    params: int
    dim: int
    layers: int
    heads: int
    ffn_dim: int
    text_dim: int


def preset_rows() -> list[PresetRow]:
    return [PresetRow(n, c.params(), c.dim, c.num_layers, c.num_heads, c.ffn_dim, c.text_dim) for n, c in PRESETS.items()]


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def check_file(role: str, path: Path, *, key: str = "auto", expected: int | None = None) -> FileCheck:
    """One file (or folder) of a model description, checked for what its role needs."""
    from cinecli.model.loading import WeightsError, count_tensors

    if not path.exists():
        return FileCheck(role, path, False, "missing", 0)
    if not os.access(path, os.R_OK):
        return FileCheck(role, path, False, "not readable (permissions)", 0)
    size = size_of(path)
    if role == "tokenizer":
        if not path.is_dir():
            return FileCheck(role, path, False, "expected a folder (tokenizer.json or spiece.model inside)", size)
        found = [n for n in ("tokenizer.json", "spiece.model", "tokenizer_config.json") if (path / n).is_file()]
        if not {"tokenizer.json", "spiece.model"} & set(found):
            return FileCheck(role, path, False, "no tokenizer.json or spiece.model inside", size)
        return FileCheck(role, path, True, ", ".join(found), size)
    if role == "text_encoder" and path.is_dir() and not (path / "config.json").is_file():
        return FileCheck(role, path, False, "a transformers folder needs config.json", size)
    try:
        count, entry = count_tensors(path, key=key if role == "transformer" else "auto")
    except (WeightsError, OSError) as exc:
        return FileCheck(role, path, False, f"unreadable: {exc}", size)
    where = "" if entry == "(file)" else f" ({entry})"
    if expected is not None and count != expected:
        return FileCheck(role, path, False, f"{count:,} tensors{where}; the preset has {expected:,} parameters", size)
    return FileCheck(role, path, True, f"{count:,} tensors{where}", size)


def check_model_file(path: Path) -> list[FileCheck]:
    """Every file of one description; the description's own problems raise ModelFileError."""
    from cinecli.model.loading import transformer_shapes
    from cinecli.model.wan.spec import read_model_file

    spec = read_model_file(path)
    expected = len(transformer_shapes(spec.transformer_config()))
    rows = []
    for role, p in spec.files():
        rows.append(check_file(role, p, key=spec.checkpoint_key, expected=expected if role == "transformer" else None))
    return rows
