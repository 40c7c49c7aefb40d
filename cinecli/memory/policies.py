"""Memory policies: which past latent frames the next chunk attends to.

All policies answer the same question with the same signature, so the generator, the
benchmarks and the training loop swap them by name. Frame indices come back sorted (temporal
order), which is also the order rotary positions are assigned in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class MemoryPolicy(Protocol):
    name: str
    needs_queries: bool  # whether `select` uses the chunk's queries (routing cost is paid only then)

    def budget(self, chunk_frames: int) -> int | None:
        """Most past frames an active set can hold (None: unbounded)."""
        ...

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor) -> Tensor:
        """Past frames to attend to: [B, n] long, sorted per row.

        `query` is the chunk's mean query [B, H, D] (un-rotated); `descriptors` the bank's
        per-frame mean keys [B, T, H, D].
        """
        ...


def _arange(batch: int, start: int, end: int, device: torch.device) -> Tensor:
    return torch.arange(start, end, device=device).expand(batch, -1)


@dataclass(frozen=True)
class FullPolicy:
    """Every past frame: the reference, whose cost grows with the film."""

    name: str = "full"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return None

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor) -> Tensor:
        return _arange(descriptors.shape[0], 0, num_frames, descriptors.device)


@dataclass(frozen=True)
class NoMemoryPolicy:
    """The current chunk only: what a film looks like with no memory at all."""

    name: str = "none"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return 0

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor) -> Tensor:
        return _arange(descriptors.shape[0], 0, 0, descriptors.device)


@dataclass(frozen=True)
class WindowPolicy:
    """Sink frames plus the most recent chunks: the attention-sink / sliding-window baseline."""

    recent_chunks: int = 3
    sink_frames: int = 0
    name: str = "window"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return self.sink_frames + self.recent_chunks * chunk_frames

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor) -> Tensor:
        b, dev = descriptors.shape[0], descriptors.device
        recent_start = max(0, num_frames - self.recent_chunks * chunk_frames)
        sink_end = min(self.sink_frames, recent_start)
        return torch.cat([_arange(b, 0, sink_end, dev), _arange(b, recent_start, num_frames, dev)], dim=1)


def relevance(query: Tensor, descriptors: Tensor) -> Tensor:
    """Score [B, T] of each past frame: Σ over heads and channels of mean-query · mean-key."""
    return torch.einsum("bhd,bthd->bt", query.float(), descriptors.float())


@dataclass(frozen=True)
class CamrPolicy:
    """Content-Aware Memory Routing: recent chunks + the top-k older frames by relevance.

    A film that cuts back to an earlier scene finds it again because the old frames whose keys
    match the current queries are routed in, while the cost per chunk stays fixed.
    """

    recent_chunks: int = 3
    top_k: int = 5
    sink_frames: int = 0
    name: str = "camr"
    needs_queries: bool = True

    def budget(self, chunk_frames: int) -> int | None:
        return self.sink_frames + self.recent_chunks * chunk_frames + self.top_k

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor) -> Tensor:
        b, dev = descriptors.shape[0], descriptors.device
        recent_start = max(0, num_frames - self.recent_chunks * chunk_frames)
        sink_end = min(self.sink_frames, recent_start)
        recent = _arange(b, recent_start, num_frames, dev)
        sink = _arange(b, 0, sink_end, dev)
        older = recent_start - sink_end  # candidates: frames between sink and window
        if older <= self.top_k:
            routed = _arange(b, sink_end, recent_start, dev)
        else:
            assert query is not None, "camr needs the chunk's queries"
            scores = relevance(query, descriptors[:, sink_end:recent_start])
            routed = scores.topk(self.top_k, dim=1).indices.sort(dim=1).values + sink_end
        return torch.cat([sink, routed, recent], dim=1)


def make_policy(name: str, *, recent_chunks: int = 3, top_k: int = 5, sink_frames: int = 0) -> MemoryPolicy:
    """Policy by the name a screenplay or the CLI uses."""
    if name == "full":
        return FullPolicy()
    if name == "none":
        return NoMemoryPolicy()
    if name == "window":
        return WindowPolicy(recent_chunks=recent_chunks, sink_frames=sink_frames)
    if name == "camr":
        return CamrPolicy(recent_chunks=recent_chunks, top_k=top_k, sink_frames=sink_frames)
    raise ValueError(f"unknown memory policy {name!r}; choose camr, window, full or none")
