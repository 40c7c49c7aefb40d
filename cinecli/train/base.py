"""Stage 2: the causal base model, trained on native multi-shot clips of the world.

Teacher forcing in the packed layout: each clip travels twice in one sequence, clean and noisy
(one noise level per chunk), under the block-causal mask, so every noisy chunk learns to
denoise given the clean past exactly as generation shows it. A last phase trains chunk by chunk
through the memory bank with the CAMR active set (compacted positions, routed frames), so the
model has seen at training time what routing gives it at inference.

    cinecli train base configs/train/base.yaml runs/base
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import CamrPolicy, MemoryPolicy
from cinecli.model.attention import SequenceAttention
from cinecli.model.autoencoder import VideoAutoencoder, load_autoencoder
from cinecli.model.bundle import build_modules, load_generator, save_generator
from cinecli.model.card import ModelCard, default_card
from cinecli.model.text import WordTextEncoder
from cinecli.model.transformer import TextContext, WanTransformer
from cinecli.sampling.schedule import add_noise, shift_sigma
from cinecli.train.data import Batch, batches, frame_mse, video_to_model, weighted_mean, weighted_mse
from cinecli.train.logs import plot_log


@dataclass(frozen=True)
class BaseTrainConfig:
    steps: int = 3000  # packed teacher-forcing steps
    routed_steps: int = 0  # then: chunk-by-chunk steps through memory with the CAMR active set
    batch: int = 32
    routed_batch: int = 8
    latent_frames: int = 18  # clip length for packed steps (6 chunks of 3)
    routed_latent_frames: int = 36  # longer clips for routed steps, so history exceeds the budget
    chunk_frames: int = 3
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    sigma_shift: float = 3.0  # training noise levels: shifted uniform, more weight on high noise
    reuse: int = 1  # optimizer steps per rendered batch (fresh noise each time), so world rendering never starves the GPU
    cfg_dropout: float = 0.1  # prompts replaced by "" so the ODE sampler can use guidance
    ema: float = 0.999
    precision: str = "bf16"
    seed: int = 0
    num_workers: int = 8
    log_every: int = 50
    checkpoint_every: int = 500
    autoencoder: str = "runs/ae/autoencoder.safetensors"
    init: str = ""  # start from these generator weights (safetensors) instead of random
    top_k: int = 5
    recent_chunks: int = 3
    return_weight: float = 1.0  # loss weight of latent frames whose scene returns from beyond the recent window
    first_weight: float = 1.0  # loss weight of latent frames that show a scene for the first time after a cut
    cut_weight: float = 1.0  # loss weight of the first chunk's latent frames after every hard cut (`after_cuts`)
    character_weight: float = 1.0  # loss weight of latent cells a character covers (`character_cells`)
    montage: float = 0.5  # share of montage clips (the ones that revisit scenes) in packed batches
    routed_montage: float = 0.5  # the same for the routed phase
    max_minutes: float = 0.0  # wall-clock budget (0: none); the schedule and the phase switch follow time then


def progress(step: int, total: int, elapsed: float, max_minutes: float) -> float:
    """Fraction of the run done, by steps or by the time budget (0: none), whichever is further along."""
    p = step / max(1, total)
    if max_minutes > 0:
        p = max(p, elapsed / (60 * max_minutes))
    return min(p, 1.0)


def lr_at(step: int, p: float, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine to a tenth of `lr` over the run's progress `p`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def encode_prompts(text: WordTextEncoder, model: WanTransformer, prompts: list[tuple[str, ...]], dropout: float, gen: torch.Generator) -> TextContext:
    """Per-latent-frame prompts [B][F] → TextContext with P = F (frame f uses prompt f)."""
    flat = [p for row in prompts for p in row]
    if dropout > 0:
        drop = torch.rand(len(prompts), generator=gen) < dropout  # whole clip unconditional
        flat = ["" if drop[i // len(prompts[0])] else p for i, p in enumerate(flat)]
    emb = text.encode(flat).view(len(prompts), len(prompts[0]), text.text_len, -1)
    return model.encode_text(emb)


def chunk_sigmas(b: int, frames: int, chunk: int, shift: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """One noise level per chunk, broadcast to its frames: [B, F]."""
    chunks = -(-frames // chunk)
    u = torch.rand(b, chunks, generator=gen)
    return shift_sigma(u, shift).repeat_interleave(chunk, dim=1)[:, :frames].to(device)


@torch.no_grad()
def to_latents(ae: VideoAutoencoder, batch: Batch, device: torch.device) -> Tensor:
    video = video_to_model(batch.video, device)
    return ae.normalize(ae.encode(video)).float()


def packed_layout(model: WanTransformer, z: Tensor, chunk_frames: int) -> SequenceAttention:
    """The packed [clean | noisy] layout of clips shaped like `z` [B, C, F, H, W]: block-causal
    mask and positions, built once per batch and shared by every pass over it."""
    _, _, f, h, w = z.shape
    rows, cols = model.config.grid(h, w)
    return SequenceAttention.packed(f, chunk_frames, rows, cols, model.rope, z.dtype, z.device)


def packed_velocity(model: WanTransformer, z: Tensor, x: Tensor, sigma: Tensor, ctx: TextContext, cuts: Tensor, src: SequenceAttention) -> Tensor:
    """Velocity of every noisy chunk `x` at its level `sigma` [B, F], each chunk conditioned on the clean past `z`.

    One pass in the packed layout `src` (`packed_layout`): the clean past the chunk sees is
    exactly what generation's cache holds once the earlier chunks are drawn. `cuts` [B, F]: the
    clip's cut flags.
    """
    b, f = z.shape[0], z.shape[2]
    fp = torch.arange(f, device=z.device).repeat(2).expand(b, -1)
    t = torch.cat([torch.zeros_like(sigma), sigma], dim=1) * 1000
    return model(torch.cat([z, x.to(z.dtype)], dim=2), t, ctx, fp, src, cuts.repeat(1, 2))[:, :, f:].float()


def packed_loss(model: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: BaseTrainConfig, gen: torch.Generator) -> Tensor:
    """Flow-matching loss of the noisy half of the packed [clean | noisy] sequence."""
    b, f = z.shape[0], z.shape[2]
    sigma = chunk_sigmas(b, f, cfg.chunk_frames, cfg.sigma_shift, gen, z.device)
    noise = torch.randn(z.shape, generator=gen).to(z.device)
    noisy = add_noise(z, noise, sigma[:, None, :, None, None])
    ctx = encode_prompts(text, model, batch.prompts, cfg.cfg_dropout, gen)
    v = packed_velocity(model, z, noisy, sigma, ctx, batch.cuts.to(z.device), packed_layout(model, z, cfg.chunk_frames))
    return weighted_mse(v, noise - z, batch.weights_for(cfg), batch.cell_weights(cfg.character_weight))


def chunk_slices(frames: int, chunk: int) -> list[slice]:
    """The latent frames of each chunk of a clip, in generation order (the last may be shorter)."""
    return [slice(start, min(start + chunk, frames)) for start in range(0, frames, chunk)]


def frame_positions(sl: slice, batch: int, device: torch.device) -> Tensor:
    """Frame positions [B, n] of the chunk `sl`, as generation numbers them."""
    return torch.arange(sl.start, sl.stop, device=device).expand(batch, -1)


@dataclass
class ClipMemory:
    """One model's memory of a clip's clean past in routed training: its bank and the grid.

    Used by the base model's routed phase and by routed distillation, where teacher and student
    each keep their own, since each attends to its own keys and values.
    """

    model: WanTransformer
    bank: MemoryBank
    policy: MemoryPolicy
    rows: int
    cols: int

    @classmethod
    def open(cls, model: WanTransformer, z: Tensor, policy: MemoryPolicy) -> ClipMemory:
        mc = model.config
        rows, cols = mc.grid(z.shape[-2], z.shape[-1])
        spec = BankSpec(mc.num_layers, z.shape[0], rows * cols, mc.num_heads, mc.head_dim, dtype=z.dtype, device=z.device)
        return cls(model, MemoryBank(spec), policy, rows, cols)

    def source(self, routing: Routing, frames: int, write: bool = False) -> ChunkAttention:
        return ChunkAttention(self.bank, self.policy, routing, chunk_frames=frames, rows=self.rows, cols=self.cols,
                              rope=self.model.rope, write=write)

    def forward(self, x: Tensor, sigma: Tensor, text: TextContext, fp: Tensor, cuts: Tensor, routing: Routing) -> Tensor:
        """Velocity of chunk `x` at noise levels `sigma` [B, f] against the routed active set."""
        return self.model(x, sigma * 1000, text, fp, self.source(routing, x.shape[2]), cuts).float()

    @torch.no_grad()
    def remember(self, clean: Tensor, text: TextContext, fp: Tensor, cuts: Tensor, routing: Routing) -> None:
        """The clean chunk's keys/values enter the bank (the pass generation makes at t = 0)."""
        b, _, f = clean.shape[:3]
        self.model(clean, torch.zeros(b, f, device=clean.device), text, fp, self.source(routing, f, write=True), cuts, skip_head=True)
        self.bank.commit()


