"""Strict loading of public Wan2.1-family transformer checkpoints.

The public causal checkpoints come in a few layouts: Self-Forcing saves a `.pt` dict with
`generator` and `generator_ema`, keys prefixed `model.` (the diffusion wrapper's attribute);
CausVid saves `generator` alone; LongLive a base checkpoint plus a PEFT LoRA
(`base_model.model.blocks.0.self_attn.q.lora_A.weight`, rank 256); FSDP runs may leave
`_fsdp_wrapped_module.` inside names; the Diffusers layout renames everything. This module reduces
all of them to the original Wan2.1 names, merges a LoRA into the base weights, and then refuses
anything that does not fit the model exactly: every checkpoint key must be used and every model
parameter must be present with the same shape. A silent partial load renders noise after minutes
of work, so the first offending key is named instead.

`.pt` files are read with `torch.load(weights_only=True)`: a checkpoint is data, and loading one
must never run code pickled into it. Safetensors files are read as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from cinecli.model.config import TransformerConfig
from cinecli.model.wan import names

WRAPPER_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
STATE_KEYS = ("generator_ema", "generator", "model", "state_dict")
LORA_KEYS = ("generator_lora", "lora", "state_dict")
CONVERTED_FORMAT = "cinecli-wan-transformer-v1"
LORA_PATTERN = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_]+)?\.weight$")


class WeightsError(ValueError):
    """A weights file that does not fit; the message names the file and the first offending key."""


@dataclass(frozen=True)
class LoadReport:
    """What a strict load did, for logs and `cinecli convert`'s summary."""

    path: Path
    picked: str  # which entry of the file held the weights ("generator_ema", ..., or "(file)")
    tensors: int
    lora_modules: int
    lora_scaling: float | None
    renamed_from_diffusers: bool


# ---------------------------------------------------------------- reading files


def read_file(path: Path) -> Any:
    """The raw contents of a safetensors or torch file (tensors on the CPU, nothing executed)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged header raises several kinds
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise WeightsError(f"{path}: not a readable torch checkpoint ({exc})") from None
        return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends
        raise WeightsError(
            f"{path}: cannot be read as plain tensors with weights_only=True ({type(exc).__name__}: {exc}); "
            f"cinecli never runs code stored in a checkpoint — convert it where you trust it, to safetensors"
        ) from None


def pick_state_dict(obj: Any, path: Path, key: str = "auto") -> tuple[dict[str, Tensor], str]:
    """The state dict inside a checkpoint: `generator_ema`, else `generator`, ..., else the dict itself.

    `key` forces one entry ("none" forces the file itself). The EMA weights come first because
    they are what Self-Forcing's own inference uses.
    """
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if key not in ("auto", "none"):
        if key not in obj:
            raise WeightsError(f"{path}: no entry {key!r}; the file holds {_listing(obj)}")
        return _tensors(obj[key], path, key), key
    if key == "auto":
        for k in STATE_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                return _tensors(obj[k], path, k), k
    return _tensors(obj, path, "(file)"), "(file)"


def _tensors(obj: Any, path: Path, where: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: entry {where!r} is {type(obj).__name__}, not a dict of tensors")
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            raise WeightsError(f"{path}: entry {where!r} key {k!r} is {type(v).__name__}, not a tensor; "
                               f"the file holds {_listing(obj)}")
    return dict(obj)


def _listing(obj: Mapping[str, Any]) -> str:
    keys = list(obj)
    shown = ", ".join(repr(k) for k in keys[:6])
    return f"{len(keys)} entries ({shown}{', ...' if len(keys) > 6 else ''})"


def clean_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop training wrappers from key names: FSDP/checkpoint/compile parts anywhere, then `model.`.

    `model.` is removed only when every key has it (the diffusion wrapper's attribute), so a model
    whose own first module were called `model` would not be mangled key by key.
    """
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        for part in WRAPPER_PARTS:
            k = k.replace(part, "")
        out[k] = v
    if out and all(k.startswith("model.") for k in out):
        out = {k[len("model."):]: v for k, v in out.items()}
    return out


