"""`cinecli render` with a tiny random Wan-shaped model description (transformer, umT5, tokenizer, VAE).

The files are the public layouts at tiny sizes (`cinecli.model.wan.tiny`); the film is noise, but
it goes through every loader and the Wan grid: 1 + 4k decoded frames, trimmed to the script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers")

from cinecli.cli import app  # noqa: E402
from cinecli.model.bundle import load_model  # noqa: E402
from cinecli.model.wan.text import MissingExtra, load_text_encoder  # noqa: E402
from cinecli.model.wan.tiny import write_tiny_model  # noqa: E402
from cinecli.render.segments import count_frames, read_video  # noqa: E402

FILM = """\
film:
  title: Tiny harbour
  model: model/tiny-wan.yaml
  seed: 5
shots:
  - id: wide
    duration: 1s
    prompt: "wide shot of the harbour at night"
  - id: close
    duration: 10f
    prompt: "close up on the keeper"
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wan")
    write_tiny_model(root / "model", layout="self-forcing")
    (root / "film.yaml").write_text(FILM, encoding="utf-8")
    return root


def test_render_through_the_cli_trims_the_wan_grid_to_the_script(model_dir: Path) -> None:
    out = model_dir / "film.mp4"
    r = CliRunner().invoke(app, ["render", str(model_dir / "film.yaml"), "-o", str(out), "--progress", "json"])
    assert r.exit_code == 0, r.output
    events = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    started = events[0]
    # 16 + 10 = 26 frames; the cut at 16 snaps to 17 = 1 + 4·4; 8 latent frames decode to 29 frames
    assert started["event"] == "render_started" and started["frames"] == 26 and started["chunks"] == 3
    assert started["model"] == "tiny-wan" and (started["width"], started["height"]) == (32, 32)
    done = [e["frames_done"] for e in events if e["event"] == "chunk_done"]
    assert done == [9, 21, 26]  # latents 0–2, 3–5, 6–7 decode to 9, 12 and 8 frames; the last 8 are cut to 5
    assert [e["frame_start"] for e in events if e["event"] == "shot_started"] == [0, 17]
    assert count_frames(out) == 26
    assert read_video(out).shape == (26, 32, 32, 3)


def test_wan_t5_checkpoint_encodes_like_the_transformers_folder(model_dir: Path, tmp_path: Path) -> None:
    """Wan's own `models_t5_umt5-xxl-enc-bf16.pth` naming loads to the same encoder."""
    from safetensors.torch import load_file

    folder = model_dir / "model" / "text_encoder"
    hf = load_file(str(next(folder.glob("*.safetensors"))))
    inverse = {
        "shared.weight": "token_embedding.weight", "encoder.final_layer_norm.weight": "norm.weight",
        "layer.0.layer_norm": "norm1", "layer.0.SelfAttention.relative_attention_bias": "pos_embedding.embedding",
        "layer.0.SelfAttention": "attn", "layer.1.layer_norm": "norm2", "layer.1.DenseReluDense.wi_0": "ffn.gate.0",
        "layer.1.DenseReluDense.wi_1": "ffn.fc1", "layer.1.DenseReluDense.wo": "ffn.fc2",
    }
    wan = {}
    for key, value in hf.items():
        if key == "encoder.embed_tokens.weight":
            continue
        new = inverse.get(key, key).replace("encoder.block.", "blocks.")
        for a, b in inverse.items():
            new = new.replace(a, b)
        wan[new] = value
    assert "blocks.1.ffn.gate.0.weight" in wan and "blocks.0.pos_embedding.embedding.weight" in wan
    torch.save(wan, tmp_path / "models_t5_umt5-xxl-enc-bf16.pth")
    tok = model_dir / "model" / "tokenizer"
    a = load_text_encoder(folder, tok, text_len=16, dtype="float32")
    b = load_text_encoder(tmp_path / "models_t5_umt5-xxl-enc-bf16.pth", tok, text_len=16, dtype="float32")
    prompts = ["wide shot of the  harbour &amp; sea", "keeper"]
    ea, eb = a.encode(prompts), b.encode(prompts)
    torch.testing.assert_close(ea, eb, rtol=0, atol=1e-6)
    assert ea.shape == (2, 16, 32)
    # zero beyond each prompt's tokens (7 words + </s>; 1 word + </s>)
    assert ea[0, :8].abs().sum(-1).min() > 0 and ea[0, 8:].abs().sum() == 0 and ea[1, 2:].abs().sum() == 0


def test_missing_file_and_missing_extra_say_what_to_do(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    text = (model_dir / "model" / "tiny-wan.yaml").read_text(encoding="utf-8")
    broken = model_dir / "model" / "broken.yaml"
    broken.write_text(text.replace("vae: Wan2.1_VAE.pth", "vae: nowhere/Wan2.1_VAE.pth"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.yaml: vae: expected at .*nowhere/Wan2\.1_VAE\.pth"):
        load_model("model/broken.yaml", model_dir)
    broken.unlink()
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingExtra, match=r'pip install "cinecli\[wan\]"'):
        load_model("model/tiny-wan.yaml", model_dir)


def test_render_with_a_missing_weights_file_is_invalid_input(model_dir: Path, tmp_path: Path) -> None:
    """A model description naming a file that is not there ends the render with exit 2, before any work."""
    text = (model_dir / "model" / "tiny-wan.yaml").read_text(encoding="utf-8")
    (model_dir / "model" / "gone.yaml").write_text(text.replace("vae: Wan2.1_VAE.pth", "vae: nowhere/Wan2.1_VAE.pth"), encoding="utf-8")
    script = model_dir / "gone-film.yaml"
    script.write_text(FILM.replace("model/tiny-wan.yaml", "model/gone.yaml"), encoding="utf-8")
    from typer.testing import CliRunner

    from cinecli.cli import app

    result = CliRunner().invoke(app, ["render", str(script), "-o", str(tmp_path / "f.mp4"), "--progress", "json"], prog_name="cinecli")
    assert result.exit_code == 2, result.output
    assert "nowhere/Wan2.1_VAE.pth" in result.output
    assert not (tmp_path / "f.mp4").exists()
