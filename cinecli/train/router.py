"""Fitting CAMR's routing head (`cinecli train router`): the fourth, smallest stage.

The generator is frozen. World clips as long as the films that return to earlier scenes go
through it chunk by chunk, teacher-forced as routed training runs: each chunk is seen at the
noise level it routes at (σ = 1, the first denoising step) against the clean past in the memory
bank, and its per-layer mean query is recorded beside every past frame's descriptor. The head
(`cinecli.memory.router.RoutingHead`) is then fitted so its scores put the mass on the older
frames that share the chunk's setting and characters (the world's truth says which), and its
precision is reported on held-out clips against the raw relevance it replaces.

Why a separate stage and not a loss inside base training: the top-k choice has no gradient, and
the frames routing should find are known only from the world's truth; a frozen generator also
means the head can be refitted in minutes for any generator of the same shape.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from cinecli.memory.active import Routing
from cinecli.memory.policies import CamrPolicy
from cinecli.memory.router import RoutingHead, save_router
from cinecli.model.bundle import ModelBundle, load_default, load_generator
from cinecli.train.base import ClipMemory, chunk_slices, encode_prompts, frame_positions
from cinecli.train.data import Batch, LatentClip, collate, latent_conditioning, video_to_model
from cinecli.train.logs import plot_log

__all__ = ["RouterTrainConfig", "ClipFeatures", "clip_labels", "record_features", "fit_head", "routing_precision", "train_router"]


@dataclass(frozen=True)
class RouterTrainConfig:
    variant: str = "student"  # the shipped generator the head routes for: student or base
    init: str = ""  # a generator file (same card) to fit for instead of the shipped one
    seed: int = 0
    clips: int = 256  # world clips to fit on
    eval_clips: int = 32  # held-out clips (another seed) for the precision report
    latent_frames: int = 240  # clip length: pasts as long as the benchmark's longest films
    montage: float = 1.0  # share of montages of long films with returns (`training_clips`)
    batch: int = 8  # clips per teacher-forced pass
    num_workers: int = 0  # world rendering processes
    chunk_frames: int = 3
    recent_chunks: int = 3  # camr's window: routing chooses among frames older than it
    top_k: int = 5
    sigma: float = 1.0  # the chunk's noise level when it routes (the first denoising step)
    rank: int = 32
    return_weight: float = 1.0  # loss weight of chunks that return to a setting from beyond the window (what memory is for)
    steps: int = 1500
    clips_per_step: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    log_every: int = 100
    device: str = "auto"  # auto: cuda when available

    def __post_init__(self) -> None:
        if self.variant not in ("student", "base"):
            raise ValueError(f"variant must be student or base, got {self.variant!r}")
        if self.latent_frames % self.chunk_frames:
            raise ValueError(f"latent_frames ({self.latent_frames}) must be a multiple of chunk_frames ({self.chunk_frames})")
        if self.latent_frames <= (self.recent_chunks + 1) * self.chunk_frames + self.top_k:
            raise ValueError(f"latent_frames ({self.latent_frames}) leaves routing nothing to choose from")


@dataclass
class ClipFeatures:
    """What routing saw on a batch of clips, and what it should have found (same-length clips)."""

    queries: Tensor  # [N, C, L, W] each chunk's per-layer mean query at σ (W = heads × head_dim)
    descriptors: Tensor  # [N, L, T, W] each latent frame's per-layer descriptor (mean key)
    shared: Tensor  # [N, C, T] labels (setting, characters) latent frame t shares with chunk c
    same_scene: Tensor  # bool [N, C, T]: frame t shows chunk c's setting
    returns: Tensor  # bool [N, C]: chunk c's setting was on screen before its window, not in it

    def _map(self, fn: Callable[[Tensor], Tensor]) -> "ClipFeatures":
        return ClipFeatures(*(fn(getattr(self, f.name)) for f in fields(self)))

    @staticmethod
    def cat(parts: list["ClipFeatures"]) -> "ClipFeatures":
        return ClipFeatures(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(ClipFeatures)))

    def to(self, device: torch.device) -> "ClipFeatures":
        return self._map(lambda t: t.to(device))

    def take(self, clips: Tensor | slice) -> "ClipFeatures":
        """The features of some clips (index along the first axis)."""
        return self._map(lambda t: t[clips])


def clip_labels(clip, stride: int) -> tuple[frozenset[str], ...]:  # type: ignore[no-untyped-def]
    """Per latent frame: the setting and the characters its first video frame shows."""
    from cinecli.world.render import frame_truth

    out = []
    for j in range(len(clip.film_frames) // stride):
        t = frame_truth(clip.film, int(clip.film_frames[j * stride]))
        out.append(frozenset({"scene:" + t.scene_id} | {"character:" + c.id for c in t.characters}))
    return tuple(out)


class LabelledClips(IterableDataset):
    """Endless world clips with their per-latent-frame labels; each worker draws its own seed."""

    def __init__(self, seed: int, frames: int, stride: int, montage: float) -> None:
        super().__init__()
        self.seed, self.frames, self.stride, self.montage = seed, frames, stride, montage

    def __iter__(self) -> Iterator[tuple[LatentClip, tuple[frozenset[str], ...]]]:
        from cinecli.world.dataset import training_clips

        info = get_worker_info()
        worker = info.id if info is not None else 0
        for clip in training_clips(self.seed * 1000 + worker, frames=self.frames, montage=self.montage):
            prompts, cuts = latent_conditioning(list(clip.prompts), [bool(c) for c in clip.cuts], self.stride)
            yield LatentClip(np.ascontiguousarray(clip.frames), prompts, cuts), clip_labels(clip, self.stride)


def _collate(items: list[tuple[LatentClip, tuple[frozenset[str], ...]]]) -> tuple[Batch, list[tuple[frozenset[str], ...]]]:
    return collate([c for c, _ in items]), [labels for _, labels in items]


def label_tensors(labels: list[tuple[frozenset[str], ...]], chunk_frames: int, recent: int) -> tuple[Tensor, Tensor, Tensor]:
    """(shared [N, C, T], same_scene [N, C, T], returns [N, C]) from per-frame label sets.

    A chunk's labels are those of all its frames; its setting, its first frame's.
    """
    shared, same, rets = [], [], []
    for clip in labels:
        names = sorted(set().union(*clip))
        hot = torch.zeros(len(clip), len(names))
        for t, frame in enumerate(clip):
            hot[t, [names.index(n) for n in frame]] = 1.0
        chunks = hot.view(-1, chunk_frames, len(names)).amax(dim=1)  # [C, V]
        shared.append(chunks @ hot.T)
        scenes = [next(n for n in frame if n.startswith("scene:")) for frame in clip]
        first = scenes[::chunk_frames]
        same.append(torch.tensor([[s == c for s in scenes] for c in first]))
        rets.append(torch.tensor([c in scenes[: max(0, i * chunk_frames - recent)] and c not in scenes[max(0, i * chunk_frames - recent) : i * chunk_frames]
                                  for i, c in enumerate(first)]))
    return torch.stack(shared), torch.stack(same), torch.stack(rets)


@dataclass
class _QueryLog:
    """A camr policy that routes as usual and keeps each layer's mean query of the chunk."""

    policy: CamrPolicy
    queries: dict[int, Tensor] = field(default_factory=dict)
    name: str = "camr"
    needs_queries: bool = True

    def budget(self, chunk_frames: int) -> int | None:
        return self.policy.budget(chunk_frames)

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        assert query is not None
        self.queries[layer] = query.float().mean(dim=1).flatten(1)
        return self.policy.select(num_frames, chunk_frames, query, descriptors, shot_start, layer, places)


