"""The judge against itself: ground-truth world films, and the same films damaged in one
way each, scored by every metric. Each damage should lower its own metric and leave the
others near the ground truth's.

    python benchmarks/eval_damage.py                 # 5 benchmark films, writes docs/EVAL.md
    python benchmarks/eval_damage.py --films 3 --no-write

Films are the first short benchmark films with returns (16-20 s, 192x128, 12 fps), rendered
straight from the world (no codec). The table shows the mean over films per row.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from cinecli.eval import damage
from cinecli.eval.detectors import load_detectors
from cinecli.eval.report import METRICS, EvalReport, evaluate
from cinecli.eval.world import plan_for_film
from cinecli.world.benchmark import benchmark_films, film_returns
from cinecli.world.render import render_frames

DAMAGES = ("ground truth", "frozen second half", "shots shuffled", "cuts dissolved",
           "recoloured returns", "swapped screenplay", "colour drift", "flicker")
COLUMNS = ("sca", "alignment", "intra", "inter", "motion", "motion_ratio", "motion_vs_truth", "drift")


def damaged_reports(index: int, films: list, det) -> dict[str, EvalReport]:  # type: ignore[no-untyped-def]
    """Every damage of one film, scored with the film's truth."""
    film = films[index]
    other = films[(index + 1) % len(films)]
    frames = render_frames(film, 0, film.total_frames)
    plan = plan_for_film(film)
    wrong_plan = plan_for_film(damage.swap_prompts(film, other))
    cases = {
        "ground truth": (frames, plan),
        "frozen second half": (damage.freeze_second_half(frames, plan), plan),
        "shots shuffled": (damage.shuffle_shots(frames, plan, seed=index), plan),
        "cuts dissolved": (damage.dissolve_cuts(frames, plan), plan),
        "recoloured returns": (damage.recolour_returns(film, frames), plan),
        "swapped screenplay": (frames, wrong_plan),
        "colour drift": (damage.colour_drift(frames), plan),
        "flicker": (damage.flicker(frames, seed=index), plan),
    }
    return {name: evaluate(f, p, truth=film, detectors=det) for name, (f, p) in cases.items()}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def table(rows: dict[str, dict[str, float | None]]) -> str:
    labels = dict(METRICS)
    head = "| film | " + " | ".join(labels[c] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, values in rows.items():
        cells = ["n/a" if values[c] is None else f"{values[c]:.3f}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--films", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/EVAL.md alone")
    args = parser.parse_args()
    t0 = time.perf_counter()
    films = [f for f in benchmark_films() if f.total_frames <= 20 * 12 and film_returns(f)][:args.films]
    det = load_detectors()
    per_film = [damaged_reports(i, films, det) for i in range(len(films))]
    rows = {name: {c: _mean([r[name].scalars()[c] for r in per_film]) for c in COLUMNS}
            for name in DAMAGES}
    text = table(rows)
    print(text)
    seconds = time.perf_counter() - t0
    print(f"\n{len(films)} films (seeds {', '.join(str(f.seed) for f in films)}), {seconds:.0f} s")
    if not args.no_write:
        path = Path(__file__).resolve().parents[1] / "docs" / "EVAL.md"
        path.write_text(_doc(text, films), encoding="utf-8")
        print(f"wrote {path}")


def _doc(text: str, films: list) -> str:  # type: ignore[no-untyped-def]
    return f"""# The judge: metrics and how they fail

`cinecli eval FILM.mp4 --script SCRIPT.yaml` scores a film against its screenplay
(`cinecli/eval`). Definitions are in the module docstrings; in short:

* **sca** — hard cuts are detected from two changes of each frame pair: the colour histogram
  (soft-binned, so a decoder's colour wobble of a level or two moves it little) and the
  4×4-block pixel difference, each as a ratio to the median of the 6 frame pairs on each side;
  a pair is a cut when the product of the two ratios is large (a cut between two views of one
  setting changes pixels far more than colours). Detected cuts are matched one-to-one to
  scripted cuts within max(latent stride, fps/2) frames; NSD = (sum of matched frame errors +
  mean shot length × (missed + extra)) / frames; SCA = exp(−NSD). How many cuts the detector
  finds on films the benchmark never uses: `benchmarks/cut_detector.py`, in
  `docs/BENCHMARKS.md`.
* **alignment** — per prompt segment, the mean of its checkable claims: setting kind
  (classifier probability of the named kind over the top one), each character named by look
  (its colour present in ≥ 30% of frames), role references (some character present), framing
  (tallest character ≥ 0.30 of frame height for close-ups, ≤ 0.45 for wide shots);
  frame-weighted per shot, averaged over shots. White looks are not checked.
* **intra** — per shot, exp(−excess/τ) of the colour-histogram second difference (allowance
  0.03, τ 0.04, on 4×4-block thumbnails) times the same for characters. mean colour steps
  (allowance 2.5, τ 4 RGB).
* **inter** — each return of a scene or character (after ≥ 1 other shot) against its first
  appearance: background colour histogram (scene) or the character's mean colour (exact hue
  and light); with truth the change is taken relative to the truth's change; score
  exp(−max(0, d − allowance)/τ): allowance 0.03, τ 0.12 (half-L1 histogram); allowance 4, τ 12 (RGB).
* **motion** — mean absolute frame difference of 4×4-block thumbnails within shots (cuts
  excluded); **motion_ratio** last 20 s over first 20 s (half the film when shorter);
  **motion_vs_truth** over the ground truth's motion.
* **drift** — per frame, |mean RGB − reference| and |log Laplacian-variance ratio| against
  the ground truth (or, without truth, the first shot of the same scene); growth = last-20-s
  minus first-20-s mean; score exp(−(colour/8 + sharpness/0.5)).

## Damage table

Mean over {len(films)} benchmark films (seeds {', '.join(str(f.seed) for f in films)}), each
rendered from the world and damaged in one way, scored with its ground truth:

{text}

Produced by `python benchmarks/eval_damage.py`.
"""


if __name__ == "__main__":
    main()
