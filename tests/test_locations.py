"""Shot locations: the screenplay names where each shot is, and routing remembers that place first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import CamrPolicy, FullPolicy, WindowPolicy
from cinecli.model.rope import RopeTables
from cinecli.render.director import latent_places
from cinecli.screenplay import FilmFormat, ScreenplayError, TemporalGrid, parse_screenplay_text, plan_film
from cinecli.screenplay.timeline import shot_hashes
from cinecli.world.benchmark import benchmark_films
from cinecli.world.screenplay import to_screenplay_yaml

FMT = FilmFormat(model="default", grid=TemporalGrid(4, False), chunk_frames=3, spatial_multiple=16, resolutions=((192, 128),),
                 fps=(12,), default_resolution=(192, 128), default_fps=12, default_steps=4, max_pixels=192 * 128, vocabulary=None)
SCRIPT = """film: {seed: 1}
shots:
  - {prompt: wide shot of the harbour, duration: 2s, location: Harbour}
  - {prompt: the harbour at dusk, duration: 1s, cut: continue}
  - {prompt: a forest path, duration: 2s, location: forest}
  - {prompt: a red circle somewhere, duration: 1s}
  - {prompt: back at the harbour, duration: 2s, location: harbour}
"""


def parse(text: str):
    return parse_screenplay_text(text, Path("film.yaml"), FMT)


def test_locations_are_read_and_a_continued_take_keeps_its_place() -> None:
    sp = parse(SCRIPT)
    assert [s.location for s in sp.shots] == ["Harbour", "Harbour", "forest", None, "harbour"]


def test_plan_numbers_locations_ignoring_case() -> None:
    plan = plan_film(parse(SCRIPT), FMT)
    assert plan.locations == ("Harbour", "forest")
    per_shot = {plan.latents[i].shot: code for i, code in enumerate(plan.latent_locations)}
    assert per_shot == {0: 0, 1: 0, 2: 1, 3: -1, 4: 0}
    assert latent_places(plan).tolist() == list(plan.latent_locations)


def test_a_screenplay_without_locations_routes_as_before() -> None:
    plan = plan_film(parse("shots:\n  - {prompt: a, duration: 2s}\n  - {prompt: b, duration: 2s}\n"), FMT)
    assert plan.locations == () and latent_places(plan) is None


@pytest.mark.parametrize(("shot", "expected", "found"), [
    ("{prompt: then, duration: 1s, cut: continue, location: forest}", "'Harbour', the location of the take it continues", "'forest'"),
    ("{prompt: then, duration: 1s, location: '   '}", "a location name (non-blank text)", None),
    ("{prompt: then, duration: 1s, location: 3}", "a location name (non-blank text)", None),
])
def test_bad_locations_name_the_line_and_field(shot: str, expected: str, found: str | None) -> None:
    text = "shots:\n  - {prompt: a, duration: 2s, location: Harbour}\n  - " + shot + "\n"
    with pytest.raises(ScreenplayError) as info:
        parse(text)
    [problem] = info.value.problems
    assert (problem.line, problem.field, problem.expected) == (3, "shots[1].location", expected)
    if found is not None:
        assert problem.found == found


def test_a_location_changes_the_hash_of_its_shot_and_later_ones_only() -> None:
    """With memory settings of its own; otherwise the first location named changes the film's
    memory defaults, and so every shot (next test)."""
    plain = "film: {memory: {top_k: 5}}\nshots:\n  - {prompt: a, duration: 2s}\n  - {prompt: b, duration: 2s}\n  - {prompt: c, duration: 2s}\n"
    tagged = plain.replace("{prompt: b, duration: 2s}", "{prompt: b, duration: 2s, location: Forest}")
    recased = tagged.replace("Forest", "forest")
    a, b, c = shot_hashes(parse(plain)), shot_hashes(parse(tagged)), shot_hashes(parse(recased))
    assert a[0] == b[0] and a[1] != b[1] and a[2] != b[2]
    assert b == c  # one place, however it is cased


def test_locations_bring_their_memory_defaults_unless_the_screenplay_sets_them() -> None:
    located = parse(SCRIPT)
    assert (located.film.memory.sink_frames, located.film.memory.top_k) == (5, 0)
    assert any("film.memory defaults to sink_frames: 5, top_k: 0" in note for note in located.notes)
    plain = parse(SCRIPT.replace(", location: Harbour", "").replace(", location: forest", "").replace(", location: harbour", ""))
    assert (plain.film.memory.sink_frames, plain.film.memory.top_k) == (0, 5) and plain.notes == ()
    assert all(x != y for x, y in zip(shot_hashes(plain), shot_hashes(located)))  # every shot renders with other memory
    for given, top_k, sink_frames in (("{top_k: 5}", 5, 0), ("{sink_frames: 2}", 5, 2), ("{top_k: 3, sink_frames: 0}", 3, 0)):
        own = parse(SCRIPT.replace("film: {seed: 1}", f"film: {{seed: 1, memory: {given}}}"))
        assert (own.film.memory.top_k, own.film.memory.sink_frames) == (top_k, sink_frames)
        assert not any("defaults to" in note for note in own.notes)


def _bank(frames: int, planted: int) -> tuple[MemoryBank, torch.Tensor]:
    """A bank whose frame `planted` alone matches the query direction."""
    torch.manual_seed(3)
    bank = MemoryBank(BankSpec(num_layers=1, batch=1, tokens_per_frame=4, num_heads=2, head_dim=8))
    query = torch.randn(2, 8)
    for f in range(frames):
        k = query.expand(1, 1, 4, 2, 8) * 3.0 if f == planted else torch.randn(1, 1, 4, 2, 8) * 0.1
        bank.stage(0, k, torch.randn(1, 1, 4, 2, 8))
        bank.commit()
    return bank, query.expand(1, 4 * 3, 2, 8).clone()


def _route(policy, bank: MemoryBank, q: torch.Tensor, places: torch.Tensor | None) -> list[int]:
    routing = Routing()
    src = ChunkAttention(bank, policy, routing, chunk_frames=3, rows=2, cols=2, rope=RopeTables.build((4, 2, 2), 64, 10000.0), write=False,
                         places=places)
    src.prepare(0, q, torch.zeros_like(q), torch.zeros_like(q))
    return routing.frames[0][0].tolist()


def test_camr_remembers_the_chunks_location_first() -> None:
    """Frames 10-14 are the chunk's location; frame 7, elsewhere, matches the queries best.
    Without locations relevance routes frame 7 in; with them the location's frames come first."""
    bank, q = _bank(40, planted=7)
    places = torch.full((43,), 1)
    places[10:15] = 0
    places[40:] = 0
    policy = CamrPolicy(recent_chunks=2, top_k=5)
    assert 7 in _route(policy, bank, q, None)
    routed = _route(policy, bank, q, places)
    assert routed[:5] == [10, 11, 12, 13, 14] and routed[5:] == list(range(34, 40))


