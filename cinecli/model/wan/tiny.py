"""Tiny random Wan-shaped model folders: the real file layouts at a size a CPU test renders in seconds.

No real weights can be fetched where cinecli's tests run, so the loaders are exercised on files
that have the public checkpoints' layouts and key names (every block of the 1.3B key set if
asked) but tiny widths and random values. The films they render are noise; what they prove is
that every file is found, read strictly, and wired into a render the way the real ones are.

Layouts written by `write_checkpoint`:
* `self-forcing`: a `.pt` dict {generator, generator_ema}, keys prefixed `model.`;
* `causvid`: a `.pt` dict {generator}, keys prefixed `model.`;
* `fsdp`: like CausVid with `_fsdp_wrapped_module.` inside the names;
* `longlive`: a `.pt` {generator} base plus a separate PEFT LoRA file {generator_lora};
* `safetensors`: plain Wan names in a safetensors file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from cinecli.model.config import preset

TINY_CONFIG: Mapping[str, Any] = {
    "dim": 24, "num_layers": 2, "num_heads": 2, "ffn_dim": 48, "text_dim": 32, "freq_dim": 32, "text_len": 16,
}
TINY_WORDS = (
    "a the of and in on at to with from wide shot close up lighthouse harbour keeper boat sea night "
    "day walks runs turns looks storm rain sun waves camera slowly quickly red blue old young man woman"
).split()
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")


def random_transformer_state(overrides: Mapping[str, Any] = TINY_CONFIG, seed: int = 0) -> dict[str, Tensor]:
    """Wan-named weights of a random WanTransformer of the 1.3B preset with `overrides` applied."""
    from cinecli.model.transformer import WanTransformer

    torch.manual_seed(seed)
    model = WanTransformer(preset("wan2.1-t2v-1.3b", **dict(overrides)))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def random_lora(state: Mapping[str, Tensor], rank: int = 4, seed: int = 1) -> dict[str, Tensor]:
    """A PEFT-named LoRA over every linear layer of every block (as LongLive targets them)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    layers = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
    for i in layers:
        for target in LORA_TARGETS:
            w = state[f"blocks.{i}.{target}.weight"]
            out[f"base_model.model.blocks.{i}.{target}.lora_A.weight"] = torch.randn(rank, w.shape[1], generator=g) * 0.1
            out[f"base_model.model.blocks.{i}.{target}.lora_B.weight"] = torch.randn(w.shape[0], rank, generator=g) * 0.1
    return out


def write_checkpoint(state: Mapping[str, Tensor], path: Path, layout: str, *, lora: Mapping[str, Tensor] | None = None,
                     lora_path: Path | None = None) -> None:
    """Write `state` (Wan names) in one of the public layouts (see the module docstring)."""
    path = Path(path)
    prefixed = {f"model.{k}": v for k, v in state.items()}
    if layout == "self-forcing":
        ema = {k: v + 0.01 for k, v in prefixed.items()}  # EMA differs: the loader must pick it
        torch.save({"generator": prefixed, "generator_ema": ema}, path)
    elif layout == "causvid":
        torch.save({"generator": prefixed}, path)
    elif layout == "fsdp":
        wrapped = {re.sub(r"^model\.(blocks\.\d+\.)?", lambda m: "model._fsdp_wrapped_module." + (m.group(1) or "")
                          + ("_fsdp_wrapped_module." if m.group(1) else ""), k): v for k, v in prefixed.items()}
        torch.save({"generator": wrapped}, path)
    elif layout == "longlive":
        if lora is None or lora_path is None:
            raise ValueError("the longlive layout needs a LoRA and its path")
        torch.save({"generator": prefixed}, path)
        torch.save({"generator_lora": dict(lora)}, lora_path)
    elif layout == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        raise ValueError(f"unknown layout {layout!r}")


def write_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer with T5's special ids (pad 0, </s> 1, unk 2), saved by transformers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TINY_WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def write_umt5(folder: Path, *, d_model: int = 32, seed: int = 0) -> Path:
    """A random two-layer umT5 encoder saved with save_pretrained (config.json + safetensors)."""
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=len(TINY_WORDS) + 3, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2,
                        num_heads=4, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
                        dense_act_fn="gelu_new", is_encoder_decoder=False, use_cache=False)
    UMT5EncoderModel(config).save_pretrained(str(folder))
    return folder


def write_vae(path: Path, *, dim: int = 8, seed: int = 0) -> Path:
    """A random Wan2.1-layout VAE decoder as a `.pth` state dict, with a stand-in encoder key."""
    from cinecli.model.wan.vae import WanVAE, WanVAEConfig

    torch.manual_seed(seed)
    model = WanVAE(WanVAEConfig(dim=dim))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["encoder.conv1.weight"] = torch.zeros(dim, 3, 3, 3, 3)  # the real file's encoder: skipped
    state["conv1.weight"] = torch.zeros(32, 32, 1, 1, 1)
    torch.save(state, path)
    return path


def write_tiny_model(folder: Path, *, layout: str = "self-forcing", width: int = 32, height: int = 32, fps: int = 16,
                     seed: int = 0) -> Path:
    """A complete tiny model folder and its description YAML; returns the YAML's path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    state = random_transformer_state(TINY_CONFIG, seed)
    ckpt = folder / ("transformer.safetensors" if layout == "safetensors" else "transformer.pt")
    description: dict[str, Any] = {"name": "tiny-wan", "preset": "wan2.1-t2v-1.3b", "config": dict(TINY_CONFIG),
                                   "transformer": ckpt.name}
    if layout == "longlive":
        write_checkpoint(state, ckpt, layout, lora=random_lora(state), lora_path=folder / "lora.pt")
        description["lora"] = "lora.pt"
    else:
        write_checkpoint(state, ckpt, layout)
    write_umt5(folder / "text_encoder", d_model=int(TINY_CONFIG["text_dim"]), seed=seed)
    write_tokenizer(folder / "tokenizer")
    write_vae(folder / "Wan2.1_VAE.pth", seed=seed)
    description.update({"text_encoder": "text_encoder", "tokenizer": "tokenizer", "vae": "Wan2.1_VAE.pth",
                        "text_encoder_dtype": "float32",
                        "sampling": {"steps": 2, "width": width, "height": height, "fps": fps}})
    path = folder / "tiny-wan.yaml"
    path.write_text(yaml.safe_dump(description, sort_keys=False), encoding="utf-8")
    return path
