"""From scripted shots to a per-latent-frame plan the renderer walks chunk by chunk.

The model can only change prompt or cut where a latent frame starts, so every
scripted boundary is snapped to the temporal grid (and the film-maker is told
when that moved something). Everything here is cheap and deterministic: the
plan is rebuilt on every validate, plan and resume.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from cinecli.screenplay.errors import Problem, ScreenplayError
from cinecli.screenplay.format import FilmFormat, TemporalGrid, seconds_text
from cinecli.screenplay.load import MAX_FILM_SECONDS
from cinecli.screenplay.schema import Screenplay, Shot

_MASK64 = (1 << 64) - 1
_FILM_NOISE = 0x46494C4D  # domain tags keep a shot seed of 7 and a film seed of 7 apart
_SHOT_NOISE = 0x53484F54


@dataclass(frozen=True)
class LatentFrame:
    """What one latent frame is conditioned on; `cut` marks the start of a new take."""

    shot: int
    prompt: int
    cut: bool
    noise_seed: int


@dataclass(frozen=True)
class ShotPlan:
    """Where a shot landed: placed frames/latents, and the frames it was scripted at."""

    index: int
    id: str
    frame_start: int
    frame_end: int
    latent_start: int
    latent_end: int
    scripted_start: int
    scripted_end: int
    prompts: tuple[int, ...]
    cut: str
    location: int = -1  # index into Plan.locations; -1: the screenplay names none

    @property
    def snapped(self) -> bool:
        """Whether the shot's placed start differs from its scripted start."""
        return self.frame_start != self.scripted_start


