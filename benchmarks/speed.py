"""Generation speed: frames per second, first-chunk latency and per-chunk time, eager vs optimised.

    python benchmarks/speed.py --device cuda                       # 1.3B shape, 832×480, random weights
    python benchmarks/speed.py --model default --device cpu        # the shipped default model

How frames are counted: a chunk of 3 latent frames decodes to 12 video frames (the Wan2.1
autoencoder's 4× temporal stride; the first chunk of a film decodes to 9 with the Wan VAE, whose
first latent frame is one video frame). Each chunk costs `steps` transformer forwards + the clean
pass that writes its keys and values into memory, all under `camr` with the default budget
(3 recent chunks + top-5 routed frames). "transformer FPS" = video frames / time of the
generation loop alone; "end-to-end FPS" adds the streaming decode of every chunk (no MP4
encoding: that runs in another process in a render). Time starts after the prompts are encoded
and the model is on the device; the first chunks (compilation, warm-up) are reported as
"first chunk ms" and excluded from the FPS, which is the median over chunks from `--skip` on.

Variants (one run, one process, same weights, same inputs), named by dash-separated parts:
  eager          the transformer as built, decode after the chunk;
  compiled       each block's memory-free parts compiled (`WanTransformer.compile_blocks`);
  -flash, -cudnn SDPA forced to that backend for the transformer (otherwise PyTorch picks);
  -estimate      re-routed from the first clean estimate instead of held from the first
                 denoising step (`SamplerConfig.route`; one transformer pass more per chunk);
  -hold          with --offload: every layer's active set held for the chunk
                 (`BankSpec.hold_offloaded`) instead of fetched from host memory per pass;
  -mean          camr scores frames by the mean query's relevance (`CamrPolicy.scoring`), the
                 score before attention mass: the cost of routing by attention mass.
`--history int8 --offload` keeps the history 8-bit in page-locked host memory (`BankSpec`), as a
long film does; with `--chunks 404` the last chunks are at minute 5 of a 16-fps film, and
"early ms" against "late ms" is the per-chunk time at minute 0 against minute 5.
`--profile VARIANT` runs that variant's last chunk under the PyTorch profiler and prints its
operators and kernels by device time.
With `--compile-decoder` the compiled variants also compile the decoder (`compile_decoder`).

"first chunk ms (warm)" is a new film started after the variant's run in the same process (caches,
compiled code and cuDNN plans warm): the time from the request of its first chunk to that
chunk's pixels. `--decoders` times the streaming decoder alone (12 video frames per chunk) with
PyTorch settings that only change speed: cuDNN autotuning, channels-last 3-D layout, compilation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from cinecli.memory.bank import BankSpec, MemoryBank
from cinecli.memory.policies import make_policy
from cinecli.model.config import preset
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.generator import ChunkGenerator, ChunkRequest, SamplerConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def sdpa_backend(name: str) -> Iterator[None]:
    """Force one SDPA backend ("flash", "cudnn", "efficient"), or let PyTorch choose ("auto")."""
    if name == "auto":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}[name]
    with sdpa_kernel(backend):
        yield


def random_wan(preset_name: str, device: torch.device, dtype: torch.dtype) -> tuple[WanTransformer, Callable | None]:
    """A randomly initialised transformer of the preset's shape and a Wan VAE decoder (random) for it."""
    from cinecli.model.wan.vae import WanVAE

    torch.manual_seed(0)
    with torch.device(device):
        model = WanTransformer(preset(preset_name)).to(dtype).eval()
        vae = WanVAE().to(dtype).eval()

    def decode(latents: torch.Tensor, state):  # type: ignore[no-untyped-def]
        return vae.decode_chunk(latents.to(dtype), state)

    decode.init = lambda: vae.init_decode_state(1, device, dtype)  # type: ignore[attr-defined]
    decode.vae = vae  # type: ignore[attr-defined]
    return model, decode


