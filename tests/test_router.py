"""CAMR's routing head: it routes where raw relevance cannot, CAMR uses it, files load or fail clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from cinecli.memory.policies import CamrPolicy, make_policy
from cinecli.memory.router import RoutingHead, load_router, save_router
from cinecli.model.bundle import ModelBundle, build_modules
from cinecli.model.card import default_card
from cinecli.train.router import ClipFeatures, RouterTrainConfig, fit_head, routing_precision, train_router

CFG = RouterTrainConfig(latent_frames=36, chunk_frames=3, recent_chunks=3, top_k=5, rank=4, steps=300, clips_per_step=16, lr=0.01, log_every=1000)


def _scrambled_features(clips: int, seed: int) -> ClipFeatures:
    """Clips of 4 settings in runs of 6 frames; keys carry the setting in channels 0-3, queries in
    channels 4-7 (behind a fixed permutation), each side has loud noise where the other has the
    code: the raw product of query and key says nothing about the setting, a bilinear map can."""
    g = torch.Generator().manual_seed(seed)
    t, c, width = 36, 12, 8
    scenes = torch.randint(0, 4, (clips, t // 6), generator=g).repeat_interleave(6, dim=1)  # [N, T]
    eye = torch.eye(4)
    keys = torch.cat([eye[scenes] + 0.1 * torch.randn(clips, t, 4, generator=g), 10 * torch.randn(clips, t, 4, generator=g)], dim=-1)
    chunk_scene = scenes[:, ::3]  # [N, C]
    perm = torch.tensor([2, 0, 3, 1])
    queries = torch.cat([10 * torch.randn(clips, c, 4, generator=g), eye[chunk_scene][..., perm] + 0.1 * torch.randn(clips, c, 4, generator=g)], dim=-1)
    same = chunk_scene[:, :, None] == scenes[:, None, :]  # [N, C, T]
    return ClipFeatures(queries[:, :, None], keys[:, None], same.float(), same, torch.zeros(clips, c, dtype=torch.bool))


def test_a_fitted_head_finds_the_setting_where_raw_relevance_is_at_chance() -> None:
    head = fit_head(_scrambled_features(64, 0), CFG, num_heads=1, head_dim=8, log=lambda rec: None)
    held_out = _scrambled_features(32, 1)
    raw, fitted = routing_precision(None, held_out, CFG), routing_precision(head, held_out, CFG)
    assert raw["precision_all"] < raw["chance_all"] + 0.15
    assert fitted["precision_all"] > 0.9 > raw["precision_all"] + 0.3
    assert fitted["chunks_all"] == raw["chunks_all"] > 0


def _head_preferring_channel(width: int, channel: int) -> RoutingHead:
    """A head whose score is a frame's key in `channel` (the query only scales it)."""
    head = RoutingHead(num_layers=2, num_heads=1, head_dim=width, rank=1)
    with torch.no_grad():
        head.query_mean.fill_(0.0)
        head.query_proj.zero_()
        head.query_proj[:, 0, 0] = 1.0
        head.key_proj.zero_()
        head.key_proj[:, channel, 0] = 1.0
    return head


def test_camr_routes_by_the_head_when_it_has_one() -> None:
    g = torch.Generator().manual_seed(0)
    frames, width = 30, 4
    desc = torch.randn(1, frames, 1, width, generator=g)
    desc[0, [2, 7, 11, 13, 17], 0, 3] = 50.0  # the head's pick: the five frames loudest in channel 3
    query = torch.tensor([[[[1.0, 1.0, 1.0, 0.0]]]])  # one query token; its scores read channels 0-2, blind to channel 3
    plain = CamrPolicy(recent_chunks=1, top_k=5)
    routed = dataclasses.replace(plain, router=_head_preferring_channel(width, 3))
    picked = routed.select(frames, 3, query, desc, layer=1)
    assert picked[0, :5].tolist() == [2, 7, 11, 13, 17]
    assert picked[0, 5:].tolist() == [27, 28, 29]  # the recent window is camr's either way
    assert plain.select(frames, 3, query, desc, layer=1)[0, :5].tolist() != [2, 7, 11, 13, 17]
    assert make_policy("camr", router=routed.router).router is routed.router
    assert make_policy("window", router=routed.router).name == "window"  # only camr routes


