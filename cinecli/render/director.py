"""The director: walks a film's plan chunk by chunk and turns it into files.

Per chunk: encode any new prompt (once), generate the chunk through the memory, decode it with
the streaming autoencoder, split its frames at shot boundaries into encoded segments, and offer
frames to the contact sheet. Progress leaves as plain event objects; the CLI decides how they
look. The whole generation state lives in `RenderSession`, so `state/` can checkpoint it and
a resumed render continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import MemoryPolicy, make_policy
from cinecli.memory.router import RoutingHead
from cinecli.model.autoencoder import DecodeState
from cinecli.model.bundle import ModelBundle
from cinecli.model.transformer import TextContext
from cinecli.render import events as ev
from cinecli.render.segments import SegmentStore, concat
from cinecli.render.sheet import ContactSheet
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig
from cinecli.screenplay.schema import Screenplay
from cinecli.screenplay.timeline import Plan


@dataclass(frozen=True)
class RenderOptions:
    output: Path
    state_dir: Path
    overwrite: bool = False
    split_shots: bool = False
    device: str = "cpu"
    history: str = "native"  # "native" or "int8" storage of the KV history
    offload_history: bool = False
    hold_offloaded: bool = False  # with offloaded history: hold every layer's active set for the chunk


@dataclass
class RenderSession:
    """Everything a render has built so far that is not on disk as a segment."""

    bank: MemoryBank
    decode_state: DecodeState
    sheet: ContactSheet
    next_chunk: int = 0
    frames_done: int = 0
    seconds: float = 0.0  # generation wall time so far (across resumes)


@dataclass(frozen=True)
class KeptFrame:
    """A frame the contact sheet kept, as decoded: offering it again rebuilds the same thumbnail."""

    shot: int
    index: int  # frame index inside the shot
    length: int  # the shot's length in frames
    frame: np.ndarray  # uint8 [H, W, 3]


@dataclass(frozen=True)
class ChunkOutcome:
    """What one finished chunk added to the render: everything a checkpoint needs besides the bank.

    It is a snapshot taken when the chunk is complete (segments on disk, session advanced), so a
    checkpoint written later from it is consistent even if the next chunk was abandoned half way.
    """

    chunk: int
    latent_start: int
    latent_end: int
    kept: tuple[KeptFrame, ...]
    shots_finished: tuple[int, ...]
    decode_state: DecodeState
    next_chunk: int
    frames_done: int
    seconds: float


@dataclass
class PromptCache:
    """Text encodings per prompt and per-layer cross-attention K/V per prompt combination.

    A new prompt mid-film costs one encoding; a chunk that reuses prompts costs nothing. Prompts
    are encoded one at a time so an encoding never depends on which other prompts happened to be
    new in the same chunk: a resumed render (whose cache starts empty) gets bit-identical text.
    """

    bundle: ModelBundle
    device: torch.device
    dtype: torch.dtype
    encoded: dict[str, Tensor] = field(default_factory=dict)
    contexts: dict[tuple[str, ...], TextContext] = field(default_factory=dict)

    @torch.no_grad()
    def context(self, prompts: tuple[str, ...]) -> TextContext:
        if prompts not in self.contexts:
            for p in prompts:
                if p not in self.encoded:
                    self.encoded[p] = self.bundle.text_encoder.encode([p])[0]
            emb = torch.stack([self.encoded[p] for p in prompts]).unsqueeze(0).to(self.device, self.dtype)
            self.contexts[prompts] = self.bundle.transformer.encode_text(emb)
        return self.contexts[prompts]


def to_uint8(video: Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] → uint8 [T, H, W, 3]."""
    x = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()


@contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run the block on one CPU thread, so its sums do not depend on the machine's core count.

    The decoder's convolutions split their work by the thread count: oneDNN takes another
    algorithm on one thread than on several, and PyTorch's own convolution gave other last bits
    at 5, 7, 8 and 16 threads than at 1, 2, 4 and 6 on a 16-core Xeon. Either way some pixels of
    the same film came out a grey level off. The transformer's latents were bit-identical at 1 to
    16 threads, so only the decoder needs this; on one thread it costs about 0.15 s per 10 s of the
    default model's film on 2 cores (`docs/BENCHMARKS.md`, "Determinism").
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def policy_for(sp: Screenplay, router: RoutingHead | None = None) -> MemoryPolicy:
    """The film's memory policy; camr scores with the model's routing head where it has one."""
    m = sp.film.memory
    return make_policy(m.policy, recent_chunks=m.recent_chunks, top_k=m.top_k, sink_frames=m.sink_frames, shot_window=m.shot_window,
                       router=router)


def film_sampler(bundle: ModelBundle, sp: Screenplay, steps: int | None = None) -> SamplerConfig:
    """The model's sampler with the film's (or the caller's) steps and the film's guidance and cut guidance, where set."""
    sampler = bundle.sampler(steps or sp.film.steps)
    if sp.film.guidance is not None:
        sampler = replace(sampler, guidance=sp.film.guidance)
    return sampler if sp.film.cut_guidance is None else replace(sampler, cut_guidance=sp.film.cut_guidance)


