"""Stage 3: distil the multi-step base model into a 4-step causal student.

ODE-trajectory regression in the causal setting: the frozen base model integrates its
probability-flow ODE (Euler, classifier-free guidance) for every chunk of a packed clip, each
chunk conditioned on the clean past exactly as in generation; the student learns to jump from
the trajectory's state at each of its own four noise levels straight to the teacher's end point.

With `rollout` > 0, that share of steps takes the clean past from the student's own film of the
clip (rolled out chunk by chunk with its four steps) instead of from the data, and the teacher's
trajectories are conditioned on that film: at inference the student's past is its own output,
errors included, and regression on the data's past alone never shows it that (exposure bias).

    cinecli train distill configs/train/distill.yaml runs/distill
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

from cinecli.model.attention import SequenceAttention
from cinecli.model.autoencoder import VideoAutoencoder, load_autoencoder
from cinecli.model.bundle import build_modules, load_generator, save_generator
from cinecli.model.card import ModelCard
from cinecli.model.text import WordTextEncoder
from cinecli.model.transformer import TextContext, WanTransformer
from cinecli.sampling.schedule import StepSchedule, add_noise, predict_x0
from cinecli.train.base import encode_prompts, prepare_trainee, save_train_state, start_stage, to_latents
from cinecli.train.data import Batch, batches, weighted_mse


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 1000
    batch: int = 16
    latent_frames: int = 18
    chunk_frames: int = 3
    student_steps: int = 4
    shift: float = 5.0
    substeps: int = 4  # teacher Euler steps between two student levels
    guidance: float = 3.0
    lr: float = 1e-4
    warmup_steps: int = 100
    ema: float = 0.995
    precision: str = "bf16"
    seed: int = 1
    num_workers: int = 8
    log_every: int = 25
    checkpoint_every: int = 250
    autoencoder: str = "runs/ae/autoencoder.safetensors"
    teacher: str = "runs/base/base.safetensors"
    init: str = ""  # the student starts from these weights (default: the teacher's), to continue a distillation
    return_weight: float = 1.0  # loss weight of latent frames whose scene returns from beyond the recent window
    first_weight: float = 1.0  # loss weight of latent frames that show a scene for the first time after a cut
    character_weight: float = 1.0  # loss weight of latent cells a character covers (`character_cells`)
    rollout: float = 0.0  # share of steps whose clean past is the student's own rollout (see the module docstring)
    max_minutes: float = 0.0  # wall-clock budget (0: none)


def teacher_grid(levels: Tensor, substeps: int) -> Tensor:
    """The teacher's σ grid: each student interval split into `substeps` equal parts."""
    parts = [torch.linspace(float(a), float(b), substeps + 1, dtype=torch.float64)[:-1] for a, b in zip(levels[:-1], levels[1:])]
    return torch.cat(parts + [levels[-1:]])


@torch.no_grad()
def teacher_trajectory(teacher: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, noise: Tensor) -> tuple[list[Tensor], Tensor]:
    """States at the student's levels (σ_0..σ_{n-1}) and the end point, for every chunk at once."""
    b, _, f, h, w = z.shape
    dev = z.device
    rows, cols = teacher.config.grid(h, w)
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas()
    grid = teacher_grid(levels, cfg.substeps).tolist()
    cond = encode_prompts(text, teacher, batch.prompts, 0.0, torch.Generator())
    uncond = encode_prompts(text, teacher, [("",) * f] * b, 0.0, torch.Generator())
    fp = torch.arange(f, device=dev).repeat(2).expand(b, -1)
    cuts = batch.cuts.to(dev).repeat(1, 2)
    src = SequenceAttention.packed(f, cfg.chunk_frames, rows, cols, teacher.rope, z.dtype, dev)
    x = noise.clone()
    states = []
    for i, (s, s_next) in enumerate(zip(grid[:-1], grid[1:])):
        if i % cfg.substeps == 0:
            states.append(x.clone())
        t = torch.cat([torch.zeros(b, f, device=dev), torch.full((b, f), s * 1000, device=dev)], dim=1)
        seq = torch.cat([z, x], dim=2)
        v_c = teacher(seq, t, cond, fp, src, cuts)[:, :, f:].float()
        v_u = teacher(seq, t, uncond, fp, src, cuts)[:, :, f:].float()
        x = x + (s_next - s) * (v_u + cfg.guidance * (v_c - v_u))
    return states, x


@torch.no_grad()
def student_rollout(student: WanTransformer, ctx: TextContext, fp: Tensor, cuts: Tensor, shape: tuple[int, ...], chunk_frames: int,
                    levels: list[float], noise: Callable[[int, int], Tensor]) -> Tensor:
    """The student's own film [B, C, F, H, W] of a clip, sampled as generation samples it.

    Chunk by chunk, each chunk attends to the clean chunks before it (here one pass over the
    past instead of the memory bank; `full` memory at generation gives the same film). Each of
    the few steps predicts the clean chunk and re-noises it with `noise(chunk, step)` to the
    next level. `fp`/`cuts` [B, F]: per-frame prompt index and cut flag.
    """
    b, c, f, h, w = shape
    rows, cols = student.config.grid(h, w)
    film = torch.zeros(shape, device=fp.device)
    for k, c0 in enumerate(range(0, f, chunk_frames)):
        c1 = min(c0 + chunk_frames, f)
        src = SequenceAttention.next_chunk(c0, c1 - c0, chunk_frames, rows, cols, student.rope, film.dtype, film.device)
        x = noise(k, 0).to(film)
        for i, (s, s_next) in enumerate(zip(levels[:-1], levels[1:])):
            t = torch.cat([torch.zeros(b, c0, device=film.device), torch.full((b, c1 - c0), s * 1000, device=film.device)], dim=1)
            seq = torch.cat([film[:, :, :c0], x], dim=2)
            v = student(seq, t, ctx, fp[:, :c1], src, cuts[:, :c1])[:, :, c0:].float()
            x0 = predict_x0(x, v, s)
            x = add_noise(x0, noise(k, i + 1).to(film), s_next) if s_next > 0 else x0
        film[:, :, c0:c1] = x
    return film


