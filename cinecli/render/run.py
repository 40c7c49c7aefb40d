"""One render from a screenplay file: validate, plan, load the model, direct, report.

This is the layer the CLI calls; it owns the render's exit code. Everything that can be checked
without a model is checked first, so bad input costs no model load and writes nothing.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cinecli.render import events as ev
from cinecli.screenplay import ScreenplayError, load_screenplay_resolving, plan_film, vocabulary_warnings
from cinecli.screenplay.schema import Screenplay

EXIT_OK, EXIT_FAILURE, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    return dataclasses.replace(sp, film=film)


def render_script(req: RenderRequest, emit: Callable[[ev.BaseEvent], None]) -> int:
    """Render `req.script`; every outcome is reported through `emit` and the exit code returned."""
    from cinecli.model.formats import film_format

    emit = stamped(emit)

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
        from cinecli.model.bundle import load_model
        from cinecli.render.director import Director, RenderOptions

        bundle = load_model(sp.film.model, req.script.parent)
        if not bundle.trained:
            emit(ev.Note(message="no trained default weights are installed: rendering with a randomly initialised model (the film will be noise)"))
        options = RenderOptions(
            output=output, state_dir=state_dir, overwrite=req.overwrite, split_shots=req.split_shots,
            device=req.device, history=req.history,
        )
        bundle.to(options_device(req.device), bundle_dtype(req.device))
        director = Director(sp, plan, bundle, options, steps=req.steps)
        for event in director.run():
            emit(event)
    except KeyboardInterrupt:
        emit(ev.Interrupted(signal="SIGINT", resume_command=f"cinecli render {req.script}", exit_code=EXIT_INTERRUPTED))
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - every failure becomes a reported exit code 1
        emit(ev.Error(message=f"render failed: {err}\n{traceback.format_exc(limit=3)}", exit_code=EXIT_FAILURE))
        return EXIT_FAILURE
    return EXIT_OK


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
