"""The causal generator: chunked generation through memory equals the block-causal reference,
CAMR routes by content, and the active set stays bounded."""

from __future__ import annotations

import torch

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import CamrPolicy, FullPolicy, NoMemoryPolicy, WindowPolicy
from cinecli.model.attention import SequenceAttention
from cinecli.model.config import preset
from cinecli.model.rope import RopeTables
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig

CFG = preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6, in_channels=4, out_channels=4)
H, W, CHUNK = 4, 6, 3  # latent frame 4x6 → 2x3 tokens


def _model() -> WanTransformer:
    torch.manual_seed(1)
    return WanTransformer(CFG).eval()


def _bank(model: WanTransformer) -> MemoryBank:
    rows, cols = CFG.grid(H, W)
    return MemoryBank(BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim))


def _text(model: WanTransformer, prompts: int = 2):
    g = torch.Generator().manual_seed(2)
    return model.encode_text(torch.randn(1, prompts, CFG.text_len, CFG.text_dim, generator=g))


def _chunked(model, x, t, fp, cut, policy):
    """Every chunk attends to the bank, then writes its own keys/values (cache what was computed)."""
    bank = _bank(model)
    rows, cols = CFG.grid(H, W)
    text = _text(model)
    outs = []
    for c in range(x.shape[2] // CHUNK):
        sl = slice(c * CHUNK, (c + 1) * CHUNK)
        src = ChunkAttention(bank, policy, Routing(), chunk_frames=CHUNK, rows=rows, cols=cols, rope=model.rope, write=True)
        outs.append(model(x[:, :, sl], t[:, sl], text, fp[:, sl], src, cut[:, sl]))
        bank.commit()
    return torch.cat(outs, dim=2), bank


def test_chunked_full_memory_equals_block_causal_sequence() -> None:
    model = _model()
    frames = 12
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, CFG.in_channels, frames, H, W, generator=g)
    t = torch.rand(1, frames, generator=g) * 1000
    fp = torch.tensor([[0] * 5 + [1] * 7])
    cut = torch.zeros(1, frames, dtype=torch.long)
    cut[0, 5] = 1
    rows, cols = CFG.grid(H, W)
    with torch.no_grad():
        src = SequenceAttention.causal(frames, CHUNK, rows, cols, model.rope, torch.float32, x.device)
        ref = model(x, t, _text(model), fp, src, cut)
        out, _ = _chunked(model, x, t, fp, cut, FullPolicy())
    assert out.shape == ref.shape == x.shape
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


