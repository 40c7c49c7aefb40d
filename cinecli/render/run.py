"""One render from a screenplay file: validate, plan, load the model, direct, report.

This is the layer the CLI calls; it owns the render's exit code. Everything that can be checked
without a model is checked first, so bad input costs no model load and writes nothing.

Every render keeps a state folder (`cinecli.state`): it checkpoints as it goes, continues an
unfinished render of the same screenplay and settings, re-renders an edited screenplay from its
first changed shot, and stops cleanly on SIGINT/SIGTERM with the command that resumes.
"""

from __future__ import annotations

import dataclasses
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cinecli.render import events as ev
from cinecli.screenplay import ScreenplayError, load_screenplay_resolving, plan_film, vocabulary_warnings
from cinecli.screenplay.schema import Screenplay
from cinecli.screenplay.timeline import Plan

if TYPE_CHECKING:
    from cinecli.model.bundle import ModelBundle
    from cinecli.render.director import Director
    from cinecli.state.checkpoint import CheckpointPolicy
    from cinecli.state.manifest import StateManifest

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


@dataclass(frozen=True)
class RenderRequest:
    """A render as the command line asks for it; `None` means "as the screenplay says"."""

    script: Path
    output: Path | None = None
    state_dir: Path | None = None
    overwrite: bool = False
    split_shots: bool = False
    device: str = "cpu"
    seed: int | None = None
    policy: str | None = None
    steps: int | None = None
    history: str = "native"
    quantize: str | None = None  # "none" or "int8"; None = film.quantize
    offload_history: bool = False  # history in (pinned) CPU memory, only the active set on the device
    max_vram: int | None = None  # bytes: plan memory settings to fit, or refuse before rendering
    fresh: bool = False  # forget any state in the state folder and start over
    checkpoint_every: str = "1"  # chunks ("3") or seconds ("30s") between checkpoints
    compile: bool = False  # torch.compile the transformer blocks and the decoder (faster chunks, slower start)


def default_output(script: Path) -> Path:
    return Path.cwd() / f"{script.stem}.mp4"


def default_state_dir(output: Path) -> Path:
    return output.with_suffix(".state")


def apply_overrides(sp: Screenplay, req: RenderRequest) -> Screenplay:
    """Command-line options win over the screenplay's film settings."""
    film = sp.film
    if req.seed is not None:
        film = dataclasses.replace(film, seed=req.seed)
    if req.policy is not None:
        film = dataclasses.replace(film, memory=dataclasses.replace(film.memory, policy=req.policy))  # type: ignore[arg-type]
    if req.quantize is not None:
        film = dataclasses.replace(film, quantize=req.quantize)  # type: ignore[arg-type]
    return dataclasses.replace(sp, film=film)


def render_script(req: RenderRequest, emit: Callable[[ev.BaseEvent], None], *, bundle: "ModelBundle | None" = None) -> int:
    """Render `req.script`; every outcome is reported through `emit` and the exit code returned.

    `bundle` replaces the screenplay's model (for programs that hold a model already, and tests);
    the state folder records its weights id, so states of different models never mix.
    """
    from cinecli.model.formats import film_format
    from cinecli.state.checkpoint import CheckpointPolicy
    from cinecli.state.lock import state_lock
    from cinecli.state.manifest import StateError

    emit = stamped(emit)

    try:
        policy = CheckpointPolicy.parse(req.checkpoint_every)
    except ValueError as err:
        emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
        return EXIT_INVALID
    try:
        sp, fmt = load_screenplay_resolving(req.script, film_format)
    except ScreenplayError as err:
        emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
        return EXIT_INVALID
    except OSError as err:
        emit(ev.Error(message=f"{req.script}: {err.strerror or err}", exit_code=EXIT_INVALID))
        return EXIT_INVALID
    sp = apply_overrides(sp, req)
    output = (req.output or default_output(req.script)).resolve()
    if output.exists() and not req.overwrite:
        emit(ev.Error(message=f"{output} exists; pass --overwrite to replace it", exit_code=EXIT_INVALID))
        return EXIT_INVALID
    plan = plan_film(sp, fmt)
    for warning in vocabulary_warnings(sp, fmt):
        emit(ev.Note(message=warning))
    state_dir = (req.state_dir or default_state_dir(output)).resolve()
    try:
        with state_lock(state_dir):
            return _render_in_state(req, sp, plan, output, state_dir, policy, emit, bundle)
    except StateError as err:
        emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
        return EXIT_INVALID
    except KeyboardInterrupt:  # before the render's own handlers were installed: nothing new to save
        emit(ev.Interrupted(signal="SIGINT", resume_command=resume_command(state_dir), exit_code=EXIT_INTERRUPTED))
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure becomes a reported exit code 1
        emit(ev.Error(message=f"render failed: {err}\n{traceback.format_exc(limit=3)}", exit_code=EXIT_FAILURE))
        return EXIT_FAILURE


