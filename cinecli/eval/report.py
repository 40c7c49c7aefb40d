"""`evaluate`: score a film against its plan (and its world truth when known), and write
the report folder (eval.json, metrics-over-time plot, contact sheet, report.md)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cinecli.eval.cuts import CutScore, cut_score, detect_cuts
from cinecli.eval.detectors import Detectors, load_detectors
from cinecli.eval.measure import Measures, measure
from cinecli.eval.metrics import (Part, ReturnScore, Segment, Series, drift_distances,
                                  drift_score, edge_means, inter_shot, intra_shot, returns_of,
                                  shot_alignment, windowed, within_shot_pairs)
from cinecli.eval.prompts import parse_prompt
from cinecli.eval.signals import Signals, compute_signals
from cinecli.screenplay import Plan
from cinecli.world.spec import FilmSpec

METRICS: tuple[tuple[str, str], ...] = (
    ("sca", "shot cut accuracy"), ("alignment", "text alignment"),
    ("intra", "intra-shot consistency"), ("inter", "inter-shot consistency"),
    ("motion", "motion (mean abs frame diff)"), ("motion_ratio", "motion last/first 20 s"),
    ("motion_vs_truth", "motion / truth motion"), ("drift", "drift (1 = none)"),
)


@dataclass(frozen=True)
class ShotReport:
    """Per-shot scores; None where a metric has nothing to check in the shot."""

    index: int
    id: str
    cut: str
    frame_start: int
    frame_end: int
    alignment: float | None
    parts: tuple[Part, ...]
    intra: float | None
    motion: float | None


@dataclass(frozen=True)
class EvalReport:
    """All scores of one film. Scalars in [0, 1] where 1 is best, except `motion` (mean
    absolute within-shot frame difference, 0-255) and the motion ratios; None = not
    measurable for this film (e.g. no returns, no truth)."""

    frames: int
    fps: int
    width: int
    height: int
    has_truth: bool
    sca: float
    nsd: float
    cuts: CutScore
    alignment: float | None
    intra: float | None
    inter: float | None
    inter_scene: float | None
    inter_character: float | None
    motion: float
    motion_ratio: float | None
    motion_vs_truth: float | None
    drift: float
    drift_colour: float
    drift_sharpness: float
    shots: tuple[ShotReport, ...]
    returns: tuple[ReturnScore, ...]
    series: tuple[Series, ...]

    def scalars(self) -> dict[str, float | None]:
        """The headline metrics by key (see METRICS)."""
        return {k: getattr(self, k) for k, _ in METRICS}


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _segments(plan: Plan, shot: int) -> list[Segment]:
    """A shot's frames split where its prompt changes."""
    sp = plan.shots[shot]
    changes = plan.prompt_changes(shot)
    starts = [max(sp.frame_start, plan.grid.frame_start(lat)) for lat, _ in changes]
    ends = starts[1:] + [sp.frame_end]
    return [Segment(a, b, plan.prompts[p]) for (_, p), a, b in zip(changes, starts, ends) if b > a]


