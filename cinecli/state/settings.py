"""What, besides the shots themselves, decides a render's frames.

A checkpoint is only a valid prefix of a film rendered with exactly the same model, weights and
frame-changing settings. These are recorded in the state manifest and compared before any
resume; a mismatch is refused with the differing values named, never papered over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any, Mapping

from cinecli.screenplay.schema import Screenplay
from cinecli.screenplay.timeline import Plan

__all__ = ["frame_settings", "settings_diff", "card_digest"]


def card_digest(card: object) -> str:
    """sha256 of a model card (preset, sampler, strides, chunk size, vocabulary ...)."""
    text = json.dumps(asdict(card), sort_keys=True, ensure_ascii=False, default=list)  # type: ignore[call-overload]
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def frame_settings(sp: Screenplay, plan: Plan, *, model: str, weights_id: str, card_sha256: str, steps: int,
                   sampler: str, history: str, device: str, dtype: str, compiled: bool = False) -> dict[str, Any]:
    """The settings a render's frames depend on, as plain JSON values (order is presentation only).

    `compiled` is in: compiled kernels fuse and reorder float arithmetic, so their frames differ
    from eager ones in the last bits, and a resumed film must be byte-identical.
    Left out on purpose: the output path, --split-shots and --offload (they change no pixel), and
    the torch version (recorded in the film manifest; refusing on it would strand every state
    folder at each upgrade).
    """
    film = sp.film
    return {
        "model": model,
        "weights_id": weights_id,
        "card_sha256": card_sha256,
        "resolution": f"{plan.width}x{plan.height}",
        "fps": plan.fps,
        "seed": film.seed,
        "memory_policy": film.memory.policy,
        "memory_recent_chunks": film.memory.recent_chunks,
        "memory_top_k": film.memory.top_k,
        "memory_sink_frames": film.memory.sink_frames,
        **({"memory_shot_window": True} if film.memory.shot_window else {}),  # only when on, as `compiled`
        "quantize": film.quantize,
        "steps": steps,
        "sampler": sampler,
        **({"guidance": film.guidance} if film.guidance is not None else {}),  # only when set, so earlier states still match
        **({"cut_guidance": film.cut_guidance} if film.cut_guidance is not None else {}),  # likewise
        "chunk_frames": plan.chunk_frames,
        "history": history,
        "device_type": device.split(":")[0],
        "dtype": dtype,
        # only when on, so states of eager renders (and of versions before --compile) still match
        **({"compiled": True} if compiled else {}),
    }


def settings_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """'name: state X, now Y' for every setting that differs (missing on either side included)."""
    keys = list(dict.fromkeys([*saved, *now]))
    return [f"{k}: state {saved.get(k, '(none)')!s}, now {now.get(k, '(none)')!s}"
            for k in keys if saved.get(k) != now.get(k)]
