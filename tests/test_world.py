"""Tests of the procedural world: determinism, ground truth, hidden identity, captions,
screenplay export, vocabulary, benchmark composition and clips."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from cinecli.world.benchmark import benchmark_films, film_returns
from cinecli.world.catalog import HIDDEN_WORDS, ROLES, SHAPES
from cinecli.world.dataset import training_clips
from cinecli.world.render import frame_truth, measure_fps, render_frames
from cinecli.world.screenplay import to_screenplay_yaml
from cinecli.world.spec import FilmSpec, sample_film
from cinecli.world.vocabulary import VOCABULARY, tokenize


@pytest.fixture(scope="module")
def films() -> list[FilmSpec]:
    return [sample_film(s, duration_s=(20.0, 30.0, 60.0, 90.0)[s % 4]) for s in range(200)]


def _captions(film: FilmSpec) -> list[str]:
    return [s.prompt for s in film.shots] + [e.prompt for s in film.shots for e in s.events]


def test_sampling_and_rendering_are_deterministic() -> None:
    a, b = sample_film(5), sample_film(5)
    assert a == b
    assert sample_film(6) != a
    x = render_frames(a, 0, 60)
    y = render_frames(b, 0, 60)
    assert x.tobytes() == y.tobytes()


def test_frames_shape_dtype_and_streaming() -> None:
    film = sample_film(3, duration_s=12.0, width=160, height=96)
    whole = render_frames(film, 0, film.total_frames)
    assert whole.shape == (film.total_frames, 96, 160, 3) and whole.dtype == np.uint8
    # any window renders on its own, identical to the same frames of a full render
    for a, b in ((37, 53), (film.total_frames - 5, film.total_frames), (0, 1)):
        assert np.array_equal(render_frames(film, a, b), whole[a:b])
    with pytest.raises(ValueError):
        render_frames(film, 0, film.total_frames + 1)


def test_timing_rules(films: list[FilmSpec]) -> None:
    for film in films[:60]:
        assert film.total_frames == round({0: 20, 1: 30, 2: 60, 3: 90}[film.seed % 4] * 12)
        assert film.shots[0].cut == "cut"
        for prev, shot in zip(film.shots, film.shots[1:]):
            assert shot.start_frame == prev.end_frame
            if shot.cut == "continue":
                assert shot.setting_id == prev.setting_id
                assert shot.camera.zoom0 == pytest.approx(prev.camera.zoom1)
        for shot in film.shots:
            assert shot.duration_frames >= 12 and shot.start_frame % 4 == 0
            for e in shot.events:
                assert e.at_frame % 4 == 0 and 0 < e.at_frame < shot.duration_frames


def test_ground_truth_matches_spec_and_pixels() -> None:
    film = sample_film(21, duration_s=30.0)
    frames = render_frames(film, 0, film.total_frames)
    checked = 0
    for k in range(0, film.total_frames, 7):
        t = frame_truth(film, k)
        shot = film.shots[t.shot_index]
        assert shot.start_frame <= k < shot.end_frame
        assert t.scene_id == shot.setting_id and t.prompt == shot.prompt_at(k - shot.start_frame)
        assert {c.id for c in t.characters} <= set(shot.cast)
        tint = np.asarray(film.setting(shot.setting_id).tint)
        for c in t.characters:
            x0, y0, x1, y1 = c.bbox
            assert 0 <= x0 < x1 <= film.width and 0 <= y0 < y1 <= film.height
            if c.visible_fraction == 1.0 and (x1 - x0) >= 8:
                patch = frames[k, y0:y1, x0:x1].reshape(-1, 3).astype(float)
                want = np.clip(np.asarray(c.rgb) * tint, 0, 255)
                assert np.abs(patch - want).sum(axis=1).min() < 30, (k, c.id)
                checked += 1
    assert checked > 10
    cuts = [k for k in range(film.total_frames) if frame_truth(film, k).cut]
    assert cuts == [s.start_frame for s in film.shots if s.cut == "cut"]


def _wide_pairs(film: FilmSpec) -> list[tuple[int, int]]:
    """Pairs of wide shots of the same scene from different blocks (a return between)."""
    wides = [i for i, s in enumerate(film.shots) if s.camera.kind == "wide" and s.cut == "cut"]
    return [(i, j) for i in wides for j in wides if i < j
            and film.shots[i].setting_id == film.shots[j].setting_id
            and any(film.shots[m].setting_id != film.shots[i].setting_id for m in range(i, j))]


def test_returning_scene_keeps_hidden_details() -> None:
    pair = None
    for seed in range(200):
        film = sample_film(seed, duration_s=60.0)
        if _wide_pairs(film):
            pair = (film, *_wide_pairs(film)[0])
            break
    assert pair is not None
    film, i, j = pair
    a, b = film.shots[i], film.shots[j]
    fa, fb = render_frames(film, a.start_frame, a.start_frame + 1)[0], render_frames(film, b.start_frame, b.start_frame + 1)[0]
    # background pixels (away from any character and its shadow) are identical
    keep = np.ones(fa.shape[:2], bool)
    for frame in (a.start_frame, b.start_frame):
        for c in frame_truth(film, frame).characters:
            x0, y0, x1, y1 = c.bbox
            keep[max(0, y0 - 6):y1 + 6, max(0, x0 - 6):x1 + 6] = False
    assert keep.mean() > 0.5
    assert np.array_equal(fa[keep], fb[keep])
    # returning characters keep their exact hue and marking
    for film in (sample_film(s, duration_s=60.0) for s in range(20)):
        seen: dict[str, tuple] = {}
        for k in range(0, film.total_frames, 5):
            for c in frame_truth(film, k).characters:
                detail = (c.rgb, c.marking, c.marking_rgb, c.role, c.shape, c.colour_name)
                assert seen.setdefault(c.id, detail) == detail


def test_captions_hide_hidden_details(films: list[FilmSpec]) -> None:
    role_refs = look_refs = 0
    for film in films:
        for text in _captions(film):
            words = set(tokenize(text))
            assert not words & HIDDEN_WORDS, text
            assert not re.search(r"\d", text), text
            role_refs += sum(w in ROLES for w in tokenize(text))
            look_refs += sum(w in SHAPES for w in tokenize(text))
    assert 0.3 < role_refs / (role_refs + look_refs) < 0.7


def test_vocabulary_covers_captions(films: list[FilmSpec]) -> None:
    unknown = {w for film in films for text in _captions(film) for w in tokenize(text)} - VOCABULARY
    assert not unknown
    assert all(w == w.lower() and w.isalpha() for w in VOCABULARY)
    assert tokenize("Close-up of the Keeper, walking!") == ["close", "up", "of", "the", "keeper", "walking"]


def test_screenplay_round_trips_timing(films: list[FilmSpec]) -> None:
    for film in films[:20]:
        doc = yaml.safe_load(to_screenplay_yaml(film))
        assert doc["film"]["resolution"] == f"{film.width}x{film.height}"
        assert doc["film"]["fps"] == film.fps and doc["film"]["seed"] == film.seed
        assert len(doc["shots"]) == len(film.shots)
        total = 0
        for entry, shot in zip(doc["shots"], film.shots):
            assert re.fullmatch(r"[A-Za-z0-9_-]+", entry["id"])
            assert entry["duration"] == f"{shot.duration_frames}f"
            assert entry["prompt"] == shot.prompt and entry["cut"] == shot.cut
            events = entry.get("events", [])
            assert [(int(e["at"][:-1]), e["prompt"]) for e in events] == [
                (e.at_frame, e.prompt) for e in shot.events]
            total += int(entry["duration"][:-1])
        assert total == film.total_frames


def test_film_structure_has_required_patterns(films: list[FilmSpec]) -> None:
    for film in films[:40]:
        kinds = [s.camera.kind for s in film.shots]
        scenes = [s.setting_id for s in film.shots]
        assert len(set(scenes)) >= 2
        assert any(a == "wide" and b in ("closeup", "medium") and film.shots[i].setting_id == film.shots[i + 1].setting_id
                   for i, (a, b) in enumerate(zip(kinds, kinds[1:])))
        assert "reverse" in kinds
    with_returns = sum(1 for f in films if film_returns(f))
    assert with_returns > 0.8 * len(films)
    no_returns = sample_film(9, duration_s=60.0, returns=False)
    assert not [r for r in film_returns(no_returns) if r.kind == "scene"]


def test_benchmark_set_meets_counts() -> None:
    bench = benchmark_films()
    assert len(bench) >= 100
    seconds = [f.total_frames / f.fps for f in bench]
    assert min(seconds) >= 10 and max(seconds) <= 120
    assert sum(s >= 120 for s in seconds) >= 10
    assert sum(1 for f in bench if film_returns(f)) >= 30
    assert [f.seed for f in benchmark_films()] == [f.seed for f in bench]
    with pytest.raises(ValueError):
        benchmark_films("v0")


def test_training_clips_are_labelled() -> None:
    clips = training_clips(4, frames=48)
    for _ in range(3):
        clip = next(clips)
        assert clip.frames.shape == (48, 128, 192, 3)
        assert len(clip.prompts) == 48 and clip.cuts.shape == (48,) and clip.shot_index.shape == (48,)
        changes = np.flatnonzero(np.diff(clip.shot_index)) + 1
        assert set(np.flatnonzero(clip.cuts)) - {0} <= set(changes)
        expected = np.concatenate([render_frames(clip.film, int(f), int(f) + 1) for f in clip.film_frames])
        assert np.array_equal(clip.frames, expected)


def test_render_speed_and_contact_sheet() -> None:
    fps = measure_fps(1, duration_s=10.0)
    print(f"\nworld render speed: {fps:.0f} frames/s at 192x128")
    from cinecli.world.sheet import contact_sheet

    contact_sheet(sample_film(11, duration_s=40.0), per_shot=4, scale=2).save("/tmp/world_sheet.png")


def test_montage_clips_bring_scenes_back_beyond_the_recent_window() -> None:
    """Training must show returns: most 12-s montage clips revisit a scene after 3+ s away."""
    import itertools

    from cinecli.world.dataset import training_clips

    returns = 0
    for clip in itertools.islice(training_clips(7, frames=144, montage=1.0), 20):
        assert clip.frames.shape[0] == len(clip.prompts) == len(clip.cuts) == len(clip.film_frames) == 144
        assert clip.cuts[0]
        assert np.array_equal(clip.frames[:8], render_frames(clip.film, int(clip.film_frames[0]), int(clip.film_frames[0]) + 8))
        scenes = [frame_truth(clip.film, int(clip.film_frames[c * 12])).scene_id for c in range(12)]
        returns += any(s in scenes[: max(0, c - 3)] and s not in scenes[max(0, c - 3): c] for c, s in enumerate(scenes))
    assert returns >= 12


def test_returning_marks_whole_runs_back_from_beyond_the_window() -> None:
    from cinecli.world.dataset import returning

    scenes = list("AAB") + ["C"] * 9 + list("AAB")
    marks = returning(scenes, 9)
    assert marks[12:14] == [True, True]  # A was away for 10 frames: the whole run is a return
    assert marks[14] is True  # B was last seen 12 frames before, outside the window of 9
    assert not any(marks[:12])
    assert not any(returning(scenes, 12))  # with a window of 12 both came back inside it
    assert returning(list("AABBA"), 9) == [False] * 5  # A came back inside the window: not a return


def test_first_sightings_mark_new_scenes_after_a_cut() -> None:
    from cinecli.world.dataset import first_sightings

    assert first_sightings(list("AAABBACCA")) == [False, False, False, True, True, False, True, True, False]
    assert first_sightings(list("AAAA")) == [False] * 4  # the clip's opening scene follows no cut