def resume_state(state_dir: Path, emit: Callable[[ev.BaseEvent], None], *, device: str | None = None,
                 checkpoint_every: str = "1") -> int:
    """`cinecli resume`: continue the render a state folder holds, with the options it was started with."""
    from cinecli.state.manifest import MANIFEST_NAME, StateError, manifest_file, read_manifest

    state_dir = Path(state_dir)
    if state_dir.name == MANIFEST_NAME and state_dir.is_file():
        state_dir = state_dir.parent
    try:
        manifest = read_manifest(manifest_file(state_dir))
    except StateError as err:
        emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
        return EXIT_INVALID
    if manifest.complete and Path(manifest.output).exists():
        emit(ev.Note(message=f"nothing to resume: every chunk in {state_dir} is rendered and {manifest.output} exists"))
        return EXIT_OK
    script = Path(manifest.screenplay)
    if not script.is_file():
        emit(ev.Error(message=f"{manifest_file(state_dir)}: its screenplay {script} is gone; render it again "
                              f"with cinecli render SCRIPT --state {shlex.quote(str(state_dir))}", exit_code=EXIT_INVALID))
        return EXIT_INVALID
    r = manifest.request
    req = RenderRequest(
        script=script, output=Path(manifest.output), state_dir=state_dir.resolve(), overwrite=bool(r.get("overwrite")),
        split_shots=bool(r.get("split_shots")), device=device or str(r.get("device", "cpu")),
        seed=_opt_int(r.get("seed")), policy=r.get("policy"), steps=_opt_int(r.get("steps")),  # type: ignore[arg-type]
        history=str(r.get("history", "native")), checkpoint_every=checkpoint_every,
        quantize=r.get("quantize"), offload_history=bool(r.get("offload_history")),  # type: ignore[arg-type]
        max_vram=_opt_int(r.get("max_vram")), compile=bool(r.get("compile")),
    )
    return render_script(req, emit)


def resume_command(state_dir: Path) -> str:
    """The exact command that continues a render from its state folder."""
    return f"cinecli resume {shlex.quote(str(state_dir))}"


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _render_in_state(req: RenderRequest, sp: Screenplay, plan: Plan, output: Path, state_dir: Path,
                     policy: "CheckpointPolicy", emit: Callable[[ev.BaseEvent], None],
                     bundle: "ModelBundle | None") -> int:
    """Load the model, settle the state folder (resume, re-render or fresh), run, stop cleanly on signals."""
    from cinecli.model.bundle import load_model
    from cinecli.render.director import Director, RenderOptions
    from cinecli.state.checkpoint import Checkpointer
    from cinecli.state.signals import stop_on_signals

    if bundle is None:
        from cinecli.model.loading import WeightsError
        from cinecli.model.wan.spec import ModelFileError
        from cinecli.model.wan.text import MissingExtra

        try:
            bundle = load_model(sp.film.model, req.script.parent)
        except (FileNotFoundError, ModelFileError, WeightsError, MissingExtra) as err:
            # a missing or mismatched weights file, or a missing extra, is the user's input: exit 2
            emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
            return EXIT_INVALID
    if not bundle.trained:
        emit(ev.Note(message="no trained default weights are installed: rendering with a randomly initialised model (the film will be noise)"))
    device = options_device(req.device)
    placement = memory_placement(req, sp, plan, bundle, emit)
    if placement is None:
        return EXIT_INVALID
    quantize = "int8" if placement.weights == "int8" else "none"
    # the applied value is what the state manifest records (settings "quantize", weights id)
    sp = dataclasses.replace(sp, film=dataclasses.replace(sp.film, quantize=quantize))
    bundle.quantize(quantize, device)
    options = RenderOptions(
        output=output, state_dir=state_dir, overwrite=req.overwrite, split_shots=req.split_shots,
        device=req.device, history=placement.history, offload_history=placement.offload_history,
        hold_offloaded=placement.hold_active,
    )
    bundle.to(device, bundle_dtype(req.device))
    if req.compile:
        bundle.compile()
    director = Director(sp, plan, bundle, options, steps=req.steps)
    manifest, preface = prepare_state(director, req, fresh=req.fresh)
    checkpointer = Checkpointer(state_dir, manifest, policy)
    director.on_chunk = checkpointer.after_chunk
    resume = resume_command(state_dir)
    with stop_on_signals() as stop:
        try:
            for event in director.run(preface):
                if isinstance(event, ev.Finished):
                    emit(ev.Note(message=state_summary(state_dir, checkpointer.stats, director.session.seconds)))
                emit(event)
                if stop.requested and isinstance(event, ev.ChunkDone):
                    break
            else:
                return EXIT_OK
            checkpointer.flush()
        except KeyboardInterrupt:  # a second signal: the chunk in flight is abandoned
            checkpointer.flush()
        except Exception:
            if not stop.requested:  # a real failure: keep the finished chunks, then report it
                _flush_quietly(checkpointer)
                raise
            checkpointer.flush()  # e.g. ffmpeg killed by the terminal's SIGINT mid-chunk
        emit(ev.Interrupted(signal=stop.signal or "SIGINT", resume_command=resume, exit_code=stop.exit_code))
        return stop.exit_code


