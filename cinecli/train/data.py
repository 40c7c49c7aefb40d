"""Multi-shot training batches from the procedural world, at latent-frame granularity.

The world renders clips with per-frame prompts and cut flags; the generator conditions per
*latent* frame, so each latent frame takes the prompt and cut flag of its first video frame
(the world places cuts and events on latent-frame starts). Rendering runs in DataLoader worker
processes so the GPU is not starved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


RECENT_FRAMES = 9  # latent frames of the recent window at inference (3 chunks of 3): returns are judged against it


@dataclass(frozen=True)
class LatentClip:
    video: np.ndarray  # uint8 [T, H, W, 3]
    prompts: tuple[str, ...]  # per latent frame
    cuts: tuple[bool, ...]  # per latent frame: follows a hard cut
    returns: tuple[bool, ...] = ()  # per latent frame: a scene back from beyond the recent window (empty: unknown)
    firsts: tuple[bool, ...] = ()  # per latent frame: a scene seen for the first time, after a cut (empty: unknown)
    characters: np.ndarray | None = None  # bool [F, h, w]: latent cells a character covers (`character_cells`)


def latent_conditioning(prompts: list[str], cuts: list[bool], stride: int) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """Per-latent-frame prompt and cut flag from per-video-frame ones."""
    n = len(prompts) // stride
    lp = tuple(prompts[i * stride] for i in range(n))
    lc = tuple(any(cuts[i * stride : (i + 1) * stride]) for i in range(n))
    return lp, lc


def world_clips(seed: int, frames: int, stride: int, width: int, height: int, fps: int, montage: float = 0.5,
                cell: int = 8) -> Iterator[LatentClip]:
    """`cell`: the autoencoder's spatial stride, the size of a latent cell in pixels."""
    from cinecli.world.dataset import character_cells, clip_scenes, first_sightings, returning, training_clips

    for clip in training_clips(seed, frames=frames, width=width, height=height, fps=fps, montage=montage):
        prompts, cuts = latent_conditioning(list(clip.prompts), [bool(c) for c in clip.cuts], stride)
        scenes = clip_scenes(clip)[::stride][: len(prompts)]
        yield LatentClip(np.ascontiguousarray(clip.frames), prompts, cuts, tuple(returning(scenes, RECENT_FRAMES)), tuple(first_sightings(scenes)),
                         character_cells(clip, stride, cell))


class WorldClips(IterableDataset):
    """Endless world clips; each DataLoader worker draws from its own seed."""

    def __init__(self, seed: int, *, frames: int, stride: int = 4, width: int = 192, height: int = 128, fps: int = 12, montage: float = 0.5) -> None:
        super().__init__()
        self.seed, self.frames, self.stride = seed, frames, stride
        self.width, self.height, self.fps = width, height, fps
        self.montage = montage

    def __iter__(self) -> Iterator[LatentClip]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        yield from world_clips(self.seed * 1000 + worker, self.frames, self.stride, self.width, self.height, self.fps, self.montage)


class FrameWeighting(Protocol):
    """The loss weights a training config (base or distillation) sets per latent frame."""

    return_weight: float
    first_weight: float
    cut_weight: float
    chunk_frames: int