def routed_loss(model: WanTransformer, text: WordTextEncoder, z: Tensor, batch: Batch, cfg: BaseTrainConfig, gen: torch.Generator) -> Tensor:
    """Chunk by chunk through a memory bank with the CAMR policy, as inference runs.

    The clean past enters memory through clean passes (no gradient, like a KV cache); each noisy
    chunk is denoised against its routed active set with gradient.
    """
    b, _, f = z.shape[:3]
    dev = z.device
    memory = ClipMemory.open(model, z, CamrPolicy(recent_chunks=cfg.recent_chunks, top_k=cfg.top_k))
    ctx = encode_prompts(text, model, batch.prompts, cfg.cfg_dropout, gen)
    cuts = batch.cuts.to(dev)
    sigma = chunk_sigmas(b, f, cfg.chunk_frames, cfg.sigma_shift, gen, dev)
    noise = torch.randn(z.shape, generator=gen).to(dev)
    errors = []  # per chunk: [B, n] per-frame errors
    cells = batch.cell_weights(cfg.character_weight)
    for sl in chunk_slices(f, cfg.chunk_frames):
        fp = frame_positions(sl, b, dev)
        s = sigma[:, sl]
        noisy = add_noise(z[:, :, sl], noise[:, :, sl], s[:, None, :, None, None])
        v = memory.forward(noisy, s, ctx, fp, cuts[:, sl], Routing())
        errors.append(frame_mse(v, noise[:, :, sl] - z[:, :, sl], cells[:, sl] if cells is not None else None))
        memory.remember(z[:, :, sl], detached(ctx), fp, cuts[:, sl], Routing())
    return weighted_mean(torch.cat(errors, dim=1), batch.weights_for(cfg))


