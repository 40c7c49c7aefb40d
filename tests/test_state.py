"""State folders in process, with the micro model: checkpoints, resume, re-render after an edit, refusals.

Every render here is a real render (segments, concat, manifest) of a film of a few seconds; the
model is the micro preset, randomly initialised, which renders noise but deterministically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cinecli.cli import app
from cinecli.model.autoencoder import extend_decoder
from cinecli.model.bundle import ModelBundle, build_modules
from cinecli.model.card import ModelCard, default_card
from cinecli.render import events as ev
from cinecli.render.run import RenderRequest, render_script
from cinecli.render.segments import read_video
from cinecli.state.atomic import write_bytes_atomic, write_json_atomic
from cinecli.state.checkpoint import CheckpointPolicy
from cinecli.state.manifest import (
    FORMAT_VERSION, ChunkRecord, FileRef, Position, RestorePoint, ShotRecord, StateError, StateManifest,
    manifest_file, read_manifest,
)
from cinecli.state.resume import choose_point, first_changed_shot

PROMPTS = ["wide shot of the harbour", "close-up on the keeper", "the stranger walks in from the left",
           "medium shot of the stranger at the harbour", "the keeper turns around"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: renders stay fast when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def micro_bundle(weights_id: str = "micro-seed-0", seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    card = ModelCard(**{**default_card().__dict__, "preset": "micro"})
    transformer, text, ae = build_modules(card)
    bundle = ModelBundle(card, transformer, text, ae, weights_id, trained=False)
    for module in (bundle.transformer, bundle.text_encoder, bundle.autoencoder):
        module.eval()
    return bundle


class CallCounter:
    """Counts transformer forwards (the regeneration cost) through a forward hook."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.calls = 0
        bundle.transformer.register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.calls += 1


