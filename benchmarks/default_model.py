"""The default model on the world benchmark: quality per sampler and the memory ablation.

    python benchmarks/default_model.py --films 6 --out docs/DEFAULT_MODEL_EVAL.md

Renders benchmark films (those with scene/character returns, shortest first) through the real
render path (director → segments → MP4), reads the MP4 back and scores it with `cinecli.eval`
against the world's ground truth. Rows:
  - student + camr / window / full / none, at the same active budget for camr and window
    (14 past latent frames: camr = 3 recent chunks + top-5 routed, window = 5 sink + 3 recent),
    and window without sink frames (the 5 most recent chunks: 15 frames, one more than camr);
  - base model (multi-step ODE) + camr, for the student-vs-base comparison.
On request (`--rows`): the world's own frames ("ground truth", the ceiling) and the same frames
encoded and decoded by the autoencoder (the ceiling it leaves any generator); the base model
with window / none (its own memory ablation); the student with int8 weights (`--quantize
int8`), for the quality cost of 8 bits; camr with the budget split differently; memory taken
from the last denoising step instead of a clean pass; the student with classifier-free
guidance 1.25, 1.5 or 2 against the empty prompt; the student with 8 steps instead of the 4 it was
distilled for; the student with the base model (16 guided ODE steps) drawing the first chunk of
every shot, each model keeping its own memory of the whole film (`KeyframeGenerator`: does the
student keep a good first drawing?); camr with a recent window bounded by the shot
(`shot_window`: after a hard cut only routing brings earlier shots back); and every memory row
of either model "(truth past)": the world's own latents everywhere but the shots that return, so
each return is scored against hidden details that only memory can bring back
(`TruthPastGenerator`; read only the inter-shot columns of those rows). Routing rows tell a
routing failure from a model that ignores its memory: camr scored by the mean query's relevance
instead of attention mass (`mean-query routing`, camr's earlier score), camr without a trained
routing head where the model has one (`attention routing`), camr whose routed frames the world's
truth picks (`oracle routing`, `OracleRouting`: the best routing could do at the same budget),
and camr routed by attention over every stored key or over a few region means of each frame
(`attention-mass`, `region-mass`: `AttentionMassRouting`, whose cost grows with the film).
`--keep DIR` keeps every rendered film as DIR/<row>/<seed>.mp4 beside its screenplay
(<seed>.yaml), so a film can be looked at or scored again (`cinecli eval`) without rendering it
again; `--keep DIR --rescore` scores the films already kept there (after a change to
`cinecli.eval`) and renders only those missing. `--weights DIR` tests whichever of DIR/student.safetensors, DIR/base.safetensors and
DIR/autoencoder.safetensors it holds instead of the shipped ones, and DIR/student.router.safetensors
or DIR/base.router.safetensors (a routing head) likewise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from cinecli.eval.report import evaluate, returning_shots
from cinecli.memory.bank import MemoryBank
from cinecli.memory.policies import CamrPolicy, attention_mass, first, frame_scores, recent_start, same_place
from cinecli.memory.router import load_router
from cinecli.eval.metrics import judder
from cinecli.model.autoencoder import AutoencoderConfig, load_autoencoder
from cinecli.model.bundle import load_default, load_generator
from cinecli.model.formats import film_format
from cinecli.model.transformer import TextContext
from cinecli.render.director import Director, PromptCache, RenderOptions
from cinecli.render.segments import read_video
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, ChunkResult
from cinecli.screenplay import load_screenplay_resolving, plan_film
from cinecli.screenplay.schema import MemorySettings
from cinecli.world.benchmark import benchmark_films, film_returns
from cinecli.world.screenplay import to_screenplay_yaml


class Row(NamedTuple):
    variant: str  # which loaded model: "student", "base" or "student-int8"
    memory: MemorySettings
    steps: int | None = None  # None: the model's own
    memory_pass: str = "clean"  # SamplerConfig.memory_pass
    route: str = "first-step"  # SamplerConfig.route: when a content-aware policy routes
    guidance: float | None = None  # classifier-free guidance against the empty prompt (None: the model card's)
    truth_past: bool = False  # the world's own latents everywhere but the shots that return (`TruthPastGenerator`)
    oracle: bool = False  # the world's truth picks camr's routed frames (`OracleRouting`)
    oracle_characters: bool = True  # the truth's picks share the chunk's characters too, not only its scene
    router: bool = True  # camr scores with the model's routing head, where it has one (False: raw relevance)
    shortlist: int = 0  # CamrPolicy.shortlist: the head shortlists, the score picks (0: the head picks)
    scoring: str = "mass"  # CamrPolicy.scoring: "mass" (attention mass, the default) or "mean" (the mean query's relevance)
    locations: bool = False  # the screenplay names each shot's location (`location:`), which camr routes by
    location_sink: bool = False  # by location, the location's earliest frames instead of its most relevant (`LocationSinkRouting`)
    attention_mass: bool = False  # camr routes the older frames the chunk's own attention weighs most (`AttentionMassRouting`)
    regions: tuple[int, int] | None = None  # with attention_mass: keys pooled to this grid of region means (rows, cols) first
    pooled_queries: bool = False  # with regions: the chunk's queries pooled to the same regions too
    openings: str | None = None  # camr routes the frames that open a shot "never" or "first" (`OpeningRouting`)
    cut_guidance: float = 1.0  # SamplerConfig.cut_guidance: chunks that cut pushed away from themselves without their cut flags
    cut_guidance_steps: int = 1  # SamplerConfig.cut_guidance_steps: at this many first steps


ROWS = {
    "ground truth": Row("truth", MemorySettings("camr", 3, 5, 0)),
    "ground truth through the autoencoder": Row("autoencoder", MemorySettings("camr", 3, 5, 0)),
    "student camr": Row("student", MemorySettings("camr", 3, 5, 0)),
    "student window": Row("student", MemorySettings("window", 3, 5, 5)),
    "student window recent-only": Row("student", MemorySettings("window", 5, 5, 0)),
    "student full": Row("student", MemorySettings("full", 3, 5, 0)),
    "student none": Row("student", MemorySettings("none", 3, 5, 0)),
    "base camr (16 ODE steps)": Row("base", MemorySettings("camr", 3, 5, 0), 16),
    "base window (16 ODE steps)": Row("base", MemorySettings("window", 3, 5, 5), 16),
    "base window recent-only (16 ODE steps)": Row("base", MemorySettings("window", 5, 5, 0), 16),
    "base none (16 ODE steps)": Row("base", MemorySettings("none", 3, 5, 0), 16),
    "student camr int8": Row("student-int8", MemorySettings("camr", 3, 5, 0)),
    "student camr (1 recent chunk + top-11)": Row("student", MemorySettings("camr", 1, 11, 0)),
    "student camr last-step memory": Row("student", MemorySettings("camr", 3, 5, 0), memory_pass="last-step"),
    "student camr guidance 1.25": Row("student", MemorySettings("camr", 3, 5, 0), guidance=1.25),
    "student camr guidance 1.5": Row("student", MemorySettings("camr", 3, 5, 0), guidance=1.5),
    "student camr guidance 2": Row("student", MemorySettings("camr", 3, 5, 0), guidance=2.0),
    "student camr (8 steps)": Row("student", MemorySettings("camr", 3, 5, 0), 8),
    "student camr (base draws each shot's first chunk)": Row("keyframes", MemorySettings("camr", 3, 5, 0)),
    "student camr shot window": Row("student", MemorySettings("camr", 3, 5, 0, shot_window=True)),
    "student camr estimate routing": Row("student", MemorySettings("camr", 3, 5, 0), route="estimate"),
}
ROWS["student camr oracle routing"] = ROWS["student camr"]._replace(oracle=True)
ROWS["student camr by location"] = ROWS["student camr"]._replace(locations=True)
ROWS["student camr int8 by location"] = ROWS["student camr int8"]._replace(locations=True)
ROWS["base camr by location (16 ODE steps)"] = ROWS["base camr (16 ODE steps)"]._replace(locations=True)
ROWS["student camr by location (5 sink frames + 3 recent chunks)"] = Row("student", MemorySettings("camr", 3, 0, 5), locations=True)
ROWS["student camr by location to earliest frames"] = ROWS["student camr by location"]._replace(location_sink=True)
ROWS["student camr scene oracle routing"] = ROWS["student camr"]._replace(oracle=True, oracle_characters=False)
ROWS["student camr attention routing"] = ROWS["student camr"]._replace(router=False)
ROWS["student camr attention-mass routing"] = ROWS["student camr"]._replace(router=False, attention_mass=True)
ROWS["student camr attention-mass routing by location"] = ROWS["student camr attention-mass routing"]._replace(locations=True)
ROWS["student camr region-mass routing by location (4x6 regions)"] = ROWS["student camr attention-mass routing by location"]._replace(regions=(4, 6))
ROWS["student camr region-mass routing by location (2x3 regions)"] = ROWS["student camr attention-mass routing by location"]._replace(regions=(2, 3))
ROWS["student camr mean-query routing"] = ROWS["student camr"]._replace(scoring="mean")
ROWS["student camr mean-query routing by location"] = ROWS["student camr by location"]._replace(scoring="mean")
ROWS["student camr region-mass routing by location (2x3 regions of keys and queries)"] = ROWS["student camr region-mass routing by location (2x3 regions)"]._replace(pooled_queries=True)
ROWS["student camr without shot openings"] = ROWS["student camr"]._replace(openings="never")
ROWS["student camr by location without shot openings"] = ROWS["student camr by location"]._replace(openings="never")
ROWS["student camr shot openings first"] = ROWS["student camr"]._replace(openings="first")
ROWS["student camr by location shot openings first"] = ROWS["student camr by location"]._replace(openings="first")
ROWS["student camr head shortlist 10"] = ROWS["student camr"]._replace(shortlist=10)
ROWS["student camr (1 sink frame + top-4)"] = Row("student", MemorySettings("camr", 3, 4, 1))
ROWS["student camr (1 sink frame + top-4) attention routing"] = ROWS["student camr (1 sink frame + top-4)"]._replace(router=False)
ROWS["student camr cut guidance 2 (every step)"] = ROWS["student camr"]._replace(cut_guidance=2.0, cut_guidance_steps=4)
ROWS["student camr cut guidance 3 (every step)"] = ROWS["student camr"]._replace(cut_guidance=3.0, cut_guidance_steps=4)
ROWS["student camr cut guidance 1.5"] = ROWS["student camr"]._replace(cut_guidance=1.5)
ROWS["student camr cut guidance 2"] = ROWS["student camr"]._replace(cut_guidance=2.0)
ROWS["student camr cut guidance 3"] = ROWS["student camr"]._replace(cut_guidance=3.0)
ROWS["base camr attention routing (16 ODE steps)"] = ROWS["base camr (16 ODE steps)"]._replace(router=False)
for _name in ("student camr", "student camr estimate routing", "student camr oracle routing", "student camr scene oracle routing", "student camr by location", "student camr by location (5 sink frames + 3 recent chunks)", "student camr by location to earliest frames", "base camr by location (16 ODE steps)", "student camr attention routing", "student camr attention-mass routing", "student camr attention-mass routing by location",
              "student camr region-mass routing by location (4x6 regions)", "student camr region-mass routing by location (2x3 regions)",
              "student camr region-mass routing by location (2x3 regions of keys and queries)", "student camr mean-query routing", "student camr mean-query routing by location",
              "student camr without shot openings", "student camr by location without shot openings",
              "student camr shot openings first", "student camr by location shot openings first", "student camr head shortlist 10",
              "student camr (1 sink frame + top-4)", "student camr (1 sink frame + top-4) attention routing",
              "base camr attention routing (16 ODE steps)", "student window", "student window recent-only", "student full", "student none",
              "base camr (16 ODE steps)", "base window (16 ODE steps)", "base window recent-only (16 ODE steps)", "base none (16 ODE steps)"):
    ROWS[f"{_name} (truth past)"] = ROWS[_name]._replace(truth_past=True)
DEFAULT_ROWS = ("student camr", "student window", "student window recent-only", "student full", "student none", "base camr (16 ODE steps)")
KEYS = ("sca", "alignment", "intra", "inter", "inter_scene", "inter_character", "motion", "motion_ratio", "motion_vs_truth", "drift")
SPLIT = ("inter_opening", "inter_later")  # scene returns to the opening shot's scene / to a scene first seen later
COLUMNS = KEYS + SPLIT + ("judder",)  # judder: a diagnostic of the autoencoder's latent grid, not a `cinecli eval` metric
LATENT_STRIDE = AutoencoderConfig().temporal_stride


class PairedPrompts:
    """Prompt encodings for two models at once: the director asks once, each model gets its own."""

    def __init__(self, student: PromptCache, base: PromptCache) -> None:
        self.student, self.base = student, base

    def context(self, prompts: tuple[str, ...]) -> tuple[TextContext, TextContext]:
        return self.student.context(prompts), self.base.context(prompts)


class KeyframeGenerator:
    """The student generates, except the first chunk of each shot, which the base model draws.

    Each model keeps its own memory bank of the whole film: the chunk one model drew enters the
    other's bank through that model's clean pass at t = 0, as teacher forcing writes data. An
    experiment (one extra clean pass per chunk, a full guided ODE per shot), not a render mode.
    """

    def __init__(self, student: ChunkGenerator, base: ChunkGenerator) -> None:
        self.student, self.base = student, base
        self.sampler = base.sampler  # guidance above 1: the director then encodes the empty prompt too

    def generate(self, req: ChunkRequest, text: tuple[TextContext, TextContext], uncond: tuple[TextContext, TextContext] | None = None) -> ChunkResult:
        if req.cuts[0]:  # a hard cut at the chunk's first frame (or the film's start)
            result = self.base.generate(req, text[1], uncond[1] if uncond else None)
            self.student.remember(req, result.latents, text[0])
        else:
            result = self.student.generate(req, text[0])
            self.base.remember(req, result.latents, text[1])
        return result


class TruthPastGenerator:
    """A film whose past is the world's own: every chunk outside the shots that return to an
    earlier scene or character is the truth's latents, written into memory as generation writes
    its own (a clean pass, then the commit); the chunks that hold a returning shot are generated.

    A return is then scored against the truth's hidden details (light, exact colours, texture,
    props, a character's exact hue and marking), which no prompt names: only memory can bring
    them back. With its own past, a model that draws a setting the same way whenever its prompt
    names it agrees with itself without any memory; here, without memory, it draws what the
    prompt alone gives and misses the film's own details. The chunk holding a cut into a returning
    shot is generated whole, so the few frames before that cut are the model's too.
    """

    def __init__(self, generator: ChunkGenerator, truth: torch.Tensor, generated: frozenset[int]) -> None:
        self.generator, self.truth, self.generated = generator, truth, generated
        self.sampler = generator.sampler

    def generate(self, req: ChunkRequest, text: TextContext, uncond: TextContext | None = None) -> ChunkResult:
        if req.index in self.generated:
            return self.generator.generate(req, text, uncond)
        start = req.index * self.generator.chunk_frames
        latents = self.truth[:, :, start : start + req.frames]
        self.generator.remember(req, latents, text)
        return ChunkResult(latents=latents, active_frames=0, active_tokens=0)


@dataclasses.dataclass(frozen=True)
class ScoredRouting:
    """What the benchmark's routing diagnostics share: camr's recent window and budget, the
    routed older frames the top k of `score` over the frames before the window (None: camr
    routes as it would). Diagnostics, not policies a render can run."""

    camr: CamrPolicy
    needs_queries: ClassVar[bool] = True

    def budget(self, chunk_frames: int) -> int | None:
        return self.camr.budget(chunk_frames)

    def score(self, num_frames: int, chunk_frames: int, query: torch.Tensor | None, older: torch.Tensor, layer: int,
              places: torch.Tensor | None) -> torch.Tensor | None:
        """[B, T] scores of the T older frames (their descriptors `older`) for the chunk's query tokens."""
        raise NotImplementedError

    def select(self, num_frames: int, chunk_frames: int, query: torch.Tensor | None, descriptors: torch.Tensor, shot_start: int = 0,
               layer: int = 0, places: torch.Tensor | None = None) -> torch.Tensor:
        start = recent_start(num_frames, self.camr.recent_chunks * chunk_frames, 0)
        score = None if start <= self.camr.top_k else self.score(num_frames, chunk_frames, query, descriptors[:, :start], layer, places)
        if score is None:
            return self.camr.select(num_frames, chunk_frames, query, descriptors, shot_start, layer, places)
        routed = score.topk(self.camr.top_k, dim=1).indices.sort(dim=1).values
        recent = torch.arange(start, num_frames, device=score.device).expand(score.shape[0], -1)
        return torch.cat([routed, recent], dim=1)