def test_packed_teacher_forcing_matches_generation_layout() -> None:
    """Noisy chunk c in the packed layout sees what generation shows it: clean chunks < c."""
    model = _model()
    frames = 9
    g = torch.Generator().manual_seed(4)
    clean = torch.randn(1, CFG.in_channels, frames, H, W, generator=g)
    noisy = torch.randn(1, CFG.in_channels, frames, H, W, generator=g)
    t_noisy = torch.rand(1, frames, generator=g) * 1000
    fp = torch.zeros(1, frames, dtype=torch.long)
    rows, cols = CFG.grid(H, W)
    text = _text(model)
    with torch.no_grad():
        src = SequenceAttention.packed(frames, CHUNK, rows, cols, model.rope, torch.float32, clean.device)
        packed = model(torch.cat([clean, noisy], 2), torch.cat([torch.zeros(1, frames), t_noisy], 1), text, torch.cat([fp, fp], 1), src)
        bank = _bank(model)
        for c in range(frames // CHUNK):
            sl = slice(c * CHUNK, (c + 1) * CHUNK)
            read = ChunkAttention(bank, FullPolicy(), Routing(), chunk_frames=CHUNK, rows=rows, cols=cols, rope=model.rope, write=False)
            out = model(noisy[:, :, sl], t_noisy[:, sl], text, fp[:, sl], read)
            torch.testing.assert_close(out, packed[:, :, frames:][:, :, sl], atol=2e-5, rtol=1e-4)
            write = ChunkAttention(bank, FullPolicy(), Routing(), chunk_frames=CHUNK, rows=rows, cols=cols, rope=model.rope, write=True)
            model(clean[:, :, sl], torch.zeros(1, CHUNK), text, fp[:, sl], write)
            bank.commit()


def _generate(policy, chunks: int, steps: int = 2):
    model = _model()
    gen = ChunkGenerator(model, _bank(model), policy, SamplerConfig(steps=steps), latent_shape=(CFG.in_channels, H, W), chunk_frames=CHUNK)
    text = _text(model, 1)
    results = []
    for c in range(chunks):
        req = ChunkRequest(c, (0,) * CHUNK, (c == 0,) + (False,) * (CHUNK - 1), tuple(range(c * CHUNK, (c + 1) * CHUNK)))
        results.append(gen.generate(req, text))
    return results


def test_camr_with_budget_covering_history_equals_full() -> None:
    # 4 chunks: at most 9 past frames ≤ 3 recent chunks (9) + top-5, so CAMR keeps everything
    full = _generate(FullPolicy(), 5)
    camr = _generate(CamrPolicy(recent_chunks=3, top_k=5), 5)
    for a, b in zip(full, camr):
        assert torch.equal(a.latents, b.latents)
    # beyond the budget the active set is bounded and the film differs from `full`
    full8 = _generate(FullPolicy(), 8)
    camr8 = _generate(CamrPolicy(recent_chunks=1, top_k=2), 8)
    assert camr8[-1].active_frames == 1 * CHUNK + 2 < full8[-1].active_frames
    assert not torch.equal(full8[-1].latents, camr8[-1].latents)


def test_camr_routes_planted_frame_that_window_misses() -> None:
    """A far-past frame whose keys match the chunk's queries is routed in by CAMR, not by window."""
    torch.manual_seed(5)
    spec = BankSpec(num_layers=1, batch=1, tokens_per_frame=4, num_heads=2, head_dim=8)
    bank = MemoryBank(spec)
    query_dir = torch.randn(2, 8)
    for f in range(40):
        k = torch.randn(1, 1, 4, 2, 8) * 0.1
        if f == 7:
            k = query_dir.expand(1, 1, 4, 2, 8) * 3.0
        bank.stage(0, k, torch.randn(1, 1, 4, 2, 8))
        bank.commit()
    q = query_dir.expand(1, 4 * CHUNK, 2, 8).clone()
    chosen = {}
    for policy in (CamrPolicy(recent_chunks=2, top_k=3), WindowPolicy(recent_chunks=3)):
        routing = Routing()
        src = ChunkAttention(bank, policy, routing, chunk_frames=CHUNK, rows=2, cols=2, rope=RopeTables.build((4, 2, 2), 64, 10000.0), write=False)
        src.prepare(0, q, torch.zeros_like(q), torch.zeros_like(q))
        chosen[policy.name] = routing.frames[0][0].tolist()
    assert 7 in chosen["camr"]
    assert 7 not in chosen["window"]
    assert len(chosen["camr"]) == len(chosen["window"]) == 9


def test_camr_routes_the_frame_a_few_query_tokens_match() -> None:
    """Two of the chunk's twelve query tokens (a character on screen) match one old frame; the
    rest lean weakly towards twenty others (the scene). Attention mass routes the character's
    frame in; the mean query, dominated by the scene, does not."""
    g = torch.Generator().manual_seed(2)
    scene, character = torch.zeros(2, 8), torch.zeros(2, 8)
    scene[:, 0], character[:, 1] = 1.0, 1.0
    desc = torch.randn(1, 40, 2, 8, generator=g) * 0.05
    desc[0, 10:30] += scene * 3.0  # the scene's frames, a modest match for most tokens
    desc[0, 5] += character * 6.0  # the frame the character was last seen in
    query = (scene * 1.2).expand(1, 12, 2, 8).clone()
    query[0, 3:5] = character * 2.0
    picks = {scoring: CamrPolicy(recent_chunks=2, top_k=5, scoring=scoring).select(40, CHUNK, query, desc)[0, :5].tolist()
             for scoring in ("mass", "mean")}
    assert 5 in picks["mass"]
    assert 5 not in picks["mean"]


def test_attention_mass_in_head_groups_equals_all_heads_at_once() -> None:
    """A long film's routing scores its heads a few at a time; the scores must not change."""
    from cinecli.memory.policies import attention_mass

    g = torch.Generator().manual_seed(4)
    query, desc = torch.randn(2, 12, 5, 8, generator=g), torch.randn(2, 30, 5, 8, generator=g)
    whole = attention_mass(query, desc)
    for limit in (1, 2 * 12 * 30, 3 * 2 * 12 * 30):  # one head, one head, three heads per group
        assert torch.allclose(attention_mass(query, desc, max_elements=limit), whole, atol=1e-6)
    assert torch.allclose(whole.sum(dim=1), torch.full((2,), 5.0))  # each head's mass sums to one


def test_active_tokens_constant_over_long_film() -> None:
    rows, cols = CFG.grid(H, W)
    for policy in (CamrPolicy(recent_chunks=3, top_k=5), WindowPolicy(recent_chunks=3, sink_frames=2)):
        results = _generate(policy, 200, steps=1)
        tokens = {r.active_tokens for r in results[5:]}
        assert tokens == {(policy.budget(CHUNK) + CHUNK) * rows * cols}, policy.name
    none = _generate(NoMemoryPolicy(), 6, steps=1)
    assert {r.active_frames for r in none} == {0}


def test_int8_history_stays_close_to_native() -> None:
    model = _model()
    rows, cols = CFG.grid(H, W)
    outs = {}
    for storage in ("native", "int8"):
        spec = BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim, storage=storage)
        gen = ChunkGenerator(model, MemoryBank(spec), FullPolicy(), SamplerConfig(steps=2), latent_shape=(CFG.in_channels, H, W), chunk_frames=CHUNK)
        text = _text(model, 1)
        res = [gen.generate(ChunkRequest(c, (0,) * CHUNK, (False,) * CHUNK, tuple(range(c * CHUNK, (c + 1) * CHUNK))), text) for c in range(4)]
        outs[storage] = torch.cat([r.latents for r in res], 2)
    err = (outs["int8"] - outs["native"]).norm() / outs["native"].norm()
    assert err < 0.05, err


