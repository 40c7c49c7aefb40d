"""Streaming decode of each chunk to pixels, overlapped with the chunk's clean pass on a GPU.

A chunk's latents are final before the generator's clean pass (the pass that only writes the
chunk's keys and values into memory), and the decoder does not need that pass. On CUDA the decode
is therefore launched on a side stream as soon as the latents exist, and runs while the clean
pass runs on the main stream; `result()` waits for it. The decoder state (its causal caches) only
ever lives on the side stream, so chunk order is kept. Elsewhere, or with `overlap=False`,
`submit` decodes at once: the same pixels, in the same order.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

import torch
from torch import Tensor

State = TypeVar("State")


class ChunkDecoder(Generic[State]):
    """Decodes chunks one after another through `decode(latents, state) → (video, state)`."""

    def __init__(self, decode: Callable[[Tensor, State], tuple[Tensor, State]], state: State, device: torch.device, *, overlap: bool = True) -> None:
        self.decode = decode
        self.state = state
        self.stream = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None
        self._video: Tensor | None = None

    def submit(self, latents: Tensor) -> None:
        """Start decoding a chunk's final latents (they must not change until `result`)."""
        if self.stream is None:
            self._video, self.state = self.decode(latents, self.state)
            return
        self.stream.wait_stream(torch.cuda.current_stream(latents.device))  # the latents are written on the main stream
        with torch.cuda.stream(self.stream), torch.no_grad():
            latents.record_stream(self.stream)  # the allocator must not hand its memory out before the decode has read it
            self._video, self.state = self.decode(latents, self.state)

    def result(self) -> Tensor:
        """The decoded video of the last submitted chunk, safe to read on the main stream."""
        if self._video is None:
            raise RuntimeError("result() before submit()")
        video, self._video = self._video, None
        if self.stream is not None:
            torch.cuda.current_stream(video.device).wait_stream(self.stream)
            video.record_stream(torch.cuda.current_stream(video.device))
        return video
