"""Is a seed's film the same on every machine? Hashes of one render under other thread counts and
CPU instruction sets, each in its own process.

    python benchmarks/determinism.py                              # examples/quickstart.yaml
    python benchmarks/determinism.py --json this.json             # keep this machine's hashes
    python benchmarks/determinism.py --compare other.json         # ... and match another machine's
    python benchmarks/determinism.py --device cuda --settings "1 thread;every core"   # a GPU, run to run

A render is deterministic on one machine (`tests/test_render.py`). Across machines three things
can change the floating-point sums, each read by a library when it starts, so each setting runs
as a child process (`--child`) with its environment:
  threads      OMP_NUM_THREADS: PyTorch's intra-op threads (a render uses every core);
  kernels      ATEN_CPU_CAPABILITY: which vectorised kernels PyTorch dispatches to (a machine with
               AVX-512 takes other kernels than one with AVX2 unless this says `avx2`);
  MKL          MKL_CBWR: MKL's conditional numerical reproducibility; `COMPATIBLE` makes its
               matrix products take one code path on every x86-64 CPU, Intel or AMD.
Per setting the table gives a hash of the film's latents (every chunk the transformer drew) and
of its frames (decoded as a render decodes them, uint8), and the render's wall time. Frames are
not encoded to MP4 here: the encoder is pinned on its own (`-threads 1`,
`cinecli/render/segments.py`), and a machine without ffmpeg can run this. Results: `docs/BENCHMARKS.md`, "Determinism".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    threads: int | None = None  # None: every core
    kernels: str | None = None  # ATEN_CPU_CAPABILITY (None: the CPU's best)
    mkl: str | None = None  # MKL_CBWR (None: MKL's own choice)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "MKL_CBWR"):
            env.pop(key, None)
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        if self.kernels is not None:
            env["ATEN_CPU_CAPABILITY"] = self.kernels
        if self.mkl is not None:
            env["MKL_CBWR"] = self.mkl
        return env


SETTINGS = (
    Setting("1 thread", 1),
    Setting("2 threads", 2),
    Setting("4 threads", 4),
    Setting("every core"),
    Setting("2 threads, avx2 kernels", 2, "avx2"),
    Setting("2 threads, MKL compatible", 2, None, "COMPATIBLE"),
    Setting("1 thread, avx2 kernels, MKL compatible", 1, "avx2", "COMPATIBLE"),
    Setting("2 threads, avx2 kernels, MKL compatible", 2, "avx2", "COMPATIBLE"),
    Setting("every core, avx2 kernels, MKL compatible", None, "avx2", "COMPATIBLE"),
)


class FrameHash:
    """Stands in for the render's segment store: hashes the frames it is given, in film order, and
    keeps every `every`-th of them when asked (a 2-minute film's frames are 100 MB)."""

    def __init__(self, every: int | None = None) -> None:
        self.digest = hashlib.sha256()
        self.frames = 0
        self.every = every
        self.kept: list = []

    def write(self, frames, *, shot: int, chunk: int) -> None:  # type: ignore[no-untyped-def]
        del shot, chunk
        self.digest.update(frames.tobytes())
        if self.every is not None:
            self.kept.extend(f.copy() for i, f in enumerate(frames, self.frames) if i % self.every == 0)
        self.frames += int(frames.shape[0])

    def discard_from(self, chunk: int) -> None:
        del chunk


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def frame_differences(a, b, fps: int) -> dict:  # type: ignore[no-untyped-def]
    """How far two renders of one film lie apart, in grey levels: over the film, in its first and
    last second, and at worst (do small differences grow as the film goes on?)."""
    import numpy as np

    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"mean": round(float(d.mean()), 5), "first second": round(float(d[:fps].mean()), 5),
            "last second": round(float(d[-fps:].mean()), 5), "max": int(d.max()),
            "values off": f"{int((d > 0).sum())} of {d.size}"}