@dataclass(frozen=True)
class Plan:
    """The whole film as latent frames, chunks and the prompts they use."""

    frames: int
    width: int
    height: int
    fps: int
    grid: TemporalGrid
    chunk_frames: int
    latents: tuple[LatentFrame, ...]
    prompts: tuple[str, ...]
    shots: tuple[ShotPlan, ...]
    notes: tuple[str, ...]
    locations: tuple[str, ...] = ()  # the screenplay's locations, in order of first use

    @cached_property
    def latent_locations(self) -> tuple[int, ...]:
        """Location index of each latent frame (-1 where its shot names none): what memory
        routing matches a chunk's past against (`cinecli.memory.policies.CamrPolicy`)."""
        return tuple(self.shots[lf.shot].location for lf in self.latents)

    @property
    def num_chunks(self) -> int:
        """Chunks to generate; the last may hold fewer than `chunk_frames` latent frames."""
        return -(-len(self.latents) // self.chunk_frames)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def chunk_latents(self, chunk: int) -> range:
        """Latent frames of `chunk` (the last chunk may be short)."""
        self._check_chunk(chunk)
        start = chunk * self.chunk_frames
        return range(start, min(start + self.chunk_frames, len(self.latents)))

    def chunk_frame_range(self, chunk: int) -> tuple[int, int]:
        """Video frames [start, end) decoded from `chunk`, clipped to the film's length."""
        latents = self.chunk_latents(chunk)
        return self.grid.frame_start(latents.start), min(self.grid.frame_start(latents.stop), self.frames)

    def chunk_of_latent(self, latent: int) -> int:
        return latent // self.chunk_frames

    def shot_of_latent(self, latent: int) -> int:
        return self.latents[latent].shot

    def shot_of_frame(self, frame: int) -> int:
        """The shot a video frame of the finished film belongs to."""
        if not 0 <= frame < self.frames:
            raise IndexError(f"frame {frame} is outside the film (0..{self.frames - 1})")
        return bisect.bisect_right(self._shot_frame_starts, frame) - 1

    @cached_property
    def _shot_frame_starts(self) -> list[int]:
        return [shot.frame_start for shot in self.shots]

    def shot_start(self, latent: int) -> int:
        """The latent frame of the last hard cut at or before `latent`: where its take began
        (a `continue` shot goes on the same take)."""
        return self._cut_latents[bisect.bisect_right(self._cut_latents, latent) - 1]

    @cached_property
    def _cut_latents(self) -> list[int]:
        return [i for i, lf in enumerate(self.latents) if lf.cut]  # latent 0 is always a cut

    def shot_chunks(self, shot: int) -> range:
        """Chunks that hold at least one latent frame of `shot` (neighbours may share the ends)."""
        plan = self.shots[shot]
        return range(self.chunk_of_latent(plan.latent_start), self.chunk_of_latent(plan.latent_end - 1) + 1)

    def prompt_changes(self, shot: int) -> tuple[tuple[int, int], ...]:
        """(latent frame, prompt index) wherever the prompt changes inside `shot`, its start included."""
        plan = self.shots[shot]
        changes: list[tuple[int, int]] = []
        for latent in range(plan.latent_start, plan.latent_end):
            prompt = self.latents[latent].prompt
            if not changes or changes[-1][1] != prompt:
                changes.append((latent, prompt))
        return tuple(changes)

    def _check_chunk(self, chunk: int) -> None:
        if not 0 <= chunk < self.num_chunks:
            raise IndexError(f"chunk {chunk} is outside the film (0..{self.num_chunks - 1})")


def plan_film(sp: Screenplay, fmt: FilmFormat) -> Plan:
    """Lay the screenplay on the model's temporal grid.

    Raises ScreenplayError when a shot is too short to own a latent frame once
    its boundaries are snapped, naming every such shot.
    """
    grid, fps = fmt.grid, sp.film.fps
    frames = sp.frames
    if frames > MAX_FILM_SECONDS * fps:  # guards screenplays built without the loader
        raise ScreenplayError([Problem(str(sp.path), None, None, "shots", "a film of at most 4 hours",
                                       seconds_text(frames / fps))])
    scripted = _scripted_starts(sp.shots)
    latent_starts = [0] + [grid.snap(start) for start in scripted[1:-1]]
    latent_ends = latent_starts[1:] + [grid.latents_for(frames)]
    _check_owns_latents(sp, grid, latent_starts, latent_ends)

    prompts: dict[str, int] = {}
    locations: dict[str, str] = {}  # casefolded name → as first written: "Harbour" and "harbour" are one place
    notes = list(sp.notes)
    latents: list[LatentFrame] = []
    shots: list[ShotPlan] = []
    for shot, start, end in zip(sp.shots, latent_starts, latent_ends):
        frame_start = grid.frame_start(start)
        if frame_start != scripted[shot.index]:
            notes.append(f"shot '{shot.id}' starts at frame {scripted[shot.index]} "
                         f"({seconds_text(scripted[shot.index] / fps)}); placed at {frame_start}, "
                         f"the nearest latent-frame start")
        changes = _prompt_changes(shot, scripted[shot.index], start, end, grid, fps, prompts, notes)
        latents.extend(_shot_latents(sp, shot, start, end, changes))
        used = tuple(dict.fromkeys(prompt for _, prompt in changes))
        location = -1
        if shot.location is not None:
            locations.setdefault(shot.location.casefold(), shot.location)
            location = list(locations).index(shot.location.casefold())
        shots.append(ShotPlan(
            shot.index, shot.id, frame_start, min(grid.frame_start(end), frames), start, end,
            scripted[shot.index], scripted[shot.index + 1], used, shot.cut, location,
        ))
    return Plan(frames, sp.film.width, sp.film.height, fps, grid, fmt.chunk_frames, tuple(latents),
                tuple(prompts), tuple(shots), tuple(notes), tuple(locations.values()))


def _scripted_starts(shots: tuple[Shot, ...]) -> list[int]:
    """Cumulative scripted frame of each shot's start, plus the film's end."""
    starts = [0]
    for shot in shots:
        starts.append(starts[-1] + shot.duration_frames)
    return starts


def _check_owns_latents(sp: Screenplay, grid: TemporalGrid, starts: list[int], ends: list[int]) -> None:
    problems = [
        Problem(str(sp.path), shot.line, None, f"shots[{shot.index}].duration",
                f"a shot long enough to own a latent frame (about {grid.stride} frames or more)",
                f"shot '{shot.id}' with {shot.duration_frames} frame(s), which vanishes once cuts snap "
                f"to latent frames", "make it longer or merge it into a neighbour")
        for shot, start, end in zip(sp.shots, starts, ends) if end <= start
    ]
    if problems:
        raise ScreenplayError(problems)


def _prompt_changes(shot: Shot, scripted_start: int, start: int, end: int, grid: TemporalGrid, fps: int,
                    prompts: dict[str, int], notes: list[str]) -> list[tuple[int, int]]:
    """(latent, prompt index) for the shot's prompt and each event, snapped into the shot.

    An event that lands on the same latent frame as an earlier prompt replaces it,
    with a note, since only one prompt can condition a latent frame.
    """
    changes: list[tuple[int, str]] = [(start, shot.prompt)]
    labels = ["its own prompt"]
    for event in shot.events:
        wanted = scripted_start + event.at_frame
        latent = min(max(grid.snap(wanted), start), end - 1)
        placed = grid.frame_start(latent)
        when = seconds_text(event.at_frame / fps)
        if placed != wanted:
            notes.append(f"shot '{shot.id}' event at {when} (frame {wanted}); placed at {placed}, "
                         f"the nearest latent-frame start")
        label = f"the event at {when}"
        if changes[-1][0] == latent:
            notes.append(f"shot '{shot.id}': {label} lands on the same latent frame as {labels[-1]} "
                         f"and replaces it")
            changes.pop()
            labels.pop()
        changes.append((latent, event.prompt))
        labels.append(label)
    # Registered only now, so a prompt that was replaced everywhere is never encoded.
    return [(latent, prompts.setdefault(text, len(prompts))) for latent, text in changes]


def _shot_latents(sp: Screenplay, shot: Shot, start: int, end: int,
                  changes: list[tuple[int, int]]) -> list[LatentFrame]:
    latents: list[LatentFrame] = []
    change = 0
    for latent in range(start, end):
        while change + 1 < len(changes) and changes[change + 1][0] <= latent:
            change += 1
        cut = latent == 0 or (latent == start and shot.cut == "cut")
        latents.append(LatentFrame(shot.index, changes[change][1], cut, _shot_noise(sp, shot, latent, start)))
    return latents


def _shot_noise(sp: Screenplay, shot: Shot, latent: int, shot_start: int) -> int:
    """A shot with its own seed gets noise by position in the shot, immune to edits elsewhere."""
    if shot.seed is not None:
        return noise_seed(shot.seed, latent - shot_start, _SHOT_NOISE)
    return noise_seed(sp.film.seed, latent, _FILM_NOISE)


def noise_seed(seed: int, index: int, domain: int = _FILM_NOISE) -> int:
    """A 63-bit seed for one latent frame: a splitmix64 mix, so neighbours are unrelated."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ domain) ^ (index & _MASK64)) >> 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def shot_hashes(sp: Screenplay) -> tuple[str, ...]:
    """Chained content hashes: shot i's covers the generation settings and shots 0..i.

    A shot renders from the memory of everything before it, so an edit
    invalidates the edited shot and every later one, never an earlier one. The
    title, the file path and shot ids are left out: they change no pixel.
    """
    film = sp.film
    digest = _sha256_json({
        "model": film.model, "width": film.width, "height": film.height, "fps": film.fps,
        "seed": film.seed, "quantize": film.quantize, "steps": film.steps,
        "memory": [film.memory.policy, film.memory.recent_chunks, film.memory.top_k, film.memory.sink_frames]
        + ([True] if film.memory.shot_window else []),  # only when on, so hashes of earlier renders still match
        **({"guidance": film.guidance} if film.guidance is not None else {}),  # likewise
        **({"cut_guidance": film.cut_guidance} if film.cut_guidance is not None else {}),  # likewise
    })
    hashes: list[str] = []
    for shot in sp.shots:
        digest = _sha256_json({
            "previous": digest, "prompt": shot.prompt, "frames": shot.duration_frames, "seed": shot.seed,
            "cut": shot.cut, "events": [[event.at_frame, event.prompt] for event in shot.events],
            **({"location": shot.location.casefold()} if shot.location is not None else {}),  # only when named, so earlier hashes still match
        })
        hashes.append(digest)
    return tuple(hashes)


def _sha256_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
