"""Planning: frame counts, snapping to the latent grid, events, prompts, noise seeds, hashes."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from cinecli.screenplay import (
    FilmFormat,
    ScreenplayError,
    TemporalGrid,
    parse_screenplay_text,
    plan_film,
    shot_hashes,
)

FMT = FilmFormat(
    model="default", grid=TemporalGrid(4, False), chunk_frames=3, spatial_multiple=16,
    resolutions=((192, 128),), fps=(12,), default_resolution=(192, 128), default_fps=12,
    default_steps=4, max_pixels=192 * 128, vocabulary=None,
)
WAN = replace(FMT, grid=TemporalGrid(4, True))


def parse(text: str):
    return parse_screenplay_text(text, Path("film.yaml"), FMT)


def shots_yaml(*shots: str, film: str = "film: {seed: 7}\n") -> str:
    return film + "shots:\n" + "".join(f"  - {s}\n" for s in shots)


def test_frames_latents_and_chunks() -> None:
    sp = parse(shots_yaml("{id: a, duration: 4s, prompt: p}", "{id: b, duration: 3s, prompt: q}",
                          "{id: c, duration: 3s, prompt: r}"))
    plan = plan_film(sp, FMT)
    assert plan.frames == 120 and len(plan.latents) == 30 and plan.num_chunks == 10
    assert [(s.latent_start, s.latent_end) for s in plan.shots] == [(0, 12), (12, 21), (21, 30)]
    assert [(s.frame_start, s.frame_end) for s in plan.shots] == [(0, 48), (48, 84), (84, 120)]
    assert plan.notes == ()
    assert plan.chunk_latents(9) == range(27, 30) and plan.chunk_frame_range(9) == (108, 120)
    assert (plan.width, plan.height, plan.fps) == (192, 128, 12)


def test_film_is_trimmed_at_the_end_to_the_scripted_frames() -> None:
    plan = plan_film(parse(shots_yaml("{duration: 50f, prompt: p}")), FMT)
    assert plan.frames == 50 and len(plan.latents) == 13 and plan.num_chunks == 5
    assert plan.chunk_latents(4) == range(12, 13)
    assert plan.chunk_frame_range(4) == (48, 50)
    assert plan.shots[-1].frame_end == 50


def test_frame_count_matches_the_script_on_the_wan_grid() -> None:
    sp = parse(shots_yaml("{duration: 81f, prompt: p}"))
    plan = plan_film(sp, WAN)
    assert plan.frames == 81 and len(plan.latents) == 21
    assert plan.chunk_frame_range(0) == (0, 9)


def test_off_grid_cut_snaps_with_a_note() -> None:
    sp = parse(shots_yaml("{id: a, duration: 50f, prompt: p}", "{id: b, duration: 2s, prompt: q}"))
    plan = plan_film(sp, WAN)
    b = plan.shots[1]
    assert (b.scripted_start, b.frame_start, b.latent_start) == (50, 49, 13)
    assert b.snapped and not plan.shots[0].snapped
    assert plan.shots[0].frame_end == 49
    assert plan.notes == ("shot 'b' starts at frame 50 (4.17s); placed at 49, the nearest latent-frame start",)
    assert plan.frames == 74


def test_events_land_on_the_right_latent_frame() -> None:
    sp = parse(shots_yaml(
        "{id: a, duration: 4s, prompt: p}",
        "{id: b, duration: 4s, prompt: q, events: [{at: 2s, prompt: r}, {at: 3s, prompt: s}]}",
    ))
    plan = plan_film(sp, FMT)
    assert plan.prompts == ("p", "q", "r", "s")
    # shot b starts at frame 48 = latent 12; events at frames 72 and 84 = latents 18 and 21
    assert [lf.prompt for lf in plan.latents[12:24]] == [1] * 6 + [2] * 3 + [3] * 3
    assert plan.prompt_changes(1) == ((12, 1), (18, 2), (21, 3))
    assert plan.shots[1].prompts == (1, 2, 3)
    assert plan.notes == ()


def test_off_grid_event_snaps_with_a_note() -> None:
    sp = parse(shots_yaml("{id: a, duration: 4s, prompt: p, events: [{at: 1.5s, prompt: r}]}"))
    plan = plan_film(sp, FMT)
    assert plan.prompt_changes(0) == ((0, 0), (5, 1))  # frame 18 -> latent 5 (frame 20)
    assert plan.notes == ("shot 'a' event at 1.5s (frame 18); placed at 20, the nearest latent-frame start",)


def test_events_on_the_same_latent_frame_keep_the_last() -> None:
    sp = parse(shots_yaml("{id: a, duration: 4s, prompt: p, events: [{at: 0s, prompt: q}, {at: 24f, prompt: r},"
                          " {at: 25f, prompt: s}]}"))
    plan = plan_film(sp, FMT)
    assert plan.prompts == ("q", "s")
    assert plan.prompt_changes(0) == ((0, 0), (6, 1))
    assert plan.shots[0].prompts == (0, 1)
    assert any("the event at 0s lands on the same latent frame as its own prompt" in n for n in plan.notes)


def test_returning_prompt_reuses_its_index_and_unicode_survives() -> None:
    sp = parse(shots_yaml("{duration: 1s, prompt: '夜の港 🌊'}", "{duration: 1s, prompt: 'الصحراء'}",
                          "{duration: 1s, prompt: '夜の港 🌊'}"))
    plan = plan_film(sp, FMT)
    assert plan.prompts == ("夜の港 🌊", "الصحراء")
    assert [s.prompts for s in plan.shots] == [(0,), (1,), (0,)]


def test_cut_flags() -> None:
    sp = parse(shots_yaml("{duration: 1s, prompt: p}", "{duration: 1s, prompt: q, cut: continue}",
                          "{duration: 1s, prompt: r}"))
    plan = plan_film(sp, FMT)
    assert [i for i, lf in enumerate(plan.latents) if lf.cut] == [0, 6]
    assert [lf.shot for lf in plan.latents] == [0] * 3 + [1] * 3 + [2] * 3
    assert [s.cut for s in plan.shots] == ["cut", "continue", "cut"]


def test_shot_too_short_for_the_grid_is_named() -> None:
    sp = parse(shots_yaml("{id: a, duration: 4s, prompt: p}", "{id: blink, duration: 1f, prompt: q}",
                          "{id: c, duration: 47f, prompt: r}", "{id: wink, duration: 1f, prompt: s}",
                          "{id: e, duration: 4s, prompt: t}"))
    with pytest.raises(ScreenplayError) as info:
        plan_film(sp, FMT)
    assert [(p.field, p.line) for p in info.value.problems] == [("shots[1].duration", 4), ("shots[3].duration", 6)]
    assert "'blink'" in str(info.value) and "'wink'" in str(info.value)


def test_lookup_helpers() -> None:
    sp = parse(shots_yaml("{duration: 4s, prompt: p}", "{duration: 3s, prompt: q}"))
    plan = plan_film(sp, FMT)
    assert plan.shot_of_frame(0) == 0 and plan.shot_of_frame(47) == 0 and plan.shot_of_frame(48) == 1
    assert plan.shot_of_frame(83) == 1 and plan.shot_of_latent(12) == 1
    assert plan.shot_chunks(0) == range(0, 4) and plan.shot_chunks(1) == range(4, 7)
    with pytest.raises(IndexError):
        plan.shot_of_frame(84)
    with pytest.raises(IndexError):
        plan.chunk_latents(plan.num_chunks)


def test_noise_seeds_are_63_bit_and_distinct() -> None:
    plan = plan_film(parse(shots_yaml("{duration: 100s, prompt: p}")), FMT)
    seeds = [lf.noise_seed for lf in plan.latents]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)


def test_noise_seeds_are_stable_under_an_edit_of_a_later_shot() -> None:
    before = plan_film(parse(shots_yaml("{duration: 4s, prompt: p}", "{duration: 3s, prompt: q}",
                                        "{duration: 3s, prompt: r}")), FMT)
    after = plan_film(parse(shots_yaml("{duration: 4s, prompt: p}", "{duration: 3s, prompt: q}",
                                       "{duration: 5s, prompt: changed}")), FMT)
    assert before.latents[:21] == after.latents[:21]


def test_shot_seed_makes_its_noise_independent_of_earlier_edits() -> None:
    before = plan_film(parse(shots_yaml("{duration: 4s, prompt: p}", "{duration: 3s, prompt: q, seed: 5}")), FMT)
    after = plan_film(parse(shots_yaml("{duration: 6s, prompt: other}", "{duration: 3s, prompt: q, seed: 5}")), FMT)
    assert [lf.noise_seed for lf in before.latents[12:]] == [lf.noise_seed for lf in after.latents[18:]]
    film_seed_7 = plan_film(parse(shots_yaml("{duration: 1s, prompt: p}")), FMT)
    own_seed_7 = plan_film(parse(shots_yaml("{duration: 1s, prompt: p, seed: 7}")), FMT)
    assert film_seed_7.latents[0].noise_seed != own_seed_7.latents[0].noise_seed


def test_shot_hashes_change_only_from_the_edited_shot_on() -> None:
    shots = ["{id: a, duration: 4s, prompt: p}", "{id: b, duration: 3s, prompt: q}",
             "{id: c, duration: 3s, prompt: r}", "{id: d, duration: 2s, prompt: s}"]
    base = shot_hashes(parse(shots_yaml(*shots)))
    assert len(set(base)) == 4
    for edit in ("{id: c, duration: 3s, prompt: r2}", "{id: c, duration: 4s, prompt: r}",
                 "{id: c, duration: 3s, prompt: r, seed: 1}", "{id: c, duration: 3s, prompt: r, cut: continue}",
                 "{id: c, duration: 3s, prompt: r, events: [{at: 1s, prompt: x}]}"):
        edited = shot_hashes(parse(shots_yaml(*shots[:2], edit, shots[3])))
        assert edited[:2] == base[:2] and edited[2] != base[2] and edited[3] != base[3], edit
    renamed = shot_hashes(parse(shots_yaml(*shots, film="film: {seed: 7, title: Another}\n")))
    assert renamed == shot_hashes(parse(shots_yaml(*shots, film="film: {seed: 7, title: film}\n")))
    reseeded = shot_hashes(parse(shots_yaml(*shots, film="film: {seed: 8}\n")))
    assert all(x != y for x, y in zip(reseeded, base))


def test_new_film_options_change_hashes_only_when_set() -> None:
    """State folders of earlier versions must still resume: a film that sets neither `guidance`
    nor `memory.shot_window` hashes as it always did (values from before either existed); one
    that sets them renders other frames, so every shot's hash changes."""
    shots = ("{duration: 2s, prompt: x}", "{duration: 2s, prompt: y}")
    plain = shot_hashes(parse(shots_yaml(*shots, film="film: {seed: 7, memory: {policy: camr}}\n")))
    assert plain == ("7fe121fa630fa9a60af39926e0a185328749e740a463af471bed050e88cf4a47",
                     "d0b3f8a77e7020964161091449680b93b9c7d76af6ce12dc7a36265bc761ee0a")
    for film in ("film: {seed: 7, guidance: 1.5}\n", "film: {seed: 7, memory: {policy: camr, shot_window: true}}\n"):
        assert all(x != y for x, y in zip(shot_hashes(parse(shots_yaml(*shots, film=film))), plain)), film


def test_two_hour_film_plans_fast() -> None:
    body = "".join(f"  - {{duration: 60s, prompt: 'shot {i % 7}', events: [{{at: 30s, prompt: e}}]}}\n"
                   for i in range(120))
    sp = parse("shots:\n" + body)
    start = time.perf_counter()
    plan = plan_film(sp, FMT)
    elapsed = time.perf_counter() - start
    assert plan.frames == 2 * 3600 * 12 and len(plan.latents) == 21600
    assert elapsed < 1.0, elapsed


def test_a_prompt_replaced_everywhere_is_not_in_the_prompt_list() -> None:
    sp = parse(shots_yaml("{duration: 2s, prompt: never shown, events: [{at: 0s, prompt: shown}]}"))
    assert plan_film(sp, FMT).prompts == ("shown",)
