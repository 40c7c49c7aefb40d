"""Does the model use its memory, and does routing help on returns? Teacher-forced, per chunk.

    python benchmarks/memory_use.py --clips 16

World clips of 36 latent frames (12 chunks) go through the model chunk by chunk as in
generation, with the clean past written into the memory bank (teacher forcing). Each noisy
chunk (σ = 0.5, fixed noise) is scored by its flow-matching error under:
  - camr / window / none, with the clip's own past in memory;
  - camr with the past of *another* clip in memory (wrong memory).
Chunks are split into "return" chunks (their scene was on screen earlier in the clip, but not in
the 3 chunks before them: only routing can bring it back) and the rest. If the model uses memory,
its own past must beat a wrong past; if routing helps on returns, camr must beat window there.

Routing precision: on return chunks, the share of the frames CAMR routes from beyond the recent
window that show the chunk's own scene (per layer, then averaged), against chance (the share of
such older frames that show it). Measured with the chunk's queries at σ = 1 (pure noise: where
routing at the first denoising step sees the chunk), σ = 0.5 and σ = 0 (the clean chunk).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import make_policy
from cinecli.model.bundle import load_default, load_generator
from cinecli.model.transformer import TextContext
from cinecli.train.base import encode_prompts
from cinecli.train.data import LatentClip, collate, latent_conditioning, video_to_model
from cinecli.world.dataset import training_clips
from cinecli.world.render import frame_truth

CHUNK, SIGMA, RECENT = 3, 0.5, 3


def chunk_errors(bundle, z: torch.Tensor, ctx: TextContext, cuts: torch.Tensor, memory_z: torch.Tensor, policy: str, noise: torch.Tensor,
                 sigma: float = SIGMA, routed: list[list[list[int]]] | None = None) -> list[float]:
    """Per-chunk MSE of the velocity for `z`, with the clean past of `memory_z` in memory.

    With `routed` given, each chunk appends its per-layer list of routed past frames to it.
    """
    model = bundle.transformer
    cfg = model.config
    _, _, f, h, w = z.shape
    rows, cols = cfg.grid(h, w)
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim, capacity=f))
    pol = make_policy(policy, recent_chunks=RECENT, top_k=5, sink_frames=5 if policy == "window" else 0)
    out = []
    for start in range(0, f, CHUNK):
        sl = slice(start, start + CHUNK)
        fp = torch.arange(sl.start, sl.stop)[None]
        x = (1 - sigma) * z[:, :, sl] + sigma * noise[:, :, sl]
        routing = Routing()
        src = ChunkAttention(bank, pol, routing, chunk_frames=CHUNK, rows=rows, cols=cols, rope=model.rope, write=False)
        v = model(x, torch.full((1, CHUNK), sigma * 1000), ctx, fp, src, cuts[:, sl])
        if routed is not None:
            routed.append([routing.frames[layer][0].tolist() for layer in sorted(routing.frames)] if routing.frames else [])
        out.append(F.mse_loss(v, noise[:, :, sl] - z[:, :, sl]).item())
        write = ChunkAttention(bank, pol, Routing(), chunk_frames=CHUNK, rows=rows, cols=cols, rope=model.rope, write=True)
        model(memory_z[:, :, sl], torch.zeros(1, CHUNK), ctx, fp, write, cuts[:, sl], skip_head=True)
        bank.commit()
    return out


def latent_scenes(clip, frames_per_latent: int) -> list[int]:
    """The world's scene id of each latent frame of the clip."""
    n = clip.frames.shape[0] // frames_per_latent
    return [frame_truth(clip.film, int(clip.film_frames[j * frames_per_latent])).scene_id for j in range(n)]


def return_chunks(clip, frames_per_latent: int) -> list[bool]:
    """Chunks whose scene was seen earlier in the clip but not in the RECENT chunks before."""
    n = clip.frames.shape[0] // (frames_per_latent * CHUNK)
    scenes = [frame_truth(clip.film, int(clip.film_frames[c * CHUNK * frames_per_latent])).scene_id for c in range(n)]
    return [scenes[c] in scenes[: max(0, c - RECENT)] and scenes[c] not in scenes[max(0, c - RECENT) : c] for c in range(n)]


