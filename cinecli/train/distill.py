"""Stage 3: distil the multi-step base model into a 4-step causal student.

ODE-trajectory regression in the causal setting: the frozen base model integrates its
probability-flow ODE (Euler, classifier-free guidance) for every chunk of a packed clip, each
chunk conditioned on the clean past exactly as in generation; the student learns to jump from
the trajectory's state at each of its own four noise levels straight to the teacher's end point.

With `routed_steps` > 0, a last phase distils chunk by chunk through memory, as generation runs:
teacher and student each keep a bank of the clip's clean past and attend to the CAMR active set
(recent chunks + routed older frames) instead of the whole clip. The base model's own last phase
does the same (`cinecli.train.base.routed_loss`); without it the student never sees, in training,
the compacted, routed past it attends to at inference.

With `rollout` > 0, that share of steps takes the clean past from the student's own film of the
clip (rolled out chunk by chunk with its four steps) instead of from the data, and the teacher's
trajectories are conditioned on that film: at inference the student's past is its own output,
errors included, and regression on the data's past alone never shows it that (exposure bias).

With `dmd_steps` > 0, a phase after the packed steps matches distributions instead of end points
(distribution matching distillation, DMD): regression onto ODE end points teaches the student the
mean of what the teacher might draw from a given state, which is blurred and washed out where the
teacher could go several ways. Here the student draws each chunk from pure noise with its own few
steps (gradient through one randomly chosen step), the draw is noised again, and the guided
teacher's denoising of it is compared with that of a critic trained alongside on the student's own
draws; the student moves each draw along the difference, towards what the teacher would draw and
away from what it draws itself. Each chunk is conditioned on the clean past, as in the packed phase.
With `dmd_routed`, the student draws chunk by chunk through its memory bank with the CAMR active
set, as it renders, on the routed phase's longer clips; teacher and critic still judge each draw
against the whole clean past. It was built to keep what routed regression loses (the reverse
shots at dialogue cuts: regression teaches the mean of the teacher's answers); measured, it made
every film metric worse than the same recipe drawn in the packed layout (runs 76 and 77,
docs/TRAINING.md), most likely because the student cannot see what teacher and critic judge by.

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

from cinecli.memory.active import Routing
from cinecli.memory.policies import CamrPolicy
from cinecli.model.attention import SequenceAttention
from cinecli.model.autoencoder import VideoAutoencoder, load_autoencoder
from cinecli.model.bundle import save_generator
from cinecli.model.card import ModelCard
from cinecli.model.text import WordTextEncoder
from cinecli.model.transformer import TextContext, WanTransformer
from cinecli.sampling.schedule import StepSchedule, add_noise, predict_x0
from cinecli.train.base import (ClipMemory, Trainee, chunk_sigmas, chunk_slices, detached, encode_prompts, frame_positions, frozen_generator, packed_layout,
                                packed_velocity, prepare_trainee, progress, save_train_state, start_stage, to_latents)
from cinecli.train.data import Batch, batches, frame_mse, weighted_mean, weighted_mse
from cinecli.train.logs import plot_log


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 1000  # packed steps (the whole clip in one pass, block-causal)
    routed_steps: int = 0  # then: chunk-by-chunk steps through memory with the CAMR active set
    batch: int = 16
    routed_batch: int = 16
    latent_frames: int = 18
    routed_latent_frames: int = 36  # longer clips for routed steps, so history exceeds the budget
    routed_montage: float = 1.0  # share of montage clips (the ones that revisit scenes) in routed batches
    top_k: int = 5
    recent_chunks: int = 3
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
    cut_weight: float = 1.0  # loss weight of the first chunk's latent frames after every hard cut (`after_cuts`)
    character_weight: float = 1.0  # loss weight of latent cells a character covers (`character_cells`)
    rollout: float = 0.0  # share of steps whose clean past is the student's own rollout (see the module docstring)
    dmd_steps: int = 0  # after the packed steps: distribution-matching steps (see the module docstring)
    critic_lr: float = 1e-4
    critic_updates: int = 2  # critic steps per student step, so the critic keeps up with the student's moving draws
    critic_init: str = ""  # the critic's starting weights (default: the teacher's), to continue a distribution-matching run
    dmd_shift: float = 3.0  # noise levels at which the draws are compared: shifted uniform, as the base model trained
    dmd_regression: float = 0.0  # weight of the packed regression loss added to each distribution-matching step (0: none)
    dmd_routed: bool = False  # distribution-matching draws chunk by chunk through memory (see the module docstring)
    dmd_judge_active: bool = False  # with dmd_routed: teacher and critic judge each draw against the active set it was drawn from, not the whole past
    max_minutes: float = 0.0  # wall-clock budget (0: none); with routed steps the phase switch follows time then

    @property
    def policy(self) -> CamrPolicy:
        """The memory policy every pass through memory attends with: CAMR at this config's budget."""
        return CamrPolicy(recent_chunks=self.recent_chunks, top_k=self.top_k)


