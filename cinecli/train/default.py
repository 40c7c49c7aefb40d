"""Train the shipped default model end to end: autoencoder → base model → 4-step student.

One command, with a wall-clock budget split between the stages, so the whole recipe fits one
call on a lent GPU; the result is a folder laid out like `cinecli/weights/default/`.

    python -m cinecli.train.default OUT --minutes 9
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from cinecli.model.card import ModelCard, default_card
from cinecli.train.autoencoder import load_train_config, train_autoencoder
from cinecli.train.base import BaseTrainConfig, train_base
from cinecli.train.config import load_yaml_config
from cinecli.train.distill import DistillConfig, train_distill

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"
SHARES = {"autoencoder": 0.27, "base": 0.48, "distill": 0.25}  # of the budget, measured to fit one call


def run(out: Path, minutes: float, configs: Path = CONFIGS, autoencoder: Path | None = None, init_base: Path | None = None,
        base_config: Path | None = None, distill_config: Path | None = None) -> Path:
    """Train all three stages into `out/` and assemble `out/default/`; returns that folder.

    With `autoencoder` given, stage 1 is skipped and its budget goes to the other two stages.
    With `init_base` given, the base model continues from those weights (more training in total
    than one call allows), and the student is distilled afresh from the result. `base_config`
    and `distill_config` replace `configs/base.yaml` and `configs/distill.yaml`.
    """
    log = lambda rec: print(json.dumps(rec), flush=True)  # noqa: E731 - one-line logger
    timings: dict[str, float] = {}
    t = time.time()
    if autoencoder is None:
        ae_cfg = dataclasses.replace(load_train_config(configs / "autoencoder.yaml"), max_minutes=minutes * SHARES["autoencoder"])
        ae_path = train_autoencoder(ae_cfg, out_dir=out / "ae", log=log)
    else:
        ae_path = autoencoder
        minutes = minutes / (1 - SHARES["autoencoder"])
    timings["autoencoder"] = time.time() - t
    t = time.time()
    base_cfg = dataclasses.replace(load_yaml_config(base_config or configs / "base.yaml", BaseTrainConfig), autoencoder=str(ae_path), max_minutes=minutes * SHARES["base"])
    if init_base is not None:
        base_cfg = dataclasses.replace(base_cfg, init=str(init_base))
    base_path = train_base(base_cfg, out / "base", log=log)
    timings["base"] = time.time() - t
    t = time.time()
    d_cfg = dataclasses.replace(load_yaml_config(distill_config or configs / "distill.yaml", DistillConfig), autoencoder=str(ae_path), teacher=str(base_path), max_minutes=minutes * SHARES["distill"])
    student_path = train_distill(d_cfg, out / "distill", log=log)
    timings["distill"] = time.time() - t
    final = out / "default"
    final.mkdir(parents=True, exist_ok=True)
    if Path(ae_path).resolve() != (final / "autoencoder.safetensors").resolve():
        shutil.copy(ae_path, final / "autoencoder.safetensors")
    shutil.copy(base_path, final / "base.safetensors")
    shutil.copy(student_path, final / "student.safetensors")
    card: ModelCard = default_card()
    card.write(final / "model.json")
    (final / "training.json").write_text(json.dumps({"seconds": timings, "budget_minutes": minutes}, indent=2) + "\n")
    log({"done": str(final), "seconds": timings})
    return final


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="train the default model: autoencoder, base, distilled student")
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget for all three stages")
    ap.add_argument("--autoencoder", type=Path, default=None, help="reuse a trained autoencoder (skip stage 1)")
    ap.add_argument("--init-base", type=Path, default=None, help="continue the base model from these weights")
    ap.add_argument("--base-config", type=Path, default=None, help="base stage config (default: configs/train/base.yaml)")
    ap.add_argument("--distill-config", type=Path, default=None, help="distillation config (default: configs/train/distill.yaml)")
    args = ap.parse_args(argv)
    run(args.out, args.minutes, autoencoder=args.autoencoder, init_base=args.init_base,
        base_config=args.base_config, distill_config=args.distill_config)


if __name__ == "__main__":
    main()