def test_offloaded_history_gives_the_same_film() -> None:
    """History in host memory (gathered per layer and use, or held for the chunk) changes no latent."""
    model = _model()
    rows, cols = CFG.grid(H, W)
    for storage in ("native", "int8"):
        outs = {}
        for offload, hold in ((False, False), (True, False), (True, True)):
            spec = BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim, storage=storage, offload=offload, hold_offloaded=hold)
            gen = ChunkGenerator(model, MemoryBank(spec), CamrPolicy(recent_chunks=1, top_k=2), SamplerConfig(steps=2), latent_shape=(CFG.in_channels, H, W), chunk_frames=CHUNK)
            text = _text(model, 1)
            res = [gen.generate(ChunkRequest(c, (0,) * CHUNK, (False,) * CHUNK, tuple(range(c * CHUNK, (c + 1) * CHUNK))), text) for c in range(6)]
            assert res[-1].active_frames == 5  # 1 recent chunk + 2 routed: the run-copy path gathers scattered frames
            outs[offload, hold] = torch.cat([r.latents for r in res], 2)
        assert torch.equal(outs[False, False], outs[True, False]), storage
        assert torch.equal(outs[False, False], outs[True, True]), storage


def test_frame_runs_group_consecutive_frames() -> None:
    from cinecli.memory.bank import frame_runs

    assert frame_runs([0, 1, 2, 7, 9, 10]) == [(0, 0, 3), (3, 7, 1), (4, 9, 2)]
    assert frame_runs([]) == []


