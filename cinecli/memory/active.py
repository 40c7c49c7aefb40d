"""The active set of one chunk: routed past frames + the chunk itself, with fresh positions.

Routing is computed once per chunk, at its first denoising step, and held for the remaining
steps and the clean pass. Why: (1) the sampler integrates one velocity field per chunk —
swapping the context between steps would change that field mid-trajectory; (2) the gather of
routed frames from (possibly CPU-resident) history happens once per chunk, not once per step;
(3) the active set keeps a constant shape across the chunk, which static-shape compilation and
CUDA graphs need. Each layer routes on its own queries and keys.

What is held: with history on the device, each layer's gathered keys/values are kept for the
chunk's remaining steps (a re-gather would cost a copy per step for nothing). With history
offloaded to host memory the point is usually a small VRAM peak, so nothing is held: each layer
gathers its routed frames from pinned host memory when it runs and frees them after, and the
device holds one layer's active set at a time instead of every layer's (at the 1.3B shape, 0.14
GB against 4 GB in bf16). Where VRAM allows, `BankSpec.hold_offloaded` holds them as with
history on the device: the routed frames then cross the bus once per chunk instead of once per
pass (docs/BENCHMARKS.md has the time each costs). Routed frame indices are read to the host
once per chunk and layer, so the copies run straight from pinned storage.

Positions: keys are stored un-rotated; the active set is laid out in temporal order (routed
frames, then the recent window, then the chunk) at contiguous positions 0..n-1, so positions
never exceed what training saw however long the film is. With a budget covering the whole
history this is exactly the `full` layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from cinecli.memory.bank import MemoryBank
from cinecli.memory.policies import MemoryPolicy
from cinecli.model.rope import RopeTables, apply_rope, cos_sin


@dataclass
class Routing:
    """Per-layer choice of past frames for one chunk, filled at its first forward and then held."""

    frames: dict[int, Tensor] = field(default_factory=dict)  # layer → [B, n] long
    gathered: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # layer → active-set buffers (k, v) [B, (n+f)*S, H, D]
    rotary: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)  # past frames → (cos, sin), held across steps
    host_frames: dict[int, list[list[int]]] = field(default_factory=dict)  # layer → frames, for offloaded history

    def active_frames(self) -> int:
        """Past frames in the active set (same for every layer by construction)."""
        return next(iter(self.frames.values())).shape[1] if self.frames else 0


class ChunkAttention:
    """AttentionSource for one chunk against the memory bank.

    With `write=True` (the clean pass at t=0) the chunk's own un-rotated keys/values are staged in
    the bank; the caller commits them once the pass is done.
    """

    def __init__(
        self,
        bank: MemoryBank,
        policy: MemoryPolicy,
        routing: Routing,
        *,
        chunk_frames: int,
        rows: int,
        cols: int,
        rope: RopeTables,
        write: bool,
        rotate: Callable[[Tensor, Tensor, Tensor], Tensor] = apply_rope,
        shot_start: int = 0,
        places: Tensor | None = None,
    ) -> None:
        self.bank = bank
        self.policy = policy
        self.routing = routing
        self.chunk_frames = chunk_frames
        self.rows, self.cols = rows, cols
        self.rope = rope
        self.write = write
        self.rotate = rotate  # `apply_rope`, or its compiled form (`WanTransformer.compile_blocks`)
        self.shot_start = shot_start  # first latent frame of the chunk's shot (policies with a shot-bounded window)
        self.places = places  # the screenplay's location per latent frame of the film, or None (see MemoryPolicy.select)

    def _rotary(self, past: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos/sin for `past` memory frames followed by the chunk, positions 0..past+f-1."""
        cache = self.routing.rotary
        if past not in cache:
            pos = torch.arange(past + self.chunk_frames, device=device)
            cache[past] = cos_sin(self.rope.frame_angles(pos, self.rows, self.cols), dtype)
        return cache[past]

    def _route(self, layer: int, q: Tensor) -> Tensor:
        bank, policy = self.bank, self.policy
        if layer not in self.routing.frames:
            query = q if policy.needs_queries else None  # [B, N, H, D], un-rotated
            self.routing.frames[layer] = policy.select(bank.num_frames, self.chunk_frames, query, bank.descriptors(layer), self.shot_start, layer,
                                                        places=self.places)
        return self.routing.frames[layer]

    def _past(self, layer: int, frames: Tensor, dtype: torch.dtype, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
        """This layer's routed keys (rotated to their active-set positions) and values [B, n*S, H, D].

        With offloaded history the frames are copied as runs straight from pinned storage; their
        host indices are read once per chunk and layer.
        """
        host = None
        if self.bank.spec.offload:
            host = self.routing.host_frames.get(layer)
            if host is None:
                host = self.routing.host_frames[layer] = frames.tolist()  # one sync per chunk and layer
        km, vm = self.bank.gather(layer, frames, host)
        return self.rotate(km.flatten(1, 2).to(dtype), cos, sin), vm.flatten(1, 2).to(dtype)

    def _holds(self) -> bool:
        """Whether active sets are held for the chunk's later steps.

        Not with offloaded history unless the bank says so (`hold_offloaded`: the routed frames
        then cross from host memory once per chunk instead of once per pass, for every layer's
        active set in VRAM), nor under autograd (a held buffer written in place at every step
        would change tensors saved for the backward pass).
        """
        spec = self.bank.spec
        return (not spec.offload or spec.hold_offloaded) and not torch.is_grad_enabled()

    def prepare(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Rotated queries, and the active set's keys/values: routed past frames, then the chunk.

        A held active set is one buffer [B, (n + f)*S, H, D] per layer: the routed past is gathered
        and rotated into its head once per chunk (positions are fixed for the chunk), and each
        step writes only the chunk's own keys/values into its tail — no concatenation of the whole
        set per layer and step.
        """
        b, n, h, d = k.shape
        if self.write:
            s = self.rows * self.cols
            self.bank.stage(layer, k.view(b, n // s, s, h, d), v.view(b, n // s, s, h, d))
        frames = self._route(layer, q)
        past = frames.shape[1]
        cos, sin = self._rotary(past, torch.float32, q.device)
        split = past * self.rows * self.cols
        q, k = self.rotate(q, cos[split:], sin[split:]), self.rotate(k, cos[split:], sin[split:])
        if not past:
            return q, k, v, None
        held = self.routing.gathered.get(layer)
        if held is None:
            km, vm = self._past(layer, frames, k.dtype, cos[:split], sin[:split])
            if not self._holds():
                return q, torch.cat([km, k], dim=1), torch.cat([vm, v], dim=1), None
            held = self.routing.gathered[layer] = torch.cat([km, k], dim=1), torch.cat([vm, v], dim=1)
            return q, held[0], held[1], None
        kbuf, vbuf = held
        kbuf[:, split:] = k
        vbuf[:, split:] = v
        return q, kbuf, vbuf, None
