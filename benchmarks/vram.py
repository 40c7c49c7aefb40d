"""Peak VRAM of a film on one GPU: weight format × history format × memory policy × film length.

    python benchmarks/vram.py --preset wan2.1-t2v-1.3b --width 832 --height 480 --device cuda

The history lives in pinned host memory (`--offload-history`, the low-VRAM placement) and only
the active set is gathered onto the GPU, one layer at a time. Random weights: memory and speed
do not depend on their values. For each combination a film is generated chunk by chunk and
`torch.cuda.max_memory_allocated` / `max_memory_reserved` are read at two film lengths: flat
under `camr`, growing under `full`. The planner's estimate for the same settings stands beside
the measurement. The script also reports the relative error of the int8 transformer's output
against bf16 on one random chunk, and the per-chunk time of each combination (the speed cost of
int8 is the ratio of two rows of one run).

Prints a table; `--json` writes every row, `--markdown` the table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from cinecli.memory.active import ChunkAttention, Routing
from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.budget import FilmShape, Placement, estimate
from cinecli.memory.policies import NoMemoryPolicy, make_policy
from cinecli.model.config import TransformerConfig, preset
from cinecli.model.quantize import quantize_model
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig

GB = 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peaks(device: torch.device) -> tuple[float, float]:
    """(max allocated, max reserved) GB since the last reset; zeros off CUDA (a CPU run only checks the script)."""
    if device.type != "cuda":
        return 0.0, 0.0
    return torch.cuda.max_memory_allocated() / GB, torch.cuda.max_memory_reserved() / GB


def prepared(base: WanTransformer, weights: str, device: torch.device) -> WanTransformer:
    """A device copy of the full-precision CPU model, in bf16 or with int8 block linears (the render path)."""
    model = copy.deepcopy(base)
    quantize_model(model, "int8" if weights == "int8" else "none", device)
    return model.to(device=device, dtype=torch.bfloat16).eval()


@torch.no_grad()
def one_chunk_output(model: WanTransformer, shape: tuple[int, int, int], chunk: int, device: torch.device) -> torch.Tensor:
    """The transformer's velocity for one random chunk with no memory (fixed seed: same input for every model)."""
    cfg = model.config
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, shape[0], chunk, shape[1], shape[2], generator=g).to(device, torch.bfloat16)
    text = model.encode_text(torch.randn(1, 1, cfg.text_len, cfg.text_dim, generator=g).to(device, torch.bfloat16))
    rows, cols = cfg.grid(shape[1], shape[2])
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim, dtype=torch.bfloat16, device=device))
    src = ChunkAttention(bank, NoMemoryPolicy(), Routing(), chunk_frames=chunk, rows=rows, cols=cols, rope=model.rope, write=False)
    t = torch.full((1, chunk), 500.0, device=device)
    fp = torch.zeros(1, chunk, dtype=torch.long, device=device)
    cut = torch.zeros(1, chunk, dtype=torch.bool, device=device)
    return model(x, t, text, fp, src, cut).float().cpu()


def planned_gb(cfg: TransformerConfig, shape: tuple[int, int, int], args: argparse.Namespace, frames: int, budget: int | None, weights: str, history: str) -> float:
    film = FilmShape(cfg, shape[1], shape[2], args.chunk_frames, frames, budget, args.width, args.height, 4,
                     decoder_params=0, decoder_channels_per_pixel=0.0)
    return estimate(film, Placement(weights, history, True)).total / GB  # type: ignore[arg-type]