def phase_at(p: float, cfg: DistillConfig) -> str:
    """Which phase a run is in at progress `p`: packed, then distribution matching, then routed."""
    total = max(1, cfg.steps + cfg.dmd_steps + cfg.routed_steps)
    if p < cfg.steps / total or (cfg.dmd_steps == 0 and cfg.routed_steps == 0):
        return "packed"
    return "dmd" if p < (cfg.steps + cfg.dmd_steps) / total or cfg.routed_steps == 0 else "routed"


def teacher_grid(levels: Tensor, substeps: int) -> Tensor:
    """The teacher's σ grid: each student interval split into `substeps` equal parts."""
    parts = [torch.linspace(float(a), float(b), substeps + 1, dtype=torch.float64)[:-1] for a, b in zip(levels[:-1], levels[1:])]
    return torch.cat(parts + [levels[-1:]])


@torch.no_grad()
def teacher_trajectory(teacher: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, noise: Tensor) -> tuple[list[Tensor], Tensor]:
    """States at the student's levels (σ_0..σ_{n-1}) and the end point, for every chunk at once."""
    b, f = z.shape[0], z.shape[2]
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas()
    grid = teacher_grid(levels, cfg.substeps).tolist()
    cond = encode_prompts(text, teacher, batch.prompts, 0.0, torch.Generator())
    uncond = encode_prompts(text, teacher, [("",) * f] * b, 0.0, torch.Generator())
    cuts = batch.cuts.to(z.device)
    src = packed_layout(teacher, z, cfg.chunk_frames)
    x = noise.clone()
    states = []
    for i, (s, s_next) in enumerate(zip(grid[:-1], grid[1:])):
        if i % cfg.substeps == 0:
            states.append(x.clone())
        sigma = torch.full((b, f), s, device=z.device)
        v_c = packed_velocity(teacher, z, x, sigma, cond, cuts, src)
        v_u = packed_velocity(teacher, z, x, sigma, uncond, cuts, src)
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
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas()
    chunks = -(-f // cfg.chunk_frames)
    k = torch.randint(0, cfg.student_steps, (b, chunks), generator=gen).repeat_interleave(cfg.chunk_frames, 1)[:, :f].to(dev)
    stacked = torch.stack(states, dim=0)  # [n, B, C, F, H, W]
    idx = k[None, :, None, :, None, None].expand(1, b, stacked.shape[2], f, h, w)
    x = stacked.gather(0, idx)[0]
    sigma = levels.to(dev).float()[k]  # [B, F]
    ctx = encode_prompts(text, student, batch.prompts, 0.0, gen)
    v = packed_velocity(student, z, x, sigma, ctx, batch.cuts.to(dev), packed_layout(student, z, cfg.chunk_frames))
    x0 = x.float() - sigma[:, None, :, None, None] * v
    return weighted_mse(x0, target, batch.weights_for(cfg), batch.cell_weights(cfg.character_weight))


def chunk_noise(shape: tuple[int, ...], chunk_frames: int, gen: torch.Generator) -> Callable[[int, int], Tensor]:
    """`noise(chunk, step)` for clips of `shape` [B, C, F, H, W]: a full chunk's noise drawn from
    `gen` each call (cut to the last chunk's width), so every chunk takes the same draws from the
    generator whatever the clip's length."""
    b, c, f, h, w = shape

    def draw(k: int, step: int) -> Tensor:
        return torch.randn((b, c, chunk_frames, h, w), generator=gen)[:, :, :min(chunk_frames, f - k * chunk_frames)]

    return draw


@torch.no_grad()
def own_film(student: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, gen: torch.Generator) -> Tensor:
    """The student's rollout of the batch's prompts and cuts, in the data latents' place."""
    b, f = z.shape[0], z.shape[2]
    ctx = encode_prompts(text, student, batch.prompts, 0.0, gen)
    fp = torch.arange(f, device=z.device).expand(b, -1)
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas().tolist()
    return student_rollout(student, ctx, fp, batch.cuts.to(z.device), tuple(z.shape), cfg.chunk_frames, levels,
                           chunk_noise(tuple(z.shape), cfg.chunk_frames, gen)).to(z.dtype)


def student_draw(student: WanTransformer, ctx: TextContext, z: Tensor, cuts: Tensor, cfg: DistillConfig, exit_step: int, gen: torch.Generator) -> Tensor:
    """The student's clean draw of every chunk from pure noise, given the clean past `z`.

    Its few steps run as generation runs them (predict the clean chunk, noise it again to the
    next level); the draw is the prediction at step `exit_step`, the only pass with gradient,
    so every step learns to land in the teacher's distribution without backpropagating through all.
    """
    b, f = z.shape[0], z.shape[2]
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas().tolist()
    src = packed_layout(student, z, cfg.chunk_frames)
    x = torch.randn(z.shape, generator=gen).to(z.device)
    for i in range(exit_step + 1):
        sigma = torch.full((b, f), levels[i], device=z.device)
        with torch.set_grad_enabled(i == exit_step and torch.is_grad_enabled()):
            x0 = predict_x0(x, packed_velocity(student, z, x, sigma, ctx, cuts, src), levels[i])
        if i < exit_step:
            x = add_noise(x0.detach(), torch.randn(z.shape, generator=gen).to(z.device), levels[i + 1])
    return x0


def held(frames: dict[int, Tensor]) -> Routing:
    """A routing that holds these past frames (`Routing.frames`) instead of choosing its own,
    with buffers of its own."""
    return Routing(frames=dict(frames))


def routed_student_draw(student: WanTransformer, ctx: TextContext, z: Tensor, cuts: Tensor, cfg: DistillConfig, exit_step: int,
                        noise: Callable[[int, int], Tensor]) -> tuple[Tensor, list[dict[int, Tensor]]]:
    """The student's clean draw of every chunk as rendering draws it: chunk by chunk against its CAMR active set.

    Steps and gradient as in `student_draw`, but each chunk attends to the recent chunks and the
    older frames routed at its first step (from noise, as rendering routes) instead of the whole
    past; the clean past `z` enters the bank after each chunk as rendering writes its own. At
    inference the student never sees more than that, so it must learn to draw from it.
    `noise(chunk, step)` gives each step's noise [B, C, n, H, W]. Returns the draws and, per
    chunk, the past frames its active set held (`Routing.frames`), for judging against them.
    """
    b, _, f = z.shape[:3]
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas().tolist()
    memory = ClipMemory.open(student, z, cfg.policy)
    grad = torch.is_grad_enabled()
    draws, picks = [], []
    for k, sl in enumerate(chunk_slices(f, cfg.chunk_frames)):
        fp, cut = frame_positions(sl, b, z.device), cuts[:, sl]
        x, routing = noise(k, 0).to(z), Routing()
        for i in range(exit_step + 1):
            sigma = torch.full((b, sl.stop - sl.start), levels[i], device=z.device)
            step_routing = routing if i == 0 else held(routing.frames)  # the first step's choice, fresh buffers for the graph
            with torch.set_grad_enabled(i == exit_step and grad):
                x0 = predict_x0(x.float(), memory.forward(x, sigma, ctx, fp, cut, step_routing), levels[i])
            if i < exit_step:
                x = add_noise(x0.detach(), noise(k, i + 1).to(x0), levels[i + 1]).to(z)
        draws.append(x0)
        picks.append(dict(routing.frames))
        memory.remember(z[:, :, sl], detached(ctx), fp, cut, routing)
    return torch.cat(draws, dim=2), picks


def dmd_target(x0: Tensor, real: Tensor, fake: Tensor) -> Tensor:
    """Where a draw `x0` is pulled: one step along (real − fake) denoisings, normalised per clip.

    The difference of the two denoisings of the noised draw is the gradient of the KL divergence
    between the student's and the teacher's distributions there; dividing by the draw's mean
    distance from the teacher's denoising keeps the step size the same across noise levels.
    """
    scale = (x0 - real).abs().mean(dim=tuple(range(1, x0.dim())), keepdim=True).clamp_min(1e-6)
    return x0 - (fake - real) / scale


@torch.no_grad()
def denoisings(teacher: WanTransformer, t_text: WordTextEncoder, critic: WanTransformer, c_text: WordTextEncoder, z: Tensor, x_t: Tensor,
               sigma: Tensor, batch: Batch, cfg: DistillConfig, picks: list[dict[int, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
    """The guided teacher's and the critic's clean estimates of the noised draws `x_t` at `sigma` [B, F]:
    against the whole clean past `z`, or with `picks` chunk by chunk against the active set each
    chunk was drawn from (`active_denoisings`)."""
    if picks is not None:
        return active_denoisings(teacher, t_text, critic, c_text, z, x_t, sigma, batch, cfg, picks)
    b, f = z.shape[0], z.shape[2]
    cuts = batch.cuts.to(z.device)
    s5 = sigma[:, None, :, None, None]
    g = torch.Generator()
    src = packed_layout(teacher, z, cfg.chunk_frames)  # the critic shares the teacher's shape, so its layout too
    v_c = packed_velocity(teacher, z, x_t, sigma, encode_prompts(t_text, teacher, batch.prompts, 0.0, g), cuts, src)
    v_u = packed_velocity(teacher, z, x_t, sigma, encode_prompts(t_text, teacher, [("",) * f] * b, 0.0, g), cuts, src)
    v_f = packed_velocity(critic, z, x_t, sigma, encode_prompts(c_text, critic, batch.prompts, 0.0, g), cuts, src)
    return predict_x0(x_t, v_u + cfg.guidance * (v_c - v_u), s5), predict_x0(x_t, v_f, s5)


@torch.no_grad()
def active_denoisings(teacher: WanTransformer, t_text: WordTextEncoder, critic: WanTransformer, c_text: WordTextEncoder, z: Tensor,
                      x_t: Tensor, sigma: Tensor, batch: Batch, cfg: DistillConfig, picks: list[dict[int, Tensor]]) -> tuple[Tensor, Tensor]:
    """`denoisings` chunk by chunk, teacher and critic each attending to the active set the student
    drew the chunk from (`picks`, from `routed_student_draw`) in their own memory of the clean past.

    Judged against the whole past, a draw is pulled towards what the teacher would draw knowing
    frames the student never saw, a pull it cannot follow; judged against the same frames, the
    pull is towards what can be drawn from them. The teacher's unprompted pass reads the memory its
    prompted pass wrote, as rendering's guidance does (the packed judge's reads an unprompted past).
    """
    b, _, f = z.shape[:3]
    g = torch.Generator()
    cond, uncond = encode_prompts(t_text, teacher, batch.prompts, 0.0, g), encode_prompts(t_text, teacher, [("",) * f] * b, 0.0, g)
    c_ctx = encode_prompts(c_text, critic, batch.prompts, 0.0, g)
    t_mem, c_mem = ClipMemory.open(teacher, z, cfg.policy), ClipMemory.open(critic, z, cfg.policy)
    cuts = batch.cuts.to(z.device)
    real, fake = [], []
    for k, sl in enumerate(chunk_slices(f, cfg.chunk_frames)):
        fp, cut, x, s = frame_positions(sl, b, z.device), cuts[:, sl], x_t[:, :, sl].to(z.dtype), sigma[:, sl]
        t_routing, c_routing = held(picks[k]), held(picks[k])  # each model gathers its active set once per chunk, as generation does
        v_c, v_u = (t_mem.forward(x, s, ctx, fp, cut, t_routing) for ctx in (cond, uncond))
        v_f = c_mem.forward(x, s, c_ctx, fp, cut, c_routing)
        s5 = s[:, None, :, None, None]
        real.append(predict_x0(x.float(), v_u + cfg.guidance * (v_c - v_u), s5))
        fake.append(predict_x0(x.float(), v_f, s5))
        t_mem.remember(z[:, :, sl], cond, fp, cut, t_routing)
        c_mem.remember(z[:, :, sl], c_ctx, fp, cut, c_routing)
    return torch.cat(real, dim=2), torch.cat(fake, dim=2)


def dmd_loss(student: WanTransformer, s_text: WordTextEncoder, teacher: WanTransformer, t_text: WordTextEncoder, critic: WanTransformer,
             c_text: WordTextEncoder, z: Tensor, batch: Batch, cfg: DistillConfig, gen: torch.Generator
             ) -> tuple[Tensor, Tensor, list[dict[int, Tensor]] | None]:
    """The student's distribution-matching loss of one batch, its draws (detached) for the critic,
    and the active sets to judge them against (None: the whole past)."""
    b, f = z.shape[0], z.shape[2]
    exit_step = int(torch.randint(0, cfg.student_steps, (), generator=gen))
    ctx, cuts = encode_prompts(s_text, student, batch.prompts, 0.0, gen), batch.cuts.to(z.device)
    picks = None
    if cfg.dmd_routed:
        x0, drawn_from = routed_student_draw(student, ctx, z, cuts, cfg, exit_step, chunk_noise(tuple(z.shape), cfg.chunk_frames, gen))
        picks = drawn_from if cfg.dmd_judge_active else None
    else:
        x0 = student_draw(student, ctx, z, cuts, cfg, exit_step, gen)
    sigma = chunk_sigmas(b, f, cfg.chunk_frames, cfg.dmd_shift, gen, z.device).clamp(0.02, 0.98)
    x_t = add_noise(x0.detach(), torch.randn(z.shape, generator=gen).to(z.device), sigma[:, None, :, None, None])
    real, fake = denoisings(teacher, t_text, critic, c_text, z, x_t, sigma, batch, cfg, picks)
    target = dmd_target(x0.detach(), real, fake)
    return weighted_mse(x0, target, batch.weights_for(cfg), batch.cell_weights(cfg.character_weight)), x0.detach(), picks


def critic_loss(critic: WanTransformer, c_text: WordTextEncoder, z: Tensor, draws: Tensor, batch: Batch, cfg: DistillConfig, gen: torch.Generator,
                picks: list[dict[int, Tensor]] | None = None) -> Tensor:
    """Flow-matching loss of the critic on the student's draws: it learns to denoise what the student
    draws, against the whole clean past, or with `picks` against the active set each chunk was drawn from."""
    b, f = z.shape[0], z.shape[2]
    sigma = chunk_sigmas(b, f, cfg.chunk_frames, cfg.dmd_shift, gen, z.device)
    noise = torch.randn(z.shape, generator=gen).to(z.device)
    ctx, cuts = encode_prompts(c_text, critic, batch.prompts, 0.0, gen), batch.cuts.to(z.device)
    if picks is not None:
        return active_critic_loss(critic, z, draws, noise, sigma, ctx, cuts, cfg, picks)
    v = packed_velocity(critic, z, add_noise(draws, noise, sigma[:, None, :, None, None]), sigma, ctx, cuts, packed_layout(critic, z, cfg.chunk_frames))
    return weighted_mse(v, noise - draws, None)


def active_critic_loss(critic: WanTransformer, z: Tensor, draws: Tensor, noise: Tensor, sigma: Tensor, ctx: TextContext, cuts: Tensor,
                       cfg: DistillConfig, picks: list[dict[int, Tensor]]) -> Tensor:
    """`critic_loss` chunk by chunk, the critic attending to the active set each chunk was drawn
    from in its own memory of the clean past, as it judges in `active_denoisings`."""
    b, f = z.shape[0], z.shape[2]
    memory, errors = ClipMemory.open(critic, z, cfg.policy), []
    for k, sl in enumerate(chunk_slices(f, cfg.chunk_frames)):
        fp, s = frame_positions(sl, b, z.device), sigma[:, sl]
        noisy = add_noise(draws[:, :, sl], noise[:, :, sl], s[:, None, :, None, None]).to(z.dtype)
        errors.append(frame_mse(memory.forward(noisy, s, ctx, fp, cuts[:, sl], held(picks[k])), noise[:, :, sl] - draws[:, :, sl]))
        memory.remember(z[:, :, sl], detached(ctx), fp, cuts[:, sl], held(picks[k]))
    return weighted_mean(torch.cat(errors, dim=1), None)


@torch.no_grad()
def routed_teacher_chunk(memory: ClipMemory, noise: Tensor, cond: TextContext, uncond: TextContext, fp: Tensor, cuts: Tensor,
                         grid: list[float], substeps: int, guidance: float, routing: Routing) -> tuple[list[Tensor], Tensor]:
    """The teacher's guided Euler trajectory of one chunk against its routed active set.

    Mirrors `ChunkGenerator.generate` in `ode` mode: routing is fixed by the first prompted pass
    and shared by the unprompted one. Returns the states at the student's levels and the end point.
    """
    b, f = noise.shape[0], noise.shape[2]
    x, states = noise.float(), []
    for i, (s, s_next) in enumerate(zip(grid[:-1], grid[1:])):
        if i % substeps == 0:
            states.append(x.clone())
        sigma = torch.full((b, f), s, device=noise.device)
        v_c = memory.forward(x.to(noise.dtype), sigma, cond, fp, cuts, routing)
        v_u = memory.forward(x.to(noise.dtype), sigma, uncond, fp, cuts, routing)
        x = x + (s_next - s) * (v_u + guidance * (v_c - v_u))
    return states, x


def routed_student_errors(teacher: ClipMemory, student: ClipMemory, texts: tuple[TextContext, TextContext, TextContext], z: Tensor,
                          noise: Tensor, cuts: Tensor, level: Tensor, cfg: DistillConfig, cells: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-frame errors [B, F] of the student's jumps, chunk by chunk through both memories, and the
    teacher's end points [B, C, F, H, W].

    `texts`: the teacher's prompted and unprompted contexts and the student's; `level` [B, chunks]:
    the student level each chunk starts from. The clean past is the data `z`, as in the packed
    phase. The student routes from its first level's state (pure noise), as generation routes at
    the first step, then takes its gradient pass from the drawn level against that routing.
    """
    cond, uncond, s_text = texts
    b, _, f = z.shape[:3]
    dev = z.device
    levels = StepSchedule(cfg.student_steps, cfg.shift).sigmas()
    grid = teacher_grid(levels, cfg.substeps).tolist()
    errors, targets = [], []
    for c, sl in enumerate(chunk_slices(f, cfg.chunk_frames)):
        n = sl.stop - sl.start
        fp = frame_positions(sl, b, dev)
        cut = cuts[:, sl]
        t_routing = Routing()
        states, target = routed_teacher_chunk(teacher, noise[:, :, sl], cond, uncond, fp, cut, grid, cfg.substeps, cfg.guidance, t_routing)
        k = level[:, c].to(dev)
        x = torch.stack(states)[k, torch.arange(b, device=dev)]  # each clip's state at its drawn level
        sigma = levels.to(dev).float()[k][:, None].expand(b, n)
        s_routing = Routing()
        if student.bank.num_frames > (student.policy.budget(n) or 0):  # routing chooses: fix it from the noise
            with torch.no_grad():
                student.forward(states[0].to(z.dtype), torch.full((b, n), float(levels[0]), device=dev), s_text, fp, cut, s_routing)
        v = student.forward(x.to(z.dtype), sigma, s_text, fp, cut, held(s_routing.frames))
        x0 = x.float() - sigma[:, None, :, None, None] * v
        errors.append(frame_mse(x0, target, cells[:, sl] if cells is not None else None))
        targets.append(target)
        teacher.remember(z[:, :, sl], cond, fp, cut, t_routing)
        student.remember(z[:, :, sl], detached(s_text), fp, cut, s_routing)
    return torch.cat(errors, dim=1), torch.cat(targets, dim=2)


def routed_loss(student: WanTransformer, s_text: WordTextEncoder, teacher: WanTransformer, t_text: WordTextEncoder, z: Tensor, batch: Batch,
                cfg: DistillConfig, gen: torch.Generator) -> Tensor:
    """Distillation loss of one batch chunk by chunk through memory with the CAMR active set."""
    b, _, f = z.shape[:3]
    texts = (encode_prompts(t_text, teacher, batch.prompts, 0.0, gen), encode_prompts(t_text, teacher, [("",) * f] * b, 0.0, gen),
             encode_prompts(s_text, student, batch.prompts, 0.0, gen))
    noise = torch.randn(z.shape, generator=gen).to(z.device)
    level = torch.randint(0, cfg.student_steps, (b, -(-f // cfg.chunk_frames)), generator=gen)
    errors, _ = routed_student_errors(ClipMemory.open(teacher, z, cfg.policy), ClipMemory.open(student, z, cfg.policy), texts, z, noise,
                                      batch.cuts.to(z.device), level, cfg, batch.cell_weights(cfg.character_weight))
    return weighted_mean(errors, batch.weights_for(cfg))


def train_distill(cfg: DistillConfig, out_dir: Path, *, card: ModelCard | None = None, data: Iterator[Batch] | None = None,
                  ae: VideoAutoencoder | None = None, log=print) -> Path:
    acc, card = start_stage(out_dir, cfg.seed, cfg.precision, card)
    dev = acc.device
    teacher, t_text = frozen_generator(card, cfg.teacher, dev)
    ae = (ae or load_autoencoder(cfg.autoencoder)).to(dev).eval()
    tr = prepare_trainee(acc, card, out_dir, init=cfg.init or cfg.teacher, lr=cfg.lr, weight_decay=0.0, ema=cfg.ema)
    student, s_text, raw_s, raw_t, opt, ema, params, step = tr.model, tr.text, tr.raw_model, tr.raw_text, tr.opt, tr.ema, tr.params, tr.step
    assert ema is not None  # the student ships as its average
    critic = None
    if cfg.dmd_steps > 0:  # its own folder, so that it resumes with the student
        (out_dir / "critic").mkdir(exist_ok=True)
        critic = prepare_trainee(acc, card, out_dir / "critic", init=cfg.critic_init or cfg.teacher, lr=cfg.critic_lr, weight_decay=0.0, ema=None)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    total = cfg.steps + cfg.dmd_steps + cfg.routed_steps
    packed = data or batches(cfg.seed + step, batch=cfg.batch, frames=cfg.latent_frames * card.temporal_stride, workers=cfg.num_workers)
    routed = None
    t0 = time.time()
    logf = (out_dir / "log.jsonl").open("a")
    while True:
        p = progress(step, total, time.time() - t0, cfg.max_minutes)
        if p >= 1.0:
            break
        phase = phase_at(p, cfg)
        long_clips = phase == "routed" or phase == "dmd" and cfg.dmd_routed  # both go through memory: longer clips that revisit scenes
        if long_clips and routed is None:
            routed = data or batches(cfg.seed + 7 + step, batch=cfg.routed_batch, frames=cfg.routed_latent_frames * card.temporal_stride,
                                     workers=cfg.num_workers, montage=cfg.routed_montage)
        step += 1
        batch = next(routed if long_clips else packed)  # type: ignore[arg-type]
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps)
        z = to_latents(ae, batch, dev)
        with acc.autocast():
            if phase == "routed":
                loss = routed_loss(student, s_text, teacher, t_text, z, batch, cfg, gen)
            else:
                if cfg.rollout > 0 and torch.rand((), generator=gen).item() < cfg.rollout:
                    z = own_film(student, s_text, z, batch, cfg, gen)  # the clean past becomes the student's own film of the clip
                loss, regression = torch.zeros((), device=dev), 1.0
                if phase == "dmd":
                    assert critic is not None
                    loss, draws, picks = dmd_loss(student, s_text, teacher, t_text, critic.model, critic.text, z, batch, cfg, gen)
                    regression = cfg.dmd_regression  # 0: none; else anchored to the teacher's end points, as the packed phase teaches
                if regression > 0:
                    states, target = teacher_trajectory(teacher, t_text, z, batch, cfg, torch.randn(z.shape, generator=gen).to(dev))
                    loss = loss + regression * student_loss(student, s_text, z, batch, cfg, states, target, gen)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update()
        critic_last = train_critic(acc, critic, z, draws, batch, cfg, gen, picks) if phase == "dmd" else None  # type: ignore[arg-type]
        if step % cfg.log_every == 0 or step == total or step == 1:  # reading losses waits for the GPU: only when logging
            rec = {"step": step, "phase": phase} | ({"critic": round(critic_last.item(), 5)} if critic_last is not None else {})
            rec.update(loss=round(loss.item(), 5), elapsed=round(time.time() - t0, 1))
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(rec)
        if step % cfg.checkpoint_every == 0:
            save_train_state(out_dir, raw_s, raw_t, opt, ema, step)
            if critic is not None:
                save_train_state(out_dir / "critic", critic.raw_model, critic.raw_text, critic.opt, critic.ema, step)
    save_train_state(out_dir, raw_s, raw_t, opt, ema, step)
    if critic is not None:  # a later run continues against it with `critic_init`
        save_train_state(out_dir / "critic", critic.raw_model, critic.raw_text, critic.opt, critic.ema, step)
        save_generator(critic.raw_model, critic.raw_text, out_dir / "critic" / "critic.safetensors", dtype=torch.bfloat16)
    ema.copy_to()
    final = out_dir / "student.safetensors"
    save_generator(raw_s, raw_t, final, dtype=torch.bfloat16)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    logf.close()
    plot_log(out_dir / "log.jsonl", out_dir / "loss.png", "4-step student: loss by phase")
    return final


def train_critic(acc, critic: Trainee, z: Tensor, draws: Tensor, batch: Batch, cfg: DistillConfig, gen: torch.Generator,  # type: ignore[no-untyped-def]
                 picks: list[dict[int, Tensor]] | None = None) -> Tensor:
    """`critic_updates` flow-matching steps of the critic on the student's latest draws; returns the last loss, detached.

    The critic is used and saved as it is (no average): it must follow the student's draws now.
    """
    loss = torch.zeros(())
    for _ in range(cfg.critic_updates):
        with acc.autocast():
            loss = critic_loss(critic.model, critic.text, z, draws, batch, cfg, gen, picks)
        acc.backward(loss)
        acc.clip_grad_norm_(critic.params, 1.0)
        critic.opt.step()
        critic.opt.zero_grad(set_to_none=True)
    return loss.detach()
