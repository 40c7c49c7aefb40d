"""Per-chunk time and active memory against chunk index, for each memory policy.

    python benchmarks/memory.py --preset tiny --chunks 100            # CPU, the default model's shape
    python benchmarks/memory.py --preset wan2.1-t2v-1.3b --width 832 --height 480 --device cuda

Random weights (timing does not depend on them). Prints a table and writes a JSON file; the
numbers that matter are ratios within one run: chunk 100 against chunk 10 for each policy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import make_policy
from cinecli.model.config import preset
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_policy(model: WanTransformer, name: str, chunks: int, steps: int, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype, chunk_frames: int, history: str = "native") -> list[dict]:
    cfg = model.config
    rows, cols = cfg.grid(shape[1], shape[2])
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim, dtype=dtype, device=device, storage=history, capacity=chunks * chunk_frames))
    gen = ChunkGenerator(model, bank, make_policy(name), SamplerConfig(steps=steps), latent_shape=shape, chunk_frames=chunk_frames)
    g = torch.Generator().manual_seed(0)
    text = model.encode_text(torch.randn(1, 1, cfg.text_len, cfg.text_dim, generator=g).to(device, dtype))
    rows_out = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for c in range(chunks):
        req = ChunkRequest(c, (0,) * chunk_frames, (False,) * chunk_frames, tuple(range(c * chunk_frames, (c + 1) * chunk_frames)))
        sync(device)
        t = time.perf_counter()
        res = gen.generate(req, text)
        sync(device)
        rows_out.append({
            "policy": name, "chunk": c, "seconds": time.perf_counter() - t, "active_frames": res.active_frames,
            "active_tokens": res.active_tokens, "history_mb": bank.nbytes() / 2**20,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        })
    return rows_out


def median_around(rows: list[dict], chunk: int, width: int = 2) -> float:
    vals = sorted(r["seconds"] for r in rows if abs(r["chunk"] - chunk) <= width)
    return vals[len(vals) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--full-chunks", type=int, default=0, help="chunks for `full` (its memory grows); default --chunks")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--policies", default="camr,window,full,none")
    ap.add_argument("--history", default="native", help="native or int8 storage of the KV history")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    cfg = preset(args.preset)
    with torch.device(device):
        model = WanTransformer(cfg).to(dtype).eval()
    shape = (cfg.in_channels, args.height // 8, args.width // 8)
    card = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    results: list[dict] = []
    for name in args.policies.split(","):
        n = args.full_chunks if (name == "full" and args.full_chunks) else args.chunks
        run_policy(model, name, 2, args.steps, shape, device, dtype, 3, args.history)  # warm-up
        results += run_policy(model, name, n, args.steps, shape, device, dtype, 3, args.history)
    print(f"# {args.preset} {args.width}x{args.height}, steps {args.steps}, history {args.history}, {card}, torch {torch.__version__}")
    print(f"{'policy':8} {'chunk':>6} {'ms':>9} {'active frames':>14} {'active tokens':>14} {'history MB':>11}")
    for r in results:
        if r["chunk"] in (0, 1, 5, 10, 20, 40, 60, 80, 99, 100, 150, 199) or r["chunk"] == max(x["chunk"] for x in results if x["policy"] == r["policy"]):
            print(f"{r['policy']:8} {r['chunk']:6d} {1000 * r['seconds']:9.1f} {r['active_frames']:14d} {r['active_tokens']:14d} {r['history_mb']:11.1f}")
    summary = {}
    for name in args.policies.split(","):
        rows = [r for r in results if r["policy"] == name]
        last = rows[-1]["chunk"]
        if last >= 12:
            summary[name] = {"chunk10_ms": 1000 * median_around(rows, 10), f"chunk{last}_ms": 1000 * median_around(rows, last - 2), "ratio": median_around(rows, last - 2) / median_around(rows, 10)}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"card": card, "torch": torch.__version__, "args": vars(args) | {"json": str(args.json)}, "summary": summary, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
