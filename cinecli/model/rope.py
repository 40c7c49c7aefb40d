"""3-D rotary position embedding (time, height, width), Wan2.1 layout.

The head dimension is split into a time part and two spatial parts; each consecutive pair of
channels is rotated by an angle that depends on one coordinate. Tables are real cos/sin in
float32 (not complex float64): the same function within float32 rounding, and far cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _angles(max_positions: int, dims: int, theta: float) -> Tensor:
    """Angles [max_positions, dims/2] for one axis."""
    inv = 1.0 / (theta ** (torch.arange(0, dims, 2, dtype=torch.float64) / dims))
    return torch.outer(torch.arange(max_positions, dtype=torch.float64), inv)


@dataclass(frozen=True)
class RopeTables:
    """Per-axis angle tables; positions are looked up when the active set is assembled."""

    time: Tensor  # [P, dt/2]
    height: Tensor  # [P, dh/2]
    width: Tensor  # [P, dw/2]

    @staticmethod
    def build(dims: tuple[int, int, int], max_positions: int, theta: float) -> "RopeTables":
        dt, dh, dw = dims
        return RopeTables(_angles(max_positions, dt, theta), _angles(max_positions, dh, theta), _angles(max_positions, dw, theta))

    def frame_angles(self, frame_positions: Tensor, rows: int, cols: int) -> Tensor:
        """Angles [N_frames * rows * cols, head_dim/2] for frames at the given temporal positions.

        Token order inside a frame is row-major, matching the patch embedding's flatten.
        """
        n = frame_positions.numel()
        if n and int(frame_positions.max()) >= self.time.shape[0]:
            raise ValueError(
                f"temporal position {int(frame_positions.max())} exceeds the rotary table "
                f"({self.time.shape[0]} positions); use a bounded memory policy for films this long"
            )
        t = self.time.to(frame_positions.device)[frame_positions]  # [n, dt/2]
        h = self.height[:rows].to(frame_positions.device)  # [rows, dh/2]
        w = self.width[:cols].to(frame_positions.device)  # [cols, dw/2]
        t = t[:, None, None, :].expand(n, rows, cols, -1)
        h = h[None, :, None, :].expand(n, rows, cols, -1)
        w = w[None, None, :, :].expand(n, rows, cols, -1)
        return torch.cat([t, h, w], dim=-1).reshape(n * rows * cols, -1)


def cos_sin(angles: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """cos/sin of the angles, computed in float64 once and stored in the working precision."""
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of x [B, N, H, D] by angles whose cos/sin are [N, D/2]."""
    xf = x.float().unflatten(-1, (-1, 2))  # [B, N, H, D/2, 2]
    a, b = xf[..., 0], xf[..., 1]
    c = cos[None, :, None, :].float()
    s = sin[None, :, None, :].float()
    out = torch.stack([a * c - b * s, a * s + b * c], dim=-1)
    return out.flatten(-2).to(x.dtype)
