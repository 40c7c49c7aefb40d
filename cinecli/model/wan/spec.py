"""A Wan model description: which local files make the model, and how to sample it.

A screenplay selects one with `film.model: my-wan.yaml` (relative to the screenplay). Validation
and planning need the film format long before any weights are read, so this module reads the
YAML alone, imports no torch, and derives the format from it: the Wan VAE's grid (the first
latent frame decodes to one video frame, every later one to four), a spatial multiple of 16
(VAE stride 8 × patch 2) and an open vocabulary (umT5 reads any text).

Every path is resolved against the YAML's own folder, so a model folder can be moved whole.
Unknown keys are refused with their name: a misspelt `lora_alpah` must not silently render a
different model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cinecli.model.card import ModelCard
from cinecli.model.config import PRESETS, TransformerConfig, preset
from cinecli.screenplay.format import FilmFormat, TemporalGrid

MODEL_FILE_SUFFIXES = (".yaml", ".yml")
CHECKPOINT_KEYS = ("auto", "generator_ema", "generator", "model", "none")
TEXT_DTYPES = ("bfloat16", "float16", "float32")
TEXT_DEVICES = ("render", "cpu")

TOP_KEYS = (
    "name", "preset", "config", "transformer", "checkpoint_key", "lora", "lora_alpha",
    "text_encoder", "tokenizer", "vae", "text_encoder_dtype", "text_encoder_device", "sampling",
)
SAMPLING_KEYS = ("steps", "shift", "chunk_frames", "width", "height", "fps", "sampler", "guidance")
SAMPLING_DEFAULTS: Mapping[str, Any] = {
    # The public 4-step students: Self-Forcing's warped step list [1000, 750, 500, 250] is exactly
    # linspace(1, 0, 5) through the shift-5 warp, i.e. cinecli's StepSchedule(4, 5.0).
    "steps": 4, "shift": 5.0, "chunk_frames": 3, "width": 832, "height": 480, "fps": 16,
    "sampler": "few-step", "guidance": 1.0,
}


class ModelFileError(ValueError):
    """A model description that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class WanModelCard(ModelCard):
    """A ModelCard for Wan-VAE models: first latent frame alone, open vocabulary.

    A subclass rather than a new ModelCard field keeps the default model's card (and so the
    digest its state folders were written with) exactly as it was.
    """

    model_file: str = ""
    config_overrides: str = "{}"  # JSON of the preset fields the description replaces

    def film_format(self) -> FilmFormat:
        base = super().film_format()
        return dataclasses.replace(base, grid=TemporalGrid(stride=self.temporal_stride, first_alone=True), vocabulary=None)


