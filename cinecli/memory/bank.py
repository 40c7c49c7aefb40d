"""The KV memory bank: the film's past, one entry per latent frame and layer.

Keys are stored *before* rotary embedding, so any frame can be placed at any temporal position
when an active set is assembled. Each frame also gets a descriptor (its mean key per head),
computed once when the frame is written; content-aware routing scores frames by it without
touching the full keys. Bookkeeping is plain Python ints: nothing here syncs the device.

Storage can live off the compute device (pinned CPU memory) so that only the active set is
gathered onto the GPU, and can be 8-bit (per token and head absmax), dequantized on gather.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BankSpec:
    """Shape and placement of a memory bank."""

    num_layers: int
    batch: int
    tokens_per_frame: int
    num_heads: int
    head_dim: int
    dtype: torch.dtype = torch.float32  # working precision of gathered keys/values
    device: torch.device = torch.device("cpu")  # where attention runs
    storage: str = "native"  # "native" (dtype) or "int8"
    offload: bool = False  # keep history in (pinned) CPU memory instead of on `device`
    hold_offloaded: bool = False  # with offload: hold every layer's gathered active set for the chunk (memory.active)
    capacity: int = 0  # frames to allocate up front (a film's length is known from its plan); 0 = grow


    @property
    def storage_device(self) -> torch.device:
        return torch.device("cpu") if self.offload else self.device

    def bytes_per_frame(self) -> int:
        """Bytes of stored history one latent frame costs across all layers (K and V)."""
        elems = self.batch * self.tokens_per_frame * self.num_heads * self.head_dim
        if self.storage == "int8":
            scale = self.batch * self.tokens_per_frame * self.num_heads * 4
            per_layer = 2 * (elems + scale)
        else:
            per_layer = 2 * elems * torch.empty(0, dtype=self.dtype).element_size()
        return self.num_layers * per_layer


def quantize_int8(x: Tensor) -> tuple[Tensor, Tensor]:
    """Absmax int8 per token and head (last dim): keys have outlier channels per head, not per frame."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-8) / 127.0
    q = torch.round(x.float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale.squeeze(-1)


def dequantize_int8(q: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
    return (q.float() * scale.unsqueeze(-1)).to(dtype)


class HostPins:
    """Host tensors page-locked at their exact size, unlocked when let go.

    `torch.empty(..., pin_memory=True)` goes through PyTorch's caching host allocator, which
    rounds every block up to the next power of two: a 2.9 GB layer of a long film's history
    locks 4 GB, and the offloaded history of a film can take nearly twice the host memory it
    holds. Plain memory registered with cudaHostRegister locks exactly what is used, and copies
    from and to it run asynchronously as from any pinned memory.
    """

    def __init__(self) -> None:
        self._held: dict[int, Tensor] = {}

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        t = torch.empty(shape, dtype=dtype)
        nbytes = t.numel() * t.element_size()
        if nbytes:
            err = int(torch.cuda.cudart().cudaHostRegister(t.data_ptr(), nbytes, 0))
            if err != 0:
                raise RuntimeError(f"could not page-lock {nbytes / 2**30:.1f} GiB of host memory for history (CUDA error {err})")
            self._held[t.data_ptr()] = t
        return t

    def release(self, t: Tensor | None) -> None:
        """Unlock `t` (after the copies that read or write it have finished)."""
        if t is not None and self._held.pop(t.data_ptr(), None) is not None:
            torch.cuda.cudart().cudaHostUnregister(t.data_ptr())

    def close(self) -> None:
        for t in list(self._held.values()):
            self.release(t)


class _LayerStore:
    """Growable [B, capacity, S, H, D] storage for one layer (doubling, so appends are amortised O(1))."""

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self.capacity = 0
        self._pins: HostPins | None = None
        if spec.offload and torch.cuda.is_available():
            self._pins = HostPins()
            weakref.finalize(self, self._pins.close)
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.k_scale: Tensor | None = None
        self.v_scale: Tensor | None = None
        self.desc: Tensor | None = None  # [B, capacity, H, D] float32 on the compute device

    def _alloc(self, capacity: int) -> None:
        s = self.spec
        shape = (s.batch, capacity, s.tokens_per_frame, s.num_heads, s.head_dim)
        pins = self._pins  # set when history is page-locked host memory
        if pins is not None and s.device.type == "cuda":
            torch.cuda.synchronize(s.device)  # asynchronous copies into the old pinned storage must land first
        dtype = torch.int8 if s.storage == "int8" else s.dtype

        def grow(old: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, pins: HostPins | None) -> Tensor:
            new = pins.empty(shape, dtype) if pins is not None else torch.empty(shape, dtype=dtype, device=device)
            if old is not None:
                new[:, : old.shape[1]] = old
                if pins is not None:
                    pins.release(old)
            return new

        self.k = grow(self.k, shape, dtype, s.storage_device, pins)
        self.v = grow(self.v, shape, dtype, s.storage_device, pins)
        if s.storage == "int8":
            self.k_scale = grow(self.k_scale, shape[:-1], torch.float32, s.storage_device, pins)
            self.v_scale = grow(self.v_scale, shape[:-1], torch.float32, s.storage_device, pins)
        # descriptors live on the compute device
        self.desc = grow(self.desc, (s.batch, capacity, s.num_heads, s.head_dim), torch.float32, s.device, None)
        self.capacity = capacity

    def write(self, start: int, k: Tensor, v: Tensor) -> None:
        """Write frames [start, start+f) from k, v [B, f, S, H, D] (un-rotated)."""
        f = k.shape[1]
        if start + f > self.capacity:
            # one allocation when the film's length is known; otherwise double (each growth
            # briefly holds old and new storage, which is what runs a long film out of memory)
            self._alloc(max(2 * self.capacity, start + f, 16, self.spec.capacity))
        assert self.k is not None and self.v is not None and self.desc is not None
        # copy_ into the slot (not `slot = t.to(...)`): a device-to-pinned-host copy then runs
        # asynchronously straight into the storage, with nothing read on the host before it lands
        if self.spec.storage == "int8":
            assert self.k_scale is not None and self.v_scale is not None
            kq, ks = quantize_int8(k)
            vq, vs = quantize_int8(v)
            self.k[:, start : start + f].copy_(kq, non_blocking=True)
            self.v[:, start : start + f].copy_(vq, non_blocking=True)
            self.k_scale[:, start : start + f].copy_(ks, non_blocking=True)
            self.v_scale[:, start : start + f].copy_(vs, non_blocking=True)
        else:
            self.k[:, start : start + f].copy_(k, non_blocking=True)
            self.v[:, start : start + f].copy_(v, non_blocking=True)
        self.desc[:, start : start + f] = k.float().mean(dim=2)

    def gather(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Keys/values of the given frames ([B, n] long, on the compute device) → [B, n, S, H, D].

        `index_select` per batch row along the frame axis: a contiguous block copy per frame,
        several times faster on a GPU than advanced indexing's generic element-wise gather.
        """
        assert self.k is not None and self.v is not None
        s = self.spec
        idx = frames.to(s.storage_device)

        def pick(t: Tensor) -> Tensor:
            out = torch.empty((idx.shape[0], idx.shape[1]) + tuple(t.shape[2:]), dtype=t.dtype, device=t.device)
            for b in range(idx.shape[0]):
                torch.index_select(t[b], 0, idx[b], out=out[b])
            return out

        k, v = pick(self.k), pick(self.v)
        if s.storage == "int8":
            assert self.k_scale is not None and self.v_scale is not None
            k = dequantize_int8(k.to(s.device, non_blocking=True), pick(self.k_scale).to(s.device, non_blocking=True), s.dtype)
            v = dequantize_int8(v.to(s.device, non_blocking=True), pick(self.v_scale).to(s.device, non_blocking=True), s.dtype)
            return k, v
        return k.to(s.device, non_blocking=True), v.to(s.device, non_blocking=True)

    def gather_runs(self, frames: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Like `gather`, for host-resident history, from frame indices already on the host.

        Fancy indexing a CPU tensor would first copy the frames into fresh pageable memory and
        then upload that; copying runs of consecutive frames straight from the pinned storage into
        one device buffer moves each byte once and lets the copies run asynchronously.
        """
        assert self.k is not None and self.v is not None
        s = self.spec
        n = len(frames[0])
        parts = [self.k, self.v] + ([self.k_scale, self.v_scale] if s.storage == "int8" else [])
        out = [torch.empty((s.batch, n) + tuple(p.shape[2:]), dtype=p.dtype, device=s.device) for p in parts]  # type: ignore[union-attr]
        for b, row in enumerate(frames):
            for dst, start, length in frame_runs(row):
                for src, buf in zip(parts, out):
                    buf[b, dst : dst + length].copy_(src[b, start : start + length], non_blocking=True)  # type: ignore[index]
        if s.storage == "int8":
            return dequantize_int8(out[0], out[2], s.dtype), dequantize_int8(out[1], out[3], s.dtype)
        return out[0], out[1]


def frame_runs(frames: list[int]) -> list[tuple[int, int, int]]:
    """(position in the active set, first frame, length) of each run of consecutive frames."""
    runs: list[tuple[int, int, int]] = []
    for pos, f in enumerate(frames):
        if runs and runs[-1][1] + runs[-1][2] == f:
            dst, start, length = runs[-1]
            runs[-1] = (dst, start, length + 1)
        else:
            runs.append((pos, f, 1))
    return runs


class MemoryBank:
    """Per-layer history of keys and values, appended one chunk at a time.

    A chunk's keys/values arrive layer by layer during the clean pass (`stage`) and become
    visible only at `commit`, so a pass that fails half way leaves the bank as it was.
    """

    def __init__(self, spec: BankSpec) -> None:
        self.spec = spec
        self.num_frames = 0
        self._layers = [_LayerStore(spec) for _ in range(spec.num_layers)]
        self._staged: set[int] = set()
        self._staged_frames = 0

    def descriptors(self, layer: int) -> Tensor:
        """[B, T, H, D] mean keys of the committed frames (float32, compute device)."""
        store = self._layers[layer]
        if store.desc is None:
            s = self.spec
            return torch.zeros(s.batch, 0, s.num_heads, s.head_dim, device=s.device)
        return store.desc[:, : self.num_frames]

    def gather(self, layer: int, frames: Tensor, host_frames: list[list[int]] | None = None) -> tuple[Tensor, Tensor]:
        """Keys/values of `frames` for one layer; with `host_frames` (the same frames as host ints,
        for history in pinned host memory) they are copied as runs straight from storage."""
        if host_frames is not None:
            return self._layers[layer].gather_runs(host_frames)
        return self._layers[layer].gather(frames)

    def stage(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Write one layer's new frames [B, f, S, H, D] into the slots after the committed ones.

        They are written at once (quantized on the compute device, then copied to the storage
        device), so no second copy of a chunk's keys waits on the GPU for the whole pass; they
        become visible only at `commit`, so a pass that fails half way leaves the history as it
        was (the next pass overwrites the same slots).
        """
        f = k.shape[1]
        if self._staged and f != self._staged_frames:
            raise RuntimeError(f"clean pass staged {self._staged_frames} frames in one layer and {f} in another")
        self._layers[layer].write(self.num_frames, k.detach(), v.detach())
        self._staged.add(layer)
        self._staged_frames = f

    def commit(self) -> int:
        """Make the staged frames part of history; returns how many frames were added."""
        if len(self._staged) != self.spec.num_layers:
            raise RuntimeError(f"clean pass staged {len(self._staged)} of {self.spec.num_layers} layers")
        added = self._staged_frames
        self._staged.clear()
        self.num_frames += added
        return added

    def nbytes(self) -> int:
        """Bytes of history held (committed frames only)."""
        return self.num_frames * self.spec.bytes_per_frame()

    # -- checkpoints ------------------------------------------------------------------------------
    def to_tensors(self, start: int = 0, end: int | None = None) -> dict[str, Tensor]:
        """Committed frames [start, end) as flat named CPU tensors for safetensors.

        A range lets checkpoints append only what a chunk added instead of rewriting history.
        """
        end = self.num_frames if end is None else end
        if self.spec.offload and self.spec.device.type == "cuda":
            torch.cuda.synchronize(self.spec.device)  # device-to-host copies into pinned storage are asynchronous
        if not 0 <= start <= end <= self.num_frames:
            raise ValueError(f"bank frames [{start}, {end}) outside the {self.num_frames} committed frames")
        out: dict[str, Tensor] = {}
        for i, st in enumerate(self._layers):
            if st.k is None:
                continue
            parts = {"k": st.k, "v": st.v, "desc": st.desc, "k_scale": st.k_scale, "v_scale": st.v_scale}
            for name, tensor in parts.items():
                if tensor is not None:
                    out[f"layer{i}.{name}"] = tensor[:, start:end].to("cpu", copy=True).contiguous()
        return out

    def load_tensors(self, tensors: dict[str, Tensor], num_frames: int) -> None:
        """Restore history saved by `to_tensors` (the spec must match the one it was saved with)."""
        self.__init__(self.spec)  # type: ignore[misc]
        if num_frames == 0:
            return
        for i, st in enumerate(self._layers):
            st._alloc(max(num_frames, 16, self.spec.capacity))
            dev = self.spec.storage_device
            st.k[:, :num_frames] = tensors[f"layer{i}.k"].to(dev)  # type: ignore[index]
            st.v[:, :num_frames] = tensors[f"layer{i}.v"].to(dev)  # type: ignore[index]
            st.desc[:, :num_frames] = tensors[f"layer{i}.desc"].to(self.spec.device)  # type: ignore[index]
            if self.spec.storage == "int8":
                st.k_scale[:, :num_frames] = tensors[f"layer{i}.k_scale"].to(dev)  # type: ignore[index]
                st.v_scale[:, :num_frames] = tensors[f"layer{i}.v_scale"].to(dev)  # type: ignore[index]
        self.num_frames = num_frames

    def truncate(self, num_frames: int) -> None:
        """Forget frames from `num_frames` on (re-render from an earlier restore point)."""
        assert 0 <= num_frames <= self.num_frames
        self.num_frames = num_frames