def prepare_state(director: "Director", req: RenderRequest, *, fresh: bool) -> tuple["StateManifest", list[ev.BaseEvent]]:
    """Settle the state folder before generating: the manifest to continue and the notes that say so.

    Nothing is written or deleted until the state to continue from has been read and verified,
    so a refusal (StateError) leaves the folder exactly as it was.
    """
    from cinecli.screenplay.timeline import shot_hashes
    from cinecli.state.manifest import manifest_file, read_manifest, write_manifest
    from cinecli.state.resume import (
        check_compatible, choose_point, clear_state, describe_point, first_changed_shot, first_dirty_chunk,
        load_session, remove_unlisted, rewound, shot_records,
    )

    opts, plan, sp = director.options, director.plan, director.sp
    state_dir = opts.state_dir
    fresh_manifest = new_manifest(director, req)
    notes: list[ev.BaseEvent] = []
    path = manifest_file(state_dir)
    if fresh:
        clear_state(state_dir)
    elif path.exists():
        old = read_manifest(path)
        check_compatible(old, dict(fresh_manifest.settings), path)
        shots = shot_records(plan, shot_hashes(sp))
        changed = first_changed_shot(old.shots, shots)
        point = choose_point(old, first_dirty_chunk(old, plan, changed), changed)
        manifest = rewound(old, point, screenplay=fresh_manifest.screenplay, screenplay_sha256=fresh_manifest.screenplay_sha256,
                           output=fresh_manifest.output, request=fresh_manifest.request, shots=shots,
                           frames=plan.frames, latents=len(plan.latents), chunks_total=plan.num_chunks,
                           cinecli_version=fresh_manifest.cinecli_version)
        session = _fresh_session(director)
        load_session(state_dir, manifest, point, session, director.device)  # verifies every file it reads
        write_manifest(state_dir, manifest)
        remove_unlisted(state_dir, manifest)
        director.restore(session)
        reused = [s.index for s in plan.shots if point.position.next_chunk > 0 and s.frame_end <= point.position.frames_done]
        if changed is not None and changed < len(plan.shots):
            shot = plan.shots[changed]
            lead = f"shot {changed + 1} '{shot.id}' differs from the render in {state_dir}: re-rendering from it"
        elif point.position.next_chunk > 0 and not old.complete:
            lead = f"found an unfinished render of this screenplay in {state_dir}: resuming it (pass --fresh to start over)"
        else:
            lead = f"reusing the render in {state_dir}"
        notes.append(ev.Note(message=f"{lead}; {describe_point(point, plan, reused)}"))
        return manifest, notes
    write_manifest(state_dir, fresh_manifest)
    remove_unlisted(state_dir, fresh_manifest)
    return fresh_manifest, notes


def new_manifest(director: "Director", req: RenderRequest) -> "StateManifest":
    """The manifest of this render before any chunk: screenplay, settings, shots, plan size."""
    import cinecli
    from cinecli.screenplay.timeline import shot_hashes
    from cinecli.state.manifest import StateManifest
    from cinecli.state.resume import shot_records
    from cinecli.state.settings import card_digest, frame_settings

    sp, plan, bundle, opts = director.sp, director.plan, director.bundle, director.options
    sampler = director.generator.sampler
    settings = frame_settings(
        sp, plan, model=bundle.card.name, weights_id=bundle.weights_id, card_sha256=card_digest(bundle.card),
        steps=sampler.steps, sampler=sampler.mode, history=opts.history, device=str(director.device),
        dtype=str(director.dtype).removeprefix("torch."), compiled=req.compile,
    )
    request = {"seed": req.seed, "policy": req.policy, "steps": req.steps, "history": req.history,
               "device": req.device, "split_shots": req.split_shots, "overwrite": req.overwrite,
               "quantize": req.quantize, "offload_history": req.offload_history, "max_vram": req.max_vram,
               "compile": req.compile}
    script = req.script.resolve()
    return StateManifest(
        screenplay=str(script), screenplay_sha256=sp.sha256, output=str(opts.output), request=request,
        settings=settings, shots=shot_records(plan, shot_hashes(sp)), frames=plan.frames, latents=len(plan.latents),
        chunks_total=plan.num_chunks, chunk_frames=plan.chunk_frames, cinecli_version=cinecli.__version__,
    )