def test_compiled_blocks_generate_the_same_film() -> None:
    """`compile_blocks` (the fast path) changes speed, not the film: same latents within float32 rounding."""
    outs = []
    for compiled in (False, True):
        model = _model()
        if compiled:
            model.compile_blocks()
        rows, cols = CFG.grid(H, W)
        spec = BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim)
        gen = ChunkGenerator(model, MemoryBank(spec), CamrPolicy(recent_chunks=1, top_k=2), SamplerConfig(steps=2), latent_shape=(CFG.in_channels, H, W), chunk_frames=CHUNK)
        text = _text(model, 1)
        res = [gen.generate(ChunkRequest(c, (0,) * CHUNK, (False,) * CHUNK, tuple(range(c * CHUNK, (c + 1) * CHUNK))), text) for c in range(4)]
        outs.append(torch.cat([r.latents for r in res], 2))
    err = (outs[1] - outs[0]).norm() / outs[0].norm()
    assert err < 1e-4, err


def test_last_step_memory_skips_the_clean_pass() -> None:
    """`memory_pass="last-step"`: one forward fewer per chunk, memory still grows by the chunk,
    and the memory (hence every chunk after the first) differs from the clean pass's."""
    model = _model()
    rows, cols = CFG.grid(H, W)
    outs, calls = {}, {}
    for memory_pass in ("clean", "last-step"):
        bank = MemoryBank(BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim))
        gen = ChunkGenerator(model, bank, FullPolicy(), SamplerConfig(steps=3, memory_pass=memory_pass), latent_shape=(CFG.in_channels, H, W), chunk_frames=CHUNK)
        text = _text(model, 1)
        res = [gen.generate(ChunkRequest(c, (0,) * CHUNK, (False,) * CHUNK, tuple(range(c * CHUNK, (c + 1) * CHUNK))), text) for c in range(3)]
        assert bank.num_frames == 3 * CHUNK
        outs[memory_pass], calls[memory_pass] = [r.latents for r in res], gen.calls
    assert calls == {"clean": 3 * 4, "last-step": 3 * 3}
    assert torch.equal(outs["clean"][0], outs["last-step"][0])  # no memory yet
    assert not torch.allclose(outs["clean"][2], outs["last-step"][2])


def test_shot_window_stops_at_the_hard_cut() -> None:
    """With `shot_window`, the recent window holds no frame from before the chunk's hard cut:
    right after the cut only routed frames remain, and the window refills as the shot goes on.
    Without it, the last shot's frames stay in the window across the cut."""
    desc = torch.randn(1, 30, 2, 8, generator=torch.Generator().manual_seed(0))
    query = torch.randn(1, 6, 2, 8, generator=torch.Generator().manual_seed(1))  # the chunk's query tokens
    bounded, plain = CamrPolicy(recent_chunks=3, top_k=5, shot_window=True), CamrPolicy(recent_chunks=3, top_k=5)
    at_cut = bounded.select(30, CHUNK, query, desc, shot_start=30)[0].tolist()
    assert len(at_cut) == 5 and max(at_cut) < 30  # routed frames only: no window yet
    assert plain.select(30, CHUNK, query, desc, shot_start=30)[0].tolist()[-9:] == list(range(21, 30))
    later = bounded.select(30, CHUNK, query, desc, shot_start=24)[0].tolist()
    assert later[-6:] == list(range(24, 30)) and len(later) == 11  # window = the shot's own 6 frames
    assert all(f < 24 for f in later[:5])
    window = WindowPolicy(recent_chunks=3, shot_window=True)
    assert window.select(30, CHUNK, None, desc, shot_start=27)[0].tolist() == [27, 28, 29]


def test_chunk_requests_know_where_their_shot_began() -> None:
    """The director tells each chunk the latent frame of its shot's hard cut; a continued take
    ("continue") does not start a new shot for the window."""
    from pathlib import Path

    from cinecli.render.director import chunk_request
    from cinecli.screenplay import FilmFormat, TemporalGrid, parse_screenplay_text, plan_film

    fmt = FilmFormat(model="default", grid=TemporalGrid(4, False), chunk_frames=3, spatial_multiple=16, resolutions=((192, 128),),
                     fps=(12,), default_resolution=(192, 128), default_fps=12, default_steps=4, max_pixels=192 * 128, vocabulary=None)
    text = """film: {seed: 1}
shots:
  - {prompt: a red circle in a forest, duration: 2s}
  - {prompt: a blue square on a beach, duration: 2s, cut: cut}
  - {prompt: the blue square walks on, duration: 1s, cut: continue}
"""
    plan = plan_film(parse_screenplay_text(text, Path("t.yaml"), fmt), fmt)
    starts = [chunk_request(plan, c)[0].shot_start for c in range(plan.num_chunks)]
    assert starts == [0, 0, 6, 6, 6]