def routing_precision(routed: list[list[int]], chunk: int, scenes: list[int]) -> tuple[float, float] | None:
    """(share of routed older frames showing the chunk's scene, chance share) over layers; None if nothing older."""
    start = chunk * CHUNK
    older = range(0, max(0, start - RECENT * CHUNK))
    if not older or not routed:
        return None
    scene = scenes[start]
    chance = float(np.mean([scenes[j] == scene for j in older]))
    hits = [np.mean([scenes[j] == scene for j in layer if j in older]) for layer in routed if any(j in older for j in layer)]
    return (float(np.mean(hits)) if hits else 0.0), chance


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--montage", type=float, default=1.0, help="share of montage clips (these hold the returns)")
    ap.add_argument("--weights", type=Path, default=None, help="base-model weights to test instead of the shipped ones")
    args = ap.parse_args()
    torch.manual_seed(0)
    bundle = load_default("base")
    if args.weights is not None:
        load_generator(bundle.transformer, bundle.text_encoder, args.weights)
    ae, stride = bundle.autoencoder, bundle.card.temporal_stride
    clips = list(itertools.islice(training_clips(args.seed, frames=36 * stride, montage=args.montage), args.clips + 1))
    rows = {k: {"return": [], "other": []} for k in ("camr", "window", "none", "camr, wrong memory")}
    precision: dict[float, list[tuple[float, float]]] = {0.0: [], SIGMA: [], 1.0: []}
    for i, clip in enumerate(clips[:-1]):
        other = clips[i + 1]
        prompts, cuts = latent_conditioning(list(clip.prompts), [bool(c) for c in clip.cuts], stride)
        batch = collate([LatentClip(clip.frames, prompts, cuts)])
        other_batch = collate([LatentClip(other.frames, prompts, cuts)])
        z = ae.normalize(ae.encode(video_to_model(batch.video, torch.device("cpu"))))
        z_other = ae.normalize(ae.encode(video_to_model(other_batch.video, torch.device("cpu"))))
        ctx = encode_prompts(bundle.text_encoder, bundle.transformer, batch.prompts, 0.0, torch.Generator())
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(i))
        kinds = return_chunks(clip, stride)
        scenes = latent_scenes(clip, stride)
        for name, policy, mem in (("camr", "camr", z), ("window", "window", z), ("none", "none", z), ("camr, wrong memory", "camr", z_other)):
            routed: list[list[list[int]]] = []
            for err, is_return in zip(chunk_errors(bundle, z, ctx, batch.cuts, mem, policy, noise, routed=routed), kinds):
                rows[name]["return" if is_return else "other"].append(err)
            if name == "camr":
                precision[SIGMA] += [p for c, r in enumerate(routed) if kinds[c] and (p := routing_precision(r, c, scenes))]
        for sigma in (0.0, 1.0):
            routed = []
            chunk_errors(bundle, z, ctx, batch.cuts, z, "camr", noise, sigma=sigma, routed=routed)
            precision[sigma] += [p for c, r in enumerate(routed) if kinds[c] and (p := routing_precision(r, c, scenes))]
    print(f"# base model, {args.clips} world clips of 36 latent frames, σ = {SIGMA}, teacher forcing")
    print("| memory | velocity error, return chunks | velocity error, other chunks |")
    print("|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {np.mean(r['return']):.4f} (n={len(r['return'])}) | {np.mean(r['other']):.4f} (n={len(r['other'])}) |")
    print("\n| routing queries at | routed older frames showing the returning scene | chance | return chunks |")
    print("|---|---|---|---|")
    for sigma, ps in precision.items():
        if ps:
            print(f"| σ = {sigma:g} | {np.mean([p for p, _ in ps]):.3f} | {np.mean([c for _, c in ps]):.3f} | {len(ps)} |")
    print(json.dumps({k: {kk: float(np.mean(vv)) for kk, vv in v.items()} for k, v in rows.items()}
                     | {"routing_precision": {str(s): [float(np.mean([p for p, _ in ps])), float(np.mean([c for _, c in ps]))] for s, ps in precision.items() if ps}}))


if __name__ == "__main__":
    main()