@torch.no_grad()
def run_film(model: WanTransformer, weights: str, policy_name: str, history: str, lengths: list[int], shape: tuple[int, int, int], args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Generate max(lengths) chunks; a row of peak memory and recent chunk time at each length."""
    cfg = model.config
    rows, cols = cfg.grid(shape[1], shape[2])
    chunks = max(lengths)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim, dtype=torch.bfloat16, device=device,
                               storage=history, offload=True, capacity=chunks * args.chunk_frames))
    policy = make_policy(policy_name)
    gen = ChunkGenerator(model, bank, policy, SamplerConfig(steps=args.steps), latent_shape=shape, chunk_frames=args.chunk_frames)
    g = torch.Generator().manual_seed(0)
    text = model.encode_text(torch.randn(1, 1, cfg.text_len, cfg.text_dim, generator=g).to(device, torch.bfloat16))
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: list[float] = []
    out = []
    for c in range(chunks):
        f = args.chunk_frames
        req = ChunkRequest(c, (0,) * f, (False,) * f, tuple(range(c * f, (c + 1) * f)))
        sync(device)
        t = time.perf_counter()
        res = gen.generate(req, text)
        sync(device)
        times.append(time.perf_counter() - t)
        if c + 1 in lengths:
            recent = sorted(times[-3:])[len(times[-3:]) // 2]
            out.append({
                "policy": policy_name, "history": history, "chunks": c + 1, "latent_frames": bank.num_frames,
                "active_frames": res.active_frames, "peak_allocated_gb": peaks(device)[0],
                "peak_reserved_gb": peaks(device)[1], "host_history_gb": bank.nbytes() / GB,
                "chunk_ms": 1000 * recent,
                "weights": weights, "planned_gb": planned_gb(cfg, shape, args, bank.num_frames, policy.budget(f), weights, history),
            })
    del gen, bank
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| weights | history | policy | chunks (latent frames) | active past frames | peak allocated GB | peak reserved GB | planner GB | history in host RAM GB | ms / chunk |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['weights']} | {r['history']} | {r['policy']} | {r['chunks']} ({r['latent_frames']}) | {r['active_frames']} | "
                     f"{r['peak_allocated_gb']:.2f} | {r['peak_reserved_gb']:.2f} | {r['planned_gb']:.2f} | {r['host_history_gb']:.1f} | {r['chunk_ms']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--chunk-frames", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per chunk (+ the clean pass)")
    ap.add_argument("--camr-lengths", default="10,40", help="film lengths in chunks at which camr rows are read")
    ap.add_argument("--full-lengths", default="10,20", help="film lengths in chunks at which full rows are read")
    ap.add_argument("--weights", default="bf16,int8")
    ap.add_argument("--histories", default="native,int8")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    cfg = preset(args.preset)
    shape = (cfg.in_channels, args.height // 8, args.width // 8)
    torch.manual_seed(0)
    t = time.perf_counter()
    base = WanTransformer(cfg).eval()  # full precision on the CPU: both weight formats start from it
    print(f"# built {args.preset} on the CPU in {time.perf_counter() - t:.1f} s", flush=True)
    card = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (memory not measured: a check of the script only)"
    lengths = {"camr": [int(x) for x in args.camr_lengths.split(",")], "full": [int(x) for x in args.full_lengths.split(",")]}
    rows: list[dict] = []
    errors: dict[str, float] = {}
    reference = None
    for weights in args.weights.split(","):
        try:
            model = prepared(base, weights, device)
            out = one_chunk_output(model, shape, args.chunk_frames, device)
            if reference is None:
                reference = out
            errors[weights] = float((out - reference).norm() / reference.norm())
            loaded = torch.cuda.memory_allocated() / GB if device.type == "cuda" else 0.0
            print(f"# weights {weights}: {loaded:.2f} GB allocated after loading; "
                  f"output relative error vs {args.weights.split(',')[0]}: {errors[weights]:.4f}", flush=True)
            for history in args.histories.split(","):
                for policy in ("camr", "full"):
                    for r in run_film(model, weights, policy, history, lengths[policy], shape, args, device):
                        rows.append(r)
                        print(json.dumps(r), flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        except Exception as err:  # one broken combination must not lose the others' numbers
            print(f"# weights {weights} failed: {type(err).__name__}: {err}", flush=True)
    header = (f"{args.preset}, {args.width}×{args.height}, random weights, {args.steps} steps + clean pass per chunk of "
              f"{args.chunk_frames} latent frames, history offloaded to pinned host memory; {card}, torch {torch.__version__}")
    table = markdown(rows, header)
    print(table)
    print(json.dumps({"output_relative_error": errors}))
    if args.json:
        args.json.write_text(json.dumps({"card": card, "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()},
                                         "output_relative_error": errors, "rows": rows}, indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
