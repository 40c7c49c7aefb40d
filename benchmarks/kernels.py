"""The hot parts of a 1.3B chunk, each in the forms that compute the same thing, timed alone.

    python benchmarks/kernels.py --device cuda --parts convs,resample,head,attention,ffn,decoder

The profile of a compiled chunk (docs/profile-compiled-chunk-h200.txt) names where the time
goes: attention, the decoder's convolutions, the linear layers, then element-wise kernels. Each
part here times the form in use against forms with the same arithmetic, on the shapes of one
later chunk at 832×480 (3 latent frames → 12 video frames), bf16, and prints the error of each
form against a float32 reference:
  convs      a causal kt×3×3 convolution as a 3-D convolution ("conv3d"), as kt 2-D convolutions
             of neighbouring frames summed ("sum"), or one 2-D convolution of the kt frames
             stacked along channels ("stack");
  resample   nearest 2× upsampling then a 3×3 convolution ("upsample", Wan's definition), one
             convolution of the low-resolution input with 4× the output channels and a pixel
             shuffle ("phases", `phase_kernels`), or four 2×2 convolutions ("phases2x2");
  head       the decoder's last convolution (96 → 3 channels), its output channels padded to 8/16;
  attention  SDPA of 4,680 queries over the 26,520-key active set per backend and layout;
  ffn        the feed-forward's first linear and tanh-GELU: two kernels, compiled, or cuBLASLt's
             GELU epilogue (`torch._addmm_activation`);
  decoder    the whole decoder, compiled, channels-last, autotuned, with Wan's upsampling form
             against the phase form, and the largest difference of their frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cinecli.model.wan.vae import CausalConv3d, Resample, WanVAE


def conv3d(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """x [1, C, T+kt-1, H, W], time-padded; the reference form (spatial padding 1 or 0 by kernel)."""
    p = w.shape[-1] // 2
    return F.conv3d(x, w, b, padding=(0, p, p))


def frames_of(x: Tensor) -> Tensor:
    """[1, C, T, H, W] channels-last-3d → [T, C, H, W] channels-last, without a copy."""
    return x[0].transpose(0, 1)


def clip_of(y: Tensor) -> Tensor:
    """[T, C, H, W] → [1, C, T, H, W] (a view)."""
    return y.transpose(0, 1).unsqueeze(0)


def conv_sum(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    kt, p = w.shape[2], w.shape[-1] // 2
    f = frames_of(x)
    t = f.shape[0] - kt + 1
    y = F.conv2d(f[0:t], w[:, :, 0].contiguous(memory_format=torch.channels_last), b, padding=p)
    for i in range(1, kt):
        y = y + F.conv2d(f[i:i + t], w[:, :, i].contiguous(memory_format=torch.channels_last), None, padding=p)
    return clip_of(y)


def conv_stack(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    kt, p = w.shape[2], w.shape[-1] // 2
    f = frames_of(x)
    t = f.shape[0] - kt + 1
    s = torch.cat([f[i:i + t] for i in range(kt)], dim=1) if kt > 1 else f
    w2 = w.permute(0, 2, 1, 3, 4).reshape(w.shape[0], kt * w.shape[1], w.shape[3], w.shape[4])
    return clip_of(F.conv2d(s, w2.contiguous(memory_format=torch.channels_last), b, padding=p))


CONV_FORMS: dict[str, Callable[[Tensor, Tensor, Tensor | None], Tensor]] = {"conv3d": conv3d, "sum": conv_sum, "stack": conv_stack}


# Nearest 2× upsampling then a 3-tap convolution, seen from the low-resolution grid: output row
# 2i+a reads upsampled rows 2i+a-1..2i+a+1, i.e. low-resolution rows i-1, i (a = 0) or i, i+1
# (a = 1), with the taps that land on the same row summed. PHASE_TAPS[a][u][t] = 1 where tap t
# of the original kernel lands on low-resolution row i-1+u.
PHASE_TAPS = ((1, 0, 0), (0, 1, 1), (0, 0, 0)), ((0, 0, 0), (1, 1, 0), (0, 0, 1))


def phase_kernels(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """[C', C, 3, 3] conv after nearest 2× upsampling → [4C', C, 3, 3] conv of the low-res input.

    Output channel (2a + b)·C' + c is output pixel (2i + a, 2j + b) of channel c: a pixel shuffle
    of the result is the upsampled convolution, without the upsampled copy of the input.
    """
    taps = torch.tensor(PHASE_TAPS, dtype=torch.float32, device=weight.device)
    k = torch.einsum("aut,bvs,oits->aboiuv", taps, taps, weight.float())
    return k.reshape(4 * weight.shape[0], *weight.shape[1:]).to(weight.dtype), bias.repeat(4)


def upsample(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Wan's resample on frames [T, C, H, W]: nearest 2× (in float32, as Wan does), then the conv."""
    return F.conv2d(F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype), w, b, padding=1)


