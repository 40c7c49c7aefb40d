"""Trainer for the causal video autoencoder (stage 1 of the default model).

One function, :func:`train_autoencoder`, runs on a GPU in bf16 for the real run and for a
few steps on CPU in tests. Clips come from the procedural world (``cinecli.world``) when it
is available, else from :func:`synthetic_clips`, a stand-in of moving outlined shapes on
gradient backgrounds with hard cuts. Clips travel as uint8 from DataLoader worker
processes (4x less host->device traffic than float) and are scaled to [-1, 1] on device.

Outputs in ``out_dir``:
  ``checkpoint/``            weights (safetensors) + optimizer/step (``trainer.pt``), for resume
  ``log.jsonl``              one JSON object per logged step / evaluation
  ``reconstruction.png``     held-out frames: originals (top) vs reconstructions (bottom)
  ``autoencoder.safetensors`` final weights, config JSON and latent statistics
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cinecli.eval.cuts import detect_cuts
from cinecli.eval.metrics import judder
from cinecli.eval.signals import compute_signals
from cinecli.model.autoencoder import AutoencoderConfig, VideoAutoencoder, extend_decoder, load_autoencoder, save_autoencoder
from cinecli.model.card import default_card
from cinecli.train.config import load_yaml_config
from cinecli.train.data import Batch, batches
from cinecli.train.redraw import Redrawer, load_redrawer, redrawn_latents
from cinecli.train.logs import plot_log

__all__ = [
    "AETrainConfig",
    "ClipDataset",
    "load_train_config",
    "synthetic_clips",
    "train_autoencoder",
]

HOLDOUT_SEED_OFFSET = 1_000_003  # held-out clips never share a seed with training clips


@dataclass(frozen=True)
class AETrainConfig:
    """Everything a training run needs; read from ``configs/train/autoencoder*.yaml``."""

    steps: int = 4000
    batch: int = 32  # clips per step
    frames: int = 16  # video frames per clip (multiple of the temporal stride)
    width: int = 192
    height: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05  # cosine decays to lr * this
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    edge_weight: float = 0.0  # L1 on spatial finite differences (crisper outlines)
    temporal_weight: float = 0.0  # loss on frame-to-frame differences (motion spread over a latent's frames, not jumps between latents)
    # "l1" pulls an unsure frame-to-frame change to zero: a causal decoder then holds a latent
    # frame's four frames still and jumps at the next (runs 27, 28). "l2" charges one big jump
    # more than four small steps, so the error is asked to drift smoothly instead.
    temporal_loss: str = "l1"
    # changes compared after averaging pool x pool pixel blocks: the coarse motion a decoder can
    # follow (per pixel, the texture's own unpredictable changes swamp the jumps between latents)
    temporal_pool: int = 1
    precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU) | "bf16" | "fp16" | "no"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    seed: int = 0
    data: str = "auto"  # "auto" (world if present, else synthetic) | "world" | "synthetic"
    num_workers: int = 0  # DataLoader worker processes producing clips
    compile: bool = False  # torch.compile the training forward (GPU)
    log_every: int = 10
    eval_every: int = 0  # held-out PSNR every N steps (0: only at the end)
    checkpoint_every: int = 500
    holdout_clips: int = 32  # for evaluation and latent statistics
    max_minutes: float = 0.0  # wall-clock budget (0: none): training stops there and finishes normally
    init: str = ""  # start from these autoencoder weights (safetensors) instead of random; their
    #                 architecture is kept, plus the decoder's `lookahead` / `frame_kernel` / `ahead_path` if `model` asks
    train: str = "all"  # "all" | "decoder": the encoder and latent statistics frozen, so the latent
    #                     space, and every generator trained in it, stays valid
    # `train: decoder` only: each clip's latents get Gaussian noise of a standard deviation drawn
    # uniformly from [0, latent_noise] (in the generators' unit-variance latent units) before
    # decoding. A generator's latents are never the encoder's own: their fine detail (where in its
    # four frames a latent frame's motion lies) is off, and a decoder that only ever saw clean
    # latents turns that into a still latent frame and a jump at the next, which the cut detector
    # reads as a cut. With noise it has to draw motion from the coarse content and its look-ahead.
    latent_noise: float = 0.0
    # `train: decoder` only: a generator (a student's safetensors, of the shipped card's shape)
    # whose own draws of each clip's latents the decoder also learns to decode into the clip's
    # frames (`cinecli.train.redraw`): a share `redraw_share` of each batch's clips is redrawn from
    # one of the generator's last `redraw_from` noise levels (1: its last step only), the rest get
    # `latent_noise`. Clips then come from the world with their prompts and cut flags.
    redraw: str = ""
    redraw_share: float = 0.5
    redraw_from: int = 2
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)

    def __post_init__(self) -> None:
        if self.frames % self.model.temporal_stride:
            raise ValueError(f"frames ({self.frames}) must be a multiple of {self.model.temporal_stride}")
        if self.width % self.model.spatial_stride or self.height % self.model.spatial_stride:
            raise ValueError("width and height must be multiples of the spatial stride")
        if self.precision not in ("auto", "bf16", "fp16", "no"):
            raise ValueError(f"precision must be auto|bf16|fp16|no, got {self.precision!r}")
        if self.data not in ("auto", "world", "synthetic"):
            raise ValueError(f"data must be auto|world|synthetic, got {self.data!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto|cpu|cuda, got {self.device!r}")
        if self.temporal_pool < 1:
            raise ValueError("temporal_pool must be >= 1")
        if self.temporal_loss not in ("l1", "l2"):
            raise ValueError(f"temporal_loss must be l1|l2, got {self.temporal_loss!r}")
        if self.train not in ("all", "decoder"):
            raise ValueError(f"train must be all|decoder, got {self.train!r}")
        if self.train == "decoder" and not self.init:
            raise ValueError("train: decoder needs init: the weights whose encoder stays as it is")
        if self.latent_noise < 0:
            raise ValueError(f"latent_noise must be >= 0, got {self.latent_noise}")
        if self.latent_noise > 0 and self.train != "decoder":
            raise ValueError("latent_noise needs train: decoder (the encoder must not learn to outshout the noise)")
        if self.redraw and self.train != "decoder":
            raise ValueError("redraw needs train: decoder (the generator's latent space must stay the encoder's)")
        if self.redraw and self.data == "synthetic":
            raise ValueError("redraw needs world clips (data: world or auto): the generator draws from their prompts")
        if not 0.0 <= self.redraw_share <= 1.0:
            raise ValueError(f"redraw_share must be in [0, 1], got {self.redraw_share}")
        if self.redraw_from < 1:
            raise ValueError(f"redraw_from must be >= 1, got {self.redraw_from}")


def load_train_config(path: Path | str) -> AETrainConfig:
    return load_yaml_config(path, AETrainConfig)


# --------------------------------------------------------------------------- data


def synthetic_clips(seed: int, *, frames: int, width: int = 192, height: int = 128,
                    fps: int = 12) -> Iterator[np.ndarray]:
    """Endless stand-in clips, uint8 ``[T, H, W, 3]``: outlined shapes moving over gradients.

    Each clip has one or two shots (a hard cut at a random frame) so the autoencoder learns
    that consecutive frames may be unrelated. ``fps`` scales the motion per frame.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    while True:
        cut = int(rng.integers(1, frames)) if rng.random() < 0.3 else frames
        out = np.empty((frames, height, width, 3), np.uint8)
        for start, stop in ((0, cut), (cut, frames)):
            if stop > start:
                out[start:stop] = _synthetic_shot(rng, stop - start, xx, yy, 12.0 / fps)
        yield out


