"""`cinecli validate` and `cinecli plan`: the bad-input corpus, examples, JSON, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cinecli import __version__
from cinecli.cli import app

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((ROOT / "tests" / "screenplays" / "bad").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), prog_name="cinecli", env={"COLUMNS": "200"})


def expectations(path: Path) -> tuple[str, int]:
    """The `# expect:` substring and `# expect-line:` number from the file's first two lines."""
    first, second = path.read_bytes().split(b"\n")[:2]
    expect = re.fullmatch(r"# expect: (.+)", first.decode("utf-8"))
    line = re.fullmatch(r"# expect-line: (\d+)", second.decode("utf-8"))
    assert expect and line, f"{path.name} must start with '# expect:' and '# expect-line:' comments"
    return expect.group(1), int(line.group(1))


def test_the_bad_corpus_is_large_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_screenplay_is_refused_with_its_line(path: Path) -> None:
    expect, line = expectations(path)
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    matching = [text for text in result.stderr.splitlines() if expect in text]
    assert matching, f"{expect!r} not in:\n{result.stderr}"
    assert matching[0].startswith(f"{path}:{line}:"), matching[0]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate(path: Path) -> None:
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert re.match(r"ok: \d+ shots, [\d.]+ s, \d+ frames\n", result.stdout)
    assert "warning" not in result.stdout


def test_the_promised_examples_exist() -> None:
    assert {"quickstart", "return", "events"} <= {p.stem for p in EXAMPLES}


def test_validate_reports_notes(tmp_path: Path) -> None:
    path = tmp_path / "film.yaml"
    path.write_text("shots:\n  - {id: a, duration: 2.05s, prompt: the harbour}\n  - {id: b, duration: 3s, prompt: the forest}\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "ok: 2 shots, 5.08 s, 61 frames",
        "note: shot 'a' lasts 2.05s = 24.60 frames at 12 fps; rounded to 25 frames",
        "note: shot 'b' starts at frame 25 (2.08s); placed at 24, the nearest latent-frame start",
    ]


def test_validate_writes_nothing_on_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("shots: []\n")
    before = sorted(tmp_path.iterdir())
    result = invoke("validate", str(path))
    assert result.exit_code == 2 and sorted(tmp_path.iterdir()) == before
    assert result.stderr.endswith("1 problem found; nothing was written\n")


def test_validate_json_ok() -> None:
    result = invoke("validate", "--json", str(ROOT / "examples" / "quickstart.yaml"))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["shots"] == 3 and data["frames"] == 120 and data["seconds"] == 10
    assert data["notes"] == [] and data["warnings"] == []


def test_validate_json_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("shots:\n  - {duration: 0s, promt: x}\n")
    result = invoke("validate", "--json", str(path))
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(p["field"], p["line"]) for p in data["problems"]] == [
        ("shots[0].prompt", 2), ("shots[0].duration", 2), ("shots[0].promt", 2)]
    assert data["problems"][2]["hint"] == "did you mean 'prompt'?"
    assert data["problems"][0]["message"].startswith(f"{path}:2:")


def test_missing_script_is_invalid_input(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "found nothing at this path" in result.stderr


def test_plan_table() -> None:
    result = invoke("plan", str(ROOT / "examples" / "events.yaml"))
    assert result.exit_code == 0, result.output
    for text in ("The Red Circle", "meadow-on", "continue", "+2s: the red circle stops and spins", "latent frames"):
        assert text in result.stdout


def test_plan_shows_scripted_times_when_snapped(tmp_path: Path) -> None:
    path = tmp_path / "film.yaml"
    path.write_text("shots:\n  - {id: a, duration: 25f, prompt: 'x [red]'}\n  - {id: b, duration: 3s, prompt: y}\n")
    result = invoke("plan", str(path))
    assert result.exit_code == 0, result.output
    assert "(scripted 2.08s f25)" in result.stdout and "x [red]" in result.stdout


def test_plan_json() -> None:
    result = invoke("plan", "--json", str(ROOT / "examples" / "return.yaml"))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    shots = data["shot_plans"]
    assert data["frames"] == 360 and len(shots) == 7 and data["chunks"] == data["latent_frames"] // 3
    assert shots[0]["prompts"][0]["prompt"] == shots[5]["prompts"][0]["prompt"]
    assert len({s["hash"] for s in shots}) == 7
    assert shots[-1]["frame_end"] == 360
    assert all(s["location"] is None for s in shots)  # return.yaml names no location


def test_plan_refuses_invalid_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("shots:\n  - {duration: 4s, prompt: x, cut: continue}\n")
    result = invoke("plan", str(path))
    assert result.exit_code == 2 and "shots[0].cut" in result.stderr


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"cinecli {__version__}"


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_help_has_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and f"cinecli {command}" in result.stdout


def test_validate_warns_about_unknown_words(tmp_path: Path) -> None:
    path = tmp_path / "film.yaml"
    path.write_text("shots:\n  - {id: a, duration: 2s, prompt: 'the harbour at dusk'}\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 0
    assert "warning: shot 'a' prompt: model 'default' does not know 'dusk'" in result.stdout