def phases(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    t, _, h, wd = x.shape
    y = F.conv2d(x, *phase_kernels(w, b), padding=1)
    return y.view(t, 2, 2, -1, h, wd).permute(0, 3, 4, 1, 5, 2).reshape(t, -1, 2 * h, 2 * wd)


def phases2x2(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    k, kb = phase_kernels(w, b)
    k = k.view(2, 2, *w.shape)
    t, _, h, wd = x.shape
    out = x.new_empty(t, w.shape[0], 2 * h, 2 * wd).contiguous(memory_format=torch.channels_last)
    for a in range(2):
        for c in range(2):
            kk = k[a, c][:, :, a:a + 2, c:c + 2].contiguous(memory_format=torch.channels_last)
            xp = F.pad(x, (1 - c, c, 1 - a, a))
            out[:, :, a::2, c::2] = F.conv2d(xp, kk, b)
    return out


RESAMPLE_FORMS = {"upsample": upsample, "phases": phases, "phases2x2": phases2x2}


def time_ms(fn: Callable[[], object], reps: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def rel_err(y: Tensor, ref: Tensor) -> float:
    return float((y.float() - ref.float()).norm() / ref.float().norm())


def channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=torch.channels_last_3d if t.dim() == 5 else torch.channels_last)


def record_later_chunk(vae: WanVAE, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype,
                       targets: list[torch.nn.Module], record: Callable[..., None]) -> None:
    """Decode a first chunk, then a later one with `record(module, inputs)` hooked before each target."""
    z = torch.randn(1, shape[0], 3, shape[1], shape[2], device=device, dtype=dtype)
    with torch.no_grad():
        _, state = vae.decode_chunk(z, vae.init_decode_state(1, device, dtype))
        hooks = [m.register_forward_pre_hook(record) for m in targets]
        try:
            vae.decode_chunk(z, state)
        finally:
            for h in hooks:
                h.remove()


def decoder_convs(vae: WanVAE, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(weight shape, input shape after time padding) of every 3-D convolution, one later chunk."""
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def record(mod, inp) -> None:  # type: ignore[no-untyped-def]
        x = inp[0]
        seen.append((tuple(mod.weight.shape), (x.shape[0], x.shape[1], x.shape[2] + mod.time_pad, x.shape[3], x.shape[4])))

    record_later_chunk(vae, shape, device, dtype, [m for m in vae.modules() if isinstance(m, CausalConv3d)], record)
    return seen


def resample_inputs(vae: WanVAE, shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> list[tuple[int, ...]]:
    """[T, C, H, W] that each resample's upsampling convolution sees, one later chunk."""
    seen: list[tuple[int, ...]] = []

    def record(mod, inp) -> None:  # type: ignore[no-untyped-def]
        t, c, h, w = inp[0].shape  # the conv sees the upsampled frames
        seen.append((t, c, h // 2, w // 2))

    record_later_chunk(vae, shape, device, dtype, [m.resample[1] for m in vae.modules() if isinstance(m, Resample)], record)
    return seen


def phase_resample(m: Resample) -> Callable[..., Tensor]:
    """Resample.forward with the upsampling convolution in the phase form (`phase_kernels`)."""
    def forward(x: Tensor, caches: dict[str, Tensor], first: bool) -> Tensor:
        x = m.frames(x, caches, first)
        b, c, t, h, w = x.shape
        y = phases(x.transpose(1, 2).reshape(b * t, c, h, w), m.resample[1].weight, m.resample[1].bias)
        return y.view(b, t, -1, 2 * h, 2 * w).transpose(1, 2)
    return forward


def part_convs(vae: WanVAE, shape, device, dtype) -> list[dict]:  # type: ignore[no-untyped-def]
    distinct: dict[tuple, int] = {}
    for ws, xs in decoder_convs(vae, shape, device, dtype):
        distinct[(ws, xs)] = distinct.get((ws, xs), 0) + 1
    rows = []
    for (ws, xs), count in distinct.items():
        x = channels_last(torch.randn(xs, device=device, dtype=dtype))
        w = channels_last(torch.randn(ws, device=device, dtype=dtype) / (ws[1] * ws[2] * ws[3] * ws[4]) ** 0.5)
        b = torch.randn(ws[0], device=device, dtype=dtype)
        ref = F.conv3d(x.float(), w.float(), b.float(), padding=(0, ws[-1] // 2, ws[-1] // 2))
        row = {"part": "convs", "shape": f"w{list(ws)} x{list(xs)}", "count": count, "flop": 2 * ref.numel() * ws[1] * ws[2] * ws[3] * ws[4]}
        for form, fn in CONV_FORMS.items():
            row[form] = {"ms": time_ms(lambda: fn(x, w, b)), "err": rel_err(fn(x, w, b), ref)}
        rows.append(row)
    return rows


def part_resample(vae: WanVAE, shape, device, dtype) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = []
    for xs in resample_inputs(vae, shape, device, dtype):
        t, c, h, w = xs
        x = channels_last(torch.randn(xs, device=device, dtype=dtype))
        wt = channels_last(torch.randn(c // 2, c, 3, 3, device=device, dtype=dtype) / (9 * c) ** 0.5)
        b = torch.randn(c // 2, device=device, dtype=dtype)
        ref = upsample(x.float(), wt.float(), b.float())
        row = {"part": "resample", "shape": f"x{list(xs)} → {c // 2} channels at {2 * h}x{2 * w}", "count": 1, "flop": 2 * (c // 2) * c * 9 * t * 4 * h * w}
        for form, fn in RESAMPLE_FORMS.items():
            row[form] = {"ms": time_ms(lambda: fn(x, wt, b)), "err": rel_err(fn(x, wt, b), ref)}
        rows.append(row)
    return rows


def part_head(device, dtype) -> list[dict]:  # type: ignore[no-untyped-def]
    x = channels_last(torch.randn(1, 96, 14, 480, 832, device=device, dtype=dtype))
    w = channels_last(torch.randn(3, 96, 3, 3, 3, device=device, dtype=dtype) / (96 * 27) ** 0.5)
    b = torch.randn(3, device=device, dtype=dtype)
    ref = F.conv3d(x.float(), w.float(), b.float(), padding=(0, 1, 1))
    row = {"part": "head", "shape": "w[3, 96, 3, 3, 3] x[1, 96, 14, 480, 832]", "count": 1, "flop": 2 * 3 * 96 * 27 * 12 * 480 * 832}
    for pad in (3, 8, 16):
        wp = channels_last(F.pad(w, (0, 0, 0, 0, 0, 0, 0, 0, 0, pad - 3)))
        bp = F.pad(b, (0, pad - 3))
        def fn() -> Tensor:
            return F.conv3d(x, wp, bp, padding=(0, 1, 1))[:, :3]
        row[f"cout{pad}"] = {"ms": time_ms(fn), "err": rel_err(fn(), ref)}
    return [row]


def part_attention(device, dtype) -> list[dict]:  # type: ignore[no-untyped-def]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    heads, d, nq, nk = 12, 128, 4680, 26520
    q = torch.randn(1, nq, heads, d, device=device, dtype=dtype)
    k = torch.randn(1, nk, heads, d, device=device, dtype=dtype)
    v = torch.randn(1, nk, heads, d, device=device, dtype=dtype)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2).float(), k.transpose(1, 2).float(), v.transpose(1, 2).float())
    rows = []
    for layout in ("bshd", "bhsd"):
        qq, kk, vv = (t.transpose(1, 2) if layout == "bshd" else t.transpose(1, 2).contiguous() for t in (q, k, v))
        row = {"part": "attention", "shape": f"q {nq} × k {nk}, 12 heads of 128, {layout}", "count": 5 * 30, "flop": 4 * heads * nq * nk * d}
        for name, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
            with sdpa_kernel(be):
                row[name] = {"ms": time_ms(lambda: F.scaled_dot_product_attention(qq, kk, vv)), "err": rel_err(F.scaled_dot_product_attention(qq, kk, vv), ref)}
        rows.append(row)
    for nq2 in (4608, 9360):  # a query count that fills whole waves; two chunks' queries at once
        q2 = torch.randn(1, heads, nq2, d, device=device, dtype=dtype)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            ms = time_ms(lambda: F.scaled_dot_product_attention(q2, k.transpose(1, 2), v.transpose(1, 2)))
        rows.append({"part": "attention", "shape": f"q {nq2} × k {nk}, bshd keys", "count": 0, "flop": 4 * heads * nq2 * nk * d, "cudnn": {"ms": ms, "err": None}})
    return rows


def gelu_linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return F.gelu(F.linear(x, w, b), approximate="tanh")


def gelu_epilogue(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return torch._addmm_activation(b, x, w.t(), use_gelu=True)


def part_ffn(device, dtype) -> list[dict]:  # type: ignore[no-untyped-def]
    n, d, f = 4680, 1536, 8960
    x = torch.randn(n, d, device=device, dtype=dtype)
    w = torch.randn(f, d, device=device, dtype=dtype) / d**0.5
    b = torch.randn(f, device=device, dtype=dtype)
    ref = gelu_linear(x.float(), w.float(), b.float())
    row = {"part": "ffn", "shape": f"[{n}, {d}] @ [{d}, {f}] + tanh-GELU", "count": 5 * 30, "flop": 2 * n * d * f}
    forms = {"two kernels": gelu_linear, "compiled": torch.compile(gelu_linear), "epilogue": gelu_epilogue, "epilogue compiled": torch.compile(gelu_epilogue)}
    for name, fn in forms.items():
        row[name] = {"ms": time_ms(lambda: fn(x, w, b)), "err": rel_err(fn(x, w, b), ref)}
    return [row]


@torch.no_grad()
def part_decoder(shape, device, dtype, chunks: int = 6) -> list[dict]:  # type: ignore[no-untyped-def]
    row: dict = {"part": "decoder", "shape": "whole decoder, compiled, one later chunk", "count": 1, "flop": 0}
    videos = {}
    for form in ("upsample", "phases"):
        torch.manual_seed(0)
        with torch.device(device):
            vae = WanVAE().to(dtype).eval()
        if form == "phases":
            for m in vae.modules():
                if isinstance(m, Resample):
                    m.forward = phase_resample(m)  # type: ignore[method-assign]
        vae.compile_decoder()
        g = torch.Generator().manual_seed(3)
        state = vae.init_decode_state(1, device, dtype)
        times, out = [], []
        for _ in range(chunks):
            z = torch.randn(1, shape[0], 3, shape[1], shape[2], generator=g).to(device, dtype)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            video, state = vae.decode_chunk(z, state)
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
            out.append(video.float().cpu())
        videos[form] = torch.cat(out, dim=2)
        row[form] = {"ms": statistics.median(times[2:]), "err": rel_err(videos[form], videos["upsample"]), "all_ms": [round(t, 1) for t in times]}
    row["max_abs_diff"] = float((videos["phases"] - videos["upsample"]).abs().max())
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--parts", default="convs,resample,head,attention,ffn,decoder")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device, dtype = torch.device(args.device), torch.bfloat16
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # float32 references really float32
    torch.backends.cuda.matmul.allow_tf32 = False
    shape = (16, args.height // 8, args.width // 8)
    with torch.device(device):
        vae = WanVAE().to(dtype).eval()
    makers = {"convs": lambda: part_convs(vae, shape, device, dtype), "resample": lambda: part_resample(vae, shape, device, dtype),
              "head": lambda: part_head(device, dtype), "attention": lambda: part_attention(device, dtype),
              "ffn": lambda: part_ffn(device, dtype), "decoder": lambda: part_decoder(shape, device, dtype)}
    card = torch.cuda.get_device_name()
    rows: list[dict] = []
    for part in args.parts.split(","):
        try:
            with torch.no_grad():
                for row in makers[part]():
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        except Exception as err:  # one part failing must not lose the others
            print(f"# part {part} failed: {type(err).__name__}: {err}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"card": card, "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"\n# parts of one later chunk at {args.width}x{args.height}, bf16; {card}; torch {torch.__version__}; ms (TFLOP/s) [relative error]; n = uses per chunk")
    for r in rows:
        forms = [k for k, v in r.items() if isinstance(v, dict)]
        cells = []
        for k in forms:
            v = r[k]
            rate = f" ({r['flop'] / v['ms'] / 1e9:.0f})" if r["flop"] else ""
            err = f" [{v['err']:.1e}]" if v.get("err") is not None else ""
            cells.append(f"{k} {v['ms']:.3f}{rate}{err}")
        print(f"{r['part']:9} {r['shape']:52} n={r['count']:<3} " + "; ".join(cells))


if __name__ == "__main__":
    main()