@dataclasses.dataclass(frozen=True)
class OracleRouting(ScoredRouting):
    """The world's truth picks camr's routed frames: older frames that show the chunk's scene or
    its characters come first, ranked among themselves by the mean query's relevance (the score
    camr used when this diagnostic was written, kept so its figures reproduce). What routing could give at
    best at the same cost, to tell a routing failure from a model that does not use what it is
    given.
    """

    labels: tuple[frozenset[str], ...] = ()  # per latent frame: its scene id and visible character ids
    name: str = "camr-oracle"

    def score(self, num_frames, chunk_frames, query, older, layer, places):  # type: ignore[no-untyped-def]
        if query is None:
            return None
        want = frozenset().union(*self.labels[num_frames : num_frames + chunk_frames])
        shared = torch.tensor([len(self.labels[t] & want) for t in range(older.shape[1])], dtype=torch.float32, device=older.device)
        rel = frame_scores(query, older, "mean")
        return shared * (2 * rel.abs().max() + 1) + rel  # shared labels first, relevance within


@dataclasses.dataclass(frozen=True)
class AttentionMassRouting(ScoredRouting):
    """The routed older frames are those the chunk's attention over the whole past weighs most:
    every query token of the chunk against every key token of every older frame (one softmax per
    head over the older frames, un-rotated, as camr's scores are), the mass summed per frame; the
    chunk's location first where the screenplay names it. camr scores each frame by its mean key
    (`attention_mass`); this asks what the model's own attention would pick if it saw every key,
    or (`grid`) the means of a few regions of each frame. Its cost grows with the film: it reads
    every stored key of the past at every chunk and layer.
    """

    bank: MemoryBank | None = None
    grid: tuple[int, int, int, int] | None = None  # (token rows, token cols, region rows, region cols): keys pooled to region means first
    pool_queries: bool = False  # with a grid: the chunk's queries pooled to the same regions, each frame's on its own
    name: str = "camr-attention-mass"

    def score(self, num_frames, chunk_frames, query, older, layer, places):  # type: ignore[no-untyped-def]
        if query is None or self.bank is None:
            return None
        tokens = query
        dev, start = older.device, older.shape[1]
        keys, _ = self.bank.gather(layer, torch.arange(start, device=dev)[None].expand(tokens.shape[0], -1))  # [B, T, S, H, D]
        if self.grid is not None:
            keys = pool_regions(keys, *self.grid)
            if self.pool_queries:
                b, n, h, d = tokens.shape
                tokens = pool_regions(tokens.view(b, n // (self.grid[0] * self.grid[1]), self.grid[0] * self.grid[1], h, d), *self.grid).reshape(b, -1, h, d)
        b, t, s, h, d = keys.shape
        mass = attention_mass(tokens, keys.reshape(b, t * s, h, d)).view(b, t, s).sum(dim=2)  # every key one "frame", summed per frame
        return first(mass, same_place(places, 0, start, num_frames, chunk_frames, dev))


def pool_regions(keys: torch.Tensor, rows: int, cols: int, grid_rows: int, grid_cols: int) -> torch.Tensor:
    """Keys [B, T, rows*cols, H, D] (row-major tokens) → region means [B, T, grid_rows*grid_cols, H, D]."""
    b, t, _, h, d = keys.shape
    k = keys.float().view(b, t, grid_rows, rows // grid_rows, grid_cols, cols // grid_cols, h, d)
    return k.mean(dim=(3, 5)).reshape(b, t, grid_rows * grid_cols, h, d)


@dataclasses.dataclass(frozen=True)
class OpeningRouting(ScoredRouting):
    """camr's score with the frames that open a shot (the film's first frame and every frame after
    a hard cut, `LatentFrame.cut`) never routed, or routed first (`openings`: "never" or "first";
    the chunk's location still ranks before them). Their keys carry the cut embedding's
    modulation, which every chunk's queries may match whatever the frame shows: asks whether
    routing picks shot openings for being openings, and whether it should pick them more."""

    cuts: tuple[bool, ...] = ()  # per latent frame of the film: whether it opens a shot
    openings: str = "never"
    name: str = "camr-openings"

    def score(self, num_frames, chunk_frames, query, older, layer, places):  # type: ignore[no-untyped-def]
        if query is None:
            return None
        opening = torch.tensor(self.cuts[: older.shape[1]], device=older.device)
        scores = frame_scores(query, older, self.camr.scoring)
        if self.openings == "first":
            scores = first(scores, opening)
        scores = first(scores, same_place(places, 0, older.shape[1], num_frames, chunk_frames, older.device))
        return scores if self.openings == "first" else scores.masked_fill(opening, float("-inf"))


@dataclasses.dataclass(frozen=True)
class LocationSinkRouting(ScoredRouting):
    """Routing by location whose routed frames are the location's earliest (a sink per location)
    rather than its most relevant; other frames, by relevance, only where the location has too
    few. Asks whether a location's first frames carry what comes back, as the film's first
    frames do for returns to the opening scene (the sink window leads there)."""

    name: str = "camr-location-sink"

    def score(self, num_frames, chunk_frames, query, older, layer, places):  # type: ignore[no-untyped-def]
        start = older.shape[1]
        prefer = same_place(places, 0, start, num_frames, chunk_frames, older.device)
        if query is None or prefer is None:
            return None
        rel = frame_scores(query, older, self.camr.scoring)
        early = -torch.arange(start, device=rel.device, dtype=rel.dtype).expand_as(rel)
        return torch.where(prefer, early + 2 * (rel.abs().amax(dim=1, keepdim=True) + start + 1), rel)


def latent_labels(film, latents: int, characters: bool = True) -> tuple[frozenset[str], ...]:  # type: ignore[no-untyped-def]
    """Scene id and (with `characters`) visible character ids of each latent frame's first video frame."""
    from cinecli.world.render import frame_truth

    def at(j: int) -> frozenset[str]:
        t = frame_truth(film, min(j * LATENT_STRIDE, film.total_frames - 1))
        return frozenset({"scene:" + t.scene_id} | ({"character:" + c.id for c in t.characters} if characters else set()))

    return tuple(at(j) for j in range(latents))


@torch.no_grad()
def truth_past_director(director: Director, film) -> None:  # type: ignore[no-untyped-def]
    """Turn a director into the truth-past experiment (`TruthPastGenerator`)."""
    from cinecli.world.render import render_frames

    plan, ae = director.plan, director.bundle.autoencoder
    truth = ae.normalize(ae.encode(video_tensor(render_frames(film, 0, film.total_frames))))
    if truth.shape[2] != len(plan.latents):
        raise ValueError(f"film {film.seed}: {truth.shape[2]} truth latent frames against {len(plan.latents)} planned")
    shots = returning_shots(film)
    generated = frozenset(c for s in shots for c in plan.shot_chunks(s))
    director.generator = TruthPastGenerator(director.generator, truth.to(director.dtype), generated)  # type: ignore[assignment]


def keyframe_director(director: Director, base_bundle) -> None:  # type: ignore[no-untyped-def]
    """Turn a student's director into the keyframe experiment (`KeyframeGenerator`)."""
    own = director.generator
    bank = MemoryBank(dataclasses.replace(own.bank.spec))
    base = ChunkGenerator(base_bundle.transformer, bank, own.policy, base_bundle.sampler(16), latent_shape=own.latent_shape,
                          chunk_frames=own.chunk_frames)
    director.generator = KeyframeGenerator(own, base)  # type: ignore[assignment]
    director.prompts = PairedPrompts(director.prompts, PromptCache(base_bundle, director.device, director.dtype))  # type: ignore[assignment]


def row_screenplay(film, row: Row, work: Path):  # type: ignore[no-untyped-def]
    """The film's exported screenplay (written to work/film.yaml) with the row's memory and
    guidance, and its plan: what a row renders and what its film is scored against."""
    script = work / "film.yaml"
    script.write_text(to_screenplay_yaml(film, locations=row.locations), encoding="utf-8")
    sp, fmt = load_screenplay_resolving(script, film_format)
    sp = dataclasses.replace(sp, film=dataclasses.replace(sp.film, memory=row.memory, guidance=row.guidance))
    return sp, plan_film(sp, fmt)


def render_eval(bundle, film, row: Row, work: Path) -> tuple[dict, float]:
    sp, plan = row_screenplay(film, row, work)
    if row.variant in ("truth", "autoencoder"):  # the world's own frames, as they are or through the autoencoder
        from cinecli.world.render import render_frames

        frames = render_frames(film, 0, film.total_frames)
        if row.variant == "autoencoder":
            frames = round_trip(bundle.autoencoder, frames)
        return film_scores(frames, plan, film), 0.0
    out = work / "film.mp4"
    t = time.perf_counter()
    director = Director(sp, plan, bundle[0] if row.variant == "keyframes" else bundle, RenderOptions(output=out, state_dir=work / "film.state", overwrite=True), steps=row.steps)
    if row.variant == "keyframes":
        keyframe_director(director, bundle[1])
    else:
        director.generator.sampler = dataclasses.replace(director.generator.sampler, memory_pass=row.memory_pass, route=row.route,
                                                          cut_guidance=row.cut_guidance, cut_guidance_steps=row.cut_guidance_steps)
        if isinstance(director.generator.policy, CamrPolicy):
            director.generator.policy = dataclasses.replace(director.generator.policy, router=director.generator.policy.router if row.router else None,
                                                            shortlist=row.shortlist, scoring=row.scoring)
        if row.oracle:
            director.generator.policy = OracleRouting(director.generator.policy, labels=latent_labels(film, len(plan.latents), row.oracle_characters))
        if row.openings is not None:
            director.generator.policy = OpeningRouting(director.generator.policy, cuts=tuple(lf.cut for lf in plan.latents), openings=row.openings)
        if row.location_sink:
            director.generator.policy = LocationSinkRouting(director.generator.policy)
        if row.attention_mass:
            gen = director.generator
            grid = None if row.regions is None else (gen.rows, gen.cols, *row.regions)
            director.generator.policy = AttentionMassRouting(gen.policy, bank=gen.bank, grid=grid, pool_queries=row.pooled_queries)
        if row.truth_past:
            truth_past_director(director, film)
    for _ in director.run():
        pass
    seconds = time.perf_counter() - t
    frames = read_video(out)
    return film_scores(frames, plan, film), seconds


def kept_eval(film, row: Row, kept: Path, work: Path) -> dict:  # type: ignore[no-untyped-def]
    """The scores of a film an earlier `--keep` run rendered for this row, read from its MP4."""
    _, plan = row_screenplay(film, row, work)
    return film_scores(read_video(kept), plan, film)


def film_scores(frames: np.ndarray, plan, film) -> dict:  # type: ignore[no-untyped-def]
    """`scores` of the film's frames against its plan and the world's truth, and the film's
    judder: the share of its frame-to-frame change that lands between latent frames, scripted
    cuts (and the detected cuts matched to them) left out."""
    report = evaluate(frames, plan, truth=film)
    change = np.array([np.abs(frames[t].astype(np.int16) - frames[t - 1]).mean() for t in range(1, len(frames))])
    skip = frozenset(int(c) for c in report.cuts.scripted) | frozenset(int(d) for _, d in report.cuts.matched)
    return scores(report) | {"judder": judder(change, LATENT_STRIDE, skip)}


def scores(report) -> dict:  # type: ignore[no-untyped-def]
    """The film's metrics, its checked prompt claims by kind, each shot's claims in order, and how
    many scripted cuts the film missed and how many it invented (what lowers SCA)."""
    shots = [{"cut": shot.cut, "parts": [[part.what, part.score] for part in shot.parts]} for shot in report.shots]
    cuts = {"scripted": len(report.cuts.matched) + len(report.cuts.missed), "missed": len(report.cuts.missed), "extra": len(report.cuts.extra),
            "extra_at": [int(f) for f in report.cuts.extra]}
    returns = [{"kind": r.kind, "entity": r.entity, "first": r.first_shot, "shot": r.shot, "distance": r.distance, "score": r.score}
               for r in report.returns]
    return {k: getattr(report, k) for k in KEYS} | split_returns(report) | {"claims": claim_scores(report), "shots": shots, "cuts": cuts, "returns": returns}


def split_returns(report) -> dict[str, float | None]:  # type: ignore[no-untyped-def]
    """Inter-shot consistency of scene returns to the film's opening scene and to scenes first
    seen later. A sink window holds the opening scene whatever routing does; only routing can
    bring back a later one, so the second is where routing is tested."""
    def mean(opening: bool) -> float | None:
        got = [r.score for r in report.returns if r.kind == "scene" and (r.first_shot == 0) == opening]
        return float(np.mean(got)) if got else None

    return {"inter_opening": mean(True), "inter_later": mean(False)}


def look_occasions(shots: list[dict]) -> dict[str, list[float]]:
    """A film's look claims by occasion: in its first shot; in a later shot naming a look no earlier
    shot named (a new character after a cut); naming one an earlier shot named (a return).

    Memory can only carry a character from shot to shot, so where looks fail tells whether the
    model draws a named look badly or carries the previous shot's characters into a new one.
    """
    out: dict[str, list[float]] = {}
    seen: set[str] = set()
    for i, shot in enumerate(shots):
        looks = [(what, score) for what, score in shot["parts"] if what.startswith("look:")]
        for what, score in looks:
            kind = "first shot" if i == 0 else ("named before" if what in seen else "new after a cut")
            out.setdefault(kind, []).append(score)
        seen.update(what for what, _ in looks)
    return out


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] as the autoencoder's input [1, 3, T, H, W] in [-1, 1]."""
    return (torch.from_numpy(frames).float() / 127.5 - 1.0).permute(3, 0, 1, 2).unsqueeze(0)


@torch.no_grad()
def round_trip(ae, frames: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """uint8 [T, H, W, 3] encoded and decoded by the autoencoder: the ceiling it sets on any generator."""
    t = frames.shape[0]
    pad = (-t) % ae.temporal_stride
    out = ae.decode(ae.encode(video_tensor(np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)]))))[0, :, :t]
    return ((out.permute(1, 2, 3, 0) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def claim_kind(what: str) -> str:
    """'setting:forest' → 'setting', 'look:red fox' → 'look', 'framing:closeup' stays whole."""
    kind = what.split(":", 1)[0]
    return what if kind == "framing" else kind


def claim_scores(report) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    """Every checked prompt claim of a film by kind: what alignment is made of, to see which fails."""
    out: dict[str, list[float]] = {}
    for shot in report.shots:
        for part in shot.parts:
            out.setdefault(claim_kind(part.what), []).append(part.score)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--films", type=int, default=6)
    ap.add_argument("--min-seconds", type=float, default=0.0)
    ap.add_argument("--max-seconds", type=float, default=40.0)
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated rows of: {'; '.join(ROWS)}")
    ap.add_argument("--seeds", default="", help="comma-separated benchmark film seeds (instead of the shortest films with returns)")
    ap.add_argument("--weights", type=Path, default=None, help="a folder with student/base/autoencoder.safetensors (and <variant>.router.safetensors) to test instead of the shipped ones")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep each rendered film as KEEP/<row>/<seed>.mp4 with its screenplay")
    ap.add_argument("--rescore", action="store_true", help="with --keep: score the films already kept there instead of rendering them again")
    args = ap.parse_args()
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}: choose from {'; '.join(ROWS)}")
    if args.seeds:
        wanted = [int(x) for x in args.seeds.split(",")]
        films = [f for f in benchmark_films() if f.seed in wanted]
    else:
        films = [f for f in benchmark_films() if film_returns(f) and args.min_seconds <= f.total_frames / f.fps <= args.max_seconds]
        films = sorted(films, key=lambda f: f.total_frames)[: args.films]

    def load(variant: str):  # type: ignore[no-untyped-def]
        bundle = load_default(variant)
        if args.weights is not None:
            if (args.weights / f"{variant}.safetensors").exists():
                load_generator(bundle.transformer, bundle.text_encoder, args.weights / f"{variant}.safetensors")
            if (head := args.weights / f"{variant}.router.safetensors").exists():
                cfg = bundle.transformer.config
                bundle = dataclasses.replace(bundle, router=load_router(head, num_layers=cfg.num_layers, num_heads=cfg.num_heads, head_dim=cfg.head_dim))
            if (args.weights / "autoencoder.safetensors").exists():
                bundle = dataclasses.replace(bundle, autoencoder=load_autoencoder(args.weights / "autoencoder.safetensors"))
        return bundle

    loaders = {"truth": lambda: None, "autoencoder": lambda: load("student"), "student": lambda: load("student"), "base": lambda: load("base"),
               "student-int8": lambda: load("student").quantize("int8", torch.device("cpu")),
               "keyframes": lambda: (load("student"), load("base"))}
    bundles = {name: loaders[name]() for name in {ROWS[row].variant for row in rows}}
    results: dict[str, list[dict]] = {}
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            results[row] = []
            timing[row] = 0.0
            for i, film in enumerate(films):
                work = Path(tmp) / f"{i}"
                work.mkdir(exist_ok=True)
                kept = None if args.keep is None else args.keep / row / f"{film.seed}.mp4"
                rescored = args.rescore and kept is not None and kept.exists()
                if rescored:
                    got, seconds = kept_eval(film, ROWS[row], kept, work), 0.0
                else:
                    got, seconds = render_eval(bundles[ROWS[row].variant], film, ROWS[row], work)
                    if kept is not None and ROWS[row].variant not in ("truth", "autoencoder"):  # those render no MP4
                        kept.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(work / "film.mp4", kept)
                        shutil.copyfile(work / "film.yaml", kept.with_suffix(".yaml"))
                results[row].append(got)
                timing[row] += seconds
                print(json.dumps({"row": row, "film": film.seed, "seconds": round(seconds, 1), "rescored": rescored,
                                  **{k: got.get(k) for k in COLUMNS}, "cuts": got["cuts"]}), flush=True)
    video_seconds = sum(f.total_frames / f.fps for f in films)

    def values(row: str, key: str) -> list[float]:
        return [r[key] for r in results[row] if r.get(key) is not None]

    def cell(x: float | None) -> str:
        return f"{x:.3f}" if x is not None else "–"

    header = "| row | " + " | ".join(COLUMNS) + " | render s per film s |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in results:
        cells = [cell(float(np.mean(v)) if (v := values(row, k)) else None) for k in COLUMNS]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {timing[row] / video_seconds:.2f} |")
    table = "\n".join(lines)

    # The films differ far more than the rows do on some metrics (drift runs 0-1 across films):
    # the standard error of each mean says which differences between rows the films can carry.
    spread = ["| row | " + " | ".join(f"± {k}" for k in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for row in results:
        errs = [cell(float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v := values(row, k)) > 1 else None) for k in COLUMNS]
        spread.append(f"| {row} | " + " | ".join(errs) + " |")
    table += "\n\nStandard error of each mean over the films:\n\n" + "\n".join(spread)
    kinds = sorted({k for row in results for r in results[row] for k in r["claims"]})
    claims = ["| row | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 1)]
    for row in results:
        pooled = {k: [x for r in results[row] for x in r["claims"].get(k, [])] for k in kinds}
        claims.append(f"| {row} | " + " | ".join(f"{np.mean(v):.3f} ({len(v)})" if v else "–" for v in pooled.values()) + " |")
    table += "\n\nAlignment by kind of claim (mean score over every checked claim, and how many):\n\n" + "\n".join(claims)
    occasions = ("first shot", "new after a cut", "named before")
    looks = ["| row | " + " | ".join(occasions) + " |", "|" + "---|" * (len(occasions) + 1)]
    for row in results:
        pooled = {k: [x for r in results[row] for x in look_occasions(r["shots"]).get(k, [])] for k in occasions}
        looks.append(f"| {row} | " + " | ".join(f"{np.mean(v):.3f} ({len(v)})" if v else "–" for v in pooled.values()) + " |")
    table += "\n\nLook claims by occasion (mean score, and how many):\n\n" + "\n".join(looks)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(table)
    if args.out:
        text = (f"# The default model on the world benchmark\n\n`python benchmarks/default_model.py --films {args.films}`"
                f" — {len(films)} benchmark films with returns ({video_seconds:.0f} s of film, seeds {[f.seed for f in films]}), "
                f"rendered on the CPU ({machine}), read back from the MP4 and scored by `cinecli.eval` against the world's ground truth. "
                "Means over films; `–` = not measurable on these films.\n\n" + table + "\n")
        args.out.write_text(text, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"films": [f.seed for f in films], "results": results, "timing": timing}, indent=1))


if __name__ == "__main__":
    main()