def test_camr_fills_from_elsewhere_when_the_location_has_few_frames() -> None:
    bank, q = _bank(40, planted=7)
    places = torch.full((43,), -1)
    places[20:22] = 2
    places[40:] = 2
    routed = _route(CamrPolicy(recent_chunks=2, top_k=5), bank, q, places)
    assert {20, 21, 7} <= set(routed[:5])


def test_an_unnamed_chunk_and_other_policies_ignore_locations() -> None:
    bank, q = _bank(40, planted=7)
    places = torch.zeros(43, dtype=torch.long)
    places[40:] = -1
    camr = CamrPolicy(recent_chunks=2, top_k=5)
    assert _route(camr, bank, q, places) == _route(camr, bank, q, None)
    for policy in (WindowPolicy(recent_chunks=3, sink_frames=2), FullPolicy()):
        assert _route(policy, bank, q, torch.zeros(43, dtype=torch.long)) == _route(policy, bank, q, None)


def test_world_screenplays_can_name_their_settings() -> None:
    film = next(f for f in benchmark_films() if f.seed == 910204)
    sp = parse_screenplay_text(to_screenplay_yaml(film, locations=True), Path("w.yaml"), FMT)
    assert [s.location for s in sp.shots[:5]] == ["city street", "city street", "city street", "harbour", "harbour"]
    same = [a.setting_id == b.setting_id for a, b in zip(film.shots, film.shots[1:])]
    assert same == [a.location == b.location for a, b in zip(sp.shots, sp.shots[1:])]
    assert all(s.location is None for s in parse_screenplay_text(to_screenplay_yaml(film), Path("w.yaml"), FMT).shots)


def test_locations_under_another_policy_are_noted() -> None:
    sp = parse("film: {memory: {policy: window}}\nshots:\n  - {prompt: a, duration: 2s, location: harbour}\n")
    assert "shot locations are only used by the camr policy's routing, not window" in sp.notes
    assert not any("only used by the camr" in note for note in parse(SCRIPT).notes)


def test_sink_frames_stay_at_their_location_and_route_elsewhere() -> None:
    """Frames 0-4 open the film at location 0. A chunk there keeps them as sinks; a chunk at
    location 1 routes their five slots to location 1's frames instead, at the same budget."""
    bank, q = _bank(40, planted=7)
    policy = CamrPolicy(recent_chunks=2, top_k=0, sink_frames=5)
    places = torch.full((43,), 2)
    places[:5] = 0
    places[20:26] = 1
    places[40:] = 0
    home = _route(policy, bank, q, places)
    assert home[:5] == [0, 1, 2, 3, 4] and len(home) == 11
    places[40:] = 1
    away = _route(policy, bank, q, places)
    assert len(away) == 11 and 0 not in away and set(away[:5]) <= set(range(20, 26))
    assert _route(policy, bank, q, None)[:5] == [0, 1, 2, 3, 4]  # without locations sinks always stay


def test_a_chunk_straddling_a_cut_keeps_its_sinks_only_if_it_cuts_to_their_location() -> None:
    bank, q = _bank(40, planted=7)
    policy = CamrPolicy(recent_chunks=2, top_k=0, sink_frames=5)
    places = torch.full((43,), 2)
    places[:5] = 0
    places[20:26] = 1
    places[40], places[41:] = 0, 1  # from the sinks' location into location 1
    routed = _route(policy, bank, q, places)
    assert routed[:5] != [0, 1, 2, 3, 4] and set(routed[:5]) & set(range(20, 26))
    places[40], places[41:] = 1, 0  # from location 1 back to the sinks' location
    assert _route(policy, bank, q, places)[:5] == [0, 1, 2, 3, 4]
