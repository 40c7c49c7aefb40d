"""A generator's own draws of a clip's latents, for training a decoder on what it will decode.

The decoder learns from the encoder's latents, where the fine detail says where in a latent
frame's four video frames its motion lies. A few-step generator never draws that detail right:
given its latents, a decoder that only ever saw the encoder's holds a latent frame's frames still
and jumps at the next, and the cut detector reads the jump as a cut (most invented cuts are such
bursts inside pans, zooms and growing characters). Gaussian noise on the latents
(`AETrainConfig.latent_noise`) hides the detail; a redraw replaces it with the generator's own.

A redraw noises the clip's latents to one of the generator's last sampling levels and lets the
generator finish its steps from there, each chunk conditioned on the clip's clean past, its
prompts and cut flags, as rendering conditions it. From the last levels the layout stays the
clip's (where things are at each latent frame), so the clip's own frames remain the decoder's
target; the texture and the motion inside a latent frame are the generator's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from cinecli.model.card import ModelCard
from cinecli.model.text import WordTextEncoder
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.schedule import StepSchedule, add_noise, predict_x0
from cinecli.train.base import encode_prompts, frozen_generator, packed_layout, packed_velocity


@dataclass
class Redrawer:
    """A frozen generator and the sampling schedule it renders with."""

    transformer: WanTransformer
    text: WordTextEncoder
    levels: list[float]  # the generator's noise levels, 1 → 0 (`StepSchedule.sigmas`)
    chunk_frames: int

    @property
    def steps(self) -> int:
        return len(self.levels) - 1


def load_redrawer(path: Path | str, card: ModelCard, device: torch.device) -> Redrawer:
    """The generator at `path` (a student's safetensors) of the card's shape, frozen on `device`."""
    transformer, text = frozen_generator(card, path, device)
    return Redrawer(transformer, text, StepSchedule(card.steps, card.shift).sigmas().tolist(), card.chunk_frames)


@torch.no_grad()
def redrawn_latents(redrawer: Redrawer, z: Tensor, prompts: list[tuple[str, ...]], cuts: Tensor, start: int, gen: torch.Generator) -> Tensor:
    """The generator's draw of normalised latents `z` [B, C, F, H, W] from its level `start` on.

    `start` indexes the generator's levels (`steps - 1`: its last step only). Every chunk is
    redrawn from the same level against the clip's clean past (the packed layout of training),
    so the result is what rendering would write had it reached that level near the clip.
    `prompts` [B][F] and `cuts` [B, F] condition each latent frame as in a render.
    """
    if not 0 <= start < redrawer.steps:
        raise ValueError(f"start must index one of the generator's {redrawer.steps} steps, got {start}")
    model, levels = redrawer.transformer, redrawer.levels
    b, f = z.shape[0], z.shape[2]
    ctx = encode_prompts(redrawer.text, model, prompts, 0.0, gen)
    src = packed_layout(model, z, redrawer.chunk_frames)
    cuts = cuts.to(z.device)
    x = add_noise(z, torch.randn(z.shape, generator=gen).to(z), levels[start])
    for i in range(start, redrawer.steps):
        sigma = torch.full((b, f), levels[i], device=z.device)
        x0 = predict_x0(x.float(), packed_velocity(model, z, x, sigma, ctx, cuts, src), levels[i])
        if i + 1 < redrawer.steps:
            x = add_noise(x0, torch.randn(z.shape, generator=gen).to(x0), levels[i + 1]).to(z)
    return x0.to(z.dtype)
