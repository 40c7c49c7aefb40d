"""Rename tables from the Diffusers layout of Wan2.1 to the original Wan2.1 names cinecli uses.

cinecli's modules carry the original release's parameter names, so a Self-Forcing, CausVid or
LongLive checkpoint loads by name. The same weights are also published in the Diffusers layout
(`WanTransformer3DModel`, `AutoencoderKLWan`); these tables let the strict loaders accept that
layout too, and let the parity tests run Diffusers' implementation on cinecli's weights.
Each table is a list of (pattern, replacement) regular expressions applied in order to one
key; a key no rule matches keeps its name (and the strict loader then names it if unknown).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, TypeVar

T = TypeVar("T")

TRANSFORMER_RULES: tuple[tuple[str, str], ...] = (
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^blocks\.(\d+)\.scale_shift_table$", r"blocks.\1.modulation"),
    (r"^blocks\.(\d+)\.attn1\.to_([qkv])\.", r"blocks.\1.self_attn.\2."),
    (r"^blocks\.(\d+)\.attn1\.to_out\.0\.", r"blocks.\1.self_attn.o."),
    (r"^blocks\.(\d+)\.attn1\.norm_([qk])\.", r"blocks.\1.self_attn.norm_\2."),
    (r"^blocks\.(\d+)\.attn2\.to_([qkv])\.", r"blocks.\1.cross_attn.\2."),
    (r"^blocks\.(\d+)\.attn2\.to_out\.0\.", r"blocks.\1.cross_attn.o."),
    (r"^blocks\.(\d+)\.attn2\.norm_([qk])\.", r"blocks.\1.cross_attn.norm_\2."),
    # Diffusers calls the cross-attention norm norm2 (and the FFN norm norm3); Wan the reverse.
    (r"^blocks\.(\d+)\.norm2\.", r"blocks.\1.norm3."),
    (r"^blocks\.(\d+)\.ffn\.net\.0\.proj\.", r"blocks.\1.ffn.0."),
    (r"^blocks\.(\d+)\.ffn\.net\.2\.", r"blocks.\1.ffn.2."),
)

RESNET_RULES: tuple[tuple[str, str], ...] = (
    (r"\.norm1\.gamma$", ".residual.0.gamma"),
    (r"\.conv1\.(weight|bias)$", r".residual.2.\1"),
    (r"\.norm2\.gamma$", ".residual.3.gamma"),
    (r"\.conv2\.(weight|bias)$", r".residual.6.\1"),
    (r"\.conv_shortcut\.(weight|bias)$", r".shortcut.\1"),
)


def is_diffusers_transformer(keys: Iterable[str]) -> bool:
    return any(k.startswith("condition_embedder.") for k in keys)


def is_diffusers_vae(keys: Iterable[str]) -> bool:
    return any(k.startswith(("post_quant_conv.", "decoder.conv_in.")) for k in keys)


def rename(key: str, rules: Iterable[tuple[str, str]]) -> str:
    """The first matching rule's rewrite of `key` (or `key` unchanged)."""
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def rename_all(state: Mapping[str, T], fn) -> dict[str, T]:  # type: ignore[no-untyped-def]
    out: dict[str, T] = {}
    for k, v in state.items():
        new = fn(k)
        if new in out:
            raise ValueError(f"two keys rename to {new!r} (one of them {k!r})")
        out[new] = v
    return out


def diffusers_transformer_key(key: str) -> str:
    return rename(key, TRANSFORMER_RULES)


def diffusers_vae_key(key: str, res_blocks: int = 2, levels: int = 4) -> str:
    """A Diffusers AutoencoderKLWan decoder key → its name in Wan2.1_VAE.pth.

    Wan's decoder keeps its up path as one flat list: per level `res_blocks + 1` residual blocks,
    then (except after the last level) one resample; Diffusers nests them as up_blocks.L.
    Encoder keys (`encoder.*`, `quant_conv.*`) are renamed to the prefix `encoder.` / `conv1.`
    only as far as the decoder-only loader needs: it skips them.
    """
    if key.startswith("quant_conv."):
        return "conv1." + key[len("quant_conv."):]
    if key.startswith("post_quant_conv."):
        return "conv2." + key[len("post_quant_conv."):]
    if not key.startswith("decoder."):
        return key
    rest = key[len("decoder."):]
    if rest.startswith("conv_in."):
        return "decoder.conv1." + rest[len("conv_in."):]
    if rest.startswith("norm_out."):
        return "decoder.head.0." + rest[len("norm_out."):]
    if rest.startswith("conv_out."):
        return "decoder.head.2." + rest[len("conv_out."):]
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)$", rest)
    if m:
        kind, i, tail = m.group(1), int(m.group(2)), m.group(3)
        index = 1 if kind == "attentions" else (0 if i == 0 else 2)
        out = f"decoder.middle.{index}.{tail}"
        return rename(out, RESNET_RULES) if kind == "resnets" else out
    m = re.match(r"up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*)$", rest)
    if m:
        level, kind, i, tail = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        per_level = res_blocks + 2  # residual blocks + one resample
        flat = level * per_level + (i if kind == "resnets" else res_blocks + 1)
        out = f"decoder.upsamples.{flat}.{tail}"
        return rename(out, RESNET_RULES) if kind == "resnets" else out
    return key
