"""A Wan2.1-shaped video diffusion transformer, made causal by its attention source.

Parameter names match the Wan2.1 release exactly (patch_embedding, text_embedding.0/.2,
time_embedding.0/.2, time_projection.1, blocks.N.{self_attn,cross_attn}.{q,k,v,o,norm_q,norm_k},
blocks.N.norm3, blocks.N.ffn.0/.2, blocks.N.modulation, head.head, head.modulation), so a real
checkpoint loads strictly by name. Two departures, both needed for films: timesteps are per latent
frame ([B, F]), and each frame cross-attends only to the prompt of its own shot or event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cinecli.model.attention import AttentionSource
from cinecli.model.config import TransformerConfig
from cinecli.model.rope import RopeTables, apply_rope


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Wan's timestep embedding: [cos | sin] of t against geometric frequencies (float32)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, device=t.device, dtype=torch.float64) / half)
    args = torch.outer(t.reshape(-1).double(), freqs)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).float()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the working precision (bf16 norms drift)."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


@dataclass(frozen=True)
class TextContext:
    """Per-layer cross-attention keys/values of a set of prompts: computed once per prompt set."""

    keys: tuple[Tensor, ...]  # per layer [B, P, L, H, D]
    values: tuple[Tensor, ...]


class Projections(nn.Module):
    """q/k/v/o projections with RMS-normed queries and keys: Wan's attention parameter layout."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)


