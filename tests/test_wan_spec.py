"""Model description YAML: strict parsing, the film format from the YAML alone, `cinecli models`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.model.formats import film_format
from cinecli.model.wan.spec import ModelFileError, read_model_file

SELF_FORCING = """\
name: self-forcing-1.3b
preset: wan2.1-t2v-1.3b
transformer: checkpoints/self_forcing_dmd.pt
text_encoder: wan_models/Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth
tokenizer: wan_models/Wan2.1-T2V-1.3B/google/umt5-xxl
vae: wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth
"""

FILM = """\
film:
  title: Harbour
  model: models/self-forcing.yaml
  seed: 1
shots:
  - id: wide
    duration: 2s
    prompt: "A weathered lighthouse keeper walks along a stormy harbour at dusk, cinematic"
  - id: close
    duration: 1.5s
    prompt: "Close-up of the keeper's face, rain streaming, warm lantern light"
"""


def _write(tmp_path: Path, text: str = SELF_FORCING) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    path = tmp_path / "models" / "self-forcing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_format_comes_from_the_yaml_alone(tmp_path: Path) -> None:
    _write(tmp_path)  # none of the files it names exists: the format needs none of them
    fmt = film_format("models/self-forcing.yaml", tmp_path)
    assert (fmt.grid.stride, fmt.grid.first_alone) == (4, True)
    assert fmt.spatial_multiple == 16 and fmt.vocabulary is None
    assert fmt.default_resolution == (832, 480) and fmt.default_fps == 16 and fmt.chunk_frames == 3
    assert fmt.default_steps == 4 and fmt.model == "self-forcing-1.3b"
    spec = read_model_file(tmp_path / "models" / "self-forcing.yaml")
    assert spec.transformer == (tmp_path / "models" / "checkpoints" / "self_forcing_dmd.pt").resolve()
    assert (spec.shift, spec.sampler, spec.checkpoint_key, spec.lora) == (5.0, "few-step", "auto", None)


def test_a_screenplay_plans_against_the_wan_grid(tmp_path: Path) -> None:
    _write(tmp_path)
    script = tmp_path / "film.yaml"
    script.write_text(FILM, encoding="utf-8")
    r = CliRunner().invoke(app, ["plan", "--json", str(script)])
    assert r.exit_code == 0, r.output
    import json

    plan = json.loads(r.output)
    # 56 frames = 1 + 4·14 → 15 latent frames (5 chunks); the cut at 32 is snapped to 33 = 1 + 4·8
    assert plan["frames"] == 56 and plan["latent_frames"] == 15 and plan["chunks"] == 5
    assert plan["grid"] == {"stride": 4, "first_alone": True}
    assert [s["frame_start"] for s in plan["shot_plans"]] == [0, 33]
    assert (plan["width"], plan["height"], plan["fps"]) == (832, 480, 16)


@pytest.mark.parametrize("text, named", [
    (SELF_FORCING + "lora_alpah: 3\n", "lora_alpah: unknown key (did you mean 'lora_alpha'?)"),
    (SELF_FORCING.replace("vae: ", "# vae: "), "'vae' is required"),
    (SELF_FORCING + "sampling:\n  width: 830\n", "sampling.width: 830 is not a multiple of 16"),
    (SELF_FORCING + "sampling:\n  stepz: 3\n", "sampling.stepz: unknown key"),
    (SELF_FORCING + "config:\n  dims: 3\n", "config.dims: unknown key"),
    (SELF_FORCING + "checkpoint_key: ema\n", "checkpoint_key: 'ema' is not one of"),
    (SELF_FORCING.replace("wan2.1-t2v-1.3b", "wan9"), "unknown preset 'wan9'"),
])
def test_bad_descriptions_name_the_file_and_key(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ModelFileError) as err:
        read_model_file(path)
    assert named in str(err.value) and str(path) in str(err.value)


def test_validate_reports_a_bad_model_file_at_film_model(tmp_path: Path) -> None:
    _write(tmp_path, SELF_FORCING + "lora_alpah: 3\n")
    script = tmp_path / "film.yaml"
    script.write_text(FILM, encoding="utf-8")
    r = CliRunner().invoke(app, ["validate", str(script)])
    assert r.exit_code == 2 and "film.model" in r.output and "lora_alpah" in r.output


def test_models_lists_presets_and_checks_every_path(tmp_path: Path) -> None:
    path = _write(tmp_path)
    r = CliRunner().invoke(app, ["models", "--json", str(path)])
    assert r.exit_code == 2
    import json

    out = json.loads(r.output)
    assert "wan2.1-t2v-1.3b" in [p["name"] for p in out["presets"]]
    files = out["model_files"][0]["files"]
    assert [f["role"] for f in files] == ["transformer", "text_encoder", "tokenizer", "vae"]
    assert all(not f["ok"] and f["detail"] == "missing" for f in files)
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0 and "wan2.1-t2v-1.3b" in r.output
