"""8-bit weights for the transformer's linear layers (`--quantize int8`, `film.quantize`).

What is quantized: every linear layer inside the blocks (self- and cross-attention q/k/v/o, the
two feed-forward layers), which hold ~all of a Wan-shaped model's parameters. What is not: the
patch, text and time embeddings, the time projection, the modulation tables, the norms and the
head. They are small, and errors there reach every token of every layer (modulation, time) or
the output directly (head), so 8 bits would cost quality for almost no memory.

Two back ends, one stored form (int8 codes + one float32 scale per output channel, absmax/127):

* CUDA: bitsandbytes `Linear8bitLt(has_fp16_weights=False, threshold=0)`, which quantizes on the
  move to the GPU and runs int8 matmuls: weights take 1 byte per parameter in VRAM.
* CPU: `Int8Linear` below. bitsandbytes' CPU int8 path is slower than a dense matmul and passes
  activations through float16 (large activations overflow to inf), so the CPU keeps the codes
  and scales as the module's state and computes with a dense copy of the weight, dequantized
  once on the first forward in the working dtype. Dequantizing per forward instead was measured
  at 1.6-2x the time of the dense matmul for the default model's layer shapes (2304 tokens × 256
  → 256/1024 on this machine's CPU) and no faster for 1536-wide layers; on a CPU memory is not
  what int8 is for, while identical frames on every machine are. The cached copy is not part of
  the state dict: saving writes the int8 form only.

The quantization is part of the model's identity: `quantized_weights_id` extends the weights id
that the state manifest records, so a resume refuses a state rendered with other quantization.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

QuantizeMode = Literal["none", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")
QUANT_FORMAT = "cinecli-transformer-int8-v1"
# Tag appended to a weights id; bump it if the scheme (rounding, scale layout, scope) changes.
INT8_TAG = "w8-absmax-per-channel-v1"
# Linear layers inside a block that are quantized (names relative to the block).
BLOCK_LINEARS: tuple[str, ...] = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
    "ffn.0", "ffn.2",
)


class QuantizeError(ValueError):
    """A quantization request or a quantized file that cannot be honoured."""


def check_mode(mode: str) -> QuantizeMode:
    """`mode` if it is a known quantization, else a QuantizeError naming the choices."""
    if mode not in QUANTIZE_MODES:
        raise QuantizeError(f"unknown quantization {mode!r}: use one of {', '.join(QUANTIZE_MODES)}")
    return mode  # type: ignore[return-value]


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """[out, in] weight → int8 codes [out, in] and float32 scales [out] (absmax per output channel).

    Per output channel because a Wan layer's rows differ in range by orders of magnitude; one
    scale per tensor would spend most codes of the small rows on nothing.
    """
    if weight.dim() != 2:
        raise QuantizeError(f"expected a 2-d linear weight, got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return codes, scale


def dequantize_weight(codes: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """int8 codes [out, in] × scales [out] → a dense weight in `dtype` (computed in float32)."""
    return (codes.float() * scale.float()[:, None]).to(dtype)


class Int8Linear(nn.Module):
    """A linear layer whose state is int8 codes + per-channel scales (+ a full-precision bias).

    The forward runs a dense matmul with the dequantized weight, cached per (device, dtype) and
    dropped whenever the module is moved (see the module docstring for why not per forward).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._dense: Tensor | None = None

    @staticmethod
    def from_linear(linear: nn.Linear) -> "Int8Linear":
        """Quantize a full-precision linear layer (its bias is kept as is)."""
        q = Int8Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        codes, scale = quantize_weight(linear.weight)
        q.weight_int8.copy_(codes)
        q.weight_scale.copy_(scale)
        if linear.bias is not None:
            assert q.bias is not None
            q.bias.data = linear.bias.detach().clone()
        return q.to(linear.weight.device)

    @property
    def weight(self) -> Tensor:
        """The dequantized weight in the bias's dtype (code that reads `.weight.dtype` keeps working)."""
        dtype = self.bias.dtype if self.bias is not None else torch.float32
        return self._dense_weight(dtype)

    def _dense_weight(self, dtype: torch.dtype) -> Tensor:
        d = self._dense
        if d is None or d.dtype != dtype or d.device != self.weight_int8.device:
            d = dequantize_weight(self.weight_int8, self.weight_scale, dtype)
            self._dense = d
        return d

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        # Scales stay float32 whatever working dtype the model is moved to: a bf16 scale would
        # shift every channel by up to 0.4%, the same error 8-bit codes were chosen to avoid.
        scale = self.weight_scale
        super()._apply(fn, recurse)
        self.weight_scale = scale.to(self.weight_int8.device)
        self._dense = None
        return self

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._dense = None  # new codes: the cached dense copy is stale
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self._dense_weight(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def quantized_paths(model: nn.Module) -> list[str]:
    """Dotted names of the linear layers that int8 replaces, in block order."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise QuantizeError("model has no `blocks`: only Wan-shaped transformers are quantized")
    return [f"blocks.{i}.{name}" for i in range(len(blocks)) for name in BLOCK_LINEARS]


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, leaf = path.rpartition(".")
    return model.get_submodule(parent_path), leaf


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, leaf = _parent(model, path)
    if isinstance(parent, nn.Sequential):
        parent[int(leaf)] = module
    else:
        setattr(parent, leaf, module)


def is_quantized(model: nn.Module) -> bool:
    """True when the block linears already hold 8-bit weights (either back end)."""
    first = model.get_submodule(quantized_paths(model)[0])
    return type(first) is not nn.Linear


def quantize_cpu(model: nn.Module) -> nn.Module:
    """Replace the block linears with `Int8Linear` in place (weights quantized from their current values)."""
    for path in quantized_paths(model):
        lin = model.get_submodule(path)
        if not isinstance(lin, nn.Linear):
            raise QuantizeError(f"{path} is a {type(lin).__name__}, not a full-precision nn.Linear: already quantized?")
        _replace(model, path, Int8Linear.from_linear(lin))
    return model


def quiet_bitsandbytes():  # type: ignore[no-untyped-def]
    """Import bitsandbytes without its warning about an optional package (it is noise in a CLI)."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise QuantizeError("--quantize int8 on CUDA needs bitsandbytes: pip install bitsandbytes") from err
    return bnb


def quantize_cuda(model: nn.Module) -> nn.Module:
    """Replace the block linears with bitsandbytes `Linear8bitLt`; they quantize on the move to CUDA.

    The model must still be on the CPU in full precision: bitsandbytes quantizes when its
    parameters first move to a CUDA device (`ModelBundle.to` does that next). Layers already in
    `Int8Linear` form (a saved quantized model) are handed over through their dequantized
    weight, which bitsandbytes maps back to the same codes (its row absmax is 127 × our scale).
    """
    bnb = quiet_bitsandbytes()
    for path in quantized_paths(model):
        lin = model.get_submodule(path)
        if isinstance(lin, Int8Linear):
            weight, bias = dequantize_weight(lin.weight_int8, lin.weight_scale), lin.bias
        elif isinstance(lin, nn.Linear):
            weight, bias = lin.weight.detach().float(), lin.bias
        else:
            raise QuantizeError(f"{path} is a {type(lin).__name__}: cannot quantize it for CUDA")
        if weight.device.type != "cpu":
            raise QuantizeError("quantize for CUDA before moving the model to the GPU (bitsandbytes quantizes on that move)")
        q = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=bias is not None,
                                has_fp16_weights=False, threshold=0.0)
        q.weight = bnb.nn.Int8Params(weight.contiguous(), requires_grad=False, has_fp16_weights=False)
        if bias is not None:
            q.bias = nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        _replace(model, path, q)
    return model


