"""Averaging two trained generators weight by weight (`cinecli train blend`).

A regression student and the same student continued with distribution matching trade
intra-shot stability against prompt alignment; their weighted average keeps most of each
(`docs/TRAINING.md`, runs 47-50). Averaging is only meaningful between weights of one
lineage, so the inputs must be generator files holding exactly the same tensors; anything
else is an error that names the file or the first tensor that differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import json
from pathlib import Path

import torch
from torch import Tensor

from cinecli.train.config import ConfigError

__all__ = ["BlendConfig", "blend_tensors", "blend_weights"]


@dataclass(frozen=True)
class BlendConfig:
    first: str = ""  # safetensors file of the first generator (transformer + text encoder)
    second: str = ""  # safetensors file of the second, of the same shapes
    share: float = 0.5  # weight of `first`; `second` gets 1 - share
    name: str = "student"  # output file name (without .safetensors): student or base

    def __post_init__(self) -> None:
        if not self.first or not self.second:
            raise ValueError("first and second must name the two weight files")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must lie in [0, 1], got {self.share}")
        if self.name not in ("student", "base"):
            raise ValueError(f"name must be student or base, got {self.name!r}")


def blend_tensors(first: dict[str, Tensor], second: dict[str, Tensor], share: float) -> dict[str, Tensor]:
    """share * first + (1 - share) * second for every float tensor, computed in float32 and
    stored in the first's dtype; integer tensors (counters, indices) must agree and are kept."""
    if set(first) != set(second):
        only = sorted(set(first) ^ set(second))
        raise ValueError(f"the two files hold different tensors, e.g. {only[0]!r}")
    out: dict[str, Tensor] = {}
    for key in sorted(first):
        a, b = first[key], second[key]
        if a.shape != b.shape:
            raise ValueError(f"{key}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        if a.is_floating_point():
            out[key] = (share * a.float() + (1.0 - share) * b.float()).to(a.dtype)
        elif torch.equal(a, b):
            out[key] = a.clone()
        else:
            raise ValueError(f"{key}: non-float tensors differ and cannot be averaged")
    return out


def blend_weights(cfg: BlendConfig, out_dir: Path) -> Path:
    """Write `out_dir/<name>.safetensors`, the blend of the config's two generator files, and
    the config beside it."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from cinecli.model.bundle import TRANSFORMER_FORMAT, write_generator_tensors

    for path in (cfg.first, cfg.second):
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such weight file")
        with safe_open(path, "pt") as f:
            if (f.metadata() or {}).get("format") != TRANSFORMER_FORMAT:
                raise ConfigError(f"{path}: not a generator file (format {f.metadata()}, expected {TRANSFORMER_FORMAT!r})")
    try:
        tensors = blend_tensors(load_file(cfg.first), load_file(cfg.second), cfg.share)
    except ValueError as e:
        raise ConfigError(f"{cfg.first} and {cfg.second}: {e}") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{cfg.name}.safetensors"
    write_generator_tensors(tensors, final)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return final
