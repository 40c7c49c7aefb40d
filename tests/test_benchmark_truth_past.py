"""The truth-past memory test of `benchmarks/default_model.py`: which chunks it generates and
what the rest of the film holds. If it generated a forced chunk, or forced a returning one, the
memory table would measure something else."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from cinecli.sampling.generator import ChunkRequest, ChunkResult

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("default_model_benchmark", ROOT / "benchmarks/default_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses defined in it look their module up there
    spec.loader.exec_module(module)
    return module


class _Recorder:
    """Stands in for a ChunkGenerator: records what it was asked to draw or remember."""

    def __init__(self) -> None:
        self.sampler = SimpleNamespace(guidance=1.0)
        self.chunk_frames = 3
        self.generated: list[int] = []
        self.remembered: list[tuple[int, torch.Tensor]] = []

    def generate(self, req: ChunkRequest, text, uncond=None) -> ChunkResult:  # type: ignore[no-untyped-def]
        self.generated.append(req.index)
        return ChunkResult(latents=torch.full((1, 2, req.frames, 1, 1), -1.0), active_frames=0, active_tokens=0)

    def remember(self, req: ChunkRequest, latents: torch.Tensor, text) -> None:  # type: ignore[no-untyped-def]
        self.remembered.append((req.index, latents.clone()))


def _request(index: int, frames: int = 3) -> ChunkRequest:
    return ChunkRequest(index=index, prompts=(0,) * frames, cuts=(False,) * frames, noise_seeds=(0,) * frames)


def test_truth_past_generates_only_returning_chunks_and_remembers_the_truth_elsewhere() -> None:
    bench = _benchmark()
    truth = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1, 1).expand(1, 2, 8, 1, 1).contiguous()
    inner = _Recorder()
    gen = bench.TruthPastGenerator(inner, truth, frozenset({1}))
    out = [gen.generate(_request(0), None), gen.generate(_request(1), None), gen.generate(_request(2, frames=2), None)]
    assert inner.generated == [1]
    assert [i for i, _ in inner.remembered] == [0, 2]
    assert torch.equal(out[0].latents, truth[:, :, 0:3]) and torch.equal(inner.remembered[0][1], truth[:, :, 0:3])
    assert torch.equal(out[2].latents, truth[:, :, 6:8])  # the short last chunk
    assert bool((out[1].latents == -1).all())  # the generated chunk is the model's


def test_returning_shots_are_the_ones_eval_scores_as_returns() -> None:
    bench = _benchmark()
    shot = lambda setting, cast: SimpleNamespace(setting_id=setting, cast=cast)  # noqa: E731
    film = SimpleNamespace(shots=[shot("harbour", ("a",)), shot("harbour", ("a",)), shot("forest", ("b",)),
                                  shot("harbour", ()), shot("desert", ("b",)), shot("forest", ())])
    # harbour returns at 3 (a gap of 2 shots after 1), b at 4 and the forest at 5 (gaps of 2 and 3);
    # shot 1 follows shot 0 directly, so it is no return
    assert bench.returning_shots(film) == frozenset({3, 4, 5})


def test_oracle_routing_routes_the_older_frames_that_share_the_chunk_labels() -> None:
    from cinecli.memory.policies import CamrPolicy

    bench = _benchmark()
    scene_a = {1, 4, 6, 8, 9, 27, 28, 29}  # five older frames and the chunk itself show setting a
    labels = tuple(frozenset({"scene:a" if t in scene_a else "scene:b"}) for t in range(30))
    camr = CamrPolicy(recent_chunks=3, top_k=5)
    oracle = bench.OracleRouting(camr, labels)
    g = torch.Generator().manual_seed(0)
    query, desc = torch.randn(1, 6, 2, 4, generator=g), torch.randn(1, 27, 2, 4, generator=g)
    picked = oracle.select(27, 3, query, desc, layer=2)[0].tolist()
    assert picked == [1, 4, 6, 8, 9] + list(range(18, 27))  # the truth's five, then camr's recent window
    assert oracle.budget(3) == camr.budget(3)


def test_scene_returns_split_by_where_the_scene_was_first_seen() -> None:
    """Returns to the opening shot's scene and to later scenes are scored apart (characters in neither)."""
    bench = _benchmark()
    r = lambda kind, first, score: SimpleNamespace(kind=kind, first_shot=first, score=score)  # noqa: E731
    report = SimpleNamespace(returns=[r("scene", 0, 0.6), r("scene", 0, 0.2), r("scene", 3, 0.1), r("character", 0, 0.9)])
    assert bench.split_returns(report) == {"inter_opening": 0.4, "inter_later": 0.1}
    assert bench.split_returns(SimpleNamespace(returns=[r("character", 2, 0.5)])) == {"inter_opening": None, "inter_later": None}


def test_routing_by_location_writes_the_locations_into_the_screenplay(tmp_path: Path) -> None:
    bench = _benchmark()
    film = next(f for f in bench.benchmark_films() if f.seed == 910204)
    sp, plan = bench.row_screenplay(film, bench.ROWS["student camr by location (truth past)"], tmp_path)
    assert plan.locations and all(shot.location is not None for shot in sp.shots)
    sp, plan = bench.row_screenplay(film, bench.ROWS["student camr (truth past)"], tmp_path)
    assert plan.locations == ()