def quantize_model(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """Apply `mode` to a full-precision model that is still on the CPU; the back end follows `device`."""
    if check_mode(mode) == "none":
        return model
    return quantize_cuda(model) if device.type == "cuda" else quantize_cpu(model) if not is_quantized(model) else model


def quantized_weights_id(weights_id: str, mode: str) -> str:
    """The weights id with the quantization in it: states of other quantization never match."""
    return weights_id if check_mode(mode) == "none" else f"{weights_id}+int8:{INT8_TAG}"


# -- files ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizedFileInfo:
    """What a quantized transformer file says about itself (safetensors metadata)."""

    format: str
    scheme: str
    layers: tuple[str, ...]
    source_weights_id: str


def save_quantized(model: nn.Module, path: Path, *, source_weights_id: str = "") -> Path:
    """Write a CPU-quantized transformer (int8 codes, float32 scales, the rest as held) atomically.

    `source_weights_id` names the full-precision weights the codes came from, so a loaded file
    keeps the same identity as quantizing those weights at load time.
    """
    import os

    from safetensors.torch import save_file

    paths = quantized_paths(model)
    if not all(isinstance(model.get_submodule(p), Int8Linear) for p in paths):
        raise QuantizeError("save_quantized needs a model quantized for the CPU (quantize_cpu)")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": QUANT_FORMAT, "scheme": INT8_TAG, "layers": json.dumps(paths), "source_weights_id": source_weights_id}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_quantized_info(path: Path) -> QuantizedFileInfo:
    """The metadata of a quantized file, or a QuantizeError saying what it is instead."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != QUANT_FORMAT:
        raise QuantizeError(f"{path}: not a quantized transformer (format {meta.get('format')!r}, expected {QUANT_FORMAT!r})")
    if meta.get("scheme") != INT8_TAG:
        raise QuantizeError(f"{path}: quantization scheme {meta.get('scheme')!r}; this version reads {INT8_TAG!r}")
    return QuantizedFileInfo(meta["format"], meta["scheme"], tuple(json.loads(meta["layers"])), meta.get("source_weights_id", ""))


def load_quantized(model: nn.Module, path: Path) -> QuantizedFileInfo:
    """Load a file written by `save_quantized` into a model of the same shape (strict, exact).

    The model is converted to the `Int8Linear` layout first (its current weights are discarded),
    then every key must be present with its stored shape and dtype.
    """
    from safetensors.torch import load_file

    info = read_quantized_info(path)
    if list(info.layers) != quantized_paths(model):
        raise QuantizeError(f"{path}: quantized layers do not match this model's ({len(info.layers)} in the file)")
    if not is_quantized(model):
        quantize_cpu(model)
    tensors = load_file(str(path))
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or extra:
        raise QuantizeError(f"{path}: keys do not match: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in tensors.items():
        if v.shape != own[k].shape or v.dtype != own[k].dtype:
            raise QuantizeError(f"{path}: {k} is {v.dtype} {tuple(v.shape)}, expected {own[k].dtype} {tuple(own[k].shape)}")
    model.load_state_dict(tensors)
    return info
