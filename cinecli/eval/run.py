"""`cinecli eval` behind the command line: load and check the inputs, evaluate, and say
clearly what is wrong with bad inputs (the CLI turns EvalInputError into exit code 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinecli.eval.report import METRICS, EvalReport, evaluate
from cinecli.eval.world import world_film_for
from cinecli.screenplay import Plan, ScreenplayError, load_screenplay_resolving, plan_film


class EvalInputError(ValueError):
    """The film or the screenplay cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class EvalRun:
    """An evaluated film with what it was evaluated against."""

    report: EvalReport
    frames: np.ndarray
    plan: Plan
    world_seed: int | None


def load_plan(script: Path) -> tuple[Plan, object]:
    """Plan the screenplay against its model's format; problems become EvalInputError."""
    from cinecli.model.formats import film_format

    try:
        sp, fmt = load_screenplay_resolving(Path(script), film_format)
        return plan_film(sp, fmt), sp
    except ScreenplayError as exc:
        lines = "\n".join(str(p) for p in exc.problems)
        raise EvalInputError(f"the screenplay {script} is invalid:\n{lines}") from None
    except OSError as exc:
        raise EvalInputError(f"cannot read the screenplay {script}: {exc.strerror or exc}") from None


def load_film(path: Path) -> np.ndarray:
    """Decode a video; a missing or undecodable file becomes EvalInputError."""
    from cinecli.render.segments import read_video

    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"no film at {path}")
    try:
        frames = read_video(path)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        raise EvalInputError(f"cannot decode {path} as a video: {exc}") from None
    if len(frames) == 0:
        raise EvalInputError(f"{path} holds no frames")
    return frames


def run_eval(film: Path, script: Path) -> EvalRun:
    """Evaluate FILM against SCRIPT (with the world truth when SCRIPT is a world export)."""
    plan, sp = load_plan(script)
    frames = load_film(film)
    if frames.shape[0] != plan.frames:
        raise EvalInputError(f"{film} has {frames.shape[0]} frames but {script} plans "
                             f"{plan.frames} ({plan.seconds:.2f} s at {plan.fps} fps)")
    if frames.shape[1:3] != (plan.height, plan.width):
        raise EvalInputError(f"{film} is {frames.shape[2]}x{frames.shape[1]} but {script} asks "
                             f"for {plan.width}x{plan.height}")
    truth = world_film_for(sp)  # type: ignore[arg-type]
    report = evaluate(frames, plan, truth=truth)
    return EvalRun(report=report, frames=frames, plan=plan,
                   world_seed=truth.seed if truth is not None else None)


def metric_rows(report: EvalReport) -> list[tuple[str, str, str]]:
    """(key, description, value text) per headline metric, for tables."""
    values = report.scalars()
    return [(key, label, "n/a" if values[key] is None else f"{values[key]:.3f}")
            for key, label in METRICS]
