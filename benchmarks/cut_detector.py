"""How well `cinecli.eval` finds scripted cuts, on world films the benchmark never uses.

    python benchmarks/cut_detector.py --films 45 --json runs/cut_detector.json

SCA counts a scripted cut the detector misses as a cut the film failed to make, so the detector
has to find every cut that is really there, also in a decoder's slightly wobbling frames. Each
film here (seeds from 7,400,000, 20, 30 or 40 s in turn) is scored twice: the world's own frames
(every scripted cut is there, hard) and the same frames encoded and decoded by the shipped
autoencoder (every cut is still there, drawn through the decoder every generated film goes
through). Missed cuts are the detector's fault in both; invented cuts are its fault on the
world's own frames and may be the decoder's on the round trip (a jump between latent frames).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from default_model import round_trip  # the benchmark's own round trip, run as a script from benchmarks/

from cinecli.eval.report import plan_cut_score
from cinecli.eval.signals import compute_signals
from cinecli.eval.world import plan_for_film
from cinecli.model.bundle import load_default
from cinecli.screenplay import Plan
from cinecli.world.render import render_frames
from cinecli.world.spec import sample_film

FIRST_SEED = 7_400_000
DURATIONS = (20.0, 30.0, 40.0)


def film_counts(frames: np.ndarray, plan: Plan) -> dict:
    """Scripted, missed and invented cuts of one film's frames, with where each went wrong."""
    cuts = plan_cut_score(compute_signals(frames), plan)
    return {"scripted": len(cuts.scripted), "missed": list(cuts.missed), "invented": list(cuts.extra)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--films", type=int, default=45)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    autoencoder = load_default("student").autoencoder
    sources = ("world frames", "through the autoencoder")
    per_film: list[dict] = []
    for i in range(args.films):
        film = sample_film(FIRST_SEED + i, duration_s=DURATIONS[i % len(DURATIONS)])
        plan = plan_for_film(film)
        frames = render_frames(film, 0, film.total_frames)
        got = {"seed": film.seed, "frames": film.total_frames}
        for source, x in zip(sources, (frames, round_trip(autoencoder, frames))):
            got[source] = film_counts(x, plan)
        per_film.append(got)
        print(json.dumps(got), flush=True)
    lines = ["| frames | films | scripted cuts | missed | invented |", "|---|---|---|---|---|"]
    for source in sources:
        scripted = sum(f[source]["scripted"] for f in per_film)
        missed, invented = (sum(len(f[source][k]) for f in per_film) for k in ("missed", "invented"))
        lines.append(f"| {source} | {len(per_film)} | {scripted} | {missed} | {invented} |")
    print("\n".join(lines))
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"films": per_film}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