def chunk_request(plan: Plan, chunk: int) -> tuple[ChunkRequest, tuple[str, ...]]:
    """The chunk's per-frame conditioning, with prompt indices local to the chunk."""
    span = plan.chunk_latents(chunk)
    latents = [plan.latents[i] for i in span]
    local: list[int] = []
    for lf in latents:
        if lf.prompt not in local:
            local.append(lf.prompt)
    req = ChunkRequest(
        index=chunk,
        prompts=tuple(local.index(lf.prompt) for lf in latents),
        cuts=tuple(lf.cut for lf in latents),
        noise_seeds=tuple(lf.noise_seed for lf in latents),
        shot_start=plan.shot_start(span.start),
    )
    return req, tuple(plan.prompts[i] for i in local)


def shot_pieces(plan: Plan, start: int, end: int) -> list[tuple[int, int, int]]:
    """(shot, start, end) pieces of the video frame range [start, end), split at shot boundaries."""
    pieces = []
    for shot in plan.shots:
        a, b = max(start, shot.frame_start), min(end, shot.frame_end)
        if a < b:
            pieces.append((shot.index, a, b))
    return pieces


def new_session(bundle: ModelBundle, plan: Plan, options: RenderOptions, device: torch.device, dtype: torch.dtype) -> RenderSession:
    cfg = bundle.config
    _, h, w = bundle.latent_shape(plan.width, plan.height)
    spec = BankSpec(
        num_layers=cfg.num_layers, batch=1, tokens_per_frame=cfg.tokens_per_frame(h, w),
        num_heads=cfg.num_heads, head_dim=cfg.head_dim, dtype=dtype, device=device,
        storage=options.history, offload=options.offload_history, hold_offloaded=options.hold_offloaded,
        capacity=len(plan.latents),
    )
    sheet = ContactSheet([(s.id, plan_prompt(plan, s.index)) for s in plan.shots])
    return RenderSession(MemoryBank(spec), bundle.autoencoder.init_decode_state(1), sheet)


def plan_prompt(plan: Plan, shot: int) -> str:
    """A shot's label for the contact sheet: its prompts in order, events after an arrow."""
    changes = plan.prompt_changes(shot)
    return " → ".join(plan.prompts[p] for _, p in changes)


def latent_places(plan: Plan) -> torch.Tensor | None:
    """The screenplay's location of every latent frame as a host tensor for routing, or None when
    it names no location (routing is then by content alone, exactly as before locations existed).
    On the host because routing reads it to decide shapes (whether sink frames stay), and a
    device tensor would make every layer of every chunk wait for the accelerator to answer."""
    if not plan.locations:
        return None
    return torch.tensor(plan.latent_locations, dtype=torch.long)


