"""Noise levels for flow matching: x_σ = (1 − σ)·x0 + σ·ε, the model predicts v = ε − x0."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def shift_sigma(sigma: Tensor, shift: float) -> Tensor:
    """Spend more of the steps at high noise, where layout is decided (Wan/SD3 shift)."""
    return shift * sigma / (1 + (shift - 1) * sigma)


@dataclass(frozen=True)
class StepSchedule:
    """Decreasing noise levels a chunk is taken through, ending at 0."""

    steps: int = 4
    shift: float = 5.0

    def sigmas(self) -> Tensor:
        """steps+1 levels from 1 to 0 (float64 so that step lists compare exactly)."""
        s = torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64)
        return shift_sigma(s, self.shift)


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """Flow-matching interpolation; sigma broadcasts over [B, C, F, H, W] as [B, 1, F, 1, 1] or scalar."""
    return (1 - sigma) * x0 + sigma * noise


def predict_x0(x: Tensor, velocity: Tensor, sigma: Tensor) -> Tensor:
    return x - sigma * velocity
