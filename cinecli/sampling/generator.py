"""The one chunk-generation loop, used by render, resume, benchmarks and training rollouts.

For each chunk: (1) draw its noise from per-frame seeds, (2) denoise over the step list against
the active set the memory policy routes in, (3) run once more on the clean result at t = 0 so the
chunk's keys/values enter the memory bank. Earlier chunks are never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import MemoryBank
from cinecli.memory.policies import MemoryPolicy
from cinecli.model.transformer import TextContext, WanTransformer
from cinecli.sampling.schedule import StepSchedule, add_noise, predict_x0


@dataclass(frozen=True)
class SamplerConfig:
    """How a chunk is denoised.

    `few-step`: predict the clean chunk, re-noise to the next level, repeat (distilled students).
    `ode`: Euler steps along the predicted velocity (the multi-step base model), with optional
    classifier-free guidance against the empty prompt.
    """

    steps: int = 4
    shift: float = 5.0
    mode: Literal["few-step", "ode"] = "few-step"
    guidance: float = 1.0
    route: Literal["first-step", "estimate"] = "first-step"  # when a content-aware policy routes (see `generate`)
    memory_pass: Literal["clean", "last-step"] = "clean"  # where the chunk's keys/values for memory come from (see `generate`)
    cut_guidance: float = 1.0  # chunks holding a hard cut: the velocity pushed away from the same chunk without its cut flags (1: off)
    cut_guidance_steps: int = 1  # ... at this many first steps, where the picture's layout is decided (later steps only refine it)

    @property
    def schedule(self) -> StepSchedule:
        return StepSchedule(self.steps, self.shift)


@dataclass(frozen=True)
class ChunkRequest:
    """What one chunk needs from the plan: per latent frame, its prompt, cut flag and noise seed."""

    index: int
    prompts: tuple[int, ...]  # index into the generator's prompt list, per latent frame
    cuts: tuple[bool, ...]
    noise_seeds: tuple[int, ...]
    shot_start: int = 0  # latent frame of the hard cut that began the chunk's first frame's shot

    @property
    def frames(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class ChunkResult:
    latents: Tensor  # [1, C, f, h, w] clean latents (model space)
    active_frames: int  # past frames the chunk attended to
    active_tokens: int  # keys per query in self-attention (past + chunk)


def frame_noise(seeds: Sequence[int], step: int, shape: tuple[int, int, int]) -> Tensor:
    """Noise [1, C, f, h, w] on the CPU from per-frame seeds, so any device gives the same film.

    Step 0 is the initial noise; later steps are the re-noising draws of the few-step sampler.
    """
    frames = []
    for seed in seeds:
        g = torch.Generator().manual_seed((seed * 0x9E3779B1 + step * 0x85EBCA77) % (2**63))
        frames.append(torch.randn(shape, generator=g))
    return torch.stack(frames, dim=1).unsqueeze(0)


class ChunkGenerator:
    """Generates a film's latents chunk by chunk through the memory bank."""

    def __init__(
        self,
        model: WanTransformer,
        bank: MemoryBank,
        policy: MemoryPolicy,
        sampler: SamplerConfig,
        *,
        latent_shape: tuple[int, int, int],  # (C, h, w) of one latent frame
        chunk_frames: int,
        places: Tensor | None = None,  # the screenplay's location per latent frame of the film (-1: none), on the host, for routing
    ) -> None:
        self.model = model
        self.places = places
        self.bank = bank
        self.policy = policy
        self.sampler = sampler
        self.latent_shape = latent_shape
        self.chunk_frames = chunk_frames
        self.rows, self.cols = model.config.grid(latent_shape[1], latent_shape[2])
        self.calls = 0  # transformer forwards so far (tests count regeneration with it)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _source(self, routing: Routing, req: ChunkRequest, write: bool) -> ChunkAttention:
        return ChunkAttention(
            self.bank, self.policy, routing, chunk_frames=req.frames, rows=self.rows, cols=self.cols,
            rope=self.model.rope, write=write, rotate=self.model.rotate, shot_start=req.shot_start, places=self.places,
        )

    def _velocity(self, x: Tensor, sigma: float, req: ChunkRequest, cond: tuple[Tensor, Tensor], text: TextContext, uncond: TextContext | None, routing: Routing,
                  write: bool = False, cut_push: bool = False) -> Tensor:
        model = self.model
        fp, cut = cond
        t = torch.full((1, req.frames), sigma * 1000.0, device=self.device)
        src = self._source(routing, req, write=write)
        self.calls += 1
        v = model(x, t, text, fp, src, cut)
        if cut_push and self.sampler.cut_guidance != 1.0 and any(req.cuts):  # the request's host flags: no device sync
            # A dialogue's reverse shot differs little from the shot before it, and a model that leans
            # on its past draws the continuation; extrapolating from the chunk without its cut flags
            # strengthens what the cut embedding asks for (one more forward, on the chunks that cut).
            self.calls += 1
            v_n = model(x, t, text, fp, self._source(routing, req, write=False), torch.zeros_like(cut))
            v = v_n + self.sampler.cut_guidance * (v - v_n)
        if uncond is not None and self.sampler.guidance != 1.0:
            self.calls += 1
            v_u = model(x, t, uncond, torch.zeros_like(fp), self._source(routing, req, write=False), cut)  # memory takes the prompted pass
            v = v_u + self.sampler.guidance * (v - v_u)
        return v.float()

    def _route_on_estimate(self, x0: Tensor, cond: tuple[Tensor, Tensor], text: TextContext, req: ChunkRequest) -> Routing:
        """Routing computed from the queries of the chunk's first clean estimate (one pass at t = 0).

        At the first denoising step the chunk is pure noise and its queries carry only what the
        prompt and the timestep put there. Measured on world montage clips
        (`benchmarks/memory_use.py --clips 12`), CAMR's routed older frames show the returning
        scene 62% of the time with noise queries, 77% with the clean chunk's queries (chance:
        43%). One step in, the estimate is close to the clean chunk. The price is one more
        transformer pass per chunk (1.26× the time at the 1.3B shape); on the default model it did
        not improve the film metrics, so it is off by default (`route="first-step"`).
        """
        fp, cut = cond
        routing = Routing()
        t0 = torch.zeros(1, req.frames, device=self.device)
        self.calls += 1
        self.model(x0, t0, text, fp, self._source(routing, req, write=False), cut, skip_head=True)
        return routing

    def _clean_pass(self, x0: Tensor, req: ChunkRequest, cond: tuple[Tensor, Tensor], text: TextContext, routing: Routing) -> None:
        """One pass over the clean chunk at t = 0 that stages its keys and values in the bank."""
        fp, cut = cond
        t0 = torch.zeros(1, req.frames, device=self.device)
        self.calls += 1
        self.model(x0, t0, text, fp, self._source(routing, req, write=True), cut, skip_head=True)

    @torch.no_grad()
    def remember(self, req: ChunkRequest, latents: Tensor, text: TextContext) -> None:
        """Write a chunk drawn elsewhere (another model, the data) into this model's memory, as
        generation writes its own: a clean pass routed afresh, then the commit."""
        cond = torch.tensor([req.prompts], device=self.device), torch.tensor([req.cuts], device=self.device)
        self._clean_pass(latents.to(self.device, self.dtype), req, cond, text, Routing())
        self.bank.commit()

    def _routing_chooses(self, frames: int) -> bool:
        """Whether re-routing from the clean estimate can change the active set of this chunk."""
        budget = self.policy.budget(frames)
        return (self.sampler.route == "estimate" and self.policy.needs_queries
                and budget is not None and self.bank.num_frames > budget)

    @torch.no_grad()
    def generate(self, req: ChunkRequest, text: TextContext, uncond: TextContext | None = None) -> ChunkResult:
        """Denoise one chunk and write it into memory. `text` holds the prompts `req.prompts` index.

        Memory: with `memory_pass="clean"` the chunk's keys/values enter memory from a pass over
        the clean result at t = 0 (what training shows the model as its past); with
        `"last-step"` they are taken from the last denoising step's own forward, at that step's
        noise level, and the extra pass is skipped (one forward fewer per chunk).

        Routing (content-aware policies): with `route="estimate"` the first step attends to the
        active set routed from its noise, and every later step and the clean pass to the set
        routed from the first clean estimate (one extra pass per chunk); with `"first-step"` the
        first routing is held throughout.
        """
        sig = self.sampler.schedule.sigmas().tolist()
        routing = Routing()
        fp = torch.tensor([req.prompts], device=self.device)
        cut = torch.tensor([req.cuts], device=self.device)
        noise = frame_noise(req.noise_seeds, 0, self.latent_shape).to(self.device)
        x = noise.to(self.dtype)
        x0 = x
        # 1. denoise over the step list (see the docstring for when routing is computed)
        last_step = self.sampler.memory_pass == "last-step"
        for i, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
            v = self._velocity(x, s, req, (fp, cut), text, uncond, routing, write=last_step and s_next == 0, cut_push=i < self.sampler.cut_guidance_steps)
            reroute = i == 0 and s_next > 0 and self._routing_chooses(req.frames)
            if self.sampler.mode == "ode":
                if reroute:
                    routing = self._route_on_estimate(predict_x0(x.float(), v, s).to(self.dtype), (fp, cut), text, req)
                x = (x.float() + (s_next - s) * v).to(self.dtype)
                x0 = x
            else:
                estimate = predict_x0(x.float(), v, s)
                x0 = estimate.to(self.dtype)
                if reroute:
                    routing = self._route_on_estimate(x0, (fp, cut), text, req)
                if s_next > 0:
                    x = add_noise(estimate, frame_noise(req.noise_seeds, i + 1, self.latent_shape).to(self.device), s_next).to(self.dtype)
        # 2. clean pass at t = 0: the chunk's keys and values enter memory
        if not last_step:
            self._clean_pass(x0, req, (fp, cut), text, routing)
        self.bank.commit()
        past = routing.active_frames()
        tokens = (past + req.frames) * self.rows * self.cols
        return ChunkResult(latents=x0, active_frames=past, active_tokens=tokens)
