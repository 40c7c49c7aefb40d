"""The umT5-XXL text encoder of Wan2.1, through `transformers`, behind cinecli's TextEncoder protocol.

Wan feeds its transformer 512 token embeddings per prompt: the tokenizer pads to 512, the encoder
runs with the attention mask, and every position past the prompt's own tokens is set to zero.
`encode` returns exactly that, as float32 on the CPU ([P, 512, 4096]); the director encodes each
distinct prompt once and caches it, so this 5.7B-parameter encoder runs a handful of times per film.

Its weights stay on the CPU between prompts. With `text_encoder_device: render` (the default) a
prompt is encoded on the render device and the encoder goes straight back to the CPU, so the
GPU holds it only for the seconds an encoding takes; `cpu` never moves it.

Two weight layouts load:
* a transformers folder (config.json + safetensors, e.g. the Diffusers release's `text_encoder/`);
* Wan's own `models_t5_umt5-xxl-enc-bf16.pth` (what the public causal checkpoints are set up
  with), renamed here to transformers' names, with the shape read off the tensors.
Either way the load is strict: every parameter present with its shape, nothing left over.
Prompt text is cleaned as Wan does (HTML entities unescaped, runs of whitespace collapsed);
Wan also runs `ftfy` to repair mis-decoded text, which a prompt typed in a screenplay never needs.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from cinecli.model.loading import WeightsError, check_strict, pick_state_dict, read_file
from cinecli.model.wan.names import rename

INSTALL_HINT = 'pip install "cinecli[wan]"'
MAX_DISTANCE = 128  # umT5's relative-attention reach (not stored in the weights)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class MissingExtra(ImportError):
    """A package of the optional `wan` extra is not installed; the message says how to get it."""


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise MissingExtra(f"the umT5 text encoder needs the 'transformers' package: {INSTALL_HINT}") from None
    return transformers


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning, less ftfy: unescape HTML entities, collapse whitespace."""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


# Wan's umT5 checkpoint names → transformers' UMT5EncoderModel names.
T5_RULES: tuple[tuple[str, str], ...] = (
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$", r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
)


def wan_t5_key(key: str) -> str:
    """A key of Wan's umT5 checkpoint → the transformers UMT5EncoderModel name."""
    return rename(key, T5_RULES)


def umt5_config_from_state(state: dict[str, Tensor], path: Path) -> dict[str, Any]:
    """UMT5Config fields read off transformers-named tensors (umT5-XXL: 4096 wide, 24 layers, 64 heads)."""
    try:
        vocab, d_model = state["shared.weight"].shape
        buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
        d_ff = state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]
        inner = state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]
    except KeyError as exc:
        raise WeightsError(f"{path}: not an umT5 encoder: no key {exc.args[0]!r}") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"encoder\.block\.(\d+)\.", k)))
    return dict(
        vocab_size=int(vocab), d_model=int(d_model), d_kv=int(inner) // int(heads), d_ff=int(d_ff),
        num_layers=layers, num_heads=int(heads), relative_attention_num_buckets=int(buckets),
        relative_attention_max_distance=MAX_DISTANCE, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new",
        layer_norm_epsilon=1e-6, is_encoder_decoder=False, use_cache=False,
    )


def load_umt5_file(path: Path, dtype: torch.dtype) -> Any:
    """A UMT5EncoderModel from one weights file, in Wan's naming or transformers'."""
    transformers = require_transformers()
    state, _ = pick_state_dict(read_file(path), path, "auto")
    if "token_embedding.weight" in state:
        state = {wan_t5_key(k): v for k, v in state.items()}
    state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))  # tied to shared
    if state["encoder.embed_tokens.weight"] is None:
        raise WeightsError(f"{path}: not an umT5 encoder: no token embedding")
    config = transformers.UMT5Config(**umt5_config_from_state(state, path))
    with torch.device("meta"):
        model = transformers.UMT5EncoderModel(config)
    check_strict({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, path)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.encoder.embed_tokens = model.shared
    return model


def load_umt5_folder(folder: Path, dtype: torch.dtype) -> Any:
    """A UMT5EncoderModel saved by transformers (config.json + weights), refusing partial loads."""
    transformers = require_transformers()
    if not (folder / "config.json").is_file():
        raise WeightsError(f"{folder}: a text encoder folder needs config.json (a transformers save)")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a render's stdout may be JSON lines
    try:
        model, info = transformers.UMT5EncoderModel.from_pretrained(
            str(folder), dtype=dtype, local_files_only=True, output_loading_info=True,
        )
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        found = sorted(info.get(kind) or [])
        if found:
            raise WeightsError(f"{folder}: {kind.replace('_', ' ')}: {found[0]!r}"
                               + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    return model


class UMT5TextEncoder:
    """umT5 encoder + tokenizer: prompts → [P, text_len, d_model], zero beyond each prompt's tokens."""

    def __init__(self, model: Any, tokenizer: Any, *, text_len: int, device_policy: str = "render") -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len
        self.text_dim = int(model.config.d_model)
        self.device_policy = device_policy
        self.run_device = torch.device("cpu")

    def to(self, device: torch.device | str | None = None, **_: Any) -> "UMT5TextEncoder":
        """Where prompts are encoded; the weights themselves stay on the CPU between prompts."""
        if device is not None and self.device_policy == "render":
            self.run_device = torch.device(device)
        return self

    def eval(self) -> "UMT5TextEncoder":
        return self

    def token_ids(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        tok = self.tokenizer(
            [clean_prompt(p) for p in prompts], padding="max_length", truncation=True,
            max_length=self.text_len, add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )
        return tok["input_ids"], tok["attention_mask"]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> Tensor:
        ids, mask = self.token_ids(prompts)
        dev = self.run_device
        moved = dev.type != "cpu"
        if moved:
            self.model.to(dev)
        try:
            hidden = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
            hidden = hidden.float().cpu()
        finally:
            if moved:
                self.model.to("cpu")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        return hidden * mask.unsqueeze(-1).to(hidden.dtype)


def load_text_encoder(weights: Path, tokenizer: Path, *, text_len: int, dtype: str = "bfloat16",
                      device_policy: str = "render") -> UMT5TextEncoder:
    """The encoder named by a model description: a transformers folder or one weights file."""
    transformers = require_transformers()
    weights, tokenizer = Path(weights), Path(tokenizer)
    if not tokenizer.is_dir():
        raise WeightsError(f"{tokenizer}: tokenizer folder not found (Wan2.1 ships it as google/umt5-xxl/)")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    except ImportError as exc:
        raise MissingExtra(f"{tokenizer}: the tokenizer needs a package that is not installed ({exc}): {INSTALL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{tokenizer}: not a readable tokenizer folder ({exc})") from None
    torch_dtype = DTYPES[dtype]
    if weights.is_dir():
        model = load_umt5_folder(weights, torch_dtype)
    elif weights.is_file():
        model = load_umt5_file(weights, torch_dtype)
    else:
        raise WeightsError(f"{weights}: text encoder weights not found (Wan2.1 ships models_t5_umt5-xxl-enc-bf16.pth)")
    return UMT5TextEncoder(model, tok, text_len=text_len, device_policy=device_policy)
