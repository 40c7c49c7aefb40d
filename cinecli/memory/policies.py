"""Memory policies: which past latent frames the next chunk attends to.

All policies answer the same question with the same signature, so the generator, the
benchmarks and the training loop swap them by name. Frame indices come back sorted (temporal
order), which is also the order rotary positions are assigned in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    from cinecli.memory.router import RoutingHead


class MemoryPolicy(Protocol):
    name: str
    needs_queries: bool  # whether `select` uses the chunk's queries (routing cost is paid only then)

    def budget(self, chunk_frames: int) -> int | None:
        """Most past frames an active set can hold (None: unbounded)."""
        ...

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        """Past frames to attend to: [B, n] long, sorted per row.

        `query` is the chunk's queries [B, N, H, D] (every token, un-rotated); `descriptors` the
        bank's per-frame mean keys [B, T, H, D]; `shot_start` the first latent frame of the chunk's shot
        (its hard cut), for policies whose window stops there; `layer` the layer routing (each
        layer routes on its own queries and keys); `places` the screenplay's location of every
        latent frame of the film so far and of the chunk ([≥ num_frames + chunk_frames] long, -1
        where none is named; a host tensor, so decisions on it need no device sync), for
        policies that remember the chunk's location first.
        """
        ...


def _arange(batch: int, start: int, end: int, device: torch.device) -> Tensor:
    return torch.arange(start, end, device=device).expand(batch, -1)


@dataclass(frozen=True)
class FullPolicy:
    """Every past frame: the reference, whose cost grows with the film."""

    name: str = "full"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return None

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        return _arange(descriptors.shape[0], 0, num_frames, descriptors.device)


@dataclass(frozen=True)
class NoMemoryPolicy:
    """The current chunk only: what a film looks like with no memory at all."""

    name: str = "none"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return 0

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        return _arange(descriptors.shape[0], 0, 0, descriptors.device)


@dataclass(frozen=True)
class WindowPolicy:
    """Sink frames plus the most recent chunks: the attention-sink / sliding-window baseline."""

    recent_chunks: int = 3
    sink_frames: int = 0
    shot_window: bool = False  # the recent window stops at the chunk's shot start (see `recent_start`)
    name: str = "window"
    needs_queries: bool = False

    def budget(self, chunk_frames: int) -> int | None:
        return self.sink_frames + self.recent_chunks * chunk_frames

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        b, dev = descriptors.shape[0], descriptors.device
        start = recent_start(num_frames, self.recent_chunks * chunk_frames, shot_start if self.shot_window else 0)
        sink_end = min(self.sink_frames, start)
        return torch.cat([_arange(b, 0, sink_end, dev), _arange(b, start, num_frames, dev)], dim=1)


def recent_start(num_frames: int, window: int, shot_start: int) -> int:
    """First frame of the recent window: `window` frames back, but not before `shot_start`.

    A window bounded by the shot holds no frame of the shot before a hard cut: continuity
    across a cut is then left to content-aware routing, which brings back an earlier shot's
    frames only where they match the chunk, instead of always handing the new shot the last one.
    The default model was trained with the last shot in its window across every cut, and this
    measured worse on it (docs/DEFAULT_MODEL_EVAL.md): an ablation, off by default.
    """
    return max(0, num_frames - window, min(shot_start, num_frames))


def relevance(query: Tensor, descriptors: Tensor) -> Tensor:
    """Score [B, T] of each past frame: Σ over heads and channels of mean-query · mean-key
    (`query` the chunk's mean query [B, H, D])."""
    return torch.einsum("bhd,bthd->bt", query.float(), descriptors.float())


def attention_mass(queries: Tensor, descriptors: Tensor, max_elements: int = 1 << 26) -> Tensor:
    """Score [B, T] of each past frame: the share of the chunk's attention it would draw if every
    past frame were one key (its mean key), averaged over the chunk's query tokens and summed over
    heads.

    Why not the mean query's dot product (`relevance`): averaging the queries first keeps only
    what the whole chunk shares, mostly its prompt; a softmax per query token lets the tokens that
    match a frame strongly pick it (the tokens of a character, or of a setting's landmark), as the
    model's own attention does. On the world benchmark it brings back more of a return's details
    at the same budget (docs/DEFAULT_MODEL_EVAL.md, "Routing by attention mass"). Heads go in
    groups whose [N, T] logits stay under `max_elements` together (2^26: 256 MB of float32), so a
    long film's routing holds no more than that at once whatever the model's width.
    """
    q, k = queries.float(), descriptors.float()
    b, n, h, d = q.shape
    t = k.shape[1]
    group = max(1, max_elements // max(1, b * n * t))
    mass = torch.zeros(b, t, device=k.device)
    for start in range(0, h, group):
        heads = slice(start, start + group)
        logits = torch.einsum("bnhd,bthd->bhnt", q[:, :, heads], k[:, :, heads]) * d**-0.5
        mass += logits.softmax(dim=-1).mean(dim=2).sum(dim=1)
    return mass


def frame_scores(queries: Tensor, descriptors: Tensor, scoring: str) -> Tensor:
    """Score [B, T] of each past frame for the chunk's `queries` [B, N, H, D] by `scoring`:
    "mass" (`attention_mass`) or "mean" (`relevance` of the mean query)."""
    if scoring == "mass":
        return attention_mass(queries, descriptors)
    if scoring == "mean":
        return relevance(queries.float().mean(dim=1), descriptors)
    raise ValueError(f"unknown routing score {scoring!r}; choose mass or mean")


@dataclass(frozen=True)
class CamrPolicy:
    """Content-Aware Memory Routing: recent chunks + the top-k older frames by relevance.

    A film that cuts back to an earlier scene finds it again because the old frames whose keys
    match the current queries are routed in, while the cost per chunk stays fixed. Relevance is
    the model's trained routing head where it has one (`cinecli.memory.router`), else the
    attention mass the chunk's query tokens put on each frame's mean key (`attention_mass`;
    `scoring="mean"`: the mean query's dot product, the earlier score, kept for comparison).

    Where the screenplay names the chunk's location (`places`), older frames of that location
    come first and relevance ranks among them; other frames fill the budget only when the
    location has fewer. Why: the chunk's queries at its first denoising step come from noise,
    and on long films they pick a later scene's frames barely above chance, while the truth's
    picks bring its details back (docs/DEFAULT_MODEL_EVAL.md, "Routing by location"). Sink
    frames are kept where the chunk is at their location; elsewhere their slots are routed too.
    Why: the film's first frames carry what comes back when the film returns to its opening
    scene, and pull the opening scene's details into every other one.
    """

    recent_chunks: int = 3
    top_k: int = 5
    sink_frames: int = 0
    shot_window: bool = False  # the recent window stops at the chunk's shot start (see `recent_start`)
    router: RoutingHead | None = None
    shortlist: int = 0  # with a router: it shortlists this many frames and `scoring` picks top_k of them (0: the router picks)
    scoring: str = "mass"  # without a router: "mass" (`attention_mass`) or "mean" (`relevance` of the mean query)
    name: str = "camr"
    needs_queries: bool = True

    def budget(self, chunk_frames: int) -> int | None:
        return self.sink_frames + self.recent_chunks * chunk_frames + self.top_k

    def select(self, num_frames: int, chunk_frames: int, query: Tensor | None, descriptors: Tensor, shot_start: int = 0, layer: int = 0,
               places: Tensor | None = None) -> Tensor:
        b, dev = descriptors.shape[0], descriptors.device
        start = recent_start(num_frames, self.recent_chunks * chunk_frames, shot_start if self.shot_window else 0)
        sink_end = min(self.sink_frames, start)
        top_k = self.top_k
        if sink_end and not at_sinks(places, sink_end, num_frames, chunk_frames):  # the chunk is elsewhere: the sinks' slots route
            sink_end, top_k = 0, top_k + sink_end
        recent = _arange(b, start, num_frames, dev)
        sink = _arange(b, 0, sink_end, dev)
        older = start - sink_end  # candidates: frames between sink and window
        if older <= top_k:
            routed = _arange(b, sink_end, start, dev)
        else:
            assert query is not None, "camr needs the chunk's queries"
            prefer = same_place(places, sink_end, start, num_frames, chunk_frames, dev)
            routed = route_older(query, descriptors[:, sink_end:start], top_k, layer, self.router, self.shortlist, prefer, self.scoring) + sink_end
        return torch.cat([sink, routed, recent], dim=1)


def at_sinks(places: Tensor | None, sink_end: int, num_frames: int, chunk_frames: int) -> bool:
    """Whether the chunk keeps its sink frames: no location named for the chunk's last frame, or
    that frame at the one location of all the sink frames. The last frame decides: a chunk that
    straddles a cut is drawn into the place it cuts to, and its first chunk sets how that place
    looks for the rest of the shot."""
    if places is None:
        return True
    last, sinks = places[min(num_frames + chunk_frames, len(places)) - 1], places[:sink_end]
    if int(last) < 0:
        return True
    return bool((sinks == last).all())


def same_place(places: Tensor | None, start: int, end: int, num_frames: int, chunk_frames: int, device: torch.device) -> Tensor | None:
    """Which of the past frames [start, end) share a location with the chunk's frames: [T] bool
    on `device`; None where the chunk's frames name no location (routing is then by content
    alone). `places` lives on the host, so this never waits on the accelerator."""
    if places is None:
        return None
    here = places[num_frames : num_frames + chunk_frames]
    here = here[here >= 0]
    if not len(here):
        return None
    return torch.isin(places[start:end], here).to(device)


def route_older(query: Tensor, descriptors: Tensor, top_k: int, layer: int, router: RoutingHead | None, shortlist: int,
                prefer: Tensor | None = None, scoring: str = "mass") -> Tensor:
    """Indices [B, top_k] (sorted) of the routed frames among `descriptors` [B, T, H, D] for the
    chunk's queries `query` [B, N, H, D].

    By `frame_scores` without a router; by the router's scores (of the mean query) with one; with
    a router and a `shortlist` above `top_k`, the router shortlists and `frame_scores` chooses
    among its picks (retrieve, then rerank by what the model's own attention prefers). A
    shortlist that would hold every candidate is no shortlist: the router then picks, as without
    one. Frames marked in `prefer` [T] (the chunk's location) rank before all others, each group
    by its scores.
    """
    if router is None:
        return first(frame_scores(query, descriptors, scoring), prefer).topk(top_k, dim=1).indices.sort(dim=1).values
    scores = first(router.scores(layer, query.float().mean(dim=1), descriptors), prefer)
    if shortlist <= top_k or shortlist >= descriptors.shape[1]:
        return scores.topk(min(top_k, descriptors.shape[1]), dim=1).indices.sort(dim=1).values
    short = scores.topk(shortlist, dim=1).indices  # [B, s]
    picked = frame_scores(query, descriptors.gather(1, short[:, :, None, None].expand(-1, -1, *descriptors.shape[2:])), scoring)
    if prefer is not None:
        picked = first(picked, prefer[short])
    return short.gather(1, picked.topk(top_k, dim=1).indices).sort(dim=1).values


def first(scores: Tensor, prefer: Tensor | None) -> Tensor:
    """Scores [B, T] lifted so every preferred frame outranks every other, order kept within each group."""
    if prefer is None:
        return scores
    lift = 2 * scores.detach().abs().amax(dim=1, keepdim=True) + 1
    return scores + lift * prefer.to(scores.dtype)


def make_policy(name: str, *, recent_chunks: int = 3, top_k: int = 5, sink_frames: int = 0, shot_window: bool = False,
                router: RoutingHead | None = None) -> MemoryPolicy:
    """Policy by the name a screenplay or the CLI uses; `router` is the model's routing head, if any (camr uses it)."""
    if name == "full":
        return FullPolicy()
    if name == "none":
        return NoMemoryPolicy()
    if name == "window":
        return WindowPolicy(recent_chunks=recent_chunks, sink_frames=sink_frames, shot_window=shot_window)
    if name == "camr":
        return CamrPolicy(recent_chunks=recent_chunks, top_k=top_k, sink_frames=sink_frames, shot_window=shot_window, router=router)
    raise ValueError(f"unknown memory policy {name!r}; choose camr, window, full or none")
