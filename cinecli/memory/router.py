"""A trained routing head: CAMR's relevance scored in a small learned space, per layer.

Why it exists: CAMR routes once per chunk, at the first denoising step, when the chunk is pure
noise and its queries carry little more than its prompt. The raw relevance (mean query · mean
key) then finds a returning scene barely above chance on long films (docs/DEFAULT_MODEL_EVAL.md):
nothing in the generator's training asks those two means to agree, only the attention inside the
active set. With the world's truth choosing the routed frames instead, the same model and budget
brought the hidden details of returns back more than twice as well; routing was the bottleneck.

The head maps a layer's normalised mean query and frame descriptors into a rank-r space where
their dot product ranks the past frames that show the chunk's setting and characters first
(`cinecli train router` fits it on world films, teacher-forced). It reads only what CAMR already
reads (the chunk's mean query and the bank's per-frame descriptors), so routing keeps its fixed
cost per chunk, and the bank and its checkpoints are unchanged. A model without a head (the
default model, a Wan checkpoint) routes by attention mass (`cinecli.memory.policies.attention_mass`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

ROUTER_FORMAT = "cinecli-router-v1"


class RoutingHead(nn.Module):
    """Per-layer low-rank bilinear relevance between a chunk's mean query and past descriptors."""

    def __init__(self, num_layers: int, num_heads: int, head_dim: int, rank: int) -> None:
        super().__init__()
        width = num_heads * head_dim
        self.query_proj = nn.Parameter(torch.zeros(num_layers, width, rank))
        self.key_proj = nn.Parameter(torch.zeros(num_layers, width, rank))
        # feature statistics of the model the head was fitted on: queries and keys differ in scale
        # by orders of magnitude between layers, and their shared mean says nothing about content
        for name in ("query_mean", "key_mean"):
            self.register_buffer(name, torch.zeros(num_layers, width))
        for name in ("query_scale", "key_scale"):
            self.register_buffer(name, torch.ones(num_layers, width))

    @property
    def num_layers(self) -> int:
        return self.query_proj.shape[0]

    def embed_queries(self, query: Tensor, layer: int | None = None) -> Tensor:
        """Mean queries [..., W] of `layer` → [..., r]; of every layer, [..., L, W] → [..., L, r] (layer None)."""
        return self._embed(query, self.query_mean, self.query_scale, self.query_proj, layer)

    def embed_keys(self, descriptors: Tensor, layer: int | None = None) -> Tensor:
        """Frame descriptors [..., W] of `layer` → [..., r]; of every layer, [..., L, W] → [..., L, r]."""
        return self._embed(descriptors, self.key_mean, self.key_scale, self.key_proj, layer)

    @staticmethod
    def _embed(x: Tensor, mean: Tensor, scale: Tensor, proj: Tensor, layer: int | None) -> Tensor:
        if layer is not None:
            return ((x.float() - mean[layer]) / scale[layer]) @ proj[layer]
        return torch.einsum("...lw,lwr->...lr", (x.float() - mean) / scale, proj)

    def scores(self, layer: int, query: Tensor, descriptors: Tensor) -> Tensor:
        """Score [B, T] of each past frame for one chunk: query [B, H, D], descriptors [B, T, H, D]."""
        q = self.embed_queries(query.flatten(1), layer)  # [B, r]
        k = self.embed_keys(descriptors.flatten(2), layer)  # [B, T, r]
        return torch.einsum("br,btr->bt", q, k)


def save_router(head: RoutingHead, path: Path) -> None:
    """The head as safetensors, through a temporary file (a crash never leaves half a file)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": ROUTER_FORMAT})
    tmp.replace(path)


def load_router(path: Path, *, num_layers: int, num_heads: int, head_dim: int) -> RoutingHead:
    """A head saved by `save_router`, checked against the generator it routes for."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        fmt = (f.metadata() or {}).get("format")
    if fmt != ROUTER_FORMAT:
        raise ValueError(f"{path}: not a routing head (format {fmt!r}, expected {ROUTER_FORMAT!r})")
    tensors = load_file(str(path))
    proj = tensors.get("query_proj")
    if proj is None or proj.ndim != 3:
        raise ValueError(f"{path}: no query_proj [layers, width, rank] tensor")
    head = RoutingHead(num_layers, num_heads, head_dim, proj.shape[2])
    own = head.state_dict()
    for k, v in tensors.items():
        if k not in own or own[k].shape != v.shape:
            want = tuple(own[k].shape) if k in own else "no such tensor"
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the generator needs {want}")
    head.load_state_dict(tensors)
    return head.eval()
