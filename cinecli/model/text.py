"""Text encoders: prompt strings → token embeddings [P, L, text_dim], padded with zeros.

The default model's encoder is a small word-level transformer over the procedural world's
closed vocabulary, trained together with the base model (no pretrained encoder can be
downloaded). Zero padding to a fixed length mirrors how Wan2.1 feeds umT5 outputs, so the
transformer treats both encoders alike. Unknown words map to one shared token; the CLI warns
about them before rendering.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor, nn

from cinecli.world.vocabulary import tokenize

PAD, UNK = 0, 1


class TextEncoder(Protocol):
    text_len: int
    text_dim: int

    def encode(self, prompts: Sequence[str]) -> Tensor:
        """[P, text_len, text_dim] embeddings, zero beyond each prompt's tokens."""
        ...


class WordTextEncoder(nn.Module):
    """Word embeddings + a few transformer layers; a vocabulary of a few hundred words."""

    def __init__(self, vocabulary: Sequence[str], *, text_dim: int, text_len: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.vocabulary = list(vocabulary)
        self.index = {w: i + 2 for i, w in enumerate(self.vocabulary)}
        self.text_dim = text_dim
        self.text_len = text_len
        self.token_embedding = nn.Embedding(len(self.vocabulary) + 2, text_dim, padding_idx=PAD)
        self.position_embedding = nn.Parameter(torch.randn(text_len, text_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(text_dim, heads, 4 * text_dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(text_dim)

    def token_ids(self, prompts: Sequence[str]) -> Tensor:
        """[P, text_len] ids; prompts longer than text_len words are cut (the CLI says so)."""
        ids = torch.full((len(prompts), self.text_len), PAD, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = tokenize(prompt)[: self.text_len]
            ids[row, : len(words)] = torch.tensor([self.index.get(w, UNK) for w in words], dtype=torch.long)
        return ids

    def forward(self, ids: Tensor) -> Tensor:
        pad = ids == PAD
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        # an all-padding row (the empty prompt) would give NaN attention; let it see itself
        safe_pad = pad.clone()
        safe_pad[:, 0] = False
        x = self.norm(self.layers(x, src_key_padding_mask=safe_pad))
        return x.masked_fill(pad.unsqueeze(-1), 0.0)

    def encode(self, prompts: Sequence[str]) -> Tensor:
        dev = self.position_embedding.device
        return self.forward(self.token_ids(prompts).to(dev))