def default_model(device: torch.device, dtype: torch.dtype) -> tuple[WanTransformer, Callable | None]:
    """The shipped student and its autoencoder."""
    from cinecli.model.bundle import load_default

    bundle = load_default("student")
    model = bundle.transformer.to(device=device, dtype=dtype).eval()
    ae = bundle.autoencoder.to(device=device).eval()

    def decode(latents: torch.Tensor, state):  # type: ignore[no-untyped-def]
        return ae.decode_chunk(ae.denormalize(latents.float()), state)

    decode.init = lambda: ae.init_decode_state(1, device)  # type: ignore[attr-defined]
    decode.vae = ae  # type: ignore[attr-defined]
    return model, decode


@dataclass(frozen=True)
class Variant:
    """What a variant's dash-separated name asks for (see the module docstring)."""

    route: str = "first-step"  # SamplerConfig.route
    backend: str = "auto"  # SDPA backend of the transformer
    hold: bool = False  # BankSpec.hold_offloaded
    scoring: str = "mass"  # CamrPolicy.scoring ("mean": the mean query's relevance, the earlier score)

    @staticmethod
    def parse(name: str) -> "Variant":
        parts = name.split("-")
        return Variant(route="estimate" if "estimate" in parts else "first-step",
                       backend=next((b for b in ("flash", "cudnn", "efficient") if b in parts), "auto"),
                       hold="hold" in parts, scoring="mean" if "mean" in parts else "mass")


def first_chunk_ms(model: WanTransformer, decode: Callable | None, args: argparse.Namespace, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype,
                   variant: Variant) -> float:
    """Request-to-pixels time of the first chunk of a new film, in a warm process."""
    short = argparse.Namespace(**(vars(args) | {"chunks": 1, "skip": 0}))
    return run_variant(model, decode, short, shape, device, dtype, variant)["first_chunk_ms"]