def student_loss(student: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, states: list[Tensor], target: Tensor, gen: torch.Generator) -> Tensor:
    """Each chunk starts from the trajectory at a random student level and must land on the end point."""
    b, _, f, h, w = z.shape
    dev = z.device
    rows, cols = student.config.grid(h, w)
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas()
    chunks = -(-f // cfg.chunk_frames)
    k = torch.randint(0, cfg.student_steps, (b, chunks), generator=gen).repeat_interleave(cfg.chunk_frames, 1)[:, :f].to(dev)
    stacked = torch.stack(states, dim=0)  # [n, B, C, F, H, W]
    idx = k[None, :, None, :, None, None].expand(1, b, stacked.shape[2], f, h, w)
    x = stacked.gather(0, idx)[0]
    sigma = levels.to(dev).float()[k]  # [B, F]
    ctx = encode_prompts(text, student, batch.prompts, 0.0, gen)
    fp = torch.arange(f, device=dev).repeat(2).expand(b, -1)
    cuts = batch.cuts.to(dev).repeat(1, 2)
    t = torch.cat([torch.zeros_like(sigma), sigma], dim=1) * 1000
    src = SequenceAttention.packed(f, cfg.chunk_frames, rows, cols, student.rope, z.dtype, dev)
    v = student(torch.cat([z, x.to(z.dtype)], dim=2), t, ctx, fp, src, cuts)[:, :, f:].float()
    x0 = x.float() - sigma[:, None, :, None, None] * v
    return weighted_mse(x0, target, batch.frame_weights(cfg.return_weight, cfg.first_weight), batch.cell_weights(cfg.character_weight))


@torch.no_grad()
def own_film(student: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, gen: torch.Generator) -> Tensor:
    """The student's rollout of the batch's prompts and cuts, in the data latents' place."""
    b, c, f, h, w = z.shape
    ctx = encode_prompts(text, student, batch.prompts, 0.0, gen)
    fp = torch.arange(f, device=z.device).expand(b, -1)
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas().tolist()
    chunk = (b, c, cfg.chunk_frames, h, w)

    def draw(k: int, step: int) -> Tensor:
        width = min(cfg.chunk_frames, f - k * cfg.chunk_frames)
        return torch.randn(chunk, generator=gen)[:, :, :width]

    return student_rollout(student, ctx, fp, batch.cuts.to(z.device), tuple(z.shape), cfg.chunk_frames, levels, draw).to(z.dtype)


def train_distill(cfg: DistillConfig, out_dir: Path, *, card: ModelCard | None = None, data: Iterator[Batch] | None = None,
                  ae: VideoAutoencoder | None = None, log=print) -> Path:
    acc, card = start_stage(out_dir, cfg.seed, cfg.precision, card)
    dev = acc.device
    teacher, t_text, _ = build_modules(card)
    load_generator(teacher, t_text, Path(cfg.teacher))
    teacher.to(dev).eval().requires_grad_(False)
    t_text.to(dev).eval().requires_grad_(False)
    ae = (ae or load_autoencoder(cfg.autoencoder)).to(dev).eval()
    tr = prepare_trainee(acc, card, out_dir, init=cfg.init or cfg.teacher, lr=cfg.lr, weight_decay=0.0, ema=cfg.ema)
    student, s_text, raw_s, raw_t, opt, ema, params, step = tr.model, tr.text, tr.raw_model, tr.raw_text, tr.opt, tr.ema, tr.params, tr.step
    gen = torch.Generator().manual_seed(cfg.seed + step)
    source = data or batches(cfg.seed + step, batch=cfg.batch, frames=cfg.latent_frames * card.temporal_stride, workers=cfg.num_workers)
    t0 = time.time()
    logf = (out_dir / "log.jsonl").open("a")
    while step < cfg.steps and not (cfg.max_minutes > 0 and time.time() - t0 > 60 * cfg.max_minutes):
        step += 1
        batch = next(source)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps)
        z = to_latents(ae, batch, dev)
        noise = torch.randn(z.shape, generator=gen).to(dev)
        own = cfg.rollout > 0 and torch.rand((), generator=gen).item() < cfg.rollout
        with acc.autocast():
            if own:  # the clean past becomes the student's own film of the clip
                z = own_film(student, s_text, z, batch, cfg, gen)
            states, target = teacher_trajectory(teacher, t_text, z, batch, cfg, noise)
            loss = student_loss(student, s_text, z, batch, cfg, states, target, gen)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update()
        if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
            rec = {"step": step, "loss": round(loss.item(), 5), "elapsed": round(time.time() - t0, 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(rec)
        if step % cfg.checkpoint_every == 0:
            save_train_state(out_dir, raw_s, raw_t, opt, ema, step)
    save_train_state(out_dir, raw_s, raw_t, opt, ema, step)
    ema.copy_to()
    final = out_dir / "student.safetensors"
    save_generator(raw_s, raw_t, final, dtype=torch.bfloat16)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return final