class SelfAttention(Projections):
    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, N, dim] → q, k (RMS-normed), v [B, N, H, D]: no memory involved, static shapes."""
        b, n, _ = x.shape
        heads = (b, n, self.num_heads, -1)
        return self.norm_q(self.q(x)).view(heads), self.norm_k(self.k(x)).view(heads), self.v(x).view(heads)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, layer: int, source: AttentionSource) -> Tensor:
        """Attention over the active set `source` assembles → [B, N, dim] (before the output projection)."""
        b, n = q.shape[:2]
        q, k_all, v_all, mask = source.prepare(layer, q, k, v)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k_all.transpose(1, 2), v_all.transpose(1, 2), attn_mask=mask
        )
        return out.transpose(1, 2).reshape(b, n, -1)


class CrossAttention(Projections):
    """Each latent frame attends to the prompt tokens of its own shot or event only."""

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """[B, P, L, dim] embedded prompts → keys, values [B, P, L, H, D]."""
        shape = (*context.shape[:3], self.num_heads, -1)
        flat = context.flatten(0, 1)  # [B*P, L, dim]: int8 matmul kernels take 2-d or 3-d inputs only
        return self.norm_k(self.k(flat)).view(shape), self.v(flat).view(shape)

    def forward(self, x: Tensor, frames: int, keys: Tensor, values: Tensor, frame_prompt: Tensor) -> Tensor:
        b, n, dim = x.shape
        s = n // frames
        q = self.norm_q(self.q(x)).view(b * frames, s, self.num_heads, -1)
        rows = torch.arange(b, device=x.device)[:, None]
        k = keys[rows, frame_prompt].flatten(0, 1)  # [B*F, L, H, D]
        v = values[rows, frame_prompt].flatten(0, 1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o(out.transpose(1, 2).reshape(b, n, dim))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(d, cfg.num_heads, cfg.eps)
        self.norm3 = LayerNorm(d, eps=cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(d, cfg.num_heads, cfg.eps)
        self.norm2 = LayerNorm(d, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d**0.5)

    def modulation_terms(self, e: Tensor) -> tuple[Tensor, ...]:
        """shift, scale, gate (attention) and shift, scale, gate (FFN), each [B, F, 1, dim] float32."""
        mod = self.modulation.unsqueeze(0).float() + e.float()  # [B, F, 6, dim]
        return tuple(m.unsqueeze(2) for m in mod.unbind(2))

    def pre_attention(self, x: Tensor, mod: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """Modulated norm and q/k/v projections of the chunk's tokens.

        Split from the attention so it can be compiled on its own: its shapes are the chunk's
        (constant for a whole film), while the attention's depend on the active set.
        """
        b, n, d = x.shape
        frames = mod[0].shape[1]
        shift1, scale1 = mod[0], mod[1]
        h = (self.norm1(x).view(b, frames, n // frames, d).float() * (1 + scale1) + shift1).to(x.dtype).view(b, n, d)
        return self.self_attn.project(h)

    def post_attention(self, x: Tensor, attn: Tensor, mod: tuple[Tensor, ...], text_k: Tensor, text_v: Tensor, frame_prompt: Tensor) -> Tensor:
        """Output projection and gated residual, cross-attention to each frame's prompt, modulated FFN."""
        b, n, d = x.shape
        frames = mod[0].shape[1]
        gate1, shift2, scale2, gate2 = mod[2:]

        def per_frame(h: Tensor) -> Tensor:
            return h.view(b, frames, n // frames, d)

        x = x + (per_frame(self.self_attn.o(attn)).float() * gate1).to(x.dtype).view(b, n, d)
        x = x + self.cross_attn(self.norm3(x), frames, text_k, text_v, frame_prompt)
        h = (per_frame(self.norm2(x)).float() * (1 + scale2) + shift2).to(x.dtype).view(b, n, d)
        y = self.ffn(h)
        return x + (per_frame(y).float() * gate2).to(x.dtype).view(b, n, d)

    def write_memory(self, x: Tensor, e: Tensor, layer: int, source: AttentionSource) -> None:
        """Only this layer's keys/values, handed to `source` (which stages them when it writes).

        For the last block of a pass that only fills memory: nothing reads its output, so its
        attention, cross-attention and feed-forward are skipped.
        """
        q, k, v = self.pre_attention(x, self.modulation_terms(e))
        source.prepare(layer, q, k, v)

    def forward(
        self, x: Tensor, e: Tensor, layer: int, source: AttentionSource,
        text_k: Tensor, text_v: Tensor, frame_prompt: Tensor,
    ) -> Tensor:
        """x [B, F*S, dim]; e [B, F, 6, dim] per-frame modulation from the timestep."""
        mod = self.modulation_terms(e)
        q, k, v = self.pre_attention(x, mod)
        attn = self.self_attn.attend(q, k, v, layer, source)  # causal through `source`: memory, routing
        return self.post_attention(x, attn, mod, text_k, text_v, frame_prompt)


class Head(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        out = cfg.out_channels * math.prod(cfg.patch_size)
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x [B, F*S, dim]; e [B, F, dim] (the timestep embedding, before projection)."""
        b, n, d = x.shape
        frames = e.shape[1]
        mod = self.modulation.unsqueeze(0).float() + e.float().unsqueeze(2)  # [B, F, 2, dim]
        shift, scale = mod[:, :, 0:1], mod[:, :, 1:2]
        h = (self.norm(x).view(b, frames, n // frames, d).float() * (1 + scale) + shift).to(x.dtype)
        return self.head(h.view(b, n, d))


class WanTransformer(nn.Module):
    """Predicts the flow-matching velocity (noise − clean) of a run of latent frames."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        if cfg.cut_embedding:
            self.cut_embedding = nn.Embedding(2, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = RopeTables.build(cfg.rope_dims, cfg.rope_max_positions, cfg.rope_theta)
        self.rotate = apply_rope  # how attention sources rotate keys and queries (compiled by `compile_blocks`)

    def compile_blocks(self) -> "WanTransformer":
        """Compile each block's memory-free parts (`pre_attention`, `post_attention`) and the
        rotary embedding of queries and keys (`rotate`) in place.

        The attention in between stays eager: routing, the gather from the memory bank and the
        active set's size change between chunks, while the compiled parts only ever see the
        chunk's tokens, so one compilation serves every layer, step and chunk of a film.
        """
        # eager, a rotation is about ten float32 passes over its tensor; compiled, one. Its shapes
        # change while a film's active set fills up, so it may compile for dynamic shapes.
        self.rotate = torch.compile(apply_rope)
        for block in self.blocks:
            block.pre_attention = torch.compile(block.pre_attention, dynamic=False)  # type: ignore[method-assign]
            block.post_attention = torch.compile(block.post_attention, dynamic=False)  # type: ignore[method-assign]
        return self

    # -- pieces the generator calls separately -------------------------------------------------
    def encode_text(self, prompts: Tensor) -> TextContext:
        """Prompt embeddings [B, P, L, text_dim] → per-layer cross-attention K/V.

        Done once per set of prompts and reused for every step of every chunk that uses them:
        for the 1.3B shape this saves 30 layers × 2 projections of 512 tokens per forward.
        """
        ctx = self.text_embedding(prompts)
        kv = [blk.cross_attn.context_kv(ctx) for blk in self.blocks]
        return TextContext(tuple(k for k, _ in kv), tuple(v for _, v in kv))

    def token_grid(self, latents: Tensor) -> tuple[int, int]:
        return self.config.grid(latents.shape[-2], latents.shape[-1])

    def forward(
        self,
        latents: Tensor,
        timesteps: Tensor,
        text: TextContext,
        frame_prompt: Tensor,
        source: AttentionSource,
        cut: Tensor | None = None,
        *,
        skip_head: bool = False,
    ) -> Tensor | None:
        """Velocity for `latents` [B, C, F, H, W] at per-frame timesteps [B, F] (σ·1000).

        `frame_prompt` [B, F] indexes the prompts of `text`; `cut` [B, F] flags frames that follow
        a hard cut (used only by models trained with a cut embedding). `skip_head` is for the
        clean pass that only writes keys and values into memory.
        """
        cfg = self.config
        b, _, frames, height, width = latents.shape
        rows, cols = self.token_grid(latents)
        x = self.patch_embedding(latents.to(self.patch_embedding.weight.dtype))  # [B, dim, F, rows, cols]
        x = x.flatten(2).transpose(1, 2)  # [B, F*rows*cols, dim], frame-major then row-major

        e = self.time_embedding(sinusoidal_embedding(timesteps, cfg.freq_dim).to(x.dtype)).view(b, frames, -1)
        if cfg.cut_embedding:
            flags = cut if cut is not None else torch.zeros(b, frames, dtype=torch.long, device=x.device)
            e = e + self.cut_embedding(flags.long())
        e6 = self.time_projection(e).view(b, frames, 6, cfg.dim)

        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            if skip_head and layer == last:
                block.write_memory(x, e6, layer, source)
                return None
            x = block(x, e6, layer, source, text.keys[layer], text.values[layer], frame_prompt)
        out = self.head(x, e)  # [B, F*rows*cols, C*ph*pw]
        return self.unpatchify(out, frames, rows, cols)

    def unpatchify(self, x: Tensor, frames: int, rows: int, cols: int) -> Tensor:
        _, ph, pw = self.config.patch_size
        c = self.config.out_channels
        b = x.shape[0]
        x = x.view(b, frames, rows, cols, ph, pw, c)
        return x.permute(0, 6, 1, 2, 4, 3, 5).reshape(b, c, frames, rows * ph, cols * pw)