@torch.no_grad()
def record_features(bundle: ModelBundle, batch: Batch, labels: list[tuple[frozenset[str], ...]], cfg: RouterTrainConfig,
                    gen: torch.Generator, device: torch.device) -> ClipFeatures:
    """Teacher-forced pass over a batch of clips: each chunk at σ against the clean past, then its
    clean pass into memory (as generation writes its own chunks)."""
    model = bundle.transformer
    ae = bundle.autoencoder
    # one clip at a time: a batch of 80-second clips encoded at once needs tens of GB of activations
    z = torch.cat([ae.normalize(ae.encode(video_to_model(batch.video[i : i + 1], device))).float() for i in range(batch.video.shape[0])])
    b, _, f = z.shape[:3]
    ctx = encode_prompts(bundle.text_encoder, model, batch.prompts, 0.0, gen)
    log = _QueryLog(CamrPolicy(recent_chunks=cfg.recent_chunks, top_k=cfg.top_k))
    memory = ClipMemory.open(model, z, log)  # type: ignore[arg-type]
    cuts = batch.cuts.to(device)
    noise = torch.randn(z.shape, generator=gen).to(device)
    queries = []
    for sl in chunk_slices(f, cfg.chunk_frames):
        fp = frame_positions(sl, b, device)
        sigma = torch.full((b, cfg.chunk_frames), cfg.sigma, device=device)
        log.queries.clear()
        memory.forward((1 - cfg.sigma) * z[:, :, sl] + cfg.sigma * noise[:, :, sl], sigma, ctx, fp, cuts[:, sl], Routing())
        queries.append(torch.stack([log.queries[layer] for layer in range(model.config.num_layers)], dim=1))  # every layer routes each chunk
        memory.remember(z[:, :, sl], ctx, fp, cuts[:, sl], Routing())
    desc = torch.stack([memory.bank.descriptors(layer).flatten(2) for layer in range(model.config.num_layers)], dim=1)  # [B, L, T, W]
    shared, same, rets = label_tensors(labels, cfg.chunk_frames, cfg.recent_chunks * cfg.chunk_frames)
    return ClipFeatures(torch.stack(queries, dim=1).cpu(), desc.cpu(), shared, same, rets)