def detached(ctx: TextContext) -> TextContext:
    """Prompt keys/values cut from the graph: a memory write must not carry gradient into later chunks."""
    return TextContext(tuple(k.detach() for k in ctx.keys), tuple(v.detach() for v in ctx.values))


class EMA:
    """Exponential moving average of parameters; the shipped weights are the EMA."""

    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Warm-up decay: a short run must not ship weights that are mostly the initialisation."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach().float(), 1 - decay)

    @torch.no_grad()
    def copy_to(self) -> list[Tensor]:
        backup = [p.detach().clone() for p in self.params]
        for s, p in zip(self.shadow, self.params):
            p.copy_(s.to(p.dtype))
        return backup

    @torch.no_grad()
    def restore(self, backup: list[Tensor]) -> None:
        for b, p in zip(backup, self.params):
            p.copy_(b)



def save_train_state(out_dir: Path, model: WanTransformer, text: WordTextEncoder, opt: torch.optim.Optimizer, ema: EMA | None, step: int) -> None:
    """Everything a stage needs to continue: live weights, optimizer, EMA shadow and step."""
    save_generator(model, text, out_dir / "last.safetensors", dtype=torch.float32)
    torch.save({"opt": opt.state_dict(), "ema": ema.shadow if ema is not None else [], "step": step}, out_dir / "train_state.pt")


def load_train_state(out_dir: Path, model: WanTransformer, text: WordTextEncoder, opt: torch.optim.Optimizer, ema: EMA | None) -> int:
    """Continue from `save_train_state` if `out_dir` holds one; returns the step reached (0: fresh)."""
    path = out_dir / "train_state.pt"
    if not path.exists():
        return 0
    st = torch.load(path, map_location="cpu", weights_only=True)
    load_generator(model, text, out_dir / "last.safetensors")
    opt.load_state_dict(st["opt"])
    if ema is not None:
        for s, v in zip(ema.shadow, st["ema"]):
            s.copy_(v)
        ema.updates = int(st["step"])
    return int(st["step"])


@dataclass
class Trainee:
    """A generator being trained: the prepared modules, their unwrapped originals, optimizer, EMA."""

    model: torch.nn.Module
    text: torch.nn.Module
    raw_model: WanTransformer
    raw_text: WordTextEncoder
    opt: torch.optim.Optimizer
    ema: EMA | None  # None for a model used as it trains (the distillation's critic)
    params: list[torch.nn.Parameter]
    step: int


