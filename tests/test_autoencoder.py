"""Causal video autoencoder: shapes, causality, streaming decode, state round-trip, trainer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cinecli.model.autoencoder import (
    AutoencoderConfig,
    DecodeState,
    VideoAutoencoder,
    extend_decoder,
    load_autoencoder,
    save_autoencoder,
)
from cinecli.train.autoencoder import AETrainConfig, boundary_share, load_train_config, noisy_latents, recon_loss, synthetic_clips, train_autoencoder
from cinecli.train.config import ConfigError, load_yaml_config

ROOT = Path(__file__).resolve().parents[1]
# narrow widths keep the tests fast; the structure (and so causality) is the default one
TINY = AutoencoderConfig(latent_channels=8, base_channels=32, enc_channels=(8, 16, 32),
                         dec_channels=(16, 8, 8), dec_blocks=(1, 1, 0))
H, W = 32, 48


def _model(seed: int = 0, config: AutoencoderConfig = TINY) -> VideoAutoencoder:
    torch.manual_seed(seed)
    m = VideoAutoencoder(config).eval()
    # random (non-identity) temporal weights, so a causality bug cannot hide behind zero init
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "temporal" in name or "conv2" in name or name.startswith("decoder.ahead."):
                p.normal_(0, 0.05)
    return m


def test_shapes_and_range() -> None:
    m = _model()
    x = torch.rand(2, 3, 12, H, W) * 2 - 1
    with torch.no_grad():
        z = m.encode(x)
        y = m.decode(z)
    assert z.shape == (2, 8, 3, H // 8, W // 8)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1
    assert (m.latent_channels, m.temporal_stride, m.spatial_stride) == (8, 4, 8)
    with pytest.raises(ValueError):
        m.encode(torch.zeros(1, 3, 6, H, W))


@pytest.mark.parametrize("splits", [[1] * 6, [2, 2, 2], [3, 3], [1, 2, 3], [3, 1, 2], [6]])
def test_streaming_decode_equals_whole(splits: list[int]) -> None:
    m = _model()
    z = torch.randn(2, 8, sum(splits), H // 8, W // 8)
    with torch.no_grad():
        ref = m.decode(z)
        state = m.init_decode_state(2, "cpu", torch.float32)
        parts, i = [], 0
        for n in splits:
            y, state = m.decode_chunk(z[:, :, i : i + n], state)
            assert y.shape[2] == 4 * n
            parts.append(y)
            i += n
    assert state.position == sum(splits)
    torch.testing.assert_close(torch.cat(parts, 2), ref, atol=1e-5, rtol=0)


LOOKAHEAD = replace(TINY, lookahead=1, frame_kernel=3, ahead_path=True)


@pytest.mark.parametrize("splits", [[1] * 6, [3, 3], [1, 2, 3], [6]])
def test_lookahead_streaming_decode_equals_whole(splits: list[int]) -> None:
    """A look-ahead decoder holds each chunk's last latent frame back until the next chunk
    arrives; the film's last chunk (`final`) draws it. Chunk by chunk equals the whole clip."""
    m = _model(config=LOOKAHEAD)
    z = torch.randn(2, 8, sum(splits), H // 8, W // 8)
    with torch.no_grad():
        ref = m.decode(z)
        state = m.init_decode_state(2, "cpu", torch.float32)
        parts, i = [], 0
        for k, n in enumerate(splits):
            last = k == len(splits) - 1
            y, state = m.decode_chunk(z[:, :, i : i + n], state, final=last)
            drawn = 4 * (n + (1 if i else 0) - (0 if last else 1))  # one latent frame late
            assert y.shape[2] == drawn
            assert (state.pending is None) == last
            parts.append(y)
            i += n
            # the held-back latent frame survives a checkpoint
            state = DecodeState.from_tensors(state.to_tensors())
    assert ref.shape[2] == 4 * sum(splits) and state.position == sum(splits)
    torch.testing.assert_close(torch.cat(parts, 2), ref, atol=1e-5, rtol=0)


def _decoded_with_later_change(m: VideoAutoencoder) -> tuple[torch.Tensor, torch.Tensor]:
    """Four latent frames decoded as they are and with frames 2 and 3 changed."""
    z = torch.randn(1, 8, 4, H // 8, W // 8)
    z2 = z.clone()
    z2[:, :, 2:] += 1.0
    with torch.no_grad():
        return m.decode(z), m.decode(z2)


def test_lookahead_decoder_sees_one_latent_frame_ahead() -> None:
    a, b = _decoded_with_later_change(_model(config=LOOKAHEAD))
    torch.testing.assert_close(a[:, :, :4], b[:, :, :4], atol=1e-6, rtol=0)
    assert (a[:, :, 4:8] - b[:, :, 4:8]).abs().max() > 1e-3  # latent 1's frames see latent 2


def test_extended_decoder_starts_as_the_one_it_grew_from() -> None:
    """Adding look-ahead and a frame block to a trained decoder changes nothing until training:
    the generators' latent space and the pictures stay as they were."""
    m = _model()
    grown = extend_decoder(m, lookahead=1, frame_kernel=3, ahead_path=True)
    assert grown.config.lookahead == 1 and grown.config.frame_kernel == 3 and grown.config.ahead_path
    x = torch.rand(1, 3, 12, H, W) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(grown.encode(x), m.encode(x), atol=0, rtol=0)
        z = m.encode(x)
        torch.testing.assert_close(grown.decode(z), m.decode(z), atol=1e-6, rtol=0)
    assert extend_decoder(grown, lookahead=0, frame_kernel=0) is grown  # never shrunk


def test_decoder_is_causal() -> None:
    a, b = _decoded_with_later_change(_model())
    torch.testing.assert_close(a[:, :, :8], b[:, :, :8], atol=1e-6, rtol=0)
    assert (a[:, :, 8:] - b[:, :, 8:]).abs().max() > 1e-3


def test_encoder_is_causal() -> None:
    m = _model()
    x = torch.rand(1, 3, 16, H, W) * 2 - 1
    with torch.no_grad():
        z = m.encode(x)
        for i in range(3):
            x2 = x.clone()
            x2[:, :, 4 * i + 4 :] = torch.rand_like(x2[:, :, 4 * i + 4 :])  # frames after 4i+3
            z2 = m.encode(x2)
            torch.testing.assert_close(z2[:, :, : i + 1], z[:, :, : i + 1], atol=1e-6, rtol=0)
            assert (z2[:, :, i + 1 :] - z[:, :, i + 1 :]).abs().max() > 1e-4  # later ones do change


def test_state_round_trip_mid_stream(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    m = _model()
    z = torch.randn(1, 8, 5, H // 8, W // 8)
    with torch.no_grad():
        ref = m.decode(z)
        empty = m.init_decode_state(1, "cpu", torch.float32)
        assert DecodeState.from_tensors(empty.to_tensors()).position == 0
        y1, state = m.decode_chunk(z[:, :, :2], empty)
        flat = state.to_tensors()
        assert all(isinstance(v, torch.Tensor) for v in flat.values())
        save_file(flat, str(tmp_path / "state.safetensors"))  # as a render checkpoint would
        restored = DecodeState.from_tensors(load_file(str(tmp_path / "state.safetensors")))
        assert restored.position == 2 and restored.caches.keys() == state.caches.keys()
        y2, _ = m.decode_chunk(z[:, :, 2:], restored)
    torch.testing.assert_close(torch.cat([y1, y2], 2), ref, atol=1e-5, rtol=0)


def test_normalize_round_trip_and_save_load(tmp_path: Path) -> None:
    m = _model()
    with torch.no_grad():
        m.latent_mean.copy_(torch.linspace(-1, 1, 8))
        m.latent_std.copy_(torch.linspace(0.5, 2, 8))
    z = torch.randn(2, 8, 3, 4, 6)
    torch.testing.assert_close(m.denormalize(m.normalize(z)), z)
    path = save_autoencoder(m, tmp_path / "ae.safetensors")
    m2 = load_autoencoder(path)
    assert m2.config == TINY
    torch.testing.assert_close(m2.latent_std, m.latent_std)
    with torch.no_grad():
        torch.testing.assert_close(m2.decode(z), m.decode(z))


def test_synthetic_clips() -> None:
    clip = next(synthetic_clips(0, frames=8, width=48, height=32))
    assert clip.shape == (8, 32, 48, 3) and clip.dtype.name == "uint8"
    assert clip.std() > 5  # not a blank frame


def test_config_files_and_unknown_keys(tmp_path: Path) -> None:
    full = load_train_config(ROOT / "configs/train/autoencoder.yaml")
    smoke = load_train_config(ROOT / "configs/train/autoencoder-smoke.yaml")
    assert full.model.latent_channels == 16 and isinstance(full.lr, float)
    assert smoke.steps <= 5 and smoke.device == "cpu"
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_yaml_config(bad, AETrainConfig)
    bad.write_text("model:\n  latent_chanels: 4\n")
    with pytest.raises(ConfigError, match="latent_chanels"):
        load_yaml_config(bad, AETrainConfig)


def test_train_smoke_checkpoint_resume(tmp_path: Path) -> None:
    cfg = replace(load_train_config(ROOT / "configs/train/autoencoder-smoke.yaml"),
                  width=W, height=H, model=TINY, checkpoint_every=3, holdout_clips=2)
    records: list[dict] = []
    out = train_autoencoder(cfg, out_dir=tmp_path, log=records.append)
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])["step"] == 1
    # resume to step 5 from the step-3 checkpoint
    cfg5 = replace(cfg, steps=5)
    out = train_autoencoder(cfg5, out_dir=tmp_path, log=records.append)
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3, 4, 5]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    assert (tmp_path / "reconstruction.png").exists()
    assert (tmp_path / "loss.png").exists()
    m = load_autoencoder(out)
    assert m.config == TINY and bool((m.latent_std > 0).all())


def test_decoder_fine_tune_keeps_the_latent_space(tmp_path: Path) -> None:
    """`train: decoder` changes the decoder only: the encoder and latent statistics that every
    generator was trained with stay bit for bit, so shipped generators keep working."""
    first = replace(load_train_config(ROOT / "configs/train/autoencoder-smoke.yaml"),
                    width=W, height=H, model=TINY, steps=2, holdout_clips=2)
    start = train_autoencoder(first, out_dir=tmp_path / "a")
    records: list[dict] = []
    tuned = train_autoencoder(replace(first, steps=3, init=str(start), train="decoder", lr=1e-2, temporal_weight=1.0,
                                      latent_noise=0.5),
                              out_dir=tmp_path / "b", log=records.append)
    assert all("temporal" in r for r in records if "loss" in r)
    assert 0.0 < records[-1]["eval_boundary_share"] <= 1.0 and 0.0 < records[-1]["clips_boundary_share"] <= 1.0
    a, b = load_autoencoder(start), load_autoencoder(tuned)
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa:
        same = torch.equal(sa[name], sb[name])
        assert same == (not name.startswith("decoder.")), name
    with pytest.raises(ValueError, match="init"):
        replace(first, train="decoder")
    with pytest.raises(ValueError, match="latent_noise needs train: decoder"):
        replace(first, latent_noise=0.5)


def test_latent_noise_is_in_the_generators_units() -> None:
    """Decoder training noise is measured in the unit-variance latents the generators see: with a
    channel's statistics scaled up 10x, the raw noise on it is 10x larger; no noise, no change."""
    m = VideoAutoencoder(TINY)
    m.latent_std.fill_(1.0)
    m.latent_std[0] = 10.0
    z = torch.zeros(64, TINY.latent_channels, 2, 4, 4)
    torch.manual_seed(0)
    d = noisy_latents(m, z, 1.0) - z
    spread = d.std(dim=(0, 2, 3, 4))
    assert 8.0 < float(spread[0] / spread[1:].mean()) < 12.0
    assert torch.equal(noisy_latents(m, z, 0.0), z)


def _ramp(frames: int = 16) -> torch.Tensor:
    """A bright bar sliding one pixel per frame: smooth motion, [1, 3, T, 8, 24]."""
    v = torch.full((1, 3, frames, 8, 24), -1.0)
    for t in range(frames):
        v[:, :, t, :, t : t + 4] = 1.0
    return v


def _held(v: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Every latent's frames drawn as its first one: the motion jumps between latents."""
    return v[:, :, (torch.arange(v.shape[2]) // stride) * stride]


def test_boundary_share_tells_smooth_motion_from_judder() -> None:
    smooth = _ramp()
    none = [frozenset()]
    assert boundary_share(smooth, 4, none) == pytest.approx(3 / 15)  # changes into frames 4, 8, 12 of the 15
    assert boundary_share(_held(smooth), 4, none) == pytest.approx(1.0)
    assert boundary_share(_held(smooth), 4, [frozenset({4, 8, 12})]) == pytest.approx(0.0)  # those were the clip's cuts


def test_temporal_loss_charges_judder_that_per_frame_losses_miss() -> None:
    """A reconstruction that jumps between latents costs more than one off by a constant with a
    larger per-frame error, once the temporal term is on, and the term is logged."""
    target = _ramp()
    judder = _held(target)
    offset = target + 0.2
    cfg = AETrainConfig(temporal_weight=1.0)
    j, parts = recon_loss(judder, target, cfg)
    o, _ = recon_loss(offset, target, cfg)
    assert parts["temporal"] > 0 and recon_loss(offset, target, cfg)[1]["temporal"] == pytest.approx(0.0, abs=1e-6)
    off_plain, _ = recon_loss(offset, target, AETrainConfig())
    j_plain, _ = recon_loss(judder, target, AETrainConfig())
    assert j - j_plain > o - off_plain  # the temporal term charges the judder, not the offset
    assert "temporal" not in recon_loss(judder, target, AETrainConfig())[1]


def test_l2_temporal_loss_charges_a_jump_more_than_the_same_drift_in_steps() -> None:
    """An error that jumps once per latent frame and one that drifts the same distance frame by
    frame cost the same under "l1" (so l1 lets a decoder freeze a latent frame's frames and jump);
    "l2" charges the jump four times more."""
    target = _ramp()
    t = torch.arange(target.shape[2], dtype=torch.float32).view(1, 1, -1, 1, 1)
    drift = target + 0.01 * t.clamp(max=12)  # 12 steps of 0.01 against 3 jumps of 0.04
    jump = target + 0.01 * 4 * torch.div(t, 4, rounding_mode="floor")
    for kind, ratio in (("l1", 1.0), ("l2", 4.0)):
        cfg = AETrainConfig(temporal_weight=1.0, temporal_loss=kind)
        tj, td = recon_loss(jump, target, cfg)[1]["temporal"], recon_loss(drift, target, cfg)[1]["temporal"]
        assert tj == pytest.approx(ratio * td, rel=1e-3)
    with pytest.raises(ValueError, match="temporal_loss"):
        AETrainConfig(temporal_loss="huber")


def test_pooled_temporal_loss_ignores_fine_flicker_and_keeps_coarse_jumps() -> None:
    """With temporal_pool 2, a flicker that alternates within 2x2 blocks costs nothing (its block
    means stay put), while a jump of the whole picture costs as much as per pixel."""
    target = _ramp()
    checker = (torch.arange(8).view(-1, 1) + torch.arange(24).view(1, -1)) % 2 * 2 - 1.0  # +-1 per pixel
    t = torch.arange(target.shape[2]).view(1, 1, -1, 1, 1)
    flicker = target + 0.05 * checker * (t % 2 * 2 - 1)
    jump = target + 0.05 * (t >= 8)
    pooled = AETrainConfig(temporal_weight=1.0, temporal_loss="l2", temporal_pool=2)
    plain = replace(pooled, temporal_pool=1)
    assert recon_loss(flicker, target, pooled)[1]["temporal"] == pytest.approx(0.0, abs=1e-9)
    assert recon_loss(flicker, target, plain)[1]["temporal"] > 1e-3
    assert recon_loss(jump, target, pooled)[1]["temporal"] == pytest.approx(recon_loss(jump, target, plain)[1]["temporal"], rel=1e-4)


def _world_batch(clips: int = 2):  # type: ignore[no-untyped-def]
    from cinecli.train.data import batches

    return next(batches(5, batch=clips, frames=16, workers=0))


def test_redraw_keeps_the_clip_and_departs_further_the_earlier_it_starts() -> None:
    """A redraw from the student's last level stays near the clip it was given (so the clip's own
    frames can stay the decoder's target), departs further from each earlier level, and is never
    as far as another clip; the same generator seed gives the same draw."""
    from cinecli.model.card import DEFAULT_DIR, default_card
    from cinecli.train.data import video_to_model
    from cinecli.train.redraw import load_redrawer, redrawn_latents

    ae = load_autoencoder(DEFAULT_DIR / "autoencoder.safetensors").eval()
    redrawer = load_redrawer(DEFAULT_DIR / "student.safetensors", default_card(), torch.device("cpu"))
    b = _world_batch()
    with torch.no_grad():
        z = ae.normalize(ae.encode(video_to_model(b.video, torch.device("cpu"))))

    def draw(start: int) -> torch.Tensor:
        return redrawn_latents(redrawer, z, b.prompts, b.cuts, start, torch.Generator().manual_seed(0))

    last = draw(3)
    own = [float((d - z).pow(2).mean()) for d in (last, draw(2), draw(1))]
    other = float((last - z.roll(1, 0)).pow(2).mean())
    assert 0.0 < own[0] < own[1] < own[2] < other
    assert torch.equal(last, draw(3))
    with pytest.raises(ValueError, match="start"):
        draw(4)


def test_decoder_training_on_redraws_keeps_the_latent_space(tmp_path: Path) -> None:
    """Decoder training on the student's redraws (`redraw`) changes the decoder only; a redraw
    needs decoder-only training and world clips."""
    from cinecli.model.card import DEFAULT_DIR

    shipped = DEFAULT_DIR / "autoencoder.safetensors"
    cfg = replace(load_train_config(ROOT / "configs/train/autoencoder-decoder-redraw.yaml"), init=str(shipped),
                  redraw=str(DEFAULT_DIR / "student.safetensors"), redraw_share=1.0, steps=1, batch=2, num_workers=0,
                  holdout_clips=2, eval_every=0, precision="no", lr=1e-2)
    tuned = train_autoencoder(cfg, out_dir=tmp_path, data=iter([_world_batch()]))
    sa, sb = load_autoencoder(shipped).state_dict(), load_autoencoder(tuned).state_dict()
    for name in sa:
        assert torch.equal(sa[name], sb[name]) == (not name.startswith("decoder.")), name
    with pytest.raises(ValueError, match="redraw needs train: decoder"):
        replace(cfg, train="all", latent_noise=0.0)
    with pytest.raises(ValueError, match="redraw needs world clips"):
        replace(cfg, data="synthetic")
