"""The VRAM planner: its arithmetic against real allocations, its fallback order, its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.budget import (
    BudgetError, FilmShape, Placement, choose, estimate, fallbacks, parse_size, weight_bytes,
)
from cinecli.model.config import preset
from cinecli.model.quantize import quantize_cpu
from cinecli.model.transformer import WanTransformer

CFG = preset("tiny")
LATENT_H, LATENT_W = 16, 24  # the default model's 192x128


def _shape(latents: int = 30, budget: int | None = 14) -> FilmShape:
    return FilmShape(config=CFG, latent_height=LATENT_H, latent_width=LATENT_W, chunk_frames=3, film_latents=latents,
                     active_budget=budget, video_width=192, video_height=128, temporal_stride=4,
                     decoder_params=600_000, working_bytes=4)


def _tensor_bytes(tensors) -> int:  # type: ignore[no-untyped-def]
    return sum(t.numel() * t.element_size() for t in tensors)


def _filled_bank(storage: str, frames: int) -> MemoryBank:
    spec = BankSpec(num_layers=CFG.num_layers, batch=1, tokens_per_frame=CFG.tokens_per_frame(LATENT_H, LATENT_W),
                    num_heads=CFG.num_heads, head_dim=CFG.head_dim, storage=storage, capacity=frames)
    bank = MemoryBank(spec)
    shape = (1, 3, spec.tokens_per_frame, spec.num_heads, spec.head_dim)
    for _ in range(frames // 3):
        for layer in range(CFG.num_layers):
            bank.stage(layer, torch.randn(shape), torch.randn(shape))
        bank.commit()
    return bank


@pytest.mark.parametrize("storage", ["native", "int8"])
def test_estimate_is_within_2x_of_what_the_cpu_allocates(storage: str) -> None:
    frames = 30
    model = WanTransformer(CFG)
    bank = _filled_bank(storage, frames)
    stores = bank._layers  # noqa: SLF001 - measuring the real storage is the point
    bank_bytes = _tensor_bytes(t for st in stores for t in (st.k, st.v, st.k_scale, st.v_scale) if t is not None)
    measured = _tensor_bytes(model.parameters()) + bank_bytes
    est = estimate(_shape(frames), Placement(history=storage))  # type: ignore[arg-type]
    predicted = est.weights + est.history
    print(f"tiny, {frames} latent frames, history {storage}: estimated {predicted} B, allocated {measured} B")
    assert 0.5 <= predicted / measured <= 2.0


def test_int8_weight_estimate_matches_the_quantized_model() -> None:
    model = quantize_cpu(WanTransformer(CFG))
    state = model.state_dict()
    # the CPU back end keeps a dense copy to compute with; the estimate is for the stored form
    measured = _tensor_bytes(v for k, v in state.items() if v.dtype in (torch.int8,) or k.endswith("weight_scale"))
    measured += _tensor_bytes(v for k, v in state.items() if v.dtype != torch.int8 and not k.endswith("weight_scale") and k != "rope.cos") // 2
    assert 0.5 <= weight_bytes(CFG, "int8") / measured <= 2.0


def test_fallbacks_go_offload_held_then_per_use_then_int8_history_then_int8_weights() -> None:
    steps = fallbacks(Placement())
    assert steps == (Placement(), Placement(offload_history=True, hold_active=True), Placement(offload_history=True),
                     Placement("bf16", "int8", True), Placement("int8", "int8", True))
    assert fallbacks(Placement("int8", "int8", True)) == (Placement("int8", "int8", True),
                                                          Placement("int8", "int8", True, hold_active=True))


def test_choose_picks_the_first_that_fits_in_order() -> None:
    shape = _shape(latents=600)  # a long film: history dominates
    steps = fallbacks(Placement())
    totals = [estimate(shape, p).total for p in steps]
    # offloaded history costs no VRAM in any format; held active sets cost every layer's
    assert totals[0] > totals[1] > totals[2] == totals[3] > totals[4]
    for placement, limit, n_tried in ((steps[0], totals[0], 1), (steps[1], totals[1], 2), (steps[2], totals[2], 3), (steps[4], totals[4], 4)):
        chosen, tried = choose(shape, Placement(), limit)
        assert chosen.placement == placement and len(tried) == n_tried
    chosen, _ = choose(shape, Placement(), totals[0] * 2)
    assert chosen.placement == Placement()


def test_offload_asked_for_is_kept_and_int8_history_shrinks_history_on_device() -> None:
    shape = _shape(latents=600)
    asked = Placement(offload_history=True)
    assert choose(shape, asked, estimate(shape, asked).total)[0].placement == asked
    native, int8 = estimate(shape, Placement()), estimate(shape, Placement(history="int8"))
    assert int8.history < 0.6 * native.history


def test_refusal_names_the_numbers() -> None:
    shape = _shape()
    with pytest.raises(BudgetError) as err:
        choose(shape, Placement(), 10 * 2**20)
    text = str(err.value)
    assert "does not fit in 10.0 MiB" in text
    for term in ("weights", "active KV", "history", "activations", "decoder", "total", "limit", "fits"):
        assert term in text
    assert text.count(" no") >= 3


def test_parse_size() -> None:
    assert parse_size("8GB") == 8 * 2**30 == parse_size("8 GiB")
    assert parse_size("6000MB") == 6000 * 2**20
    assert parse_size("1.5g") == int(1.5 * 2**30)
    for bad in ("eight", "8XB", "0GB", "-1GB"):
        with pytest.raises(BudgetError):
            parse_size(bad)


def _script(tmp: Path) -> Path:
    script = tmp / "film.yaml"
    script.write_text('film:\n  title: "budget"\n  resolution: 192x128\n  fps: 12\nshots:\n'
                      '  - id: a\n    duration: 12f\n    prompt: "wide shot of the harbour"\n', encoding="utf-8")
    return script


def test_render_max_vram_refuses_before_rendering(tmp_path: Path) -> None:
    out = tmp_path / "film.mp4"
    result = CliRunner().invoke(app, ["render", str(_script(tmp_path)), "-o", str(out), "--max-vram", "100MB",
                                      "--progress", "json"], prog_name="cinecli")
    assert result.exit_code == 2
    assert "does not fit in 100.0 MiB" in result.output and "runtime" in result.output
    assert not out.exists() and not (tmp_path / "film.state" / "segments").exists()


def test_render_max_vram_applies_the_chosen_settings(tmp_path: Path) -> None:
    out = tmp_path / "film.mp4"
    result = CliRunner().invoke(app, ["render", str(_script(tmp_path)), "-o", str(out), "--max-vram", "2GB",
                                      "--progress", "json"], prog_name="cinecli")
    assert result.exit_code == 0, result.output
    assert "estimated peak" in result.output
    manifest = json.loads((tmp_path / "film.state" / "manifest.json").read_text())
    assert manifest["settings"]["quantize"] == "none" and manifest["request"]["max_vram"] == 2 * 2**30
