"""Loading and validating screenplays: defaults, units, every problem at once, absurd sizes."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

import pytest

from cinecli.screenplay import (
    FilmFormat,
    MemorySettings,
    Problem,
    ScreenplayError,
    TemporalGrid,
    load_screenplay,
    load_screenplay_resolving,
    parse_screenplay_text,
    vocabulary_warnings,
)

FMT = FilmFormat(
    model="default", grid=TemporalGrid(4, False), chunk_frames=3, spatial_multiple=16,
    resolutions=((192, 128),), fps=(12,), default_resolution=(192, 128), default_fps=12,
    default_steps=4, max_pixels=192 * 128, vocabulary=None,
)
OPEN_FMT = replace(FMT, resolutions=None, fps=None, max_pixels=640 * 480)


def parse(text: str, fmt: FilmFormat = FMT):
    return parse_screenplay_text(text, Path("film.yaml"), fmt)


def problems(text: str, fmt: FilmFormat = FMT) -> list[Problem]:
    with pytest.raises(ScreenplayError) as info:
        parse(text, fmt)
    return info.value.problems


def test_film_section_is_optional_and_defaults_come_from_the_format() -> None:
    sp = parse("shots:\n  - duration: 4s\n    prompt: the harbour\n  - duration: 1\n    prompt: the forest\n")
    film = sp.film
    assert (film.title, film.model, film.width, film.height, film.fps) == ("film", "default", 192, 128, 12)
    assert (film.seed, film.quantize, film.steps, film.memory) == (0, "none", None, MemorySettings())
    assert [s.id for s in sp.shots] == ["shot-1", "shot-2"]
    assert [s.cut for s in sp.shots] == ["cut", "cut"]
    assert [s.line for s in sp.shots] == [2, 4]


def test_full_film_section_is_read() -> None:
    sp = parse(
        "film:\n  title: T\n  model: default\n  resolution: 320x240\n  fps: 24\n  seed: 9\n"
        "  memory: {policy: window, recent_chunks: 2, top_k: 0, sink_frames: 1}\n"
        "  quantize: int8\n  steps: 8\nshots:\n  - {duration: 2s, prompt: x}\n",
        OPEN_FMT,
    )
    assert sp.film.width == 320 and sp.film.fps == 24 and sp.film.steps == 8 and sp.film.quantize == "int8"
    assert sp.film.memory == MemorySettings("window", 2, 0, 1)
    assert sp.shots[0].duration_frames == 48


def test_guidance_is_a_number_and_defaults_to_the_model() -> None:
    assert parse("shots:\n  - {duration: 2s, prompt: x}\n").film.guidance is None
    assert parse("film: {guidance: 1.5}\nshots:\n  - {duration: 2s, prompt: x}\n").film.guidance == 1.5
    assert parse("film: {guidance: 2}\nshots:\n  - {duration: 2s, prompt: x}\n").film.guidance == 2.0


def test_cut_guidance_is_a_number_that_enters_the_shot_hashes() -> None:
    from cinecli.screenplay.timeline import shot_hashes

    shots = "shots:\n  - {duration: 2s, prompt: x}\n"
    plain, cutting = parse(shots), parse("film: {cut_guidance: 2}\n" + shots)
    assert plain.film.cut_guidance is None and cutting.film.cut_guidance == 2.0
    assert shot_hashes(plain) != shot_hashes(cutting)  # a film rendered without it is not reused
    (problem,) = problems("film: {cut_guidance: 0.5}\n" + shots)
    assert (problem.line, problem.field) == (1, "film.cut_guidance") and problem.expected == "a number from 1 to 10"


def test_shot_window_is_read_and_noted_where_no_window_exists() -> None:
    sp = parse("film:\n  memory: {policy: camr, shot_window: true}\nshots:\n  - {duration: 2s, prompt: x}\n")
    assert sp.film.memory == MemorySettings("camr", shot_window=True) and sp.notes == ()
    sp = parse("film:\n  memory: {policy: full, shot_window: yes}\nshots:\n  - {duration: 2s, prompt: x}\n")
    assert sp.notes == ("film.memory.shot_window is only used by the camr and window policies, not full",)


@pytest.mark.parametrize("written, frames", [
    ("4s", 48), ("2.5s", 30), ("48f", 48), ("4", 48), ("2.5", 30), ('"3 s"', 36), ("1S", 12), ("0.5s", 6),
])
def test_duration_units(written: str, frames: int) -> None:
    sp = parse(f"shots:\n  - duration: {written}\n    prompt: x\n")
    assert sp.shots[0].duration_frames == frames
    assert sp.notes == ()


def test_durations_round_to_the_nearest_frame_with_a_note() -> None:
    sp = parse("shots:\n  - id: b\n    duration: 2.1s\n    prompt: x\n")
    assert sp.shots[0].duration_frames == 25
    assert sp.notes == ("shot 'b' lasts 2.1s = 25.20 frames at 12 fps; rounded to 25 frames",)


def test_events_are_read_in_frames_relative_to_the_shot() -> None:
    sp = parse("shots:\n  - duration: 4s\n    prompt: a\n    events:\n"
               "      - {at: 0s, prompt: b}\n      - {at: 2.5s, prompt: c}\n      - {at: 47f, prompt: d}\n")
    assert [(e.at_frame, e.prompt, e.line) for e in sp.shots[0].events] == [(0, "b", 5), (30, "c", 6), (47, "d", 7)]


def test_unicode_prompts_are_kept_exactly_and_only_trimmed_at_the_ends() -> None:
    prompts = ["夜の港、見知らぬ人が歩く", "الغريب يمشي في الصحراء", "🌊 the harbour 🚶‍♀️", "e\u0301 decomposed"]
    body = "".join(f"  - duration: 1s\n    prompt: \"  {p}  \"\n" for p in prompts)
    sp = parse("shots:\n" + body)
    assert [s.prompt for s in sp.shots] == prompts


def test_block_scalar_prompt() -> None:
    sp = parse("shots:\n  - duration: 1s\n    prompt: |\n      wide shot of the harbour,\n      the stranger walks\n")
    assert sp.shots[0].prompt == "wide shot of the harbour,\nthe stranger walks"


def test_ids_are_kept_as_written() -> None:
    sp = parse("shots:\n  - {id: 007, duration: 1s, prompt: x}\n  - {id: Harbour_wide-2, duration: 1s, prompt: y}\n")
    assert [s.id for s in sp.shots] == ["007", "Harbour_wide-2"]


def test_every_problem_is_reported_in_file_order() -> None:
    found = problems(
        "film:\n  fps: 13\n  quantize: int4\nshots:\n"
        "  - id: a\n    duration: -1s\n    promt: x\n"
        "  - id: a\n    duration: 4s\n    prompt: y\n    cut: fade\n"
    )
    fields = [p.field for p in found]
    assert fields == ["film.fps", "film.quantize", "shots[0].prompt", "shots[0].duration",
                      "shots[0].promt", "shots[1].id", "shots[1].cut"]
    assert [p.line for p in found] == sorted(p.line for p in found)


def test_problem_renders_like_a_compiler_diagnostic() -> None:
    problem = Problem("examples/x.yaml", 12, 5, "shots[3].events[0].at",
                      "a time inside the shot (0s–4s)", "5s")
    assert str(problem) == "examples/x.yaml:12:5: shots[3].events[0].at: expected a time inside the shot (0s–4s), found 5s"
    hinted = Problem("x.yaml", 3, None, "shots[0].promt", "a key", "promt", "did you mean 'prompt'?")
    assert str(hinted) == "x.yaml:3: shots[0].promt: expected a key, found promt (did you mean 'prompt'?)"
    assert str(Problem("x.yaml", None, None, "", "a screenplay file", "a folder")) == \
        "x.yaml: expected a screenplay file, found a folder"


def test_misspelt_keys_get_a_hint_at_every_level() -> None:
    found = problems("flim: {}\nshots:\n  - duraton: 1s\n    prompt: x\n    event: []\n")
    hints = {p.field: p.hint for p in found}
    assert hints["flim"] == "did you mean 'film'?"
    assert hints["shots[0].duraton"] == "did you mean 'duration'?"
    assert hints["shots[0].event"] == "did you mean 'events'?"


def test_bool_and_float_are_not_whole_numbers() -> None:
    found = problems("film:\n  seed: true\n  steps: 4.0\nshots:\n  - {duration: 1s, prompt: x}\n")
    assert [p.field for p in found] == ["film.seed", "film.steps"]


def test_open_format_accepts_any_multiple_and_fps() -> None:
    sp = parse("film: {resolution: 320x240, fps: 30}\nshots:\n  - {duration: 1s, prompt: x}\n", OPEN_FMT)
    assert (sp.film.width, sp.film.height, sp.film.fps) == (320, 240, 30)
    assert [p.field for p in problems("film: {fps: 121}\nshots:\n  - {duration: 1s, prompt: x}\n", OPEN_FMT)] \
        == ["film.fps"]


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    data = "shots:\n  - {duration: 1s, prompt: \"港\"}\n".encode("utf-8")
    path.write_bytes(data)
    sp = load_screenplay(path, FMT)
    assert sp.sha256 == hashlib.sha256(data).hexdigest() and sp.path == path


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfshots:\n  - {duration: 1s, prompt: x}\n")
    assert load_screenplay(path, FMT).shots[0].prompt == "x"


def test_missing_file_and_folder_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ScreenplayError, match="found nothing at this path"):
        load_screenplay(tmp_path / "nope.yaml", FMT)
    with pytest.raises(ScreenplayError, match="found a folder"):
        load_screenplay(tmp_path, FMT)


def test_huge_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * 6_000_000)
    start = time.perf_counter()
    with pytest.raises(ScreenplayError, match="at most 5 MB"):
        load_screenplay(path, FMT)
    assert time.perf_counter() - start < 0.5


def test_ten_thousand_shots_are_refused_quickly() -> None:
    text = "shots:\n" + "  - {duration: 1s, prompt: the harbour}\n" * 10_000
    start = time.perf_counter()
    found = problems(text)
    assert time.perf_counter() - start < 3.0
    assert [(p.field, p.expected, p.found) for p in found] == [("shots", "at most 5000 shots", "10000 shots")]


def test_ten_hour_film_is_refused_quickly() -> None:
    start = time.perf_counter()
    one_shot = problems("shots:\n  - {duration: 36000s, prompt: x}\n")
    many_shots = problems("shots:\n" + "  - {duration: 3600s, prompt: x}\n" * 10)
    frames = problems("shots:\n  - {duration: 432000f, prompt: x}\n")
    assert time.perf_counter() - start < 0.5
    assert one_shot[0].field == "shots[0].duration" and "4 hours" in one_shot[0].expected
    assert many_shots[0].field == "shots" and many_shots[0].found == "10h 00m 00s in total"
    assert frames[0].field == "shots[0].duration"


def test_exactly_four_hours_and_5000_shots_are_allowed() -> None:
    assert parse("shots:\n  - {duration: 14400s, prompt: x}\n").frames == 14400 * 12
    text = "shots:\n" + "  - {duration: 1s, prompt: the harbour}\n" * 5000
    assert len(parse(text).shots) == 5000


def test_yaml_bombs_do_not_expand() -> None:
    text = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "shots: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n")
    start = time.perf_counter()
    found = problems(text)
    assert time.perf_counter() - start < 0.5
    assert {p.field for p in found} >= {"a", "b", "c", "d"}


def test_resolver_receives_the_model_ref_and_script_dir(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("film:\n  model: ./tiny.yaml\nshots:\n  - {duration: 1s, prompt: x}\n")
    calls: list[tuple[str, Path]] = []

    def resolve(ref: str, script_dir: Path) -> FilmFormat:
        calls.append((ref, script_dir))
        return replace(FMT, model=ref)

    sp, fmt = load_screenplay_resolving(path, resolve)
    assert calls == [("./tiny.yaml", tmp_path)] and fmt.model == "./tiny.yaml" and sp.film.model == "./tiny.yaml"


def test_resolver_failure_is_reported_at_the_model_line(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("film:\n  title: T\n  model: giant\nshots:\n  - {duration: 1s, prompt: x}\n")

    def resolve(ref: str, script_dir: Path) -> FilmFormat:
        raise FileNotFoundError(f"no model description {ref}")

    with pytest.raises(ScreenplayError) as info:
        load_screenplay_resolving(path, resolve)
    (problem,) = info.value.problems
    assert (problem.line, problem.column, problem.field) == (3, 10, "film.model")
    assert "no model description giant" in problem.hint


def test_vocabulary_warnings_name_shot_and_words() -> None:
    fmt = replace(FMT, vocabulary=frozenset("wide shot of the harbour stranger walks close up on keeper".split()))
    sp = parse("shots:\n  - {id: a, duration: 1s, prompt: 'wide shot of the harbour, the stranger walks'}\n"
               "  - id: b\n    duration: 1s\n    prompt: 'close-up on the keeper at dusk, dusk!'\n"
               "    events:\n      - {at: 0.5s, prompt: 'the keeper dances'}\n"
               "  - {id: c, duration: 1s, prompt: '港の灯台'}\n")
    assert vocabulary_warnings(sp, fmt) == [
        "shot 'b' prompt: model 'default' does not know 'at', 'dusk'",
        "shot 'b' event at line 7: model 'default' does not know 'dances'",
        "shot 'c' prompt: model 'default' does not know '港の灯台'",
    ]
    assert vocabulary_warnings(sp, FMT) == []