def screenplay(path: Path, seconds: list[float], prompts: list[str] | None = None, seed: int = 7) -> Path:
    prompts = prompts or PROMPTS
    lines = ["film:", '  title: "state test"', "  model: default", "  resolution: 192x128", "  fps: 12", f"  seed: {seed}", "shots:"]
    for i, s in enumerate(seconds):
        lines += [f"  - id: shot{i + 1}", f"    duration: {s}s", f'    prompt: "{prompts[i % len(prompts)]}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def render(script: Path, out: Path, bundle: ModelBundle, *, stop_after: int | None = None, **kw: object) -> tuple[int, list[ev.BaseEvent]]:
    """Render in process; `stop_after=k` abandons the render (KeyboardInterrupt) after k ChunkDone events."""
    events: list[ev.BaseEvent] = []

    def emit(event: ev.BaseEvent) -> None:
        events.append(event)
        if stop_after is not None and sum(isinstance(e, ev.ChunkDone) for e in events) >= stop_after and isinstance(event, ev.ChunkDone):
            raise KeyboardInterrupt

    req = RenderRequest(script=script, output=out, **kw)  # type: ignore[arg-type]
    return render_script(req, emit, bundle=bundle), events


def chunks_done(events: list[ev.BaseEvent]) -> list[int]:
    return [e.chunk for e in events if isinstance(e, ev.ChunkDone)]


def errors(events: list[ev.BaseEvent]) -> list[str]:
    return [e.message for e in events if isinstance(e, ev.Error)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted render of a 3-shot, 4-second film (4 chunks, one straddling a cut)."""
    d = tmp_path_factory.mktemp("reference")
    script = screenplay(d / "film.yaml", [1.5, 1.5, 1.0])
    code, events = render(script, d / "film.mp4", micro_bundle())
    assert code == 0, errors(events)
    return script, d / "film.mp4"


# ------------------------------------------------------------------ small pure parts


def test_checkpoint_policy_parses_chunks_and_seconds() -> None:
    assert CheckpointPolicy.parse("1") == CheckpointPolicy(chunks=1)
    assert CheckpointPolicy.parse("4 chunks") == CheckpointPolicy(chunks=4)
    assert CheckpointPolicy.parse("30s") == CheckpointPolicy(chunks=None, seconds=30.0)
    for bad in ("0", "-1", "soon", "1.5"):
        with pytest.raises(ValueError, match="--checkpoint-every"):
            CheckpointPolicy.parse(bad)
    assert CheckpointPolicy(chunks=None, seconds=5).due(pending=100, since_last=4.9) is False
    assert CheckpointPolicy(chunks=3).due(pending=3, since_last=0) is True


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_bytes_atomic(tmp_path / "a.bin", b"one")
    write_bytes_atomic(tmp_path / "a.bin", b"two")
    write_json_atomic(tmp_path / "m.json", {"prompt": "über"})
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8")) == {"prompt": "über"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "m.json"]


def _manifest(shots: tuple[ShotRecord, ...], position: Position, restore: tuple[RestorePoint, ...]) -> StateManifest:
    ref = FileRef("checkpoint-000005.safetensors", "0" * 64, 1)
    return StateManifest("/s.yaml", "x", "/o.mp4", {}, {}, shots, frames=60, latents=15, chunks_total=5, chunk_frames=3,
                         position=position, checkpoint=ref, restore_points=restore,
                         chunks=tuple(ChunkRecord(c, 3 * c, 3 * c + 3, ref) for c in range(position.next_chunk)))


def test_restore_point_is_the_latest_that_ends_before_the_dirty_chunk() -> None:
    ref = FileRef("restore/shot-0000.safetensors", "0" * 64, 1)
    restore = tuple(RestorePoint(shot, Position(n, 12 * n, 1.0), 3 * n, ref) for shot, n in ((0, 2), (1, 3), (2, 5)))
    m = _manifest((), Position(5, 60, 2.0), restore)
    assert choose_point(m, limit=5, changed=None).source == "checkpoint"
    assert choose_point(m, limit=4, changed=3).position.next_chunk == 3  # shot 2's point; shot 3's is past the limit
    assert choose_point(m, limit=2, changed=1).position.next_chunk == 2
    assert choose_point(m, limit=1, changed=0).source == "start"


def test_first_changed_shot_compares_hash_and_placement_not_ids() -> None:
    a = tuple(ShotRecord(i, f"s{i}", f"h{i}", 3 * i, 3 * i + 3, 12 * i, 12 * i + 12) for i in range(3))
    renamed = tuple(ShotRecord(s.index, "new-id", s.hash, s.latent_start, s.latent_end, s.frame_start, s.frame_end) for s in a)
    assert first_changed_shot(a, renamed) is None
    edited = (a[0], ShotRecord(1, "s1", "other", 3, 6, 12, 24), a[2])
    assert first_changed_shot(a, edited) == 1
    assert first_changed_shot(a[:2], a) == 2  # appended shot
    moved_end = (a[0], ShotRecord(1, "s1", "h1", 3, 7, 12, 28))
    assert first_changed_shot(a, moved_end) == 1  # a removed last shot moves the new last shot's end


# ------------------------------------------------------------------ resume


def test_state_folder_layout_and_manifest(reference: tuple[Path, Path]) -> None:
    script, out = reference
    state = out.with_suffix(".state")
    m = read_manifest(manifest_file(state))
    assert m.complete and m.position.next_chunk == m.chunks_total == 4
    assert [c.chunk for c in m.chunks] == [0, 1, 2, 3]
    assert [r.shot for r in m.restore_points] == [0, 1, 2]
    assert m.settings["weights_id"] == "micro-seed-0" and m.settings["device_type"] == "cpu"
    assert m.screenplay == str(script.resolve()) and len(m.shots) == 3
    assert sorted(p.name for p in state.glob("checkpoint-*")) == ["checkpoint-000004.safetensors"]
    for r in m.restore_points:  # a restore point sits on the chunk boundary after its shot's last latent
        shot = m.shots[r.shot]
        assert r.position.next_chunk == -(-shot.latent_end // 3)


def test_interrupted_render_resumes_to_identical_bytes(reference: tuple[Path, Path], tmp_path: Path) -> None:
    script, ref = reference
    out = tmp_path / "film.mp4"
    code, events = render(script, out, micro_bundle(), stop_after=1)
    assert code == 130 and isinstance(events[-1], ev.Interrupted)
    assert events[-1].resume_command == f"cinecli resume {tmp_path / 'film.state'}"
    assert not out.exists()
    code, events = render(script, out, micro_bundle(), stop_after=2)  # resumes, then stops again
    assert code == 130 and chunks_done(events) == [1, 2]
    assert any(isinstance(e, ev.Note) and "resuming it" in e.message for e in events)
    code, events = render(script, out, micro_bundle())
    assert code == 0, errors(events)
    assert chunks_done(events) == [3]
    assert [e.shot for e in events if isinstance(e, ev.ShotDone) and e.reused] == [0, 1]
    assert out.read_bytes() == ref.read_bytes()


def test_sparse_checkpoints_flush_on_interrupt(reference: tuple[Path, Path], tmp_path: Path) -> None:
    script, ref = reference
    out = tmp_path / "film.mp4"
    code, _ = render(script, out, micro_bundle(), stop_after=1, checkpoint_every="100")
    assert code == 130
    assert read_manifest(manifest_file(tmp_path / "film.state")).position.next_chunk == 1
    code, events = render(script, out, micro_bundle(), checkpoint_every="100")
    assert code == 0 and chunks_done(events) == [1, 2, 3]
    assert out.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("signame, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_finishes_the_chunk_checkpoints_and_restores_handlers(signame: str, code: int, reference: tuple[Path, Path], tmp_path: Path) -> None:
    script, ref = reference
    sig = getattr(signal, signame)
    before = signal.getsignal(sig)
    events: list[ev.BaseEvent] = []

    def emit(event: ev.BaseEvent) -> None:
        events.append(event)
        if isinstance(event, ev.ShotStarted) and event.shot == 0:
            os.kill(os.getpid(), sig)  # arrives mid-chunk: the chunk is finished first

    out = tmp_path / "film.mp4"
    assert render_script(RenderRequest(script=script, output=out), emit, bundle=micro_bundle()) == code
    assert signal.getsignal(sig) is before
    assert chunks_done(events) == [0]
    last = events[-1]
    assert isinstance(last, ev.Interrupted) and last.signal == signame and last.exit_code == code
    assert read_manifest(manifest_file(tmp_path / "film.state")).position.next_chunk == 1
    code2, events2 = render(script, out, micro_bundle())
    assert code2 == 0 and chunks_done(events2) == [1, 2, 3]
    assert out.read_bytes() == ref.read_bytes()


# ------------------------------------------------------------------ re-render after an edit


def edit_third_prompt(tmp_path: Path, seconds: list[float], make_bundle: Callable[[], ModelBundle]
                      ) -> tuple[int, list[ev.BaseEvent], CallCounter, Path, Path]:
    """Render a film, change shot 3's prompt and render over it (counting transformer calls),
    then render the edited film fresh in another folder: (code, events, counter, out, fresh)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    script = screenplay(tmp_path / "a" / "film.yaml", seconds)
    out = tmp_path / "a" / "film.mp4"
    assert render(script, out, make_bundle())[0] == 0
    edited = list(PROMPTS)
    edited[2] = "the keeper leaves to the right"
    screenplay(script, seconds, edited)
    bundle = make_bundle()
    counter = CallCounter(bundle)
    code, events = render(script, out, bundle, overwrite=True)
    fresh = tmp_path / "b" / "film.mp4"
    assert render(screenplay(tmp_path / "b" / "film.yaml", seconds, edited), fresh, make_bundle())[0] == 0
    return code, events, counter, out, fresh


@pytest.mark.parametrize("seconds, first_chunk", [([1, 1, 1, 1, 1], 2), ([1, 1.5, 1, 1, 0.5], 1)])
def test_edit_rerenders_from_the_first_changed_shot(seconds: list[float], first_chunk: int, tmp_path: Path) -> None:
    code, events, counter, out, fresh = edit_third_prompt(tmp_path, seconds, micro_bundle)
    assert code == 0, errors(events)
    chunks = chunks_done(events)
    assert chunks[0] == first_chunk and chunks == list(range(first_chunk, 5))
    per_chunk = 5  # 4 denoising steps + the clean pass that writes memory
    assert counter.calls == per_chunk * len(chunks)
    reused = [e.shot for e in events if isinstance(e, ev.ShotDone) and e.reused]
    assert reused == list(range(first_chunk if seconds[1] == 1 else 1))
    assert any(isinstance(e, ev.Note) and "shot 3 'shot3' differs" in e.message for e in events)
    assert out.read_bytes() == fresh.read_bytes()


def test_unchanged_screenplay_rerenders_nothing(reference: tuple[Path, Path], tmp_path: Path) -> None:
    script, ref = reference
    out = tmp_path / "film.mp4"
    assert render(script, out, micro_bundle())[0] == 0
    out.unlink()
    code, events = render(script, out, micro_bundle())
    assert code == 0 and chunks_done(events) == []
    assert [e.shot for e in events if isinstance(e, ev.ShotDone)] == [0, 1, 2]
    assert out.read_bytes() == ref.read_bytes()


# ------------------------------------------------------------------ refusals


@pytest.fixture()
def interrupted(reference: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A render of the reference script stopped after two chunks: (script, output, state folder)."""
    script, _ = reference
    out = tmp_path / "film.mp4"
    assert render(script, out, micro_bundle(), stop_after=2)[0] == 130
    return script, out, tmp_path / "film.state"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "lock"}


def _refused(script: Path, out: Path, state: Path, bundle: ModelBundle, match: str, *, then_fresh: bool = False,
             **kw: object) -> None:
    """The render is refused with `match` in its one error, the folder is untouched, and --fresh renders."""
    before = _snapshot(state)
    code, events = render(script, out, bundle, **kw)
    assert code == 2, events
    (message,) = errors(events)
    assert match in message
    assert _snapshot(state) == before  # a refusal changes nothing
    if not then_fresh:
        return
    code, events = render(script, out, micro_bundle(), fresh=True)
    assert code == 0, errors(events)
    assert chunks_done(events) == [0, 1, 2, 3]


def test_refuses_other_weights(interrupted: tuple[Path, Path, Path]) -> None:
    script, out, state = interrupted
    _refused(script, out, state, micro_bundle("micro-seed-1", seed=1), "another model or other weights", then_fresh=True)


def test_refuses_other_settings(interrupted: tuple[Path, Path, Path]) -> None:
    script, out, state = interrupted
    _refused(script, out, state, micro_bundle(), "steps: state 4, now 2", steps=2)


def test_refuses_truncated_chunk_file(interrupted: tuple[Path, Path, Path]) -> None:
    script, out, state = interrupted
    chunk = state / "chunks" / "c000000.safetensors"
    chunk.write_bytes(chunk.read_bytes()[:-100])
    before = _snapshot(state)
    code, events = render(script, out, micro_bundle())
    assert code == 2 and str(chunk) in errors(events)[0] and "truncated" in errors(events)[0]
    assert _snapshot(state) == before


def test_refuses_edited_checkpoint_file(interrupted: tuple[Path, Path, Path]) -> None:
    script, out, state = interrupted
    ckpt = state / "checkpoint-000002.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    _refused(script, out, state, micro_bundle(), f"{ckpt}: sha256 differs")


def test_refuses_newer_format_and_damaged_manifest(interrupted: tuple[Path, Path, Path]) -> None:
    script, out, state = interrupted
    path = manifest_file(state)
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, "format_version": FORMAT_VERSION + 1}), encoding="utf-8")
    code, events = render(script, out, micro_bundle())
    assert code == 2 and f"{path}: written by a newer cinecli" in errors(events)[0]
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")
    _refused(script, out, state, micro_bundle(), f"{path}: the state manifest is not valid JSON")


def test_manifest_reader_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=f"{tmp_path / 'manifest.json'}: no state manifest"):
        read_manifest(tmp_path / "manifest.json")


# ------------------------------------------------------------------ commands


def test_inspect_and_resume_commands(reference: tuple[Path, Path], interrupted: tuple[Path, Path, Path]) -> None:
    runner = CliRunner()
    _, out, state = interrupted
    result = runner.invoke(app, ["inspect", str(state), "--json", "--verify"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["kind"] == "state" and info["position"]["next_chunk"] == 2 and info["problems"] == []
    assert [s["status"] for s in info["shots"]] == ["done", "partial", "pending"]
    result = runner.invoke(app, ["inspect", str(state)])
    assert result.exit_code == 0 and "chunk 2 of 4 done" in result.output
    _, ref = reference
    result = runner.invoke(app, ["inspect", str(ref.with_suffix(".manifest.json")), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["kind"] == "film"
    (state / "chunks" / "c000001.safetensors").write_bytes(b"junk")
    result = runner.invoke(app, ["inspect", str(state), "--verify"])
    assert result.exit_code == 2 and "damaged" in result.output
    result = runner.invoke(app, ["resume", str(ref.with_suffix(".state"))])
    assert result.exit_code == 0 and "nothing to resume" in result.output
    result = runner.invoke(app, ["resume", str(out.parent / "nowhere")])
    assert result.exit_code == 2


# ------------------------------------------------------------------ a decoder that looks ahead


def lookahead_bundle() -> ModelBundle:
    """The micro bundle with a decoder that draws each latent frame once the next one exists
    (random look-ahead weights, so a frame drawn without its look-ahead would differ)."""
    bundle = micro_bundle("micro-lookahead")
    ae = extend_decoder(bundle.autoencoder, lookahead=1, frame_kernel=3).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        ae.decoder.inp.weight[:, ae.latent_channels:].normal_(0, 0.05)
        for p in ae.decoder.frame_blocks.parameters():
            p.normal_(0, 0.05)
    return dataclasses.replace(bundle, autoencoder=ae)


def test_lookahead_decoder_renders_every_frame_and_resumes_to_identical_bytes(tmp_path: Path) -> None:
    """Each chunk's last latent frame is drawn with the next chunk (one latent frame late, the
    last at the film's end); a render interrupted and resumed, including just after a shot's
    latent frames are done and before its last frames are drawn, gives the same bytes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    script = screenplay(tmp_path / "a" / "film.yaml", [1.5, 1.5, 1.0])
    ref = tmp_path / "a" / "film.mp4"
    code, events = render(script, ref, lookahead_bundle())
    assert code == 0, errors(events)
    assert len(read_video(ref)) == 48
    assert [e.frames_done for e in events if isinstance(e, ev.ChunkDone)] == [8, 20, 32, 48]
    assert [e.shot for e in events if isinstance(e, ev.ShotDone)] == [0, 1, 2]
    out = tmp_path / "b" / "film.mp4"
    script_b = screenplay(tmp_path / "b" / "film.yaml", [1.5, 1.5, 1.0])
    assert render(script_b, out, lookahead_bundle(), stop_after=1)[0] == 130
    assert render(script_b, out, lookahead_bundle(), stop_after=1)[0] == 130
    code, events = render(script_b, out, lookahead_bundle())
    assert code == 0 and chunks_done(events) == [2, 3]
    assert out.read_bytes() == ref.read_bytes()


def test_lookahead_decoder_edit_rerenders_and_matches_a_fresh_render(tmp_path: Path) -> None:
    """An edit of shot 3 restores after shot 2's latent frames; shot 2's held-back last frames
    are redrawn looking at the new shot, exactly as a fresh render of the edited film draws them."""
    code, events, _, out, fresh = edit_third_prompt(tmp_path, [1, 1, 1, 1, 1], lookahead_bundle)
    assert code == 0, errors(events)
    assert chunks_done(events) == [2, 3, 4]
    assert out.read_bytes() == fresh.read_bytes()