@dataclass(frozen=True)
class WanModelSpec:
    """A parsed model description; paths are absolute, nothing has been opened yet."""

    path: Path
    name: str
    preset: str
    config_overrides: tuple[tuple[str, Any], ...]
    transformer: Path
    checkpoint_key: str
    lora: Path | None
    lora_alpha: float | None
    text_encoder: Path
    tokenizer: Path
    vae: Path
    text_encoder_dtype: str
    text_encoder_device: str
    steps: int
    shift: float
    chunk_frames: int
    width: int
    height: int
    fps: int
    sampler: str
    guidance: float

    def transformer_config(self) -> TransformerConfig:
        return preset(self.preset, **dict(self.config_overrides))

    def card(self) -> WanModelCard:
        return WanModelCard(
            name=self.name, preset=self.preset, width=self.width, height=self.height, fps=self.fps,
            chunk_frames=self.chunk_frames, steps=self.steps, shift=self.shift, sampler=self.sampler,
            guidance=self.guidance, temporal_stride=4, spatial_stride=8,
            text_layers=0, vocabulary=(), model_file=str(self.path),
            config_overrides=json.dumps(dict(self.config_overrides), sort_keys=True, default=list),
        )

    def film_format(self) -> FilmFormat:
        return self.card().film_format()

    def files(self) -> tuple[tuple[str, Path], ...]:
        """(role, path) of every file the model needs, in load order."""
        out = [("transformer", self.transformer)]
        if self.lora is not None:
            out.append(("lora", self.lora))
        out += [("text_encoder", self.text_encoder), ("tokenizer", self.tokenizer), ("vae", self.vae)]
        return tuple(out)

    def fingerprint(self) -> str:
        """An id for state folders: the description plus each file's path, size and mtime.

        Hashing the bytes would read ~16 GB (umT5-XXL, transformer, VAE) before every render;
        size and modification time catch a replaced file at no cost.
        """
        h = hashlib.sha256(self.path.read_bytes())
        for role, p in self.files():
            st = p.stat()
            h.update(f"{role}\0{p}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            if p.is_dir():
                for child in sorted(p.iterdir()):
                    cs = child.stat()
                    h.update(f"{child.name}\0{cs.st_size}\0{cs.st_mtime_ns}\0".encode())
        return "wan-files-" + h.hexdigest()


def is_model_file(ref: str) -> bool:
    """Whether `film.model` names a model description (a YAML path) rather than a built-in model."""
    return ref.lower().endswith(MODEL_FILE_SUFFIXES)


def resolve_model_file(ref: str, script_dir: Path) -> Path:
    p = Path(ref).expanduser()
    return p if p.is_absolute() else (script_dir / p)


def read_model_file(path: Path) -> WanModelSpec:
    """Parse and check a model description; every problem names the file and the key."""
    import yaml

    path = Path(path).resolve()
    if not path.is_file():
        raise ModelFileError(f"{path}: model description not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: a model description is a mapping of keys (transformer, vae, ...)")
    return parse_model_file(data, path)


def parse_model_file(data: Mapping[str, Any], path: Path) -> WanModelSpec:
    _refuse_unknown(data, TOP_KEYS, path, "")
    base = path.parent

    def req_path(key: str) -> Path:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ModelFileError(f"{path}: '{key}' is required: the local path of the {key.replace('_', ' ')}")
        return _abs(value, base)

    name = _typed(data, "name", str, path, path.stem)
    preset_name = _typed(data, "preset", str, path, "wan2.1-t2v-1.3b")
    if preset_name not in PRESETS:
        raise ModelFileError(f"{path}: preset: unknown preset {preset_name!r}; known: {', '.join(sorted(PRESETS))}")
    overrides = _config_overrides(data.get("config"), path)
    try:
        preset(preset_name, **dict(overrides))
    except (AssertionError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: config: {exc}") from None
    key = _typed(data, "checkpoint_key", str, path, "auto")
    if key not in CHECKPOINT_KEYS:
        raise ModelFileError(f"{path}: checkpoint_key: {key!r} is not one of {', '.join(CHECKPOINT_KEYS)}")
    lora = data.get("lora")
    if lora is not None and not isinstance(lora, str):
        raise ModelFileError(f"{path}: lora: expected a path or nothing")
    alpha = data.get("lora_alpha")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0):
        raise ModelFileError(f"{path}: lora_alpha: expected a positive number (default: the LoRA's rank)")
    if alpha is not None and lora is None:
        raise ModelFileError(f"{path}: lora_alpha is set but no lora is named")
    dtype = _typed(data, "text_encoder_dtype", str, path, "bfloat16")
    if dtype not in TEXT_DTYPES:
        raise ModelFileError(f"{path}: text_encoder_dtype: {dtype!r} is not one of {', '.join(TEXT_DTYPES)}")
    device = _typed(data, "text_encoder_device", str, path, "render")
    if device not in TEXT_DEVICES:
        raise ModelFileError(f"{path}: text_encoder_device: {device!r} is not one of {', '.join(TEXT_DEVICES)}")
    sampling = _sampling(data.get("sampling"), path)
    return WanModelSpec(
        path=path, name=name, preset=preset_name, config_overrides=overrides,
        transformer=req_path("transformer"), checkpoint_key=key,
        lora=_abs(lora, base) if lora else None, lora_alpha=float(alpha) if alpha is not None else None,
        text_encoder=req_path("text_encoder"), tokenizer=req_path("tokenizer"), vae=req_path("vae"),
        text_encoder_dtype=dtype, text_encoder_device=device, **sampling,
    )


def _abs(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _refuse_unknown(data: Mapping[str, Any], known: tuple[str, ...], path: Path, where: str) -> None:
    for key in data:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(known)}"
            raise ModelFileError(f"{path}: {where}{key}: unknown key{hint}")


def _typed(data: Mapping[str, Any], key: str, kind: type, path: Path, default: Any) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelFileError(f"{path}: {key}: expected {kind.__name__}, got {value!r}")
    return value


def _config_overrides(node: Any, path: Path) -> tuple[tuple[str, Any], ...]:
    """Preset fields to replace (tests shrink the 1.3B shape this way; real models need none)."""
    if node is None:
        return ()
    if not isinstance(node, dict):
        raise ModelFileError(f"{path}: config: expected a mapping of transformer settings")
    fields = tuple(f.name for f in dataclasses.fields(TransformerConfig))
    _refuse_unknown(node, fields, path, "config.")
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in node.items()))


def _sampling(node: Any, path: Path) -> dict[str, Any]:
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise ModelFileError(f"{path}: sampling: expected a mapping (steps, shift, chunk_frames, width, height, fps)")
    _refuse_unknown(node, SAMPLING_KEYS, path, "sampling.")
    out = {**SAMPLING_DEFAULTS, **node}
    for key in ("steps", "chunk_frames", "width", "height", "fps"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ModelFileError(f"{path}: sampling.{key}: expected a positive whole number, got {v!r}")
    for key in ("shift", "guidance"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ModelFileError(f"{path}: sampling.{key}: expected a positive number, got {v!r}")
        out[key] = float(v)
    if out["sampler"] not in ("few-step", "ode"):
        raise ModelFileError(f"{path}: sampling.sampler: 'few-step' or 'ode', not {out['sampler']!r}")
    for key in ("width", "height"):
        if out[key] % 16:
            raise ModelFileError(f"{path}: sampling.{key}: {out[key]} is not a multiple of 16 (VAE stride 8 × patch 2)")
    return out