def candidates(chunks: int, frames: int, cfg: RouterTrainConfig, device: torch.device) -> Tensor:
    """bool [C, T]: the older frames camr chooses among for each chunk (before its recent window)."""
    older = torch.arange(chunks, device=device) * cfg.chunk_frames - cfg.recent_chunks * cfg.chunk_frames
    return torch.arange(frames, device=device)[None, :] < older[:, None]


def all_scores(head: RoutingHead | None, feats: ClipFeatures) -> Tensor:
    """[N, L, C, T] routing scores of every chunk for every frame: the head's, or raw relevance."""
    if head is None:
        return torch.einsum("nclw,nltw->nlct", feats.queries.float(), feats.descriptors.float())
    q = head.embed_queries(feats.queries)  # [N, C, L, r]
    k = head.embed_keys(feats.descriptors.transpose(1, 2))  # [N, T, L, r]
    return torch.einsum("nclr,ntlr->nlct", q, k)


def routing_precision(head: RoutingHead | None, feats: ClipFeatures, cfg: RouterTrainConfig) -> dict[str, float]:
    """Share of the top-k routed older frames that show the chunk's setting, per layer then mean;
    over every chunk with more than k older frames one of which shows it, and over returns only;
    with chance (the share of older frames that show it) beside each."""
    n, c, _, _ = feats.queries.shape
    t = feats.descriptors.shape[2]
    cand = candidates(c, t, cfg, feats.queries.device)
    eligible = (cand.sum(-1) > cfg.top_k)[None] & (feats.same_scene & cand[None]).any(-1)  # [N, C]
    with torch.no_grad():
        scores = all_scores(head, feats).masked_fill(~cand[None, None], float("-inf"))
    top = scores.topk(cfg.top_k, dim=-1).indices  # [N, L, C, k]
    same = feats.same_scene[:, None].expand(-1, scores.shape[1], -1, -1)
    hits = torch.gather(same.float(), 3, top).mean(dim=(1, 3))  # [N, C]
    chance = (feats.same_scene & cand[None]).sum(-1) / cand.sum(-1).clamp(min=1)
    out = {}
    for name, mask in (("all", eligible), ("returns", eligible & feats.returns)):
        out[f"precision_{name}"] = float(hits[mask].mean()) if mask.any() else float("nan")
        out[f"chance_{name}"] = float(chance[mask].float().mean()) if mask.any() else float("nan")
        out[f"chunks_{name}"] = int(mask.sum())
    return out


def head_statistics(head: RoutingHead, feats: ClipFeatures) -> None:
    """Set the head's normalisation to the fitting data's per-layer means and spreads."""
    q = feats.queries.float().flatten(0, 1)  # [N*C, L, W]
    k = feats.descriptors.float().transpose(1, 2).flatten(0, 1)  # [N*T, L, W]
    head.query_mean.copy_(q.mean(0))
    head.query_scale.copy_(q.std(0).clamp(min=1e-3))
    head.key_mean.copy_(k.mean(0))
    head.key_scale.copy_(k.std(0).clamp(min=1e-3))


def routing_loss(head: RoutingHead, feats: ClipFeatures, cfg: RouterTrainConfig) -> Tensor:
    """Cross-entropy of the head's softmax over the older frames against the frames that share
    the chunk's labels (weighted by how many), mean over layers and chunks that have any; chunks
    that return from beyond the window weigh `return_weight` (they are a few percent of chunks,
    and the ones a film's coherence hangs on)."""
    n, c, _, _ = feats.queries.shape
    t = feats.descriptors.shape[2]
    cand = candidates(c, t, cfg, feats.queries.device)[None]  # [1, C, T]
    target = feats.shared * cand
    valid = target.sum(-1) > 0  # [N, C]
    target = target / target.sum(-1, keepdim=True).clamp(min=1e-8)
    logp = all_scores(head, feats).masked_fill(~cand[:, None], float("-inf")).log_softmax(-1)  # [N, L, C, T]
    ce = -(target[:, None] * logp.nan_to_num(neginf=0.0)).sum(-1).mean(1)  # [N, C]
    weight = (1.0 + (cfg.return_weight - 1.0) * feats.returns.float()) * valid
    return (ce * weight).sum() / weight.sum().clamp(min=1e-8)