def to_wan_names(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
    """Rename the Diffusers layout to Wan's; other layouts pass through."""
    if names.is_diffusers_transformer(state):
        return names.rename_all(state, names.diffusers_transformer_key), True
    return dict(state), False


# ---------------------------------------------------------------- LoRA


def read_lora(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """A PEFT LoRA file as {base weight key: (A [r, in], B [out, r])}, names cleaned like the base.

    LongLive stores it under `generator_lora`; a bare PEFT state dict works too.
    """
    obj = read_file(path)
    if isinstance(obj, Mapping):
        for k in LORA_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    state = _tensors(obj, path, "(lora)")
    pairs: dict[str, dict[str, Tensor]] = {}
    for raw, tensor in state.items():
        key = raw
        for part in WRAPPER_PARTS:
            key = key.replace(part, "")
        key = key.removeprefix("base_model.model.").removeprefix("model.")
        m = LORA_PATTERN.match(key)
        if m is None:
            raise WeightsError(f"{path}: {raw!r} is not a LoRA A/B weight (only plain LoRA is supported)")
        pairs.setdefault(m.group("module") + ".weight", {})[m.group("ab")] = tensor
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for target, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            missing = "B" if "A" in ab else "A"
            raise WeightsError(f"{path}: {target.removesuffix('.weight')} has no lora_{missing} weight")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise WeightsError(f"{path}: {target.removesuffix('.weight')}: lora_A {tuple(a.shape)} and "
                               f"lora_B {tuple(b.shape)} do not share a rank")
        out[target] = (a, b)
    if not out:
        raise WeightsError(f"{path}: no LoRA weights found")
    return out


def merge_lora(state: Mapping[str, Tensor], lora: Mapping[str, tuple[Tensor, Tensor]], alpha: float | None,
               path: Path) -> tuple[dict[str, Tensor], float]:
    """W + (alpha / rank) · B @ A for every LoRA target, in float32, stored in W's dtype.

    `alpha` defaults to the rank (scaling 1), which is how LongLive trains its rank-256 LoRA;
    PEFT files do not carry alpha, so a LoRA trained otherwise must say it in the model file.
    """
    out = dict(state)
    ranks = {a.shape[0] for a, _ in lora.values()}
    if len(ranks) != 1:
        raise WeightsError(f"{path}: LoRA modules have different ranks {sorted(ranks)}")
    rank = ranks.pop()
    scaling = (alpha if alpha is not None else rank) / rank
    for target, (a, b) in sorted(lora.items()):
        if target not in out:
            raise WeightsError(f"{path}: LoRA targets {target!r}, which the base checkpoint does not have")
        w = out[target]
        if (b.shape[0], a.shape[1]) != tuple(w.shape):
            raise WeightsError(f"{path}: LoRA for {target!r} makes a {b.shape[0]}x{a.shape[1]} update; "
                               f"the weight is {tuple(w.shape)}")
        out[target] = (w.float() + scaling * (b.float() @ a.float())).to(w.dtype)
    return out, scaling


# ---------------------------------------------------------------- strict checks


def check_strict(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor], path: Path) -> None:
    """Every expected key present with its shape, and nothing else; else name the first offender."""
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"{path}: missing key {missing[0]!r}"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unused = [k for k in state if k not in expected]
    if unused:
        raise WeightsError(f"{path}: unexpected key {unused[0]!r} (the model has no such parameter)"
                           + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""))
    for k, shape in expected.items():
        got = tuple(state[k].shape)
        if got != tuple(shape):
            raise WeightsError(f"{path}: key {k!r} has shape {got}, the model expects {tuple(shape)}")


def transformer_shapes(cfg: TransformerConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of a WanTransformer of this config, without allocating it."""
    from cinecli.model.transformer import WanTransformer

    with torch.device("meta"):
        model = WanTransformer(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def read_transformer_state(path: Path, *, key: str = "auto", lora: Path | None = None,
                           lora_alpha: float | None = None) -> tuple[dict[str, Tensor], LoadReport]:
    """A checkpoint reduced to Wan names with its LoRA merged (not yet checked against a model)."""
    path = Path(path)
    state, picked = pick_state_dict(read_file(path), path, key)
    state, diffusers = to_wan_names(clean_names(state))
    modules, scaling = 0, None
    if lora is not None:
        pairs = read_lora(Path(lora))
        state, scaling = merge_lora(state, pairs, lora_alpha, Path(lora))
        modules = len(pairs)
    return state, LoadReport(path, picked, len(state), modules, scaling, diffusers)


def load_transformer(cfg: TransformerConfig, path: Path, *, key: str = "auto", lora: Path | None = None,
                     lora_alpha: float | None = None, dtype: torch.dtype = torch.float32):  # type: ignore[no-untyped-def]
    """A WanTransformer holding the checkpoint's weights, strictly: (model, report).

    The module is built on the meta device and takes the loaded tensors as they are (no random
    initialisation of 1.3B parameters only to overwrite them).
    """
    from cinecli.model.rope import RopeTables
    from cinecli.model.transformer import WanTransformer

    state, report = read_transformer_state(path, key=key, lora=lora, lora_alpha=lora_alpha)
    check_strict(transformer_shapes(cfg), state, path)
    with torch.device("meta"):
        model = WanTransformer(cfg)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.rope = RopeTables.build(cfg.rope_dims, cfg.rope_max_positions, cfg.rope_theta)  # built on meta above
    return model.eval(), report


def convert(src: Path, dst: Path, cfg: TransformerConfig, *, key: str = "auto", lora: Path | None = None,
            lora_alpha: float | None = None, dtype: torch.dtype | None = None) -> LoadReport:
    """Write a checkpoint as a clean safetensors file (Wan names, LoRA merged), checked strictly first."""
    from safetensors.torch import save_file

    state, report = read_transformer_state(src, key=key, lora=lora, lora_alpha=lora_alpha)
    check_strict(transformer_shapes(cfg), state, Path(src))
    tensors = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in sorted(state.items())}
    meta = {"format": CONVERTED_FORMAT, "source": Path(src).name, "entry": report.picked}
    if lora is not None:
        meta.update({"lora": Path(lora).name, "lora_scaling": repr(report.lora_scaling)})
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(dst)
    return report


def count_tensors(path: Path, key: str = "auto") -> tuple[int, str]:
    """How many tensors a weights file (or a folder of safetensors shards) holds: (count, entry).

    Safetensors files are counted from their header alone; torch files are memory-mapped.
    """
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise WeightsError(f"{path}: no .safetensors files in this folder")
        return sum(count_tensors(s)[0] for s in shards), f"{len(shards)} file(s)"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return len(list(f.keys())), "(file)"
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    state, picked = pick_state_dict(read_file(path), path, key)
    return len(state), picked
