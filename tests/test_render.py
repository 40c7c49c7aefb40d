"""`cinecli render` end to end with the shipped default model: the film a user gets.

Frame count and resolution are read back from the MP4, the JSON progress stream is parsed,
renders are deterministic, and a failed render leaves no output behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.render import events as ev
from cinecli.render.run import RenderRequest, render_script
from cinecli.render.segments import count_frames, read_video

SCRIPT = """\
film:
  title: "render test"
  resolution: 192x128
  fps: 12
  seed: 11
shots:
  - id: harbour
    duration: 15f
    prompt: "wide shot of the harbour, the stranger walks in from the left"
  - id: forest
    duration: 1s
    prompt: "close-up on the keeper in the forest"
    events:
      - at: 6f
        prompt: "close-up on the keeper as it spins in the forest"
"""
FRAMES = 15 + 12


def _render(tmp: Path, name: str, *extra: str) -> tuple[int, list[dict], Path]:
    script = tmp / "film.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp / name
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(out), "--progress", "json", *extra], prog_name="cinecli")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, lines, out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict], Path]:
    return _render(tmp_path_factory.mktemp("render"), "film.mp4", "--split-shots")


def test_film_has_scripted_frame_count_and_resolution(rendered) -> None:
    code, _, out = rendered
    assert code == 0
    assert count_frames(out) == FRAMES
    frames = read_video(out)
    assert frames.shape == (FRAMES, 128, 192, 3)
    shots = sorted(out.with_suffix(".shots").glob("*.mp4"))
    assert [p.name for p in shots] == ["001-harbour.mp4", "002-forest.mp4"]
    # the cut at frame 15 is off the 4-frame grid: placed at 16, the film still has 27 frames
    assert [count_frames(p) for p in shots] == [16, 11]


def test_json_progress_has_every_event_in_order(rendered) -> None:
    _, lines, out = rendered
    kinds = [line["event"] for line in lines]
    assert kinds[0] == "render_started" and kinds[-1] == "finished"
    assert kinds.count("shot_started") == kinds.count("shot_done") == 2
    assert kinds.count("chunk_done") == lines[0]["chunks"] == 3
    assert all("t" in line for line in lines)
    assert [line["t"] for line in lines] == sorted(line["t"] for line in lines)
    done = [line for line in lines if line["event"] == "chunk_done"]
    assert done[-1]["frames_done"] == done[-1]["frames_total"] == FRAMES
    assert any("placed at" in line.get("message", "") for line in lines if line["event"] == "note")
    finished = lines[-1]
    assert Path(finished["output"]) == out.resolve() and Path(finished["manifest"]).exists()


def test_manifest_and_contact_sheet_beside_the_film(rendered) -> None:
    _, _, out = rendered
    manifest = json.loads(out.with_suffix(".manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["frames"] == FRAMES and manifest["seed"] == 11
    assert [s["id"] for s in manifest["shots"]] == ["harbour", "forest"]
    assert manifest["shots"][1]["prompts"][1]["prompt"].endswith("spins in the forest")
    assert manifest["model"]["trained"] is True
    assert out.with_suffix(".contact.png").stat().st_size > 1000


def test_same_seed_same_film(rendered, tmp_path: Path) -> None:
    _, _, first = rendered
    code, _, second = _render(tmp_path, "again.mp4")
    assert code == 0
    assert second.read_bytes() == first.read_bytes()
    code, _, other = _render(tmp_path, "other.mp4", "--seed", "12")
    assert code == 0 and other.read_bytes() != first.read_bytes()


def test_the_core_count_does_not_change_the_film(rendered, tmp_path: Path) -> None:
    """Render farms mix machines with more and fewer cores; a seed's film must not notice."""
    import torch

    _, _, first = rendered
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        code, _, other = _render(tmp_path, "other-threads.mp4")
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and other.read_bytes() == first.read_bytes()


def test_existing_output_is_not_overwritten(rendered, tmp_path: Path) -> None:
    out = tmp_path / "film.mp4"
    out.write_bytes(b"keep me")
    code, lines, _ = _render(tmp_path, "film.mp4")
    assert code == 2 and out.read_bytes() == b"keep me"
    assert "--overwrite" in lines[-1]["message"]


