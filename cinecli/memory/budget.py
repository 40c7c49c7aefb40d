"""A VRAM planner: will this film fit on this card, and with which memory settings?

Estimates are from first principles (shapes × bytes), not from measurements, so they can be made
before a model is loaded on a GPU and for shapes nobody here has run. The terms:

* weights — transformer parameters: 2 bytes each in bf16; with int8, the block linears take
  1 byte per weight + a float32 scale per output channel, the rest stays bf16.
* active KV — what one chunk attends to: budget latent frames × tokens × 2 (K, V) × heads ×
  head_dim × working bytes per layer, gathered for every layer and held for the chunk when the
  history is on the device, for one layer at a time when it is offloaded (gathered per use and
  freed); plus the chunk's own frames for the layer that runs (they go straight to the history).
* history — the whole film's KV bank, on the device unless offloaded to (pinned) CPU memory;
  it grows with the film, so the estimate is for the last chunk. int8 storage: 1 byte per
  element + a float32 scale per token and head.
* activations — one chunk forward, one block at a time: ACTIVATION_FACTOR [tokens × dim] tensors
  (residual, modulated input, q/k/v, rotated q, attention output, fp32 modulation temporaries),
  2 [tokens × ffn_dim] (the FFN hidden before and after GELU), and 3 copies of one layer's
  concatenated active K/V (concatenation, rotation). Attention scores are not counted: on CUDA
  SDPA runs a fused kernel that never materialises them.
* text — cross-attention K/V of every prompt combination the film uses (cached for the render).
* decoder — autoencoder weights + DECODER_FACTOR live copies of its widest feature map for a
  chunk's video frames.
* runtime — CUDA context, cuBLAS workspace and allocator slack: RUNTIME_BYTES, a round figure.

`choose` tries the requested settings first, then gives up quality as little as possible, in
this order: offload the history but hold every layer's active set for the chunk (costs a copy
of the routed frames per chunk), offload it and fetch one layer's active set per use (a copy per
pass: slower, no pixels change either way), store the history in int8 (a small
error in remembered keys), quantize the weights to int8 (an error in every layer).
Steps are cumulative, and a step that saves no VRAM is skipped: once the history is offloaded,
int8 storage only shrinks host memory and transfers (gathered frames are dequantized on the
device), so int8 history is chosen only where the history stays on the device by request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from cinecli.model.config import TransformerConfig

ACTIVATION_FACTOR = 12
DECODER_FACTOR = 3
RUNTIME_BYTES = 512 * 2**20
WORKING_BYTES = 2  # bf16 on the GPU
# The Wan2.1 VAE decoder: ~ 73M parameters, 96 channels at full resolution (its widest map per pixel).
WAN_VAE_DECODER = (73_000_000, 96.0)

WeightFormat = Literal["bf16", "int8"]
HistoryFormat = Literal["native", "int8"]


class BudgetError(ValueError):
    """Nothing the planner may choose fits; the message is a table of the numbers."""


@dataclass(frozen=True)
class Placement:
    """The memory settings the planner chooses between."""

    weights: WeightFormat = "bf16"
    history: HistoryFormat = "native"
    offload_history: bool = False
    hold_active: bool = False  # with offloaded history: every layer's active set held for the chunk

    def label(self) -> str:
        where = ("offloaded, active sets held" if self.hold_active else "offloaded") if self.offload_history else "on device"
        return f"weights {self.weights}, history {self.history} {where}"


@dataclass(frozen=True)
class FilmShape:
    """Everything about a render that sets its memory, independent of the settings chosen."""

    config: TransformerConfig
    latent_height: int
    latent_width: int
    chunk_frames: int
    film_latents: int  # latent frames of the whole film (the history at the last chunk)
    active_budget: int | None  # past frames an active set holds (policy budget); None = all history
    video_width: int
    video_height: int
    temporal_stride: int  # video frames per latent frame
    prompt_sets: int = 1  # distinct prompt combinations of the film's chunks (cached text K/V)
    prompts_per_chunk: int = 1  # most prompts one chunk uses
    decoder_params: int = 0
    decoder_channels_per_pixel: float = 4.0  # widest decoder feature map, elements per output pixel
    text_encoder_bytes: int = 0  # only when the text encoder sits on the device
    working_bytes: int = WORKING_BYTES

    @property
    def tokens_per_frame(self) -> int:
        return self.config.tokens_per_frame(self.latent_height, self.latent_width)

    @property
    def active_frames(self) -> int:
        """Past frames attended at the last chunk: the budget, or the whole history before it."""
        past = max(self.film_latents - self.chunk_frames, 0)
        return past if self.active_budget is None else min(self.active_budget, past)


@dataclass(frozen=True)
class VramEstimate:
    """Estimated peak device bytes of one placement, term by term."""

    placement: Placement
    weights: int
    active_kv: int
    history: int
    activations: int
    text: int
    decoder: int
    runtime: int

    @property
    def total(self) -> int:
        return self.weights + self.active_kv + self.history + self.activations + self.text + self.decoder + self.runtime

    def terms(self) -> tuple[tuple[str, int], ...]:
        return (("weights", self.weights), ("active KV", self.active_kv), ("history", self.history),
                ("activations", self.activations), ("text", self.text), ("decoder", self.decoder),
                ("runtime", self.runtime), ("total", self.total))


def quantized_linear_params(cfg: TransformerConfig) -> tuple[int, int]:
    """(weights, output channels) of the block linears int8 replaces (attention q/k/v/o ×2, FFN)."""
    d, f = cfg.dim, cfg.ffn_dim
    return cfg.num_layers * (8 * d * d + 2 * d * f), cfg.num_layers * (8 * d + f + d)


def weight_bytes(cfg: TransformerConfig, fmt: WeightFormat, working_bytes: int = WORKING_BYTES) -> int:
    """Transformer weights on the device."""
    total = cfg.params()
    if fmt == "bf16":
        return total * working_bytes
    q, channels = quantized_linear_params(cfg)
    return q + 4 * channels + (total - q) * working_bytes


def kv_frame_bytes(cfg: TransformerConfig, tokens_per_frame: int, fmt: HistoryFormat, working_bytes: int) -> int:
    """Bytes one latent frame of K and V costs over all layers (the bank's own arithmetic)."""
    elems = tokens_per_frame * cfg.num_heads * cfg.head_dim
    per_layer = 2 * (elems + 4 * tokens_per_frame * cfg.num_heads) if fmt == "int8" else 2 * elems * working_bytes
    return cfg.num_layers * per_layer


def activation_bytes(shape: FilmShape) -> int:
    """One chunk forward, one block alive at a time (see the module docstring for the factors)."""
    cfg, b = shape.config, shape.working_bytes
    tokens = shape.chunk_frames * shape.tokens_per_frame
    keys = (shape.active_frames + shape.chunk_frames) * shape.tokens_per_frame
    return tokens * (ACTIVATION_FACTOR * cfg.dim + 2 * cfg.ffn_dim) * b + 3 * keys * cfg.dim * b


def text_bytes(shape: FilmShape) -> int:
    """Cached cross-attention K/V of every prompt combination, plus the text encoder if on device."""
    cfg = shape.config
    per_set = cfg.num_layers * 2 * shape.prompts_per_chunk * cfg.text_len * cfg.dim * shape.working_bytes
    return shape.prompt_sets * per_set + shape.text_encoder_bytes


def decoder_bytes(shape: FilmShape) -> int:
    """Decoder weights + its widest feature maps for one chunk of video frames."""
    frames = shape.chunk_frames * shape.temporal_stride
    pixels = shape.video_width * shape.video_height
    maps = int(DECODER_FACTOR * frames * pixels * shape.decoder_channels_per_pixel) * shape.working_bytes
    return shape.decoder_params * shape.working_bytes + maps


def estimate(shape: FilmShape, placement: Placement) -> VramEstimate:
    """Peak device bytes of rendering `shape` with `placement` (at the film's last chunk)."""
    cfg, b = shape.config, shape.working_bytes
    tokens = shape.tokens_per_frame
    frame_all_layers = kv_frame_bytes(cfg, tokens, "native", b)
    held_layers = 1 if placement.offload_history and not placement.hold_active else cfg.num_layers
    active = (shape.active_frames * held_layers + shape.chunk_frames) * frame_all_layers // cfg.num_layers
    history = 0 if placement.offload_history else shape.film_latents * kv_frame_bytes(cfg, tokens, placement.history, b)
    return VramEstimate(
        placement=placement, weights=weight_bytes(cfg, placement.weights, b), active_kv=active, history=history,
        activations=activation_bytes(shape), text=text_bytes(shape), decoder=decoder_bytes(shape), runtime=RUNTIME_BYTES,
    )


def fallbacks(requested: Placement) -> tuple[Placement, ...]:
    """The requested placement, then each cheaper one in order of quality given up (cumulative)."""
    steps = [requested]
    changes = ({"offload_history": True, "hold_active": True}, {"hold_active": False}, {"history": "int8"}, {"weights": "int8"})
    for change in changes:
        nxt = replace(steps[-1], **change)  # type: ignore[arg-type]
        if nxt not in steps:
            steps.append(nxt)
    return tuple(steps)


def choose(shape: FilmShape, requested: Placement, max_bytes: int) -> tuple[VramEstimate, tuple[VramEstimate, ...]]:
    """The first placement in `fallbacks(requested)` that fits `max_bytes`, and every one tried.

    Raises BudgetError with a table of every tried placement's numbers when none fits.
    """
    if max_bytes <= 0:
        raise BudgetError(f"a VRAM limit must be positive, not {max_bytes} bytes")
    tried: list[VramEstimate] = []
    for placement in fallbacks(requested):
        est = estimate(shape, placement)
        if tried and est.total >= tried[-1].total:
            continue  # gives up quality for no VRAM (int8 history once it is offloaded): never chosen
        tried.append(est)
        if est.total <= max_bytes:
            return est, tuple(tried)
    raise BudgetError(f"the film does not fit in {format_bytes(max_bytes)} of VRAM with any memory setting "
                      f"(estimates, largest terms first to cut: shorter chunks, lower resolution, a smaller "
                      f"memory budget):\n{table(tried, max_bytes)}")


_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'8GB', '7.5GiB', '6000MB', '123' (bytes) → bytes.

    GB means GiB here: a card sold as "8 GB" has 8 GiB, and nvidia-smi reports MiB.
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise BudgetError(f"cannot read {text!r} as a memory size: use e.g. 8GB, 7.5GiB or 6000MB")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value <= 0:
        raise BudgetError(f"a memory size must be positive, not {text!r}")
    return int(value)


def format_bytes(n: int) -> str:
    """Bytes in GiB (or MiB below one GiB), for tables and messages."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def table(estimates: tuple[VramEstimate, ...] | list[VramEstimate], max_bytes: int | None = None) -> str:
    """A plain-text table: one column per placement, one row per term."""
    heads = [e.placement.label() for e in estimates]
    rows = [[name] + [format_bytes(dict(e.terms())[name]) for e in estimates] for name, _ in estimates[0].terms()]
    if max_bytes is not None:
        rows.append(["limit"] + [format_bytes(max_bytes)] * len(estimates))
        rows.append(["fits"] + ["yes" if e.total <= max_bytes else "no" for e in estimates])
    widths = [max(len(r[i]) for r in [["term"] + heads] + rows) for i in range(len(heads) + 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(["term"] + heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