def test_film_guidance_overrides_the_models_sampler() -> None:
    """`film.guidance` changes only the guidance of the model's sampler; unset, the model's own stays."""
    from pathlib import Path

    from cinecli.render.director import film_sampler
    from cinecli.screenplay import FilmFormat, TemporalGrid, parse_screenplay_text

    class Model:  # the one method film_sampler asks of a ModelBundle
        def sampler(self, steps: int | None = None) -> SamplerConfig:
            return SamplerConfig(steps=steps or 4, guidance=1.0)

    fmt = FilmFormat(model="default", grid=TemporalGrid(4, False), chunk_frames=3, spatial_multiple=16, resolutions=((192, 128),),
                     fps=(12,), default_resolution=(192, 128), default_fps=12, default_steps=4, max_pixels=192 * 128, vocabulary=None)
    shots = "shots:\n  - {prompt: a red circle in a forest, duration: 2s}\n"
    guided = parse_screenplay_text("film: {guidance: 1.5, steps: 6}\n" + shots, Path("g.yaml"), fmt)
    plain = parse_screenplay_text(shots, Path("p.yaml"), fmt)
    cutting = parse_screenplay_text("film: {cut_guidance: 2}\n" + shots, Path("c.yaml"), fmt)
    assert film_sampler(Model(), guided) == SamplerConfig(steps=6, guidance=1.5)  # type: ignore[arg-type]
    assert film_sampler(Model(), cutting) == SamplerConfig(steps=4, guidance=1.0, cut_guidance=2.0)  # type: ignore[arg-type]
    assert film_sampler(Model(), plain) == SamplerConfig(steps=4, guidance=1.0)  # type: ignore[arg-type]


def test_cut_guidance_moves_only_the_chunks_that_cut() -> None:
    """`cut_guidance`: a chunk holding a hard cut is pushed away from its own draw without the cut
    flags, at one forward more per pushed step on that chunk only; chunks without a cut cost nothing more."""
    torch.manual_seed(1)
    model = WanTransformer(preset("tiny", dim=64, num_layers=2, num_heads=2, ffn_dim=128, text_dim=32, freq_dim=32, text_len=6,
                                  in_channels=4, out_channels=4, cut_embedding=True)).eval()
    rows, cols = CFG.grid(H, W)
    cuts = [(True, False, False), (False,) * CHUNK, (True, False, False)]  # the film opens, then cuts at the third chunk
    films, calls = {}, {}
    for g in (1.0, 3.0):
        bank = MemoryBank(BankSpec(CFG.num_layers, 1, rows * cols, CFG.num_heads, CFG.head_dim))
        gen = ChunkGenerator(model, bank, FullPolicy(), SamplerConfig(steps=3, cut_guidance=g, cut_guidance_steps=2), latent_shape=(CFG.in_channels, H, W),
                             chunk_frames=CHUNK)
        text = _text(model, 2)
        films[g] = [gen.generate(ChunkRequest(c, (c // 2,) * CHUNK, cuts[c], tuple(range(c * CHUNK, (c + 1) * CHUNK))), text).latents for c in range(3)]
        calls[g] = gen.calls
    assert calls == {1.0: 3 * 4, 3.0: 3 * 4 + 2 * 2}  # two chunks cut, pushed at their first two steps
    assert not torch.allclose(films[3.0][0], films[1.0][0], atol=1e-3)  # the opening chunk carries a cut flag too
    assert not torch.allclose(films[3.0][2], films[1.0][2], atol=1e-3)
    plain = SamplerConfig(steps=3)
    assert (plain.cut_guidance, plain.cut_guidance_steps) == (1.0, 1)  # off unless asked for; then at the first step
