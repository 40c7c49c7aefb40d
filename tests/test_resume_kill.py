"""`cinecli render` as a real process, killed and resumed: the film must not notice.

The default model (randomly initialised here: noise, but deterministic) renders a 3-second film
in three chunks. The JSON progress lines on stdout say when a chunk is done; the test kills the
process at chosen moments around them (SIGKILL: no handler runs, so only the atomic writes
protect the state), resumes, and compares the final MP4's bytes with an uninterrupted render's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CINECLI = shutil.which("cinecli", path=str(Path(sys.executable).parent)) or "cinecli"
SCRIPT = """\
film:
  title: "kill test"
  model: default
  resolution: 192x128
  fps: 12
  seed: 11
shots:
  - id: harbour
    duration: 1.5s
    prompt: "wide shot of the harbour, the stranger walks in from the left"
  - id: keeper
    duration: 2.5s
    prompt: "close-up on the keeper as it turns around"
"""
CHUNKS = 4


def env() -> dict[str, str]:
    """One thread per process, so a render is fast and its floats the same however busy the machine is."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([CINECLI, *args, "--progress", "json"], cwd=cwd, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def events_until(proc: subprocess.Popen[str], stop: "callable") -> list[dict]:  # type: ignore[valid-type]
    """Read JSON event lines until `stop(event)` is true (or the process ends)."""
    seen: list[dict] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(json.loads(line))
        if stop(seen[-1]):
            break
    return seen


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, list[dict], str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("reference")
    (d / "film.yaml").write_text(SCRIPT, encoding="utf-8")
    code, events, err = finish(start(["render", "film.yaml"], d))
    assert code == 0, err
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == list(range(CHUNKS))
    return (d / "film.mp4").read_bytes()


def test_sigkill_at_random_chunks_then_resume_gives_identical_bytes(reference: bytes, tmp_path: Path) -> None:
    (tmp_path / "film.yaml").write_text(SCRIPT, encoding="utf-8")
    rng = random.Random(20240611)
    kills = 0
    generated: list[int] = []
    for _ in range(CHUNKS + 2):
        proc = start(["render", "film.yaml"], tmp_path)
        seen = events_until(proc, lambda e: e["event"] in ("chunk_done", "finished", "error"))
        first = seen[-1].get("chunk") if seen else None
        if kills < 2 and first is not None and first <= CHUNKS - 3 + kills:
            # never the last chunk (the film must not get finished), and room left for a second kill
            target = rng.randrange(first, CHUNKS - 2 + kills)
            if target > first:
                seen += events_until(proc, lambda e: e["event"] == "chunk_done" and e["chunk"] >= target)
            generated += [e["chunk"] for e in seen if e["event"] == "chunk_done"]
            time.sleep(rng.uniform(0.0, 0.05))  # now and then in the middle of the checkpoint's writes
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
            continue
        code, rest, err = finish(proc)
        assert code == 0, err
        generated += [e["chunk"] for e in seen + rest if e["event"] == "chunk_done"]
        break
    assert kills == 2
    assert sorted(set(generated)) == list(range(CHUNKS))
    assert (tmp_path / "film.mp4").read_bytes() == reference


def test_sigint_checkpoints_exits_130_and_resume_finishes(reference: bytes, tmp_path: Path) -> None:
    (tmp_path / "film.yaml").write_text(SCRIPT, encoding="utf-8")
    proc = start(["render", "film.yaml"], tmp_path)
    events_until(proc, lambda e: e["event"] == "shot_started")
    proc.send_signal(signal.SIGINT)
    code, events, err = finish(proc)
    assert code == 130, err
    last = events[-1]
    state = tmp_path / "film.state"
    assert last["event"] == "interrupted" and last["signal"] == "SIGINT" and last["exit_code"] == 130
    assert last["resume_command"] == f"cinecli resume {state}"
    manifest = json.loads((state / "manifest.json").read_text(encoding="utf-8"))
    done = manifest["position"]["next_chunk"]
    assert done >= 1 and (state / manifest["checkpoint"]["path"]).is_file()
    assert not (tmp_path / "film.mp4").exists()
    code, events, err = finish(start(["resume", str(state)], tmp_path))
    assert code == 0, err
    assert [e["chunk"] for e in events if e["event"] == "chunk_done"] == list(range(done, CHUNKS))
    assert (tmp_path / "film.mp4").read_bytes() == reference