def test_router_files_round_trip_and_wrong_files_name_themselves(tmp_path: Path) -> None:
    head = _head_preferring_channel(4, 2)
    path = tmp_path / "student.router.safetensors"
    save_router(head, path)
    again = load_router(path, num_layers=2, num_heads=1, head_dim=4)
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="student.router.safetensors.*needs"):
        load_router(path, num_layers=3, num_heads=1, head_dim=4)
    from safetensors.torch import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"format": "cinecli-transformer-v1"})
    with pytest.raises(ValueError, match="weights.safetensors: not a routing head"):
        load_router(other, num_layers=2, num_heads=1, head_dim=4)


def test_train_router_records_world_clips_fits_and_reports(tmp_path: Path) -> None:
    card = dataclasses.replace(default_card(), preset="micro", text_layers=1)
    transformer, text, ae = build_modules(card)
    bundle = ModelBundle(card, transformer.eval(), text.eval(), ae.eval(), "test", trained=False)
    cfg = RouterTrainConfig(clips=2, eval_clips=2, latent_frames=21, batch=2, steps=3, clips_per_step=2, log_every=1, rank=2, top_k=2, recent_chunks=2, device="cpu")
    logs: list[dict] = []
    path = train_router(cfg, tmp_path, bundle=bundle, log=logs.append)
    mc = transformer.config
    head = load_router(path, num_layers=mc.num_layers, num_heads=mc.num_heads, head_dim=mc.head_dim)
    assert head.query_proj.shape == (mc.num_layers, mc.num_heads * mc.head_dim, 2)
    assert [r["step"] for r in logs if r.get("phase") == "fit"] == [1, 2, 3]
    report = json.loads((tmp_path / "precision.json").read_text())
    assert set(report) == {"attention relevance", "routing head", "routing head, fitting clips"}
    assert report["routing head"]["chunks_all"] == report["attention relevance"]["chunks_all"]
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_train_router_config_refuses_clips_too_short_to_route() -> None:
    with pytest.raises(ValueError, match="nothing to choose from"):
        RouterTrainConfig(latent_frames=15, recent_chunks=3, top_k=5)


def test_a_head_beside_a_generator_is_part_of_the_bundle_identity(tmp_path: Path) -> None:
    from cinecli.model.bundle import file_sha256, router_path, weight_files

    gen, ae = tmp_path / "student.safetensors", tmp_path / "autoencoder.safetensors"
    gen.write_bytes(b"generator")
    ae.write_bytes(b"autoencoder")
    assert weight_files(gen, ae) == [gen, ae]
    save_router(_head_preferring_channel(4, 2), router_path(gen))
    assert router_path(gen).name == "student.router.safetensors"
    assert weight_files(gen, ae) == [gen, ae, router_path(gen)]
    # so a state folder rendered with the head never resumes without it, nor the other way round
    assert file_sha256(weight_files(gen, ae)) != file_sha256([gen, ae])


def test_a_shortlist_lets_the_head_retrieve_and_attention_choose() -> None:
    from cinecli.memory.policies import attention_mass, route_older

    g = torch.Generator().manual_seed(0)
    query, desc = torch.randn(2, 6, 4, 8, generator=g), torch.randn(2, 30, 4, 8, generator=g)
    head = RoutingHead(2, 4, 8, 3)
    with torch.no_grad():
        head.query_proj.normal_(generator=g)
        head.key_proj.normal_(generator=g)
    picked = route_older(query, desc, 5, 1, head, 10)
    short = head.scores(1, query.mean(dim=1), desc).topk(10, dim=1).indices
    for b in range(2):
        among = attention_mass(query[b : b + 1], desc[b : b + 1, short[b]])[0]
        assert picked[b].tolist() == sorted(short[b][among.topk(5).indices].tolist())
    assert not torch.equal(picked, route_older(query, desc, 5, 1, head, 0))  # the head alone picks otherwise
    assert torch.equal(route_older(query, desc, 5, 1, None, 10), attention_mass(query, desc).topk(5, dim=1).indices.sort(dim=1).values)