@dataclass(frozen=True)
class Batch:
    video: Tensor  # uint8 [B, T, H, W, 3]
    prompts: list[tuple[str, ...]]  # [B][F]
    cuts: Tensor  # bool [B, F]
    returns: Tensor | None = None  # bool [B, F]: see `LatentClip.returns`
    firsts: Tensor | None = None  # bool [B, F]: see `LatentClip.firsts`
    characters: Tensor | None = None  # bool [B, F, h, w]: see `LatentClip.characters`

    def frame_weights(self, return_weight: float, first_weight: float = 1.0, cut_weight: float = 1.0, cut_span: int = 1) -> Tensor | None:
        """Loss weight per latent frame [B, F]: `return_weight` on returns, `first_weight` on first
        sightings of a scene after a cut, `cut_weight` on the `cut_span` frames from each hard cut
        on (see `after_cuts`), 1 elsewhere (None: all 1)."""
        w = None
        if self.returns is not None and return_weight != 1.0:
            w = 1.0 + (return_weight - 1.0) * self.returns.float()
        if self.firsts is not None and first_weight != 1.0:
            w = (w if w is not None else torch.ones(self.firsts.shape)) + (first_weight - 1.0) * self.firsts.float()
        if cut_weight != 1.0:
            w = (w if w is not None else torch.ones(self.cuts.shape)) + (cut_weight - 1.0) * after_cuts(self.cuts, cut_span).float()
        return w

    def weights_for(self, cfg: FrameWeighting) -> Tensor | None:
        """`frame_weights` as a training config sets them, the cut weight over its first chunk."""
        return self.frame_weights(cfg.return_weight, cfg.first_weight, cfg.cut_weight, cfg.chunk_frames)

    def cell_weights(self, character_weight: float) -> Tensor | None:
        """Loss weight per latent cell [B, F, h, w]: `character_weight` where a character is, 1
        elsewhere (None: all 1, or no character cells known)."""
        if self.characters is None or character_weight == 1.0:
            return None
        return 1.0 + (character_weight - 1.0) * self.characters.float()


def after_cuts(cuts: Tensor, span: int) -> Tensor:
    """bool [B, F]: the `span` latent frames from each hard cut on, the cut's own included.

    Every shot/reverse-shot cut of a dialogue changes the picture less than a cut to a new scene,
    and a model that keeps drawing the last shot there loses the cut: these frames carry it.
    """
    out = cuts.clone()
    for k in range(1, min(span, cuts.shape[1])):
        out[:, k:] |= cuts[:, :-k]
    return out


def collate(clips: list[LatentClip]) -> Batch:
    return Batch(
        video=torch.from_numpy(np.stack([c.video for c in clips])),
        prompts=[c.prompts for c in clips],
        cuts=torch.tensor([c.cuts for c in clips], dtype=torch.bool),
        returns=torch.tensor([c.returns for c in clips], dtype=torch.bool) if all(c.returns for c in clips) else None,
        firsts=torch.tensor([c.firsts for c in clips], dtype=torch.bool) if all(c.firsts for c in clips) else None,
        characters=torch.from_numpy(np.stack([c.characters for c in clips])) if all(c.characters is not None for c in clips) else None,
    )


def batches(seed: int, *, batch: int, frames: int, workers: int, stride: int = 4, montage: float = 0.5) -> Iterator[Batch]:
    """Endless batches of world clips; a share `montage` of them revisit scenes (see `training_clips`)."""
    ds = WorldClips(seed, frames=frames, stride=stride, montage=montage)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate, persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None)
    yield from loader


def video_to_model(video: Tensor, device: torch.device) -> Tensor:
    """uint8 [B, T, H, W, 3] → float [B, 3, T, H, W] in [-1, 1] on `device`."""
    return video.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def frame_mse(pred: Tensor, target: Tensor, cells: Tensor | None = None) -> Tensor:
    """Squared error of [B, C, F, H, W] tensors, averaged per latent frame → [B, F].

    `cells` [B, F, H, W] weighs each latent cell (`Batch.cell_weights`); the mean stays over all
    cells, so a frame with weighted cells counts more than one without.
    """
    err = (pred.float() - target.float()).pow(2).mean(dim=1)
    if cells is not None:
        err = err * cells.to(err.device)
    return err.mean(dim=(2, 3))


def weighted_mean(per_frame: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of per-frame errors [B, F] with a weight per frame (None: plain mean).

    Returns are a few percent of all frames and their telling detail a few percent of their
    pixels; weighting them up is what makes bringing a scene back from memory worth learning.
    """
    if weights is None:
        return per_frame.mean()
    w = weights.to(per_frame.device)
    return (per_frame * w).sum() / w.sum()


def weighted_mse(pred: Tensor, target: Tensor, weights: Tensor | None, cells: Tensor | None = None) -> Tensor:
    """MSE of [B, C, F, H, W] tensors with a weight per latent frame [B, F] and per latent cell
    [B, F, H, W] (None: unweighted)."""
    return weighted_mean(frame_mse(pred, target, cells), weights)
