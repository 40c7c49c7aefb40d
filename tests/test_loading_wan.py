"""Strict loading of the public Wan2.1-family checkpoint layouts, at tiny widths with the 1.3B key set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.model.config import preset
from cinecli.model.loading import WeightsError, convert, load_transformer, transformer_shapes
from cinecli.model.wan.tiny import random_lora, random_transformer_state, write_checkpoint

# every block of the 1.3B key set (30 layers), tiny widths
KEYSET = {"dim": 24, "num_layers": 30, "num_heads": 2, "ffn_dim": 32, "text_dim": 32, "freq_dim": 32, "text_len": 8}
CFG = preset("wan2.1-t2v-1.3b", **KEYSET)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return random_transformer_state(KEYSET)


def test_keyset_is_the_wan_release_naming(state) -> None:
    assert len(state) == len(transformer_shapes(preset("wan2.1-t2v-1.3b"))) == 30 * 27 + 15  # 27 per block, 15 outside
    for key in ("patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.bias", "time_embedding.0.weight",
                "time_embedding.2.weight", "time_projection.1.weight", "blocks.29.self_attn.norm_k.weight",
                "blocks.0.norm3.weight", "blocks.0.cross_attn.o.bias", "blocks.0.ffn.2.weight",
                "blocks.0.modulation", "head.head.weight", "head.modulation"):
        assert key in state, key


@pytest.mark.parametrize("layout", ["self-forcing", "causvid", "fsdp", "safetensors"])
def test_public_layouts_load_strictly(state, tmp_path: Path, layout: str) -> None:
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    write_checkpoint(state, path, layout)
    model, report = load_transformer(CFG, path)
    offset = 0.01 if layout == "self-forcing" else 0.0  # Self-Forcing: the EMA weights are picked
    assert report.picked == {"self-forcing": "generator_ema", "safetensors": "(file)"}.get(layout, "generator")
    got = model.state_dict()
    for key in ("blocks.29.ffn.0.weight", "head.modulation", "patch_embedding.bias"):
        torch.testing.assert_close(got[key], state[key] + offset, rtol=0, atol=1e-6)


def test_forced_entry_picks_the_raw_generator(state, tmp_path: Path) -> None:
    path = tmp_path / "sf.pt"
    write_checkpoint(state, path, "self-forcing")
    model, report = load_transformer(CFG, path, key="generator")
    assert report.picked == "generator"
    torch.testing.assert_close(model.state_dict()["blocks.3.self_attn.q.weight"], state["blocks.3.self_attn.q.weight"])


def test_longlive_lora_is_merged_with_alpha_over_rank(state, tmp_path: Path) -> None:
    lora = random_lora(state, rank=4)
    base, lora_path = tmp_path / "longlive_base.pt", tmp_path / "lora.pt"
    write_checkpoint(state, base, "longlive", lora=lora, lora_path=lora_path)
    model, report = load_transformer(CFG, base, lora=lora_path, lora_alpha=8.0)
    assert report.lora_modules == 30 * 10 and report.lora_scaling == 2.0
    a = lora["base_model.model.blocks.7.cross_attn.v.lora_A.weight"]
    b = lora["base_model.model.blocks.7.cross_attn.v.lora_B.weight"]
    want = state["blocks.7.cross_attn.v.weight"] + 2.0 * b @ a
    torch.testing.assert_close(model.state_dict()["blocks.7.cross_attn.v.weight"], want)
    torch.testing.assert_close(model.state_dict()["blocks.7.cross_attn.v.bias"], state["blocks.7.cross_attn.v.bias"])


@pytest.mark.parametrize("damage, named", [
    ("drop", "blocks.17.cross_attn.k.weight"),
    ("reshape", "blocks.17.cross_attn.k.weight"),
    ("extra", "blocks.30.self_attn.q.weight"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_with_the_key(state, tmp_path: Path, damage: str, named: str) -> None:
    bad = dict(state)
    if damage == "drop":
        del bad[named]
    elif damage == "reshape":
        bad[named] = torch.zeros(24, 16)
    else:
        bad[named] = torch.zeros(24, 24)
    path = tmp_path / "bad.pt"
    write_checkpoint(bad, path, "causvid")
    with pytest.raises(WeightsError, match=named.replace(".", r"\.")) as err:
        load_transformer(CFG, path)
    assert str(path) in str(err.value)


def test_lora_for_a_missing_module_or_without_b_is_refused(state, tmp_path: Path) -> None:
    lora = random_lora(state, rank=2)
    lora["base_model.model.blocks.40.ffn.0.lora_A.weight"] = torch.zeros(2, 24)
    lora["base_model.model.blocks.40.ffn.0.lora_B.weight"] = torch.zeros(32, 2)
    write_checkpoint(state, tmp_path / "b.pt", "longlive", lora=lora, lora_path=tmp_path / "l.pt")
    with pytest.raises(WeightsError, match=r"blocks\.40\.ffn\.0\.weight"):
        load_transformer(CFG, tmp_path / "b.pt", lora=tmp_path / "l.pt")
    half = {k: v for k, v in random_lora(state, rank=2).items() if "blocks.5.ffn.2.lora_B" not in k}
    torch.save({"generator_lora": half}, tmp_path / "half.pt")
    with pytest.raises(WeightsError, match=r"blocks\.5\.ffn\.2 has no lora_B"):
        load_transformer(CFG, tmp_path / "b.pt", lora=tmp_path / "half.pt")


class _Payload:
    """Any pickled object that is not a tensor: loading must refuse it rather than unpickle it."""


def test_pickled_objects_are_never_executed(state, tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}, "extra": _Payload()}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        load_transformer(CFG, path)


def test_convert_writes_clean_safetensors_and_refuses_broken_files(state, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    lora = random_lora(state, rank=4)
    write_checkpoint(state, tmp_path / "base.pt", "longlive", lora=lora, lora_path=tmp_path / "lora.pt")
    out = tmp_path / "clean.safetensors"
    convert(tmp_path / "base.pt", out, CFG, lora=tmp_path / "lora.pt")
    clean = load_file(str(out))
    assert set(clean) == set(state)
    direct, _ = load_transformer(CFG, tmp_path / "base.pt", lora=tmp_path / "lora.pt")
    again, report = load_transformer(CFG, out)
    assert report.picked == "(file)"
    torch.testing.assert_close(again.state_dict()["blocks.2.ffn.0.weight"], direct.state_dict()["blocks.2.ffn.0.weight"])

    bad = dict(state)
    del bad["head.head.weight"]
    write_checkpoint(bad, tmp_path / "bad.pt", "causvid")
    model_yaml = tmp_path / "m.yaml"
    model_yaml.write_text("preset: wan2.1-t2v-1.3b\nconfig: " + str(KEYSET).replace("'", "") +
                          "\ntransformer: bad.pt\ntext_encoder: te\ntokenizer: tok\nvae: vae.pth\n", encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(app, ["convert", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o.safetensors"), "--model", str(model_yaml)])
    assert r.exit_code == 2 and "head.head.weight" in r.output and not (tmp_path / "o.safetensors").exists()
    r = runner.invoke(app, ["convert", str(tmp_path / "base.pt"), "-o", str(tmp_path / "o.safetensors"), "--model", str(model_yaml),
                            "--lora", str(tmp_path / "lora.pt")])
    assert r.exit_code == 0, r.output
    assert "300 LoRA modules" in r.output and (tmp_path / "o.safetensors").exists()
