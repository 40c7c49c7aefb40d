"""The training log as a picture: loss against step, one line per phase.

Every stage appends JSON lines to `log.jsonl` (machine-readable, resumable); a person judging
whether a run is still learning would rather look at the curve than read hundreds of numbers,
so each stage draws `loss.png` beside its log when it ends (resumed runs included: the plot
covers the whole log).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cinecli.render.plots import line_plot


def loss_series(lines: list[str]) -> dict[str, list[tuple[float, float]]]:
    """(step, loss) points per phase ("loss" where a stage has one phase); unreadable lines skipped.

    A distribution-matching step also logs its critic's loss, drawn as its own line ("critic"):
    the student's loss there stays near constant by construction, and the critic's tells
    whether it keeps up with the student's draws.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        try:
            rec = json.loads(line)
            point = (float(rec["step"]), float(rec["loss"]))
        except (ValueError, KeyError, TypeError):
            continue
        if all(math.isfinite(v) for v in point):
            series.setdefault(str(rec.get("phase", "loss")), []).append(point)
        critic = rec.get("critic")
        if isinstance(critic, (int, float)) and math.isfinite(critic):
            series.setdefault("critic", []).append((point[0], float(critic)))
    return series


def plot_log(log_path: Path, png: Path, title: str) -> Path | None:
    """Draw the log's loss curve into `png`; None when the log holds no loss yet."""
    series = loss_series(log_path.read_text(encoding="utf-8").splitlines()) if log_path.exists() else {}
    if not series:
        return None
    return line_plot(series, title=title, xlabel="step", ylabel="loss", path=png)