class Director:
    """Renders one plan with one model; a generator of progress events."""

    def __init__(
        self,
        sp: Screenplay,
        plan: Plan,
        bundle: ModelBundle,
        options: RenderOptions,
        *,
        steps: int | None = None,
        on_chunk: Callable[["Director", ChunkOutcome], None] | None = None,
    ) -> None:
        self.sp, self.plan, self.bundle, self.options = sp, plan, bundle, options
        self.device = torch.device(options.device)
        self.dtype = next(bundle.transformer.parameters()).dtype
        self.policy = policy_for(sp, bundle.router)
        self.session = new_session(bundle, plan, options, self.device, self.dtype)
        self.generator = ChunkGenerator(
            bundle.transformer, self.session.bank, self.policy, film_sampler(bundle, sp, steps),
            latent_shape=bundle.latent_shape(plan.width, plan.height), chunk_frames=plan.chunk_frames,
            places=latent_places(plan),
        )
        self.prompts = PromptCache(bundle, self.device, self.dtype)
        self.segments = SegmentStore(options.state_dir / "segments", plan.fps, plan.width, plan.height)
        self.on_chunk = on_chunk  # checkpoint hook: called after every finished chunk, before its ChunkDone

    def restore(self, session: RenderSession) -> None:
        """Continue from a checkpointed session instead of the start."""
        self.session = session
        self.generator.bank = session.bank
        self.segments.discard_from(session.next_chunk)

    def reused_events(self) -> Iterator[ev.Event]:
        """ShotDone(reused=True) for every shot a restored session already holds in full."""
        s = self.session
        for shot in self.plan.shots:
            if s.next_chunk > 0 and shot.frame_end <= s.frames_done:
                yield ev.ShotDone(shot=shot.index, id=shot.id, frames=shot.frame_end - shot.frame_start,
                                  seconds=round(s.seconds, 3), reused=True)

    def _chunk(self, chunk: int) -> Iterator[ev.Event]:
        plan, s = self.plan, self.session
        t0 = time.perf_counter()
        req, prompts = chunk_request(plan, chunk)
        # classifier-free guidance (a model card's `guidance` above 1) steers against the empty prompt
        uncond = self.prompts.context(("",)) if self.generator.sampler.guidance != 1.0 else None
        result = self.generator.generate(req, self.prompts.context(prompts), uncond)
        ae = self.bundle.autoencoder
        with torch.no_grad(), one_thread_on_cpu(self.device):
            video, s.decode_state = ae.decode_chunk(ae.denormalize(result.latents.float()), s.decode_state,
                                                    final=chunk == plan.num_chunks - 1)
        start, end = plan.chunk_frame_range(chunk)
        # A look-ahead decoder draws a latent frame once the next one exists: the frames drawn
        # now run from where the last chunk's stopped, one latent frame behind the chunk's own.
        drawn, upto = s.frames_done, min(plan.frames, s.frames_done + video.shape[2])
        frames = to_uint8(video)[: upto - drawn]
        kept: list[KeptFrame] = []
        for shot, a, b in shot_pieces(plan, drawn, upto):
            sp = plan.shots[shot]
            length = sp.frame_end - sp.frame_start
            if a == sp.frame_start:
                yield ev.ShotStarted(shot=shot, id=sp.id, prompt=plan_prompt(plan, shot), frame_start=sp.frame_start, frame_end=sp.frame_end)
            self.segments.write(frames[a - drawn : b - drawn], shot=shot, chunk=chunk)
            for f in range(a, b):
                if s.sheet.offer(shot, f - sp.frame_start, length, frames[f - drawn]):
                    kept.append(KeptFrame(shot, f - sp.frame_start, length, frames[f - drawn].copy()))
            if b == sp.frame_end:
                yield ev.ShotDone(shot=shot, id=sp.id, frames=length, seconds=round(s.seconds, 3), reused=False)
        # a shot whose latent frames are all generated is a restore point, drawn or not: an edit of
        # the next shot regenerates from there (and redraws any frames still held back)
        finished = [shot for shot, _, b in shot_pieces(plan, start, end) if b == plan.shots[shot].frame_end]
        dt = time.perf_counter() - t0
        s.seconds += dt
        s.frames_done = upto
        s.next_chunk = chunk + 1
        if self.on_chunk is not None:  # the checkpoint lands before ChunkDone says it did
            latents = plan.chunk_latents(chunk)
            self.on_chunk(self, ChunkOutcome(
                chunk=chunk, latent_start=latents.start, latent_end=latents.stop, kept=tuple(kept),
                shots_finished=tuple(finished), decode_state=s.decode_state, next_chunk=s.next_chunk,
                frames_done=s.frames_done, seconds=s.seconds,
            ))
        yield ev.ChunkDone(
            chunk=chunk, chunks=plan.num_chunks, shot=plan.shot_of_frame(start), frames_done=upto,
            frames_total=plan.frames, chunk_seconds=round(dt, 4), gen_fps=round((upto - drawn) / dt, 2),
            active_tokens=result.active_tokens, memory_frames=s.bank.num_frames,
        )

    def run(self, preface: Iterable[ev.Event] = ()) -> Iterator[ev.Event]:
        """The render's events; `preface` (resume notes) comes right after the plan's notes.

        Segments from `next_chunk` on are discarded first: they belong to a render that did not
        reach its next checkpoint, or to another film that used this state folder.
        """
        plan, opts = self.plan, self.options
        yield ev.RenderStarted(
            title=self.sp.film.title, frames=plan.frames, shots=len(plan.shots), chunks=plan.num_chunks,
            fps=plan.fps, width=plan.width, height=plan.height, model=self.bundle.card.name,
            device=str(self.device), policy=self.policy.name, state_dir=str(opts.state_dir), output=str(opts.output),
        )
        for note in plan.notes:
            yield ev.Note(message=note)
        yield from preface
        yield from self.reused_events()
        self.segments.discard_from(self.session.next_chunk)
        for chunk in range(self.session.next_chunk, plan.num_chunks):
            yield from self._chunk(chunk)
        yield from self.finish()

    def finish(self) -> Iterator[ev.Event]:
        from cinecli.render.manifest import write_manifest

        opts, plan = self.options, self.plan
        segments = self.segments.segments()
        out = concat(segments, opts.output, overwrite=opts.overwrite)
        if opts.split_shots:
            shots_dir = opts.output.with_suffix(".shots")
            shots_dir.mkdir(exist_ok=True)
            for shot in plan.shots:
                concat([sg for sg in segments if sg.shot == shot.index], shots_dir / f"{shot.index + 1:03d}-{shot.id}.mp4", overwrite=True)
        sheet_path = self.session.sheet.save(opts.output.with_suffix(".contact.png"))
        manifest = write_manifest(self, sheet_path)
        s = self.session
        yield ev.Finished(output=str(out), frames=plan.frames, seconds=round(s.seconds, 3), gen_fps=round(plan.frames / max(s.seconds, 1e-9), 2), manifest=str(manifest))
