"""Where a self-attention layer gets its keys from.

The transformer never decides how the past is seen: it hands its fresh, un-rotated q/k/v to an
`AttentionSource`, which returns rotated queries, the full key/value set and an optional mask.
Two sources exist: `SequenceAttention` (a whole clip in one pass with a block-causal mask, for
training and reference checks) and `memory.active.ChunkAttention` (one chunk against the KV
memory bank, for generation). Keeping this out of `forward()` means the forward pass has one
mode and never guesses what to do from which arguments it got.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from cinecli.model.rope import RopeTables, apply_rope, cos_sin


class AttentionSource(Protocol):
    def prepare(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Map this pass's q/k/v [B, N, H, D] to (rotated q, rotated keys, values, boolean mask or None)."""
        ...


def block_causal_mask(chunk_of_frame: Tensor, noisy: Tensor, tokens_per_frame: int) -> Tensor:
    """Token-level mask [N, N] (True = may attend) for a clip of frames grouped in chunks.

    A clean frame sees clean frames of its own and earlier chunks. A noisy frame (the packed
    teacher-forcing layout, where each chunk appears once clean and once noisy) sees clean frames
    of strictly earlier chunks and the noisy frames of its own chunk: exactly what chunk-by-chunk
    generation shows it, with the memory holding the clean past.
    """
    ci = chunk_of_frame[:, None]
    cj = chunk_of_frame[None, :]
    ni = noisy[:, None]
    nj = noisy[None, :]
    clean_key = ~nj & ((cj < ci) | ((cj == ci) & ~ni))
    noisy_key = nj & ni & (cj == ci)
    frame_mask = clean_key | noisy_key
    return frame_mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


class SequenceAttention:
    """A whole clip in one pass: block-causal mask, true temporal positions."""

    def __init__(
        self,
        *,
        frame_positions: Tensor,
        chunk_of_frame: Tensor,
        noisy: Tensor,
        rows: int,
        cols: int,
        rope: RopeTables,
        dtype: torch.dtype,
    ) -> None:
        tokens = rows * cols
        self.cos, self.sin = cos_sin(rope.frame_angles(frame_positions, rows, cols), dtype)
        self.mask = block_causal_mask(chunk_of_frame, noisy, tokens).to(frame_positions.device)

    @staticmethod
    def causal(frames: int, chunk_frames: int, rows: int, cols: int, rope: RopeTables, dtype: torch.dtype, device: torch.device) -> "SequenceAttention":
        """Plain block-causal layout: frame i belongs to chunk i // chunk_frames, all clean."""
        pos = torch.arange(frames, device=device)
        return SequenceAttention(
            frame_positions=pos, chunk_of_frame=pos // chunk_frames, noisy=torch.zeros(frames, dtype=torch.bool, device=device),
            rows=rows, cols=cols, rope=rope, dtype=dtype,
        )

    @staticmethod
    def packed(frames: int, chunk_frames: int, rows: int, cols: int, rope: RopeTables, dtype: torch.dtype, device: torch.device) -> "SequenceAttention":
        """Teacher forcing: the clean clip followed by the noisy clip, both at the same positions."""
        pos = torch.arange(frames, device=device)
        return SequenceAttention(
            frame_positions=torch.cat([pos, pos]),
            chunk_of_frame=torch.cat([pos // chunk_frames, pos // chunk_frames]),
            noisy=torch.cat([torch.zeros(frames, dtype=torch.bool), torch.ones(frames, dtype=torch.bool)]).to(device),
            rows=rows, cols=cols, rope=rope, dtype=dtype,
        )

    @staticmethod
    def next_chunk(past: int, frames: int, chunk_frames: int, rows: int, cols: int, rope: RopeTables, dtype: torch.dtype, device: torch.device) -> "SequenceAttention":
        """`past` clean frames followed by one noisy chunk: a step of generation in one pass,
        for rolling out a model's own film during training without a memory bank."""
        pos = torch.arange(past + frames, device=device)
        return SequenceAttention(
            frame_positions=pos, chunk_of_frame=pos // chunk_frames,
            noisy=torch.cat([torch.zeros(past, dtype=torch.bool), torch.ones(frames, dtype=torch.bool)]).to(device),
            rows=rows, cols=cols, rope=rope, dtype=dtype,
        )

    def prepare(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        return apply_rope(q, self.cos, self.sin), apply_rope(k, self.cos, self.sin), v, self.mask