def fit_head(feats: ClipFeatures, cfg: RouterTrainConfig, num_heads: int, head_dim: int, log: Callable[[dict], None], logf=None) -> RoutingHead:  # type: ignore[no-untyped-def]
    """Adam on the projections, minibatches of clips; the normalisation is the data's."""
    layers = feats.queries.shape[2]
    gen = torch.Generator().manual_seed(cfg.seed)
    head = RoutingHead(layers, num_heads, head_dim, cfg.rank).to(feats.queries.device)
    head_statistics(head, feats)
    with torch.no_grad():
        width = num_heads * head_dim
        for p in (head.query_proj, head.key_proj):
            p.copy_(torch.randn(p.shape, generator=gen).to(p.device) / width**0.5)
    opt = torch.optim.AdamW([head.query_proj, head.key_proj], lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = feats.queries.shape[0]
    t0 = time.time()
    for step in range(1, cfg.steps + 1):
        pick = torch.randperm(n, generator=gen)[: cfg.clips_per_step].to(feats.queries.device)
        part = feats.take(pick)
        lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * (step - 1) / cfg.steps))  # cosine decay: the last steps settle
        for g in opt.param_groups:
            g["lr"] = lr
        loss = routing_loss(head, part, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "phase": "fit", "loss": round(loss.item(), 5), "lr": round(lr, 6), "elapsed": round(time.time() - t0, 1)}
            if logf is not None:
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
            log(rec)
    return head.eval()


def collect(bundle: ModelBundle, cfg: RouterTrainConfig, seed: int, clips: int, device: torch.device, log: Callable[[dict], None], what: str) -> ClipFeatures:
    """`clips` world clips of `cfg.latent_frames` latent frames, their routing features recorded."""
    stride = bundle.card.temporal_stride
    ds = LabelledClips(seed, cfg.latent_frames * stride, stride, cfg.montage)
    loader = DataLoader(ds, batch_size=cfg.batch, num_workers=cfg.num_workers, collate_fn=_collate,
                        prefetch_factor=4 if cfg.num_workers > 0 else None)
    gen = torch.Generator().manual_seed(seed)
    parts: list[ClipFeatures] = []
    t0 = time.time()
    for batch, labels in loader:
        parts.append(record_features(bundle, batch, labels, cfg, gen, device))
        done = sum(p.queries.shape[0] for p in parts)
        log({"phase": f"record {what}", "clips": done, "elapsed": round(time.time() - t0, 1)})
        if done >= clips:
            break
    return ClipFeatures.cat(parts).take(slice(0, clips))


def train_router(cfg: RouterTrainConfig, out_dir: Path, *, bundle: ModelBundle | None = None, log: Callable[[dict], None] = print) -> Path:
    """Record, fit, report; writes OUT/<variant>.router.safetensors, log.jsonl, loss.png and
    precision.json (held-out routing precision with the head and with raw relevance)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    if bundle is None:
        bundle = load_default(cfg.variant)
        if cfg.init:
            load_generator(bundle.transformer, bundle.text_encoder, Path(cfg.init))
    bundle.transformer.to(device).eval()
    bundle.text_encoder.to(device).eval()
    bundle.autoencoder.to(device).eval()
    fit_feats = collect(bundle, cfg, cfg.seed, cfg.clips, device, log, "fit").to(device)
    eval_feats = collect(bundle, cfg, cfg.seed + 1, cfg.eval_clips, device, log, "held-out").to(device)
    with (out_dir / "log.jsonl").open("w", encoding="utf-8") as logf:
        mc = bundle.transformer.config
        head = fit_head(fit_feats, cfg, mc.num_heads, mc.head_dim, log, logf)
        report = {"attention relevance": routing_precision(None, eval_feats, cfg), "routing head": routing_precision(head, eval_feats, cfg),
                  "routing head, fitting clips": routing_precision(head, fit_feats, cfg)}
        for name, rec in report.items():
            line = {"phase": "eval", "routing": name, **{k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}}
            logf.write(json.dumps(line) + "\n")
            log(line)
    (out_dir / "precision.json").write_text(json.dumps(report, indent=1))
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    final = out_dir / f"{cfg.variant}.router.safetensors"
    save_router(head.cpu(), final)
    plot_log(out_dir / "log.jsonl", out_dir / "loss.png", f"routing head for the {cfg.variant}: cross-entropy")
    return final
