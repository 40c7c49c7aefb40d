"""Training smoke runs on CPU: each stage runs, writes loadable weights, and its loss is finite."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from cinecli.model.autoencoder import AutoencoderConfig, VideoAutoencoder, save_autoencoder
from cinecli.model.bundle import build_modules, load_generator, save_generator
from cinecli.model.card import default_card
from cinecli.train.base import BaseTrainConfig, train_base
from cinecli.train.data import Batch, after_cuts, latent_conditioning
from cinecli.train.distill import DistillConfig, teacher_grid, train_distill
from cinecli.sampling.schedule import StepSchedule


def _fake_batches(frames: int, b: int = 2):
    g = torch.Generator().manual_seed(0)
    prompts = ["wide shot of the harbour", "close-up on the keeper"]
    while True:
        video = torch.randint(0, 255, (b, frames, 32, 48, 3), generator=g, dtype=torch.uint8)
        f = frames // 4
        yield Batch(video=video, prompts=[tuple(prompts[(i >= f // 2)] for i in range(f))] * b,
                    cuts=torch.tensor([[i == 0 or i == f // 2 for i in range(f)]] * b),
                    characters=torch.rand(b, f, 4, 6, generator=g) < 0.2)


def test_loss_series_groups_phases_and_skips_other_lines() -> None:
    from cinecli.train.logs import loss_series

    lines = ['{"step": 1, "phase": "packed", "loss": 0.5}', '{"step": 2, "phase": "routed", "loss": 0.4}',
             '{"step": 3, "eval_psnr": 24.0}', "not json", '{"step": 4, "loss": NaN, "phase": "routed"}', '{"step": 5, "loss": 0.3}',
             '{"step": 6, "phase": "dmd", "loss": 2.0, "critic": 0.2}']
    assert loss_series(lines) == {"packed": [(1.0, 0.5)], "routed": [(2.0, 0.4)], "loss": [(5.0, 0.3)], "dmd": [(6.0, 2.0)], "critic": [(6.0, 0.2)]}


def test_latent_conditioning_takes_first_frame_of_each_latent() -> None:
    prompts = ["a"] * 8 + ["b"] * 4
    cuts = [True] + [False] * 7 + [True] + [False] * 3
    assert latent_conditioning(prompts, cuts, 4) == (("a", "a", "b"), (True, False, True))


def test_teacher_grid_passes_through_student_levels() -> None:
    levels = StepSchedule(4, 5.0).sigmas()
    grid = teacher_grid(levels, 3)
    assert len(grid) == 4 * 3 + 1
    assert torch.equal(grid[::3], levels)


def test_base_then_distill_smoke(tmp_path: Path) -> None:
    ae = VideoAutoencoder(AutoencoderConfig(enc_channels=(32, 32, 32), dec_channels=(32, 32, 32), base_channels=32, latent_blocks=1))
    ae_path = save_autoencoder(ae, tmp_path / "ae.safetensors")
    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    cfg = BaseTrainConfig(steps=2, routed_steps=2, batch=2, routed_batch=2, latent_frames=6, routed_latent_frames=9,
                          autoencoder=str(ae_path), num_workers=0, log_every=1, checkpoint_every=2, warmup_steps=1, top_k=1, recent_chunks=1,
                          character_weight=3.0)
    logs = []
    data = _fake_batches(24)
    base = train_base(cfg, tmp_path / "base", card=card, data=data, log=logs.append)
    assert [r["phase"] for r in logs] == ["packed", "packed", "routed", "routed"]
    assert (tmp_path / "base" / "loss.png").stat().st_size > 0  # the loss curve beside the log
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logs)
    model, text, _ = build_modules(card)
    load_generator(model, text, base)
    # resuming a finished run does no more steps and keeps the same weights
    again = train_base(cfg, tmp_path / "base", card=card, data=data, log=logs.append)
    assert len(logs) == 4 and again == base
    dcfg = DistillConfig(steps=2, routed_steps=1, batch=2, routed_batch=2, latent_frames=6, routed_latent_frames=9, substeps=1, top_k=1, recent_chunks=1,
                         autoencoder=str(ae_path), teacher=str(base), num_workers=0, log_every=1, character_weight=3.0)
    dlogs = []
    student = train_distill(dcfg, tmp_path / "distill", card=card, data=_fake_batches(36), log=dlogs.append)
    assert [r["phase"] for r in dlogs] == ["packed", "packed", "routed"]
    assert (tmp_path / "distill" / "loss.png").stat().st_size > 0
    assert dlogs[0]["step"] == 1 and all(torch.isfinite(torch.tensor(r["loss"])) for r in dlogs)
    load_generator(model, text, student)
    # a longer run in the same folder continues from step 2, not from the start (on its own rollouts)
    more = dataclasses.replace(dcfg, steps=4, routed_steps=0, rollout=1.0)
    train_distill(more, tmp_path / "distill", card=card, data=_fake_batches(36), log=dlogs.append)
    assert [r["step"] for r in dlogs] == [1, 2, 3, 4]


def test_return_weighting_counts_returning_frames_more() -> None:
    from cinecli.train.data import weighted_mse

    target = torch.zeros(2, 4, 3, 2, 2)
    pred = torch.zeros_like(target)
    pred[:, :, 2] = 1.0  # error only on latent frame 2
    batch = Batch(video=torch.zeros(2, 12, 2, 2, 3, dtype=torch.uint8), prompts=[("a",) * 3] * 2,
                  cuts=torch.zeros(2, 3, dtype=torch.bool), returns=torch.tensor([[False, False, True]] * 2))
    assert batch.frame_weights(1.0) is None
    plain = weighted_mse(pred, target, None)
    assert torch.isclose(plain, torch.tensor(1 / 3))
    weighted = weighted_mse(pred, target, batch.frame_weights(5.0))
    assert torch.isclose(weighted, torch.tensor(5 / 7))  # (0 + 0 + 5·1) / (1 + 1 + 5)
    assert torch.isclose(weighted_mse(pred, target, torch.ones(2, 3)), plain)


def test_character_cells_weigh_errors_where_characters_are() -> None:
    from cinecli.train.data import weighted_mse

    target = torch.zeros(1, 4, 2, 2, 2)
    chars = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    chars[0, 1, 0, 0] = True  # one character cell, in latent frame 1
    batch = Batch(video=torch.zeros(1, 8, 16, 16, 3, dtype=torch.uint8), prompts=[("a",) * 2],
                  cuts=torch.zeros(1, 2, dtype=torch.bool), characters=chars)
    assert batch.cell_weights(1.0) is None
    on, off = torch.zeros_like(target), torch.zeros_like(target)
    on[0, :, 1, 0, 0] = 1.0  # error only in the character cell
    off[0, :, 1, 1, 1] = 1.0  # the same error in a background cell of the same frame
    cells = batch.cell_weights(4.0)
    assert torch.isclose(weighted_mse(on, target, None, cells), 4 * weighted_mse(off, target, None, cells))
    assert torch.isclose(weighted_mse(off, target, None, cells), weighted_mse(off, target, None))


def test_character_cells_cover_the_characters_of_world_clips() -> None:
    from cinecli.train.data import world_clips
    from cinecli.world.render import frame_truth

    clips = world_clips(5, 24, 4, 192, 128, 12)
    for clip in (next(clips) for _ in range(3)):
        assert clip.characters is not None and clip.characters.shape == (6, 16, 24)
        assert clip.characters.mean() < 0.5
    # every visible character's centre falls in a marked cell of its latent frame
    from cinecli.world.dataset import character_cells, training_clips

    raw = next(training_clips(7, frames=24, width=192, height=128, fps=12))
    cells = character_cells(raw, 4, 8)
    seen = 0
    for k in range(24):
        for ch in frame_truth(raw.film, int(raw.film_frames[k])).characters:
            x0, y0, x1, y1 = ch.bbox
            assert cells[k // 4, (y0 + y1) // 2 // 8, (x0 + x1) // 2 // 8]
            seen += 1
    assert seen > 0


def test_first_sightings_weigh_with_returns() -> None:
    batch = Batch(video=torch.zeros(1, 16, 2, 2, 3, dtype=torch.uint8), prompts=[("a",) * 4],
                  cuts=torch.zeros(1, 4, dtype=torch.bool), returns=torch.tensor([[False, False, False, True]]),
                  firsts=torch.tensor([[False, True, False, False]]))
    assert torch.equal(batch.frame_weights(5.0, 3.0), torch.tensor([[1.0, 3.0, 1.0, 5.0]]))
    assert torch.equal(batch.frame_weights(1.0, 3.0), torch.tensor([[1.0, 3.0, 1.0, 1.0]]))
    assert batch.frame_weights(1.0, 1.0) is None


def test_the_first_chunk_after_each_cut_weighs_cut_weight() -> None:
    """A cut on latent frame 2 and one on frame 7 of 8: with chunks of 3, frames 2-4 and 7
    (the clip ends there) carry the cut weight, on top of any other weight."""
    cuts = torch.tensor([[False, False, True, False, False, False, False, True]])
    assert after_cuts(cuts, 3).tolist() == [[False, False, True, True, True, False, False, True]]
    assert torch.equal(after_cuts(cuts, 1), cuts)
    batch = Batch(video=torch.zeros(1, 32, 2, 2, 3, dtype=torch.uint8), prompts=[("a",) * 8], cuts=cuts,
                  returns=torch.tensor([[False] * 3 + [True] + [False] * 4]))
    assert batch.frame_weights(5.0, 1.0, 4.0, 3).tolist() == [[1.0, 1.0, 4.0, 8.0, 4.0, 1.0, 1.0, 4.0]]
    assert batch.frame_weights(1.0, 1.0, 1.0, 3) is None


def test_student_rollout_is_the_film_generation_renders() -> None:
    """The training rollout (one pass over the clean past per step) gives the very film that
    chunk-by-chunk generation through the memory bank gives, so the student trains on what it
    will really see as its past."""
    from cinecli.memory.bank import BankSpec, MemoryBank
    from cinecli.memory.policies import FullPolicy
    from cinecli.model.config import preset
    from cinecli.model.transformer import WanTransformer
    from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig, frame_noise
    from cinecli.train.distill import student_rollout

    cfg = preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6, in_channels=4, out_channels=4)
    torch.manual_seed(1)
    model = WanTransformer(cfg).eval()
    h, w, chunk, chunks = 4, 6, 3, 3
    text = model.encode_text(torch.randn(1, 2, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(2)))
    prompts = [0] * 4 + [1] * 5
    cuts = [i in (0, 4) for i in range(chunk * chunks)]
    seeds = [list(range(c * chunk, (c + 1) * chunk)) for c in range(chunks)]
    rows, cols = cfg.grid(h, w)
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim))
    gen = ChunkGenerator(model, bank, FullPolicy(), SamplerConfig(steps=3), latent_shape=(cfg.in_channels, h, w), chunk_frames=chunk)
    rendered = torch.cat([
        gen.generate(ChunkRequest(c, tuple(prompts[c * chunk:(c + 1) * chunk]), tuple(cuts[c * chunk:(c + 1) * chunk]), tuple(seeds[c])), text).latents
        for c in range(chunks)], dim=2)
    levels = StepSchedule(3, 5.0).sigmas().tolist()
    film = student_rollout(model, text, torch.tensor([prompts]), torch.tensor([cuts]), tuple(rendered.shape), chunk, levels,
                           lambda k, step: frame_noise(seeds[k], step, (cfg.in_channels, h, w)))
    assert film.shape == (1, cfg.in_channels, chunk * chunks, h, w)
    torch.testing.assert_close(film, rendered, atol=1e-4, rtol=1e-4)
    # later prompts never reach earlier chunks
    other = student_rollout(model, text, torch.tensor([[0] * 9]), torch.tensor([cuts]), tuple(rendered.shape), chunk, levels,
                            lambda k, step: frame_noise(seeds[k], step, (cfg.in_channels, h, w)))
    torch.testing.assert_close(other[:, :, :3], film[:, :, :3])
    assert not torch.allclose(other[:, :, 6:], film[:, :, 6:])


def _per_frame(ctx, index: list[int]):  # type: ignore[no-untyped-def]
    return type(ctx)(tuple(k[:, index] for k in ctx.keys), tuple(v[:, index] for v in ctx.values))


def test_routed_distillation_teacher_sees_what_generation_sees() -> None:
    """Routed distillation's teacher, given generation's own film as the clean past, lands on every
    chunk generation rendered: the same routed active sets, guidance and steps, so the student is
    taught the teacher's answers to the memory it will itself attend to."""
    from cinecli.memory.bank import BankSpec, MemoryBank
    from cinecli.memory.policies import CamrPolicy
    from cinecli.model.config import preset
    from cinecli.model.transformer import WanTransformer
    from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig, frame_noise
    from cinecli.train.distill import ClipMemory, routed_student_errors

    cfg = preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6, in_channels=4, out_channels=4)
    torch.manual_seed(1)
    teacher, student = WanTransformer(cfg).eval(), WanTransformer(cfg).eval()
    h, w, chunk, chunks = 4, 6, 3, 5
    f = chunk * chunks
    emb = torch.randn(1, 2, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(2))
    prompts = [0] * 7 + [1] * 8
    cuts = [i in (0, 7) for i in range(f)]
    seeds = [list(range(c * chunk, (c + 1) * chunk)) for c in range(chunks)]
    rows, cols = cfg.grid(h, w)
    policy = CamrPolicy(recent_chunks=1, top_k=2)  # 15 frames, budget 5: routing chooses from the third chunk on
    dcfg = DistillConfig(chunk_frames=chunk, student_steps=3, substeps=1, guidance=2.5, shift=5.0)
    cond, uncond = teacher.encode_text(emb), teacher.encode_text(torch.zeros_like(emb[:, :1]))
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim))
    gen = ChunkGenerator(teacher, bank, policy, SamplerConfig(steps=3, shift=5.0, mode="ode", guidance=2.5),
                         latent_shape=(cfg.in_channels, h, w), chunk_frames=chunk)
    film = torch.cat([gen.generate(ChunkRequest(c, tuple(prompts[c * chunk:(c + 1) * chunk]), tuple(cuts[c * chunk:(c + 1) * chunk]), tuple(seeds[c])),
                                   cond, uncond).latents for c in range(chunks)], dim=2)
    noise = torch.cat([frame_noise(seeds[c], 0, (cfg.in_channels, h, w)) for c in range(chunks)], dim=2)
    # training contexts hold one prompt per latent frame (`encode_prompts`); generation's index a prompt list
    t_cond, t_uncond, s_text = _per_frame(cond, prompts), _per_frame(uncond, [0] * f), _per_frame(student.encode_text(emb), prompts)
    level = torch.randint(0, 3, (1, chunks), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        errors, targets = routed_student_errors(ClipMemory.open(teacher, film, policy), ClipMemory.open(student, film, policy),
                                                (t_cond, t_uncond, s_text), film, noise, torch.tensor([cuts]), level, dcfg)
    torch.testing.assert_close(targets, film, atol=1e-4, rtol=1e-4)
    assert errors.shape == (1, f) and bool(torch.isfinite(errors).all()) and float(errors.min()) > 0


def test_student_draw_is_the_chunk_generation_draws_after_that_past() -> None:
    """Distribution matching compares the teacher with the student's draws: given the student's own
    film as the clean past and the same noise, its draw of every chunk (all chunks in one packed
    pass) is the film generation rendered, so what is matched is what users will see."""
    from cinecli.model.config import preset
    from cinecli.model.transformer import WanTransformer
    from cinecli.train.distill import student_draw, student_rollout

    cfg = preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6, in_channels=4, out_channels=4)
    torch.manual_seed(1)
    model = WanTransformer(cfg).eval()
    h, w, chunk, chunks, steps = 4, 6, 3, 3, 3
    text = model.encode_text(torch.randn(1, 2, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(2)))
    prompts = [0] * 4 + [1] * 5
    cuts = [i in (0, 4) for i in range(chunk * chunks)]
    shape = (1, cfg.in_channels, chunk * chunks, h, w)
    g = torch.Generator().manual_seed(5)
    draws_noise = [torch.randn(shape, generator=g) for _ in range(steps)]  # the order `student_draw` draws its noise in
    dcfg = DistillConfig(chunk_frames=chunk, student_steps=steps, shift=5.0)
    levels = StepSchedule(steps, 5.0).sigmas().tolist()
    with torch.no_grad():
        film = student_rollout(model, text, torch.tensor([prompts]), torch.tensor([cuts]), shape, chunk, levels,
                               lambda k, i: draws_noise[i][:, :, k * chunk:(k + 1) * chunk])
        drawn = student_draw(model, _per_frame(text, prompts), film, torch.tensor([cuts]), dcfg, steps - 1, torch.Generator().manual_seed(5))
        early = student_draw(model, _per_frame(text, prompts), film, torch.tensor([cuts]), dcfg, 0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(drawn, film, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(early, film, atol=1e-2)  # exiting at the first step gives the rougher first estimate


def test_routed_student_draw_is_the_chunk_rendering_draws_through_camr_memory() -> None:
    """Distribution matching through memory (`dmd_routed`) compares the teacher with the draws the
    student renders: given its own film as the past and the same noise, its draw of every chunk
    through the CAMR active set is that film, and it differs from the draw against the whole past
    once routing has to choose."""
    from cinecli.memory.bank import BankSpec, MemoryBank
    from cinecli.memory.policies import CamrPolicy
    from cinecli.model.config import preset
    from cinecli.model.transformer import WanTransformer
    from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig, frame_noise
    from cinecli.train.distill import routed_student_draw

    cfg = preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6, in_channels=4, out_channels=4)
    torch.manual_seed(1)
    model = WanTransformer(cfg).eval()
    h, w, chunk, chunks, steps = 4, 6, 3, 5, 3
    f = chunk * chunks
    text = model.encode_text(torch.randn(1, 2, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(2)))
    prompts = [0] * 7 + [1] * 8
    cuts = [i in (0, 7) for i in range(f)]
    seeds = [list(range(c * chunk, (c + 1) * chunk)) for c in range(chunks)]
    rows, cols = cfg.grid(h, w)
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim))
    policy = CamrPolicy(recent_chunks=1, top_k=2)  # budget 5 of 15 frames: routing chooses from the third chunk on
    gen = ChunkGenerator(model, bank, policy, SamplerConfig(steps=steps, shift=5.0), latent_shape=(cfg.in_channels, h, w), chunk_frames=chunk)
    with torch.no_grad():
        film = torch.cat([gen.generate(ChunkRequest(c, tuple(prompts[c * chunk:(c + 1) * chunk]), tuple(cuts[c * chunk:(c + 1) * chunk]),
                                                    tuple(seeds[c])), text).latents for c in range(chunks)], dim=2)
        dcfg = DistillConfig(chunk_frames=chunk, student_steps=steps, shift=5.0, recent_chunks=1, top_k=2)
        noise = lambda k, i: frame_noise(seeds[k], i, (cfg.in_channels, h, w))  # noqa: E731 - the noise generation draws
        drawn, _ = routed_student_draw(model, _per_frame(text, prompts), film, torch.tensor([cuts]), dcfg, steps - 1, noise)
        whole, _ = routed_student_draw(model, _per_frame(text, prompts), film, torch.tensor([cuts]), dataclasses.replace(dcfg, top_k=f), steps - 1, noise)
    torch.testing.assert_close(drawn, film, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(whole[:, :, :6], film[:, :, :6], atol=1e-4, rtol=1e-4)  # two chunks in, the budget holds the whole past
    assert not torch.allclose(whole[:, :, 6:], film[:, :, 6:], atol=1e-2)  # later, the whole past is not what the student renders from
    x0, _ = routed_student_draw(model, _per_frame(text, prompts), film, torch.tensor([cuts]), dcfg, 1, noise)
    x0.square().mean().backward()
    assert all(p.grad is not None for p in model.blocks[0].parameters())  # the exit step carries gradient to the student


def test_judging_against_the_active_set_is_judging_against_what_the_student_saw() -> None:
    """With `dmd_judge_active`, teacher and critic denoise each chunk against the past frames the
    student drew it from. When those are the whole past, that is the judgement against the whole
    past (denoisings and the critic's loss both; without guidance, since the unprompted pass then
    reads the past the prompted pass wrote, as rendering does, where the packed pass reads a past
    without prompts); once routing leaves frames out, later chunks are judged differently and
    the first chunks, within the budget, the same."""
    from cinecli.train.base import encode_prompts
    from cinecli.train.distill import chunk_noise, critic_loss, denoisings, routed_student_draw

    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    (teacher, t_text, _), (critic, c_text, _), (student, s_text, _) = (build_modules(card) for _ in range(3))
    batch = next(_fake_batches(60, b=1))  # 15 latent frames: 5 chunks
    z = torch.randn(1, teacher.config.in_channels, 15, 4, 6, generator=torch.Generator().manual_seed(3))
    sigma = torch.full((1, 15), 0.6)
    x_t = torch.randn(z.shape, generator=torch.Generator().manual_seed(4))
    small = DistillConfig(chunk_frames=3, recent_chunks=1, top_k=2, guidance=1.0)  # budget 5 of 15: routing chooses from the third chunk on

    def judged(cfg: DistillConfig):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            ctx = encode_prompts(s_text, student, batch.prompts, 0.0, torch.Generator())
            _, picks = routed_student_draw(student, ctx, z, batch.cuts, cfg, 0, chunk_noise(tuple(z.shape), 3, torch.Generator().manual_seed(5)))
            return denoisings(teacher, t_text, critic, c_text, z, x_t, sigma, batch, cfg, picks), picks

    whole = denoisings(teacher, t_text, critic, c_text, z, x_t, sigma, batch, small)
    (all_real, all_fake), all_picks = judged(dataclasses.replace(small, top_k=15))
    torch.testing.assert_close(all_real, whole[0], atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(all_fake, whole[1], atol=2e-4, rtol=2e-4)
    draws = torch.randn(z.shape, generator=torch.Generator().manual_seed(6))
    losses = [critic_loss(critic, c_text, z, draws, batch, small, torch.Generator().manual_seed(7), p) for p in (None, all_picks)]
    torch.testing.assert_close(losses[0], losses[1], atol=2e-4, rtol=2e-4)
    (real, fake), picks = judged(small)
    assert [p[0].shape[1] for p in picks] == [0, 3, 5, 5, 5]  # from the third chunk on: 2 routed + 3 recent frames, of 6 and more
    torch.testing.assert_close(real[:, :, :6], whole[0][:, :, :6], atol=2e-4, rtol=2e-4)
    assert not torch.allclose(real[:, :, 6:], whole[0][:, :, 6:], atol=1e-3)
    assert not torch.allclose(fake[:, :, 6:], whole[1][:, :, 6:], atol=1e-3)


def test_dmd_target_pulls_draws_from_the_critic_towards_the_teacher() -> None:
    from cinecli.train.distill import dmd_target

    g = torch.Generator().manual_seed(0)
    x0, real = torch.randn(2, 4, 6, 3, 3, generator=g), torch.randn(2, 4, 6, 3, 3, generator=g)
    torch.testing.assert_close(dmd_target(x0, real, real), x0)  # critic and teacher agree: nothing to move
    step = dmd_target(x0, real, x0) - x0  # the critic denoises a draw to itself: pulled straight at the teacher
    cos = torch.nn.functional.cosine_similarity(step.flatten(1), (real - x0).flatten(1))
    torch.testing.assert_close(cos, torch.ones(2))
    torch.testing.assert_close(step.abs().mean(dim=(1, 2, 3, 4)), torch.ones(2))  # normalised: one unit of mean distance per clip


def test_distribution_matching_phase_trains_student_and_critic_and_resumes(tmp_path: Path) -> None:
    from cinecli.train.distill import phase_at

    assert [phase_at(p, DistillConfig(steps=2, dmd_steps=1, routed_steps=1)) for p in (0.0, 0.49, 0.5, 0.74, 0.75)] == \
        ["packed", "packed", "dmd", "dmd", "routed"]
    ae = VideoAutoencoder(AutoencoderConfig(enc_channels=(32, 32, 32), dec_channels=(32, 32, 32), base_channels=32, latent_blocks=1))
    ae_path = save_autoencoder(ae, tmp_path / "ae.safetensors")
    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    model, text, _ = build_modules(card)
    teacher = tmp_path / "teacher.safetensors"
    save_generator(model, text, teacher)
    dcfg = DistillConfig(steps=1, dmd_steps=2, batch=2, latent_frames=6, substeps=1, autoencoder=str(ae_path), teacher=str(teacher),
                         num_workers=0, log_every=1, return_weight=2.0, critic_updates=2)
    logs: list[dict] = []
    student = train_distill(dcfg, tmp_path / "d", card=card, data=_fake_batches(24), log=logs.append)
    assert [r["phase"] for r in logs] == ["packed", "dmd", "dmd"]
    assert all(torch.isfinite(torch.tensor([r["loss"], r.get("critic", 0.0)])).all() for r in logs) and "critic" in logs[-1]
    critic = tmp_path / "d" / "critic" / "critic.safetensors"
    load_generator(model, text, critic)
    assert not torch.equal(load_file_tensor(critic), load_file_tensor(teacher))  # the critic trained on the student's draws
    load_generator(model, text, student)
    more = dataclasses.replace(dcfg, dmd_steps=3, dmd_regression=1.0)
    train_distill(more, tmp_path / "d", card=card, data=_fake_batches(24), log=logs.append)
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    # through memory: 9 latent frames, a budget of 4, so routing chooses for the last chunk
    routed = dataclasses.replace(more, dmd_steps=4, dmd_regression=0.0, dmd_routed=True, top_k=1, recent_chunks=1)
    before = load_file_tensor(tmp_path / "d" / "student.safetensors")
    train_distill(routed, tmp_path / "d", card=card, data=_fake_batches(36), log=logs.append)
    assert [r["phase"] for r in logs[4:]] == ["dmd"] and torch.isfinite(torch.tensor(logs[-1]["loss"]))
    assert not torch.equal(load_file_tensor(tmp_path / "d" / "student.safetensors"), before)
    # judged against the active sets the draws came from: student and critic both move again
    critic_before = load_file_tensor(critic)
    train_distill(dataclasses.replace(routed, dmd_steps=5, dmd_judge_active=True), tmp_path / "d", card=card, data=_fake_batches(36), log=logs.append)
    assert [r["phase"] for r in logs[5:]] == ["dmd"] and torch.isfinite(torch.tensor([logs[-1]["loss"], logs[-1]["critic"]])).all()
    assert not torch.equal(load_file_tensor(critic), critic_before)


def load_file_tensor(path: Path) -> torch.Tensor:
    """All of a weights file's floating tensors, flattened, to tell two files apart."""
    from safetensors.torch import load_file

    return torch.cat([t.float().flatten() for _, t in sorted(load_file(str(path)).items()) if t.is_floating_point()])


def _two_generators(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    """Two micro generators of one shape, saved; returns their paths and float tensors by name."""
    from safetensors.torch import load_file

    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model, text, _ = build_modules(card)
        paths.append(tmp_path / f"g{seed}.safetensors")
        save_generator(model, text, paths[-1], dtype=torch.float32)
    return paths[0], paths[1], load_file(str(paths[0])), load_file(str(paths[1]))


def test_blend_writes_the_weighted_average_that_loads_as_a_generator(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from cinecli.cli import app

    first, second, a, b = _two_generators(tmp_path)
    config = tmp_path / "blend.yaml"
    config.write_text(f"first: {first}\nsecond: {second}\nshare: 0.7\n")
    result = CliRunner().invoke(app, ["train", "blend", str(config), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = load_file(str(tmp_path / "out" / "student.safetensors"))
    key = next(k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k]))
    assert torch.allclose(out[key], 0.7 * a[key] + 0.3 * b[key])
    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    model, text, _ = build_modules(card)
    load_generator(model, text, tmp_path / "out" / "student.safetensors")  # strict: every key, every shape


def test_blend_at_the_ends_is_either_input_and_refuses_other_shapes(tmp_path: Path) -> None:
    import pytest

    from cinecli.train.blend import BlendConfig, blend_tensors, blend_weights
    from cinecli.train.config import ConfigError

    _, _, a, b = _two_generators(tmp_path)
    assert all(torch.equal(v, a[k]) for k, v in blend_tensors(a, b, 1.0).items())
    assert all(torch.equal(v, b[k]) for k, v in blend_tensors(a, b, 0.0).items())
    other = dict(b)
    key = next(iter(other))
    other[key] = torch.zeros(3)
    with pytest.raises(ValueError, match=key):
        blend_tensors(a, other, 0.5)
    with pytest.raises(ValueError, match="share"):
        BlendConfig(first="x", second="y", share=1.5)
    with pytest.raises(ConfigError, match="missing.safetensors"):
        blend_weights(BlendConfig(first=str(tmp_path / "missing.safetensors"), second=str(tmp_path / "g2.safetensors")), tmp_path / "o")
