"""Progress events as data, and the reporters that show them."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from cinecli.render.events import (
    EVENT_TYPES,
    ChunkDone,
    Error,
    Finished,
    Interrupted,
    Note,
    RenderStarted,
    ShotDone,
    ShotStarted,
    event_fields,
    from_json,
    stamp,
)
from cinecli.render.progress import (
    JsonLinesReporter,
    QuietReporter,
    RichReporter,
    eta_seconds,
    format_duration,
    make_reporter,
    report,
)

# The JSON interface farm dashboards parse. Changing this list is a breaking change:
# add fields at the end if needed, never rename or remove.
STABLE_FIELDS = {
    "render_started": ("event", "t", "title", "frames", "shots", "chunks", "fps", "width", "height",
                       "model", "device", "policy", "state_dir", "output"),
    "shot_started": ("event", "t", "shot", "id", "prompt", "frame_start", "frame_end"),
    "chunk_done": ("event", "t", "chunk", "chunks", "shot", "frames_done", "frames_total",
                   "chunk_seconds", "gen_fps", "active_tokens", "memory_frames"),
    "shot_done": ("event", "t", "shot", "id", "frames", "seconds", "reused"),
    "finished": ("event", "t", "output", "frames", "seconds", "gen_fps", "manifest"),
    "error": ("event", "t", "message", "exit_code"),
    "interrupted": ("event", "t", "signal", "resume_command", "exit_code"),
    "note": ("event", "t", "message"),
}


def sample_events() -> list:
    return [
        RenderStarted("The Lighthouse", 96, 2, 6, 16, 832, 480, "tiny", "cpu", "camr",
                      "/tmp/state", "film.mp4", t=0.05),
        Note("cut at frame 47 snapped to 45", t=0.1),
        ShotStarted(0, "opening", "A lighthouse [bold]at dusk[/bold]", 0, 45, t=0.2),
        ChunkDone(0, 6, 0, 16, 96, 1.5, 10.7, 4096, 4, t=1.7),
        ChunkDone(1, 6, 0, 32, 96, 1.4, 11.4, 4096, 8, t=3.1),
        ChunkDone(2, 6, 0, 45, 96, 1.2, 10.8, 4096, 11, t=4.3),
        ShotDone(0, "opening", 45, 4.1, False, t=4.3),
        ShotStarted(1, "東京の夜", "ネオン — neon street 🌃", 45, 96, t=4.3),
        ShotDone(1, "東京の夜", 51, 0.0, True, t=4.4),
        Finished("film.mp4", 96, 4.5, 10.9, "film.manifest.json", t=4.5),
        Error("disk full", 1, t=4.6),
        Interrupted("SIGTERM", "cinecli render film.yaml --resume", 143, t=4.7),
    ]


def test_field_names_are_stable() -> None:
    assert set(EVENT_TYPES) == set(STABLE_FIELDS)
    for kind, cls in EVENT_TYPES.items():
        assert event_fields(cls) == STABLE_FIELDS[kind], kind
        assert all(name == name.lower() and " " not in name for name in STABLE_FIELDS[kind])


def test_to_json_has_event_and_documented_fields() -> None:
    seen = set()
    for event in sample_events():
        obj = event.to_json()
        assert tuple(obj) == STABLE_FIELDS[event.kind]
        assert obj["event"] == event.kind
        seen.add(event.kind)
    assert seen == set(STABLE_FIELDS)


def test_events_are_frozen_and_stampable() -> None:
    note = Note("x")
    with pytest.raises(Exception):
        note.message = "y"  # type: ignore[misc]
    assert stamp(note, 2.5).t == 2.5 and note.t == 0.0


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_json_lines_parse_and_flush_per_line() -> None:
    stream = CountingStream()
    events = sample_events()
    with JsonLinesReporter(stream) as rep:
        for i, event in enumerate(events):
            rep.handle(event)
            assert stream.flushes >= i + 1  # visible in the log before the next event
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(events)
    for line, event in zip(lines, events):
        assert line.isascii()
        obj = json.loads(line)
        assert obj["event"] == event.kind
        assert tuple(obj) == STABLE_FIELDS[event.kind]
        assert from_json(obj) == event
    assert json.loads(lines[7])["id"] == "東京の夜"


def test_non_finite_floats_become_null() -> None:
    stream = io.StringIO()
    with JsonLinesReporter(stream) as rep:
        rep.handle(ChunkDone(0, 1, 0, 1, 1, math.inf, math.nan, 0, 0))
    obj = json.loads(stream.getvalue())
    assert obj["chunk_seconds"] is None and obj["gen_fps"] is None
    assert math.isnan(from_json(obj).gen_fps)


def test_from_json_rejects_unknown_and_tolerates_new_fields() -> None:
    with pytest.raises(ValueError, match="unknown"):
        from_json({"event": "nope"})
    with pytest.raises(ValueError, match="lacks"):
        from_json({"event": "note"})
    assert from_json({"event": "note", "t": 1, "message": "m", "added_later": 3}) == Note("m", t=1)


def test_paths_serialise_as_strings() -> None:
    event = Finished(Path("out/film.mp4"), 1, 1.0, 1.0, Path("out/m.json"))  # type: ignore[arg-type]
    assert event.to_json()["output"] == "out/film.mp4"


def test_rich_reporter_on_non_terminal_console() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    report(RichReporter(console), sample_events())
    text = out.getvalue()
    assert "The Lighthouse" in text
    assert "note: cut at frame 47 snapped to 45" in text
    assert "A lighthouse [bold]at dusk[/bold]" in text  # prompts are not markup
    assert "error: disk full" in text
    assert "cinecli render film.yaml --resume" in text
    assert "wrote film.mp4" in text


def test_rich_reporter_stops_display_on_exception() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    reporter = RichReporter(console)

    def failing():
        yield sample_events()[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        report(reporter, failing())
    assert reporter._progress is None
    assert console.file.getvalue().endswith("\x1b[?25h")  # cursor shown again


def test_rich_reporter_handles_events_before_enter() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    reporter = RichReporter(console)
    for event in sample_events():
        reporter.handle(event)  # no live display: plain prints, no crash


def test_quiet_reporter_prints_only_failures() -> None:
    stream = io.StringIO()
    report(QuietReporter(stream), sample_events())
    assert stream.getvalue().splitlines() == [
        "error: disk full",
        "interrupted by SIGTERM; resume with: cinecli render film.yaml --resume",
    ]
    report(QuietReporter(), sample_events())


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_reporter() -> None:
    assert isinstance(make_reporter("auto", io.StringIO()), JsonLinesReporter)
    assert isinstance(make_reporter("auto", FakeTTY()), RichReporter)
    assert isinstance(make_reporter("json", FakeTTY()), JsonLinesReporter)
    assert isinstance(make_reporter("rich", io.StringIO()), RichReporter)
    assert isinstance(make_reporter("quiet", io.StringIO()), QuietReporter)
    with pytest.raises(ValueError, match="auto, rich, json or quiet"):
        make_reporter("loud", io.StringIO())  # type: ignore[arg-type]


def test_time_helpers() -> None:
    assert format_duration(None) == "-:--"
    assert format_duration(math.nan) == "-:--"
    assert format_duration(5) == "0:05"
    assert format_duration(3723) == "1:02:03"
    assert eta_seconds(0, 0, 0) == 0.0
    assert eta_seconds(10, 0, 0) is None
    assert eta_seconds(50, 100, 10.0) == pytest.approx(5.0)