def test_failure_mid_render_leaves_no_film(tmp_path: Path) -> None:
    from cinecli.model.bundle import load_default

    bundle = load_default()
    calls = {"n": 0}
    real = bundle.transformer.forward

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:  # during the second chunk
            raise RuntimeError("simulated device failure")
        return real(*args, **kwargs)

    bundle.transformer.forward = failing  # type: ignore[method-assign]
    script = tmp_path / "film.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    events: list[ev.BaseEvent] = []
    code = render_script(RenderRequest(script=script, output=tmp_path / "film.mp4"), events.append, bundle=bundle)
    assert code == 1
    assert "simulated device failure" in events[-1].message  # type: ignore[attr-defined]
    assert not (tmp_path / "film.mp4").exists()
    assert not list(tmp_path.glob("*.partial.mp4"))


def test_unicode_prompt_survives_into_the_manifest(tmp_path: Path) -> None:
    prompt = "港の広い画面, l'étranger arrive — 🎬"
    script = tmp_path / "film.yaml"
    script.write_text(f'film: {{seed: 1}}\nshots:\n  - id: one\n    duration: 12f\n    prompt: "{prompt}"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "film.mp4"), "--progress", "json"], prog_name="cinecli")
    assert result.exit_code == 0
    assert any("unknown" in json.loads(line).get("message", "").lower() or "know" in json.loads(line).get("message", "")
               for line in result.stdout.splitlines() if '"note"' in line)
    manifest = json.loads((tmp_path / "film.manifest.json").read_text(encoding="utf-8"))
    assert manifest["shots"][0]["prompts"][0]["prompt"] == prompt
    assert prompt in (tmp_path / "film.manifest.json").read_text(encoding="utf-8")


def test_each_distinct_prompt_is_encoded_once(tmp_path: Path) -> None:
    """A prompt change mid-film costs one encoding; a returning prompt costs none."""
    from cinecli.model.bundle import load_default

    bundle = load_default()
    encoded: list[str] = []
    real = bundle.text_encoder.encode

    def counting(prompts):
        encoded.extend(prompts)
        return real(prompts)

    bundle.text_encoder.encode = counting  # type: ignore[method-assign]
    script = tmp_path / "film.yaml"
    script.write_text(
        "film: {seed: 3}\nshots:\n"
        "  - {id: a, duration: 1s, prompt: wide shot of the harbour}\n"
        "  - id: b\n    duration: 2s\n    prompt: close-up on the keeper\n    events: [{at: 1s, prompt: the keeper spins}]\n"
        "  - {id: c, duration: 1s, prompt: wide shot of the harbour}\n",
        encoding="utf-8",
    )
    code = render_script(RenderRequest(script=script, output=tmp_path / "film.mp4"), lambda e: None, bundle=bundle)
    assert code == 0
    assert sorted(encoded) == sorted(["wide shot of the harbour", "close-up on the keeper", "the keeper spins"])


@pytest.mark.slow
def test_compiled_render_is_recorded_and_resumes_only_compiled(tmp_path: Path) -> None:
    """`--compile` renders the same frame count; the state records it, so an eager resume is refused."""
    import json as _json

    code, lines, out = _render(tmp_path, "compiled.mp4", "--compile")
    assert code == 0, lines[-3:]
    assert lines[-1]["event"] == "finished" and lines[-1]["frames"] == 27
    manifest = _json.loads((tmp_path / "compiled.state" / "manifest.json").read_text())
    assert manifest["settings"]["compiled"] is True and manifest["request"]["compile"] is True
    code, lines, _ = _render(tmp_path, "compiled.mp4", "--overwrite")
    assert code == 2 and "compiled" in lines[-1]["message"]



def test_a_cards_guidance_steers_against_the_empty_prompt(tmp_path: Path) -> None:
    """`guidance` in a model card (a Wan description's sampling keys, the default base model)
    reaches the sampler: the empty prompt is encoded once and every step runs a second pass."""
    import dataclasses

    from cinecli.model.bundle import load_default

    script = tmp_path / "film.yaml"
    script.write_text("film: {seed: 3}\nshots:\n  - {id: a, duration: 1s, prompt: wide shot of the harbour}\n", encoding="utf-8")
    films = {}
    for guidance in (1.0, 3.0):
        bundle = load_default()
        bundle.card = dataclasses.replace(bundle.card, guidance=guidance)
        encoded: list[str] = []
        real = bundle.text_encoder.encode

        def counting(prompts, real=real, encoded=encoded):
            encoded.extend(prompts)
            return real(prompts)

        bundle.text_encoder.encode = counting  # type: ignore[method-assign]
        out = tmp_path / f"g{guidance}.mp4"
        assert render_script(RenderRequest(script=script, output=out, fresh=True), lambda e: None, bundle=bundle) == 0
        assert ("" in encoded) == (guidance != 1.0)
        films[guidance] = read_video(out)
    assert films[1.0].shape == films[3.0].shape
    assert not np.array_equal(films[1.0], films[3.0])