def child(script: Path, frames_out: Path | None, every: int, device: str) -> dict:
    """Render `script` with the default model as `cinecli render` would, without the MP4."""
    import numpy as np
    import torch

    from cinecli.model.bundle import load_model
    from cinecli.model.formats import film_format
    from cinecli.render import events as ev
    from cinecli.render.director import Director, RenderOptions
    from cinecli.render.run import bundle_dtype
    from cinecli.screenplay import load_screenplay_resolving, plan_film

    sp, fmt = load_screenplay_resolving(script, film_format)
    plan = plan_film(sp, fmt)
    bundle = load_model(sp.film.model, script.parent)
    bundle.to(torch.device(device), bundle_dtype(device))
    latents = hashlib.sha256()
    frames = FrameHash(every if frames_out is not None else None)
    with tempfile.TemporaryDirectory() as work:
        director = Director(sp, plan, bundle, RenderOptions(output=Path(work) / "film.mp4", state_dir=Path(work) / "state", device=device))
        director.segments = frames  # type: ignore[assignment]
        generate = director.generator.generate

        def hashed(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = generate(*args, **kwargs)
            latents.update(result.latents.float().contiguous().cpu().numpy().tobytes())
            return result

        director.generator.generate = hashed  # type: ignore[method-assign]
        t = time.perf_counter()
        for event in director.run():  # stops at the last chunk, before the MP4 is put together
            if isinstance(event, ev.ChunkDone) and event.chunk == plan.num_chunks - 1:
                break
        seconds = time.perf_counter() - t
    if frames_out is not None:
        np.save(frames_out, np.stack(frames.kept))
    return {
        "latents": latents.hexdigest()[:16], "frames": frames.digest.hexdigest()[:16], "frame_count": frames.frames,
        "seconds": round(seconds, 2), "threads": torch.get_num_threads(),
        "kernels": torch.backends.cpu.get_cpu_capability(), "mkl": os.environ.get("MKL_CBWR", "auto"),
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--script", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    ap.add_argument("--device", default="cpu", help="render on this torch device (cuda: the settings' CPU threads matter little)")
    ap.add_argument("--json", type=Path, help="write this machine's results here")
    ap.add_argument("--compare", type=Path, help="another machine's --json: mark the settings whose hashes match it")
    ap.add_argument("--frames", type=Path, help="keep each setting's frames as FOLDER/SETTING.npy (uint8, frames x H x W x 3)")
    ap.add_argument("--every", type=int, default=1, help="with --frames, keep every Nth frame (a long film's frames fill gigabytes)")
    ap.add_argument("--settings", help="names of the settings to run, separated by semicolons (default: all)")
    ap.add_argument("--compare-frames", type=Path, help="another machine's --frames folder: grey levels between its films and these")
    ap.add_argument("--child", type=Path, nargs="?", const=Path(), default=None, help=argparse.SUPPRESS)  # where the frames go
    args = ap.parse_args()
    if args.compare_frames and not args.frames:
        ap.error("--compare-frames needs --frames: this machine's frames to set beside the other's")
    if args.child is not None:
        print(json.dumps(child(args.script, None if args.child == Path() else args.child, args.every, args.device)))
        return
    import torch

    other = json.loads(args.compare.read_text())["results"] if args.compare else {}
    results: dict[str, dict] = {}
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"{cpu_name()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}, {args.script.name}, device {args.device}")
    print(f"| setting | threads | kernels | MKL | latents | frames | seconds |{' same as other machine |' if other else ''}")
    print(f"|---|---|---|---|---|---|---|{'---|' if other else ''}")
    if args.frames:
        args.frames.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SETTINGS if args.settings is None or s.name in args.settings.split(";")]
    for s in chosen:
        keep = [str(args.frames / f"{slug(s.name)}.npy")] if args.frames else []
        proc = subprocess.run([sys.executable, __file__, "--child", *keep, "--every", str(args.every), "--device", args.device, "--script", str(args.script)], env=s.env(),
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"| {s.name} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode} |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[s.name] = r
        same = ""
        if other:
            o = other.get(s.name)
            same = " – |" if o is None else f" latents {'yes' if o['latents'] == r['latents'] else 'no'}, frames {'yes' if o['frames'] == r['frames'] else 'no'} |"
        print(f"| {s.name} | {r['threads']} | {r['kernels']} | {r['mkl']} | {r['latents']} | {r['frames']} | {r['seconds']} |{same}", flush=True)
    if args.frames and args.compare_frames:
        import numpy as np

        from cinecli.model.formats import film_format
        from cinecli.screenplay import load_screenplay_resolving

        fps = max(1, load_screenplay_resolving(args.script, film_format)[0].film.fps // args.every)  # kept frames per second
        mine = {p.stem: np.load(p) for p in sorted(args.frames.glob("*.npy"))}
        print("\n| setting | against | mean grey levels | first second | last second | max | values off |")
        print("|---|---|---|---|---|---|---|")
        for theirs in sorted(args.compare_frames.glob("*.npy")):
            b = np.load(theirs)
            for name, a in mine.items():
                if a.shape != b.shape:
                    print(f"| {name} | other machine: {theirs.stem} | other frames kept ({a.shape[0]} against {b.shape[0]}: same --every?) |")
                    continue
                d = frame_differences(a, b, fps)
                print(f"| {name} | other machine: {theirs.stem} | {d['mean']} | {d['first second']} | {d['last second']} | {d['max']} | {d['values off']} |")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "device": args.device + gpu,
                                         "script": args.script.name, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