def start_stage(out_dir: Path, seed: int, precision: str, card: ModelCard | None):  # type: ignore[no-untyped-def]
    """Output folder, seed, the model's card and an accelerator (mixed precision only on CUDA)."""
    from accelerate import Accelerator

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return Accelerator(mixed_precision=precision if torch.cuda.is_available() else "no"), card or default_card()


def frozen_generator(card: ModelCard, path: Path | str, device: torch.device) -> tuple[WanTransformer, WordTextEncoder]:
    """The generator at `path`, of the card's shape, in eval mode without gradients on `device`:
    a teacher, or the student whose draws a decoder learns from."""
    transformer, text, _ = build_modules(card)
    load_generator(transformer, text, Path(path))
    for module in (transformer, text):
        module.to(device).eval().requires_grad_(False)
    return transformer, text


def prepare_trainee(acc, card: ModelCard, out_dir: Path, *, init: str, lr: float, weight_decay: float, ema: float | None) -> Trainee:  # type: ignore[no-untyped-def]
    """Build (from `init` weights if given), wrap for the accelerator and continue from `out_dir`'s state."""
    model, text, _ = build_modules(card)
    if init:
        load_generator(model, text, Path(init))
    params = list(model.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    model, text, opt = acc.prepare(model, text, opt)
    raw_model, raw_text = acc.unwrap_model(model), acc.unwrap_model(text)
    shadow = EMA([raw_model, raw_text], ema) if ema is not None else None
    step = load_train_state(out_dir, raw_model, raw_text, opt, shadow)
    return Trainee(model, text, raw_model, raw_text, opt, shadow, params, step)


def train_base(cfg: BaseTrainConfig, out_dir: Path, *, card: ModelCard | None = None, data: Iterator[Batch] | None = None,
               ae: VideoAutoencoder | None = None, log=print) -> Path:
    """Train (or continue) the base model; returns the path of the EMA weights."""
    acc, card = start_stage(out_dir, cfg.seed, cfg.precision, card)
    dev = acc.device
    ae = (ae or load_autoencoder(cfg.autoencoder)).to(dev).eval()
    tr = prepare_trainee(acc, card, out_dir, init=cfg.init, lr=cfg.lr, weight_decay=cfg.weight_decay, ema=cfg.ema)
    model, text, raw_model, raw_text, opt, ema, params, step = tr.model, tr.text, tr.raw_model, tr.raw_text, tr.opt, tr.ema, tr.params, tr.step
    assert ema is not None  # the base model ships as its average
    gen = torch.Generator().manual_seed(cfg.seed + step)
    total = cfg.steps + cfg.routed_steps
    packed = data or batches(cfg.seed + step, batch=cfg.batch, frames=cfg.latent_frames * card.temporal_stride, workers=cfg.num_workers, montage=cfg.montage)
    routed = None
    batch: Batch | None = None
    batch_routed = False
    t0 = time.time()
    logf = (out_dir / "log.jsonl").open("a")
    packed_share = cfg.steps / max(1, total)
    while True:
        p = progress(step, total, time.time() - t0, cfg.max_minutes)
        if p >= 1.0:
            break
        is_routed = cfg.routed_steps > 0 and p >= packed_share
        if is_routed and routed is None:
            routed = data or batches(cfg.seed + 7 + step, batch=cfg.routed_batch, frames=cfg.routed_latent_frames * card.temporal_stride,
                                     workers=cfg.num_workers, montage=cfg.routed_montage)
        if batch is None or step % cfg.reuse == 0 or is_routed != batch_routed:
            batch, batch_routed = next(routed if is_routed else packed), is_routed  # type: ignore[arg-type]
            z = to_latents(ae, batch, dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, p, cfg.lr, cfg.warmup_steps)
        with acc.autocast():
            loss = (routed_loss if is_routed else packed_loss)(model, text, z, batch, cfg, gen)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update()
        step += 1
        if step % cfg.log_every == 0 or step == total:
            rec = {"step": step, "phase": "routed" if is_routed else "packed", "loss": round(loss.item(), 5), "lr": opt.param_groups[0]["lr"], "elapsed": round(time.time() - t0, 1)}
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(rec)
        if step % cfg.checkpoint_every == 0:
            save_train_state(out_dir, raw_model, raw_text, opt, ema, step)
    save_train_state(out_dir, raw_model, raw_text, opt, ema, step)
    backup = ema.copy_to()
    final = out_dir / "base.safetensors"
    save_generator(raw_model, raw_text, final, dtype=torch.bfloat16)
    ema.restore(backup)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    logf.close()
    plot_log(out_dir / "log.jsonl", out_dir / "loss.png", "base model: flow-matching loss")
    return final