@torch.no_grad()
def decoder_ms(vae, setting: str, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype, chunks: int = 6) -> dict:  # type: ignore[no-untyped-def]
    """Median ms to decode one chunk (3 latent frames → 12 video frames) under one speed setting."""
    torch.backends.cudnn.benchmark = setting != "default"
    decode = vae.decode_chunk
    if setting in ("channels-last", "compiled"):
        for m in vae.modules():
            if isinstance(m, torch.nn.Conv3d):
                m.weight.data = m.weight.data.to(memory_format=torch.channels_last_3d)
    if setting == "compiled":
        vae.decoder.forward = torch.compile(vae.decoder.forward, dynamic=False)
    g = torch.Generator().manual_seed(3)
    state = vae.init_decode_state(1, device, dtype)
    times = []
    for _ in range(chunks):
        z = torch.randn(1, shape[0], 3, shape[1], shape[2], generator=g).to(device, dtype)
        if setting in ("channels-last", "compiled"):
            z = z.contiguous(memory_format=torch.channels_last_3d)
        sync(device)
        t = time.perf_counter()
        _, state = decode(z, state)
        sync(device)
        times.append(time.perf_counter() - t)
    steady = sorted(times[2:])
    return {"setting": setting, "first_ms": 1000 * times[0], "chunk_ms": 1000 * steady[len(steady) // 2], "all_ms": [round(1000 * t, 1) for t in times]}


def profile_table(prof, rows: int = 30) -> str:  # type: ignore[no-untyped-def]
    """The profiled chunk's operators and kernels by their own device time."""
    for key in ("self_device_time_total", "self_cuda_time_total", "self_cpu_time_total"):
        try:
            return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=70)
        except (AttributeError, KeyError, ValueError):
            continue
    return ""


@torch.no_grad()
def run_variant(model: WanTransformer, decode: Callable | None, args: argparse.Namespace, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype,
                variant: Variant = Variant(), profile: bool = False) -> dict:
    """Generate `--chunks` chunks, timing the transformer loop and the decode of each chunk separately.

    With `profile` the last chunk runs under the PyTorch profiler and its table is returned.
    The variant's SDPA backend applies to the transformer only (the decode keeps the default).
    """
    cfg = model.config
    rows, cols = cfg.grid(shape[1], shape[2])
    f = args.chunk_frames
    bank = MemoryBank(BankSpec(cfg.num_layers, 1, rows * cols, cfg.num_heads, cfg.head_dim, dtype=dtype, device=device,
                               storage=args.history, offload=args.offload, hold_offloaded=variant.hold, capacity=args.chunks * f))
    policy = dataclasses.replace(make_policy("camr"), scoring=variant.scoring)  # type: ignore[type-var]
    gen = ChunkGenerator(model, bank, policy, SamplerConfig(steps=args.steps, route=variant.route), latent_shape=shape, chunk_frames=f)
    g = torch.Generator().manual_seed(0)
    text = model.encode_text(torch.randn(1, 1, cfg.text_len, cfg.text_dim, generator=g).to(device, dtype))
    state = decode.init() if decode is not None else None  # type: ignore[attr-defined]
    gen_s, dec_s, frames_out = [], [], []
    table = ""
    for c in range(args.chunks):
        req = ChunkRequest(c, (0,) * f, (False,) * f, tuple(range(c * f, (c + 1) * f)))
        watch = profile and c == args.chunks - 1
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=activities) if watch else contextlib.nullcontext() as prof:
            sync(device)
            t0 = time.perf_counter()
            n = f * args.temporal_stride
            with sdpa_backend(variant.backend):
                res = gen.generate(req, text)
            sync(device)
            t1 = time.perf_counter()
            if decode is not None:
                video, state = decode(res.latents, state)
                sync(device)
                n = video.shape[2]
            t2 = time.perf_counter()
        if prof is not None:
            table = profile_table(prof)
        gen_s.append(t1 - t0)
        dec_s.append(t2 - t1)
        frames_out.append(n)
        if args.log_every and (c + 1) % args.log_every == 0:
            print(f"# chunk {c}: {1000 * (t1 - t0):.1f} ms, history {bank.num_frames} frames ({bank.nbytes() / 2**30:.1f} GiB)", flush=True)
    steady = range(args.skip, args.chunks)
    gen_med = statistics.median(gen_s[i] for i in steady)
    dec_med = statistics.median(dec_s[i] for i in steady)
    per_chunk_frames = statistics.median(frames_out[i] for i in steady)
    tail = list(range(max(args.skip, args.chunks - 5), args.chunks))
    chunk_s = f * args.temporal_stride / args.fps  # film seconds per chunk
    head = list(range(args.skip, min(args.skip + 5, args.chunks)))
    return {
        "chunks": args.chunks, "steps": args.steps, "frames_per_chunk": per_chunk_frames,
        "first_chunk_ms": 1000 * (gen_s[0] + dec_s[0]), "first_chunk_frames": frames_out[0],
        "chunk_ms": 1000 * gen_med, "decode_ms": 1000 * dec_med,
        "transformer_fps": per_chunk_frames / gen_med,
        "end_to_end_fps": per_chunk_frames / (gen_med + dec_med) if decode is not None else None,
        "early_chunk_ms": 1000 * statistics.median(gen_s[i] for i in head),
        "late_chunk_ms": 1000 * statistics.median(gen_s[i] for i in tail),
        "late_chunks_film_s": [tail[0] * chunk_s, (tail[-1] + 1) * chunk_s],
        "history_frames": bank.num_frames, "history_gib": bank.nbytes() / 2**30,
        "per_chunk_ms": [round(1000 * s, 2) for s in gen_s], "per_chunk_decode_ms": [round(1000 * s, 2) for s in dec_s],
        "profile": table,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="random", choices=("random", "default"), help="random weights of --preset, or the shipped default model")
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--chunks", type=int, default=24)
    ap.add_argument("--skip", type=int, default=6, help="chunks left out of the medians (warm-up, compilation, growing active set)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--chunk-frames", type=int, default=3)
    ap.add_argument("--temporal-stride", type=int, default=4)
    ap.add_argument("--history", default="native", help="history storage: native or int8")
    ap.add_argument("--offload", action="store_true", help="history in page-locked host memory instead of on the GPU")
    ap.add_argument("--log-every", type=int, default=0, help="print every N-th chunk's time as it runs (long films)")
    ap.add_argument("--fps", type=int, default=16, help="film frame rate, to place chunks in film time (Wan2.1: 16)")
    ap.add_argument("--variants", default="eager,eager-flash,compiled")
    ap.add_argument("--no-decode", action="store_true")
    ap.add_argument("--warmup-chunks", type=int, default=3, help="a short film first, not timed (CUDA context, cuDNN plans)")
    ap.add_argument("--compile-decoder", action="store_true", help="compiled variants also compile the decoder (`compile_decoder`)")
    ap.add_argument("--decoders", default="", help="also time the Wan decoder alone: default,cudnn-benchmark,channels-last,compiled")
    ap.add_argument("--profile", default="", help="profile the last chunk of this variant and print its operator table")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.model == "default":
        model, decode = default_model(device, dtype)
        args.width, args.height = 192, 128
        shape = (model.config.in_channels, args.height // 8, args.width // 8)
    else:
        model, decode = random_wan(args.preset, device, dtype)
        shape = (model.config.in_channels, args.height // 8, args.width // 8)
    if args.no_decode:
        decode = None
    card = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    results: dict[str, dict] = {}
    compiled = False
    if args.warmup_chunks:
        run_variant(model, decode, argparse.Namespace(**(vars(args) | {"chunks": args.warmup_chunks, "skip": 0})), shape, device, dtype)
    for variant in args.variants.split(","):
        try:
            if variant.startswith("compiled") and not compiled:
                t = time.perf_counter()
                model.compile_blocks()
                if args.compile_decoder and decode is not None:
                    decode.vae.compile_decoder()  # type: ignore[attr-defined]
                compiled = True
                print(f"# compile_blocks set up in {time.perf_counter() - t:.1f} s (compilation happens in the first chunks)", flush=True)
            asked = Variant.parse(variant)
            results[variant] = run_variant(model, decode, args, shape, device, dtype, asked, profile=variant == args.profile)
            results[variant]["first_chunk_warm_ms"] = first_chunk_ms(model, decode, args, shape, device, dtype, asked)
            r = results[variant]
            print(json.dumps({k: v for k, v in r.items() if not k.startswith("per_chunk") and k != "profile"} | {"variant": variant}), flush=True)
            if r["profile"]:
                print(f"# profile of the last chunk of {variant}\n{r['profile']}", flush=True)
        except Exception as err:  # a variant that fails must not lose the others
            print(f"# variant {variant} failed: {type(err).__name__}: {err}", flush=True)
    name = "default model (student)" if args.model == "default" else f"{args.preset}, random weights"
    print(f"\n# {name}, {args.width}x{args.height}, {args.steps} steps + clean pass, camr, {args.chunks} chunks; {card}; torch {torch.__version__}")
    print(f"{'variant':24} {'transformer FPS':>15} {'end-to-end FPS':>14} {'chunk ms':>9} {'decode ms':>9} {'first chunk ms':>14} {'warm first ms':>13} {'early ms':>9} {'late ms':>8}")
    base = results.get("eager")

    def cell(x: float | None) -> str:
        return f"{x:.1f}" if x is not None else "-"

    for v, r in results.items():
        print(f"{v:24} {cell(r['transformer_fps']):>15} {cell(r['end_to_end_fps']):>14} {r['chunk_ms']:9.1f} {r['decode_ms']:9.1f} {r['first_chunk_ms']:14.1f} {r['first_chunk_warm_ms']:13.1f} {r['early_chunk_ms']:9.1f} {r['late_chunk_ms']:8.1f}")
    if base:
        for v, r in results.items():
            if v != "eager":
                print(f"# {v} / eager transformer time: {r['chunk_ms'] / base['chunk_ms']:.3f}")
    decoders: list[dict] = []
    vae = getattr(decode, "vae", None)
    for setting in [d for d in args.decoders.split(",") if d]:
        if vae is None:
            break
        try:
            decoders.append(decoder_ms(vae, setting, shape, device, dtype))
            print(json.dumps(decoders[-1]), flush=True)
        except Exception as err:
            print(f"# decoder {setting} failed: {type(err).__name__}: {err}", flush=True)
        if args.json:  # written after every setting: a later one may run out of time
            args.json.write_text(json.dumps({"card": card, "torch": torch.__version__, "model": name, "args": {k: str(v) for k, v in vars(args).items()}, "results": results, "decoders": decoders}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"card": card, "torch": torch.__version__, "model": name, "args": {k: str(v) for k, v in vars(args).items()}, "results": results, "decoders": decoders}, indent=1))


if __name__ == "__main__":
    main()