def plan_cut_score(sig: Signals, plan: Plan) -> CutScore:
    """The film's detected hard cuts against the plan's: a cut may land up to a latent frame or
    half a second from where the plan put it."""
    scripted = tuple(s.frame_start for s in plan.shots[1:] if s.cut == "cut")
    tolerance = max(plan.grid.stride, plan.fps // 2)
    return cut_score(scripted, detect_cuts(sig.diff, sig.hist_dist), plan.frames, len(plan.shots), tolerance)


def truth_appearances(truth: FilmSpec) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The shots each setting and each character of a world film appears in, by the world's own
    ids: which appearances are one scene or one character is known, not guessed from prompts."""
    scenes: dict[str, list[int]] = {}
    chars: dict[str, list[int]] = {}
    for i, shot in enumerate(truth.shots):
        scenes.setdefault(shot.setting_id, []).append(i)
        for cid in shot.cast:
            chars.setdefault(cid, []).append(i)
    return scenes, chars


def returning_shots(truth: FilmSpec) -> frozenset[int]:
    """The shots `evaluate` scores as returns of a world film (a setting or character seen
    before, after at least one other shot): what a memory test must generate."""
    return frozenset(j for group in truth_appearances(truth) for _, _, j in returns_of(group))


def _groups_from_truth(truth: FilmSpec, colours: tuple[str, ...]) -> tuple[dict, dict, dict]:
    scenes, chars = truth_appearances(truth)
    colour_of = {c.id: colours.index(c.colour_name) for c in truth.characters}
    return scenes, chars, colour_of


def _groups_from_prompts(plan: Plan, colours: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """Scenes by the setting words of each shot (a continued take inherits its shot's
    place); characters by the colours named by look."""
    scenes: dict[str, list[int]] = {}
    chars: dict[str, list[int]] = {}
    place: str | None = None
    for i, sp in enumerate(plan.shots):
        refs = [parse_prompt(plan.prompts[p]) for p in sp.prompts]
        named = next((r.setting for r in refs if r.setting), None)
        place = named or (place if sp.cut == "continue" else None)
        if place:
            scenes.setdefault(place, []).append(i)
        for r in refs:
            for look in r.looks:
                chars.setdefault(look.colour, []).append(i)
    return scenes, chars, {c: colours.index(c) for c in colours}


def _check(frames: np.ndarray, plan: Plan, truth: FilmSpec | None) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[0] != plan.frames:
        raise ValueError(f"the film has {frames.shape[0]} frames but the screenplay plans {plan.frames}")
    if truth is not None and (truth.total_frames != plan.frames
                              or (truth.height, truth.width) != frames.shape[1:3]):
        raise ValueError("the ground-truth film does not match the film's length or size")


def evaluate(frames: np.ndarray, plan: Plan, *, truth: FilmSpec | None = None,
             detectors: Detectors | None = None) -> EvalReport:
    """Score a rendered film (uint8 [T, H, W, 3]) against the plan of its screenplay.

    With `truth` (the world FilmSpec the screenplay came from), returns are grouped by the
    true scenes and characters, and consistency, motion and drift are measured relative to
    the truth's own rendering, so a perfect film scores the same whatever it shows."""
    _check(frames, plan, truth)
    det = detectors or load_detectors()
    fps = plan.fps
    bounds = [(s.frame_start, s.frame_end) for s in plan.shots]
    sig = compute_signals(frames)
    m = measure(det, frames, bounds)
    gt_sig: Signals | None = None
    gt_m: Measures | None = None
    if truth is not None:
        from cinecli.world.render import render_frames

        gt = render_frames(truth, 0, truth.total_frames)
        gt_sig, gt_m = compute_signals(gt), measure(det, gt, bounds)

    cuts = plan_cut_score(sig, plan)
    detected = cuts.detected

    boundaries = {s.frame_start for s in plan.shots[1:]} | set(detected)
    inside = within_shot_pairs(plan.frames, boundaries)
    shots: list[ShotReport] = []
    for i, sp in enumerate(plan.shots):
        align, parts = shot_alignment(m, _segments(plan, i))
        a, b = sp.frame_start, sp.frame_end
        mv = sig.diff[a:b][inside[a:b]]
        shots.append(ShotReport(i, sp.id, sp.cut, a, b, align, parts, intra_shot(sig, m, a, b),
                                float(mv.mean()) if len(mv) else None))

    if truth is not None:
        scenes, chars, colour_of = _groups_from_truth(truth, m.colours)
    else:
        scenes, chars, colour_of = _groups_from_prompts(plan, m.colours)
    returns = inter_shot(m, bounds, scenes, chars, colour_of, gt_m)

    motion = sig.diff.astype(np.float64)
    head, tail = edge_means(motion, inside, fps)
    motion_mean = float(motion[inside].mean()) if inside.any() else 0.0
    vs_truth = None
    if gt_sig is not None:
        gt_motion = float(gt_sig.diff[inside].mean()) if inside.any() else 0.0
        vs_truth = motion_mean / gt_motion if gt_motion > 0 else None
    if gt_sig is not None:
        ref_rgb, ref_sharp = gt_sig.mean_rgb.astype(np.float64), gt_sig.sharpness.astype(np.float64)
    else:
        ref_rgb, ref_sharp = _scene_reference(sig, bounds, scenes)
    colour_d, sharp_d = drift_distances(sig, ref_rgb, ref_sharp)
    drift, drift_c, drift_s = drift_score(colour_d, sharp_d, fps)

    every = np.ones(plan.frames, bool)
    series = tuple(Series(name, tuple(float(x) for x in xs), tuple(float(y) for y in ys))
                   for name, (xs, ys) in (("motion", windowed(motion, inside, fps)),
                                          ("colour distance", windowed(colour_d, every, fps)),
                                          ("log sharpness ratio", windowed(sharp_d, every, fps))))
    scene_scores = [r.score for r in returns if r.kind == "scene"]
    char_scores = [r.score for r in returns if r.kind == "character"]
    return EvalReport(
        frames=plan.frames, fps=fps, width=frames.shape[2], height=frames.shape[1],
        has_truth=truth is not None, sca=cuts.sca, nsd=cuts.nsd, cuts=cuts,
        alignment=_mean([s.alignment for s in shots]), intra=_mean([s.intra for s in shots]),
        inter=_mean(scene_scores + char_scores), inter_scene=_mean(scene_scores),
        inter_character=_mean(char_scores), motion=motion_mean,
        motion_ratio=(tail / head) if head > 0 and math.isfinite(tail) else None,
        motion_vs_truth=vs_truth, drift=drift, drift_colour=drift_c, drift_sharpness=drift_s,
        shots=tuple(shots), returns=returns, series=series)


def _scene_reference(sig: Signals, bounds: list[tuple[int, int]],
                     scenes: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Without truth, each frame's reference is the mean of the first shot of its scene
    (itself for a first appearance, and for shots of no known scene)."""
    ref_rgb = sig.mean_rgb.astype(np.float64).copy()
    ref_sharp = sig.sharpness.astype(np.float64).copy()
    for shots in scenes.values():
        a0, b0 = bounds[shots[0]]
        rgb0 = sig.mean_rgb[a0:b0].astype(np.float64).mean(axis=0)
        sharp0 = float(sig.sharpness[a0:b0].astype(np.float64).mean())
        for i in shots[1:]:
            a, b = bounds[i]
            ref_rgb[a:b] = rgb0
            ref_sharp[a:b] = sharp0
    return ref_rgb, ref_sharp


# ------------------------------------------------------------------------------ output


def _clean(value: object) -> object:
    """JSON-safe: NaN and infinities become null, floats are rounded, tuples become lists."""
    if isinstance(value, float):
        return round(value, 5) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def report_json(report: EvalReport) -> dict:
    """The report as plain JSON types: headline metrics first, then details."""
    body = asdict(report)
    return _clean({"metrics": report.scalars(), **body})  # type: ignore[return-value]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def markdown(report: EvalReport) -> str:
    """A short human summary of the report."""
    lines = ["# Film evaluation", "",
             f"{report.frames} frames, {report.frames / report.fps:.1f} s at {report.fps} fps, "
             f"{report.width}x{report.height}; ground truth: {'yes' if report.has_truth else 'no'}.",
             "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {_fmt(report.scalars()[key])} |" for key, label in METRICS]
    c = report.cuts
    lines += ["", f"Cuts: {len(c.scripted)} scripted, {len(c.detected)} detected, "
                  f"{len(c.matched)} matched, {len(c.missed)} missed {list(c.missed)}, "
                  f"{len(c.extra)} extra {list(c.extra)}; NSD {c.nsd:.4f}.", "",
              "| shot | frames | alignment | intra | motion | weakest claim |", "|---|---|---|---|---|---|"]
    for s in report.shots:
        weak = min(s.parts, key=lambda p: p.score) if s.parts else None
        claim = f"{weak.what} {weak.score:.2f}" if weak else ""
        lines.append(f"| {s.id} | {s.frame_start}-{s.frame_end} | {_fmt(s.alignment)} | "
                     f"{_fmt(s.intra)} | {_fmt(s.motion)} | {claim} |")
    if report.returns:
        lines += ["", "| return | first shot | shot | distance | score |", "|---|---|---|---|---|"]
        lines += [f"| {r.kind} {r.entity} | {r.first_shot + 1} | {r.shot + 1} | {_fmt(r.distance)} | "
                  f"{_fmt(r.score)} |" for r in report.returns]
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out_dir: Path, frames: np.ndarray,
                 prompts: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write eval.json, metrics.png (metrics over time), contact.png and report.md."""
    from cinecli.render.plots import line_plot
    from cinecli.render.sheet import sheet_from_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "eval.json", "plot": out_dir / "metrics.png",
             "sheet": out_dir / "contact.png", "markdown": out_dir / "report.md"}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report_json(report), indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(paths["json"])
    series = {s.name: [(x, y) for x, y in zip(s.seconds, s.values) if math.isfinite(y)]
              for s in report.series}
    line_plot({k: v for k, v in series.items() if v}, title="metrics over time (2 s windows)",
              xlabel="seconds", ylabel="value", path=paths["plot"])
    labels = prompts or tuple("" for _ in report.shots)
    shots = [(s.id, label, s.frame_start, s.frame_end) for s, label in zip(report.shots, labels)
             if s.frame_end > s.frame_start]
    sheet_from_video(frames, shots).save(paths["sheet"])
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    return paths