def state_summary(state_dir: Path, stats: object, generation_seconds: float) -> str:
    """The Note before Finished: what the state folder costs on disk and in time."""
    from cinecli.state.inspect import folder_bytes

    size = folder_bytes(state_dir)
    secs = getattr(stats, "seconds", 0.0)
    share = secs / generation_seconds if generation_seconds > 0 else 0.0
    return (f"state {state_dir}: {size / 1e6:.1f} MB; {getattr(stats, 'writes', 0)} checkpoints took "
            f"{secs:.2f} s ({share:.1%} of generation time)")


def _fresh_session(director: "Director"):  # type: ignore[no-untyped-def]
    from cinecli.render.director import new_session

    return new_session(director.bundle, director.plan, director.options, director.device, director.dtype)


def _flush_quietly(checkpointer: object) -> None:
    try:
        checkpointer.flush()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the original failure is the one to report
        pass


def stamped(emit: Callable[[ev.BaseEvent], None]) -> Callable[[ev.BaseEvent], None]:
    """Events carry `t`, seconds since the render started, so a farm log can be timed."""
    import time

    start = time.monotonic()

    def emit_with_time(event: ev.BaseEvent) -> None:
        emit(dataclasses.replace(event, t=round(time.monotonic() - start, 3)))

    return emit_with_time


def options_device(device: str):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return dev


def bundle_dtype(device: str):
    """float32 on CPU (bf16 matmuls are slow on most CPUs), bf16 on GPUs."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def film_shape(sp: Screenplay, plan: Plan, bundle: "ModelBundle", working_bytes: int):  # type: ignore[no-untyped-def]
    """What the VRAM planner needs to know about this render, read off the plan and the model."""
    from cinecli.memory.budget import WAN_VAE_DECODER, FilmShape
    from cinecli.model.text import WordTextEncoder
    from cinecli.render.director import chunk_request, policy_for

    _, h, w = bundle.latent_shape(plan.width, plan.height)
    prompt_sets = {chunk_request(plan, c)[1] for c in range(plan.num_chunks)}
    ae = bundle.autoencoder
    ae_cfg = getattr(ae, "config", None)
    if ae_cfg is not None and hasattr(ae_cfg, "dec_channels"):  # the default autoencoder: pixel-shuffle levels at strides 8, 4, 2
        c0, c1, c2 = ae_cfg.dec_channels
        per_pixel = max(c0 / 64, 4 * c1 / 64, 4 * c2 / 16, 12 / 4)
        dec_params = sum(p.numel() for p in ae.decoder.parameters())
    else:  # the Wan VAE (96 channels at full resolution)
        dec_params = sum(p.numel() for p in getattr(ae, "decoder", ae).parameters()) or WAN_VAE_DECODER[0]
        per_pixel = WAN_VAE_DECODER[1]
    text = bundle.text_encoder
    text_bytes = sum(p.numel() for p in text.parameters()) * working_bytes if isinstance(text, WordTextEncoder) else 0
    return FilmShape(
        config=bundle.config, latent_height=h, latent_width=w, chunk_frames=plan.chunk_frames,
        film_latents=len(plan.latents), active_budget=policy_for(sp).budget(plan.chunk_frames),
        video_width=plan.width, video_height=plan.height, temporal_stride=bundle.card.temporal_stride,
        prompt_sets=max(len(prompt_sets), 1), prompts_per_chunk=max((len(p) for p in prompt_sets), default=1),
        decoder_params=dec_params, decoder_channels_per_pixel=per_pixel, text_encoder_bytes=text_bytes,
        working_bytes=working_bytes,
    )


def memory_placement(req: RenderRequest, sp: Screenplay, plan: Plan, bundle: "ModelBundle",
                     emit: Callable[[ev.BaseEvent], None]):  # type: ignore[no-untyped-def]
    """The weights/history settings to render with: as asked, or the planner's pick under --max-vram.

    Returns None after emitting an error (exit 2) when nothing fits: nothing is rendered.
    """
    from cinecli.memory.budget import BudgetError, Placement, choose, format_bytes, table

    asked = Placement(weights="int8" if sp.film.quantize == "int8" else "bf16",  # type: ignore[arg-type]
                      history=req.history, offload_history=req.offload_history)  # type: ignore[arg-type]
    if req.max_vram is None:
        return asked
    try:
        chosen, tried = choose(film_shape(sp, plan, bundle, 2), asked, req.max_vram)
    except BudgetError as err:
        emit(ev.Error(message=str(err), exit_code=EXIT_INVALID))
        return None
    changed = "" if chosen.placement == asked else f" (asked for {asked.label()})"
    emit(ev.Note(message=f"--max-vram {format_bytes(req.max_vram)}: estimated peak {format_bytes(chosen.total)} "
                         f"with {chosen.placement.label()}{changed}\n{table(list(tried), req.max_vram)}"))
    return chosen.placement
