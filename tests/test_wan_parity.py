"""cinecli's Wan transformer and VAE against Diffusers' implementation, on small random Wan-shaped weights.

Diffusers is a test-only dependency: the weights are made in Diffusers' layout, renamed by
cinecli's tables (the same ones the loaders use), and both implementations run on them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from cinecli.model.attention import SequenceAttention  # noqa: E402
from cinecli.model.autoencoder import DecodeState  # noqa: E402
from cinecli.model.config import preset  # noqa: E402
from cinecli.model.transformer import WanTransformer  # noqa: E402
from cinecli.model.wan import names  # noqa: E402
from cinecli.model.wan.vae import WanVAE, WanVAEConfig, load_wan_vae  # noqa: E402


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Diffusers initialises norms to 1 and biases to 0; random values make every path count."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "gamma" in name or "scale_shift" in name or name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("proj.weight") and p.dim() == 4:  # zero-initialised attention output
                p.normal_(0, 0.2, generator=g)


@pytest.fixture(scope="module")
def transformers_pair() -> tuple[torch.nn.Module, WanTransformer]:
    torch.manual_seed(0)
    ref = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=1e-6, rope_max_seq_len=1024,
    ).eval()
    _perturb(ref, 1)
    ours = WanTransformer(preset("wan2.1-t2v-1.3b", dim=24, num_layers=2, num_heads=2, ffn_dim=48, text_dim=32,
                                 freq_dim=32, text_len=16)).eval()
    ours.load_state_dict(names.rename_all(ref.state_dict(), names.diffusers_transformer_key), strict=True)
    return ref, ours


def _errors(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    return (a - b).abs().max().item(), ((a - b).norm() / a.norm()).item()


@pytest.mark.parametrize("timesteps", [[700.0] * 5, [1000.0, 937.5, 833.3, 625.0, 0.0]])
def test_transformer_matches_diffusers_in_full_attention(transformers_pair, timesteps) -> None:
    ref, ours = transformers_pair
    g = torch.Generator().manual_seed(2)
    frames, h, w = 5, 6, 8
    x = torch.randn(1, 16, frames, h, w, generator=g)
    text = torch.randn(1, 16, 32, generator=g)
    t = torch.tensor([timesteps])
    rows, cols = h // 2, w // 2
    with torch.no_grad():
        # Diffusers takes per-token timesteps as [B, tokens]: each frame's value on its tokens
        want = ref(x, t.repeat_interleave(rows * cols, dim=1), text, return_dict=False)[0]
        source = SequenceAttention.causal(frames, frames, rows, cols, ours.rope, torch.float32, torch.device("cpu"))
        got = ours(x, t, ours.encode_text(text[:, None]), torch.zeros(1, frames, dtype=torch.long), source)
    abs_err, rel_err = _errors(want, got)
    print(f"transformer parity: max abs {abs_err:.2e}, relative {rel_err:.2e}")
    assert abs_err < 1e-4 and rel_err < 1e-5


@pytest.fixture(scope="module")
def vaes() -> tuple[torch.nn.Module, WanVAE, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True]).eval()
    _perturb(ref, 3)
    state = ref.state_dict()
    ours = WanVAE(WanVAEConfig(dim=8)).eval()
    renamed = names.rename_all(state, names.diffusers_vae_key)
    ours.load_state_dict({k: v for k, v in renamed.items() if not k.startswith(("encoder.", "conv1."))}, strict=True)
    return ref, ours, state


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    # modest values keep most pixels inside [-1, 1] so the clamp hides nothing
    return torch.randn(1, 16, 7, 4, 6, generator=torch.Generator().manual_seed(4)) * 0.5


def test_vae_decodes_like_diffusers(vaes, latents) -> None:
    ref, ours, _ = vaes
    with torch.no_grad():
        want = ref.decode(latents).sample
    got = ours.decode(latents)
    assert got.shape == want.shape == (1, 3, 1 + 4 * 6, 32, 48)
    inside = (want.abs() < 1).float().mean().item()
    abs_err, rel_err = _errors(want, got)
    print(f"VAE parity: max abs {abs_err:.2e}, relative {rel_err:.2e} ({inside:.0%} of values unclamped)")
    assert inside > 0.5 and abs_err < 1e-4 and rel_err < 1e-5


def test_streaming_decode_equals_whole_clip_and_survives_a_checkpoint(vaes, latents) -> None:
    _, ours, _ = vaes
    whole = ours.decode(latents)

    def stream(checkpoint: bool) -> tuple[list[torch.Tensor], DecodeState]:
        state = ours.init_decode_state(1)
        parts = []
        for a, b in ((0, 3), (3, 6), (6, 7)):  # render chunks of 3 latent frames, the last one short
            video, state = ours.decode_chunk(latents[:, :, a:b], state)
            parts.append(video)
            if checkpoint:  # as a checkpoint would
                state = DecodeState.from_tensors({k: v.clone() for k, v in state.to_tensors().items()})
        return parts, state

    parts, state = stream(checkpoint=True)
    assert [p.shape[2] for p in parts] == [9, 12, 4]  # 1 + 4 + 4, then 4 per latent frame
    assert state.position == 7
    # a resumed render decodes exactly what an unbroken one decodes
    torch.testing.assert_close(torch.cat(parts, dim=2), torch.cat(stream(checkpoint=False)[0], dim=2), rtol=0, atol=0)
    # chunk boundaries change only the float rounding (frames decode in groups of a chunk)
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-5, atol=1e-5)
    # the state carries everything: the last chunk decoded from a state built in one go is the same
    again, _ = ours.decode_chunk(latents[:, :, 6:7], _state_after(ours, latents, 6))
    torch.testing.assert_close(again, parts[-1], rtol=1e-5, atol=1e-5)


def _state_after(vae: WanVAE, latents: torch.Tensor, frames: int) -> DecodeState:
    _, state = vae.decode_chunk(latents[:, :, :frames], vae.init_decode_state(1))
    return state


def test_diffusers_layout_vae_file_loads_strictly(vaes, latents, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    _, ours, state = vaes
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_wan_vae(path)
    torch.testing.assert_close(loaded.decode(latents), ours.decode(latents), rtol=0, atol=0)