def _synthetic_shot(rng: np.random.Generator, n: int, xx: np.ndarray, yy: np.ndarray,
                    speed: float) -> np.ndarray:
    h, w = xx.shape
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx / w + np.sin(ang) * yy / h)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    bg = c0 + ramp[..., None] * (c1 - c0)  # [H, W, 3]
    pan = rng.normal(0, 1.0, 2) * speed
    shapes = []
    for _ in range(int(rng.integers(2, 7))):
        shapes.append(dict(
            kind=int(rng.integers(0, 3)), colour=rng.uniform(0, 255, 3),
            pos=rng.uniform([0, 0], [w, h]), vel=rng.normal(0, 2.5, 2) * speed,
            size=rng.uniform(6, 36, 2), outline=rng.random() < 0.7,
            stripes=rng.random() < 0.2,
        ))
    clip = np.empty((n, h, w, 3), np.float32)
    for t in range(n):
        frame = np.roll(bg, (int(pan[1] * t), int(pan[0] * t)), axis=(0, 1)).copy()
        for s in shapes:
            cx, cy = s["pos"] + s["vel"] * t
            rx, ry = s["size"]
            if s["kind"] == 0:  # ellipse
                d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
                inside, edge = d <= 1.0, (d > 0.75) & (d <= 1.0)
            elif s["kind"] == 1:  # rectangle
                d = np.maximum(np.abs(xx - cx) / rx, np.abs(yy - cy) / ry)
                inside, edge = d <= 1.0, (d > 0.88) & (d <= 1.0)
            else:  # triangle (pointing up)
                u, v = (xx - cx) / rx, (yy - cy) / ry
                inside = (v <= 1) & (v >= 2 * np.abs(u) - 1)
                edge = inside & ((v > 0.85) | (v < 2 * np.abs(u) - 0.7))
            fill = s["colour"]
            if s["stripes"]:
                band = (((xx + yy) // 4) % 2 == 0)[..., None]
                frame[inside] = np.where(band[inside], fill, fill * 0.5)
            else:
                frame[inside] = fill
            if s["outline"]:
                frame[edge] = 20.0
        clip[t] = frame
    return np.clip(clip, 0, 255).astype(np.uint8)


def _world_available() -> bool:
    try:
        from cinecli.world import dataset  # noqa: F401
    except ImportError:
        return False
    return hasattr(dataset, "training_clips")


def clip_source(kind: str, seed: int, *, frames: int, width: int, height: int) -> Iterator[np.ndarray]:
    """uint8 ``[T, H, W, 3]`` clips from the procedural world or the synthetic stand-in."""
    if kind == "auto":
        kind = "world" if _world_available() else "synthetic"
    if kind == "synthetic":
        yield from synthetic_clips(seed, frames=frames, width=width, height=height)
        return
    from cinecli.world.dataset import training_clips

    for clip in training_clips(seed, frames=frames, width=width, height=height, fps=12):
        arr = np.asarray(getattr(clip, "frames", clip))
        if arr.shape[0] < frames:
            continue
        yield arr[:frames]


class ClipDataset(IterableDataset):
    """Endless clips; each DataLoader worker gets its own seed so workers never repeat."""

    def __init__(self, kind: str, seed: int, *, frames: int, width: int, height: int) -> None:
        super().__init__()
        self.kind, self.seed = kind, seed
        self.frames, self.width, self.height = frames, width, height

    def __iter__(self) -> Iterator[Tensor]:
        info = get_worker_info()
        wid = info.id if info is not None else 0
        seed = self.seed * 7919 + wid
        for arr in clip_source(self.kind, seed, frames=self.frames, width=self.width, height=self.height):
            yield torch.from_numpy(np.ascontiguousarray(arr))  # uint8 [T, H, W, 3]


def _loader(cfg: AETrainConfig, seed: int, batch: int, cuda: bool) -> Iterator[Tensor]:
    ds = ClipDataset(cfg.data, seed, frames=cfg.frames, width=cfg.width, height=cfg.height)
    kw: dict = {}
    if cfg.num_workers > 0:
        kw = dict(num_workers=cfg.num_workers, persistent_workers=True, prefetch_factor=4)
    return iter(DataLoader(ds, batch_size=batch, pin_memory=cuda, **kw))


def to_video(batch: Tensor, device: torch.device) -> Tensor:
    """uint8 ``[B, T, H, W, 3]`` (or float ``[B, 3, T, H, W]`` in [-1,1]) -> float on device."""
    if batch.dtype == torch.uint8:
        x = batch.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float()
        return x.div_(127.5).sub_(1.0)  # [B, 3, T, H, W]
    return batch.to(device).float()


# --------------------------------------------------------------------------- losses


def psnr(recon: Tensor, target: Tensor) -> float:
    """PSNR in dB for videos in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(recon.float().clamp(-1, 1), target.float()).item()
    return 10.0 * math.log10(4.0 / max(mse, 1e-12))


def recon_loss(recon: Tensor, target: Tensor, cfg: AETrainConfig) -> tuple[Tensor, dict[str, float]]:
    recon = recon.float()
    l1 = (recon - target).abs().mean()
    mse = (recon - target).square().mean()
    loss = cfg.l1_weight * l1 + cfg.mse_weight * mse
    parts = {"l1": l1.item(), "mse": mse.item()}
    if cfg.edge_weight > 0:
        dx = lambda v: v[..., :, 1:] - v[..., :, :-1]  # noqa: E731
        dy = lambda v: v[..., 1:, :] - v[..., :-1, :]  # noqa: E731
        edge = (dx(recon) - dx(target)).abs().mean() + (dy(recon) - dy(target)).abs().mean()
        loss = loss + cfg.edge_weight * edge
        parts["edge"] = edge.item()
    if cfg.temporal_weight > 0:
        dt = lambda v: v[:, :, 1:] - v[:, :, :-1]  # noqa: E731
        k = (1, cfg.temporal_pool, cfg.temporal_pool)
        change = dt(F.avg_pool3d(recon, k)) - dt(F.avg_pool3d(target, k))
        temporal = (change.abs() if cfg.temporal_loss == "l1" else change.square()).mean()
        loss = loss + cfg.temporal_weight * temporal
        parts["temporal"] = temporal.item()
    return loss, parts


def noisy_latents(model: VideoAutoencoder, z: Tensor, max_sigma: float) -> Tensor:
    """Raw latents with per-clip Gaussian noise of std ~ U(0, max_sigma) in normalised units (see
    `AETrainConfig.latent_noise`); the same latents when max_sigma is 0."""
    if max_sigma <= 0:
        return z
    sigma = torch.rand(z.shape[0], device=z.device, dtype=torch.float32) * max_sigma
    noise = torch.randn(z.shape, device=z.device, dtype=torch.float32) * sigma.view(-1, 1, 1, 1, 1)
    # one normalised unit is one latent_std of raw latent: scale the noise, leave z as it is
    return (z.float() + noise * model.latent_std.view(1, -1, 1, 1, 1).float()).to(z.dtype)


def decoder_latents(model: VideoAutoencoder, video: Tensor, batch: Batch | None, cfg: AETrainConfig, redrawer: Redrawer | None,
                    gen: torch.Generator) -> Tensor:
    """The raw latents a decoder-only step decodes: the encoder's with `latent_noise`, and for a
    share `redraw_share` of the clips the redrawer's own draw of them (`cinecli.train.redraw`),
    which needs the clips' prompts and cut flags (`batch`). Only the clips picked are redrawn."""
    z = model.encode(video)
    noisy = noisy_latents(model, z, cfg.latent_noise)
    if redrawer is None:
        return noisy
    if batch is None:
        raise ValueError("redraw needs clips with their prompts and cut flags (cinecli.train.data.Batch)")
    rows = (torch.rand(z.shape[0], generator=gen) < cfg.redraw_share).nonzero().flatten().tolist()
    if not rows:
        return noisy
    start = redrawer.steps - 1 - int(torch.randint(0, min(cfg.redraw_from, redrawer.steps), (), generator=gen))
    drawn = redrawn_latents(redrawer, model.normalize(z[rows].float()), [batch.prompts[i] for i in rows], batch.cuts[rows], start, gen)
    noisy[rows] = model.denormalize(drawn).to(z.dtype)
    return noisy


def clip_cuts(clips: Tensor) -> list[frozenset[int]]:
    """The hard cuts `cinecli.eval` detects in each uint8 clip [N, T, H, W, 3]: world clips cut
    on latent-frame starts, so their cuts would otherwise count as judder."""
    found = []
    for clip in clips:
        sig = compute_signals(clip.numpy())
        found.append(frozenset(detect_cuts(sig.diff, sig.hist_dist)))
    return found


def boundary_share(video: Tensor, stride: int, cuts: list[frozenset[int]]) -> float:
    """Mean over clips [B, 3, T, H, W] of `cinecli.eval.metrics.judder`, each clip's `cuts` left
    out: how much more a reconstruction jumps between latent frames than inside one."""
    change = (video[:, :, 1:].float() - video[:, :, :-1].float()).abs().mean(dim=(1, 3, 4)).cpu().numpy()  # [B, T-1]
    return float(np.mean([judder(c, stride, skip) for c, skip in zip(change, cuts)]))


def lr_at(step: int, cfg: AETrainConfig) -> float:
    """Linear warmup then cosine to ``lr * min_lr_ratio``; a pure function of the step, so
    resuming needs no scheduler state."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    p = min(max(p, 0.0), 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(out_dir: Path, model: VideoAutoencoder, opt: torch.optim.Optimizer,
                     step: int, cfg: AETrainConfig) -> None:
    """Write into a temporary folder and swap it in, so a killed run never leaves half a checkpoint."""
    final, tmp = out_dir / "checkpoint", out_dir / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_autoencoder(model, tmp / "model.safetensors")
    torch.save({"optimizer": opt.state_dict(), "step": step, "config": json.dumps(asdict(cfg))},
               tmp / "trainer.pt")
    old = out_dir / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(out_dir: Path, model: VideoAutoencoder, opt: torch.optim.Optimizer) -> int:
    from safetensors.torch import load_file

    ckpt = out_dir / "checkpoint"
    if not (ckpt / "trainer.pt").exists():
        return 0
    model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=True)
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


# --------------------------------------------------------------------------- training


def _holdout(cfg: AETrainConfig) -> Tensor:
    src = clip_source(cfg.data, cfg.seed + HOLDOUT_SEED_OFFSET, frames=cfg.frames,
                      width=cfg.width, height=cfg.height)
    return torch.stack([torch.from_numpy(np.ascontiguousarray(next(src))) for _ in range(cfg.holdout_clips)])


@torch.no_grad()
def evaluate(model: VideoAutoencoder, clips: Tensor, cuts: list[frozenset[int]], device: torch.device, autocast,
             batch: int = 8) -> tuple[float, Tensor, float]:
    """Held-out PSNR (dB), the raw latents of ``clips`` (uint8 [N,T,H,W,3]) and the
    reconstructions' `boundary_share`, the clips' own `cuts` (`clip_cuts`) left out."""
    was_training = model.training
    model.eval()
    se, n, zs, share = 0.0, 0, [], 0.0
    for i in range(0, clips.shape[0], batch):
        x = to_video(clips[i : i + batch], device)
        with autocast():
            z = model.encode(x)
            y = model.decode(z)
        se += (y.float() - x).square().sum().item()
        n += x.numel()
        zs.append(z.float().cpu())
        share += boundary_share(y.float().clamp(-1, 1), model.temporal_stride, cuts[i : i + batch]) * x.shape[0]  # a mean over clips
    model.train(was_training)
    return 10.0 * math.log10(4.0 / max(se / n, 1e-12)), torch.cat(zs), share / clips.shape[0]


def _save_strip(model: VideoAutoencoder, clip: Tensor, device: torch.device, path: Path) -> None:
    """Originals (top row) vs reconstructions (bottom row) of up to 8 frames of one clip."""
    from PIL import Image

    with torch.no_grad():
        x = to_video(clip[None], device)
        y = model.decode(model.encode(x)).float()
    to_u8 = lambda v: ((v[0].permute(1, 2, 3, 0).cpu().numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)  # noqa: E731
    a, b = to_u8(x)[:8], to_u8(y)[:8]  # [t, H, W, 3]
    Image.fromarray(np.concatenate([np.concatenate(list(a), 1), np.concatenate(list(b), 1)], 0)).save(path)


def train_autoencoder(config: AETrainConfig, *, out_dir: Path, data: Iterator[Tensor] | None = None,
                      log: Callable[[dict], None] | None = None) -> Path:
    """Train (or resume from ``out_dir/checkpoint``) and return the final weights' path.

    ``data`` optionally replaces the built-in clip stream: an iterator of uint8
    ``[B, T, H, W, 3]`` or float ``[B, 3, T, H, W]`` batches in [-1, 1].
    """
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = config
    use_cuda = torch.cuda.is_available() if cfg.device == "auto" else cfg.device == "cuda"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if use_cuda else "no")
    acc = Accelerator(mixed_precision=precision, cpu=not use_cuda)
    device = acc.device
    if use_cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(cfg.seed)
    if cfg.init:
        model = extend_decoder(load_autoencoder(Path(cfg.init)), lookahead=cfg.model.lookahead,
                               frame_kernel=cfg.model.frame_kernel, ahead_path=cfg.model.ahead_path)
    else:
        model = VideoAutoencoder(cfg.model)
    decoder_only = cfg.train == "decoder"  # the encoder then runs without autograd (below)
    trained = list((model.decoder if decoder_only else model).parameters())
    decay = [p for p in trained if p.dim() > 1]
    no_decay = [p for p in trained if p.dim() <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.99), **({"fused": True} if use_cuda else {}),
    )
    step = _load_checkpoint(out_dir, model, opt)
    model, opt = acc.prepare(model, opt)
    raw: VideoAutoencoder = acc.unwrap_model(model)
    forward = torch.compile(model) if cfg.compile else model

    redrawer = load_redrawer(cfg.redraw, default_card(), device) if cfg.redraw else None
    if data is None and redrawer is not None:  # the generator draws from the clips' prompts and cuts
        data = batches(cfg.seed + 10_007 * step, batch=cfg.batch, frames=cfg.frames, workers=cfg.num_workers)
    if data is None:  # a different stream after a resume, so resumed runs see new clips
        data = _loader(cfg, cfg.seed + 10_007 * step, cfg.batch, use_cuda)
    log_path = out_dir / "log.jsonl"

    def emit(rec: dict) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if log is not None:
            log(rec)

    holdout = _holdout(cfg)
    holdout_cuts = clip_cuts(holdout)  # fixed clips: found once
    model.train()
    t_last, steps_since = time.perf_counter(), 0
    t_start = t_last
    while step < cfg.steps and not (cfg.max_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.max_minutes):
        item = next(data)
        batch = item if isinstance(item, Batch) else None  # the redraw's clips carry prompts and cuts
        x = to_video(item if batch is None else batch.video, device)  # [B, 3, T, H, W]
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        with acc.autocast():
            if decoder_only:  # the encoder's latents as the generators were trained on them
                with torch.no_grad():
                    z = decoder_latents(raw, x, batch, cfg, redrawer, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
                recon = raw.decode_raw(z)[0]
            else:
                recon, _ = forward(x)
        loss, parts = recon_loss(recon, x, cfg)
        acc.backward(loss)
        gnorm = acc.clip_grad_norm_(trained, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        steps_since += 1
        if not math.isfinite(parts["l1"]):
            raise FloatingPointError(f"non-finite loss at step {step}: {parts}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            dt = (now - t_last) / steps_since
            t_last, steps_since = now, 0
            emit({"step": step, "loss": loss.item(), **parts,
                  "psnr": 10.0 * math.log10(4.0 / max(parts["mse"], 1e-12)),
                  "lr": lr, "grad_norm": float(gnorm), "sec_per_step": dt,
                  "clips_per_sec": x.shape[0] / dt})
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            p, _, share = evaluate(raw, holdout, holdout_cuts, device, acc.autocast)
            emit({"step": step, "eval_psnr": p, "eval_boundary_share": share})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(out_dir, raw, opt, step, cfg)

    # held-out quality and the per-channel latent statistics diffusion will normalise with
    # (kept from `init` when only the decoder trained: the generators were trained with them)
    p, z, share = evaluate(raw, holdout, holdout_cuts, device, acc.autocast)
    if not decoder_only:
        z = z.transpose(0, 1).reshape(cfg.model.latent_channels, -1).double()  # [C, N*f*h*w]
        raw.latent_mean.copy_(z.mean(1).float().to(device))
        raw.latent_std.copy_(z.std(1).clamp_min(1e-6).float().to(device))
    emit({"step": step, "eval_psnr": p, "eval_boundary_share": share,
          "clips_boundary_share": boundary_share(to_video(holdout, torch.device("cpu")), raw.temporal_stride, holdout_cuts),
          "latent_mean": raw.latent_mean.tolist(),
          "latent_std": raw.latent_std.tolist()})
    _save_strip(raw, holdout[0], device, out_dir / "reconstruction.png")
    plot_log(log_path, out_dir / "loss.png", "autoencoder: reconstruction loss")
    return save_autoencoder(raw, out_dir / "autoencoder.safetensors")

