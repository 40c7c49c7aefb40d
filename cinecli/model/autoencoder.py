"""Causal latent video autoencoder with streaming decode.

A latent frame covers ``temporal_stride`` (4) video frames and an 8x8 pixel patch:
latent ``i`` encodes video frames ``4i .. 4i+3``. Every temporal operation is causal
(left padding only), so

* the encoder's latent ``i`` depends on video frames ``<= 4i+3`` only, and
* the decoder can turn latents into video one chunk at a time, carrying for each causal
  temporal convolution the last ``k-1`` frames of its input features in a
  :class:`DecodeState`. Decoding chunk by chunk equals decoding the whole clip.

Internal layout is ``[B, T, C, H, W]`` (time next to batch) so that per-frame 2D
convolutions are free views ``[B*T, C, H, W]`` and temporal (un)grouping by the stride is
a free reshape of channels. The public API uses ``[B, C, T, H, W]``.

The decoder is deliberately light (it runs at render time, on CPU too): most of its work
happens at latent resolution and at the latent frame rate; the video-rate, high-resolution
stages are a few narrow convolutions. The encoder only runs in training and is heavier.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AutoencoderConfig",
    "DecodeState",
    "VideoAutoencoder",
    "extend_decoder",
    "load_autoencoder",
    "save_autoencoder",
]

FORMAT = "cinecli-video-autoencoder-v1"


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`VideoAutoencoder` (saved with the weights as JSON).

    ``enc_channels`` are the encoder widths at spatial strides 2, 4, 8 (the input is first
    folded 2x2 into channels, so no convolution runs at full resolution).
    ``dec_channels`` are the decoder's video-rate widths at strides 8, 4, 2.
    """

    latent_channels: int = 16
    base_channels: int = 128  # width of the latent-rate stages (encoder tail, decoder head)
    temporal_stride: int = 4
    spatial_stride: int = 8
    enc_channels: tuple[int, ...] = (48, 96, 128)
    enc_blocks: int = 1  # causal (2+1)D residual blocks per encoder level
    latent_blocks: int = 2  # causal residual blocks at the latent rate (encoder and decoder)
    dec_channels: tuple[int, ...] = (64, 32, 16)
    dec_blocks: tuple[int, ...] = (1, 0, 0)  # per-frame residual blocks per decoder level
    temporal_kernel: int = 3  # taps of each causal temporal convolution
    # The decoder draws latent frame i's video frames from latents <= i + lookahead. With 0 it
    # cannot know where motion goes next; with 1 it can, and a render draws each latent frame
    # one latent frame late. How far that spreads motion over a latent frame's four frames
    # depends on what the encoder put in the latents (docs/TRAINING.md, runs 33-42).
    lookahead: int = 0
    frame_kernel: int = 0  # taps of a causal temporal block across video frames (0: none)
    # a direct path from a latent frame and its look-ahead to each of its video frames' features,
    # past the latent-rate blocks: the short way for a frame to move towards the next latent frame
    ahead_path: bool = False

    def __post_init__(self) -> None:
        if self.temporal_stride < 1:
            raise ValueError("temporal_stride must be >= 1")
        if self.spatial_stride != 8 or len(self.enc_channels) != 3 or len(self.dec_channels) != 3:
            raise ValueError("this autoencoder is built for spatial_stride 8 with 3 levels")
        if len(self.dec_blocks) != len(self.dec_channels):
            raise ValueError("dec_blocks needs one entry per dec_channels level")
        if self.temporal_kernel < 1:
            raise ValueError("temporal_kernel must be >= 1")
        if self.lookahead not in (0, 1):
            raise ValueError(f"lookahead must be 0 or 1, got {self.lookahead}")
        if self.frame_kernel < 0:
            raise ValueError("frame_kernel must be >= 0")
        if self.ahead_path and not self.lookahead:
            raise ValueError("ahead_path needs lookahead: 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoencoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown AutoencoderConfig keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class DecodeState:
    """Causal decode cache carried from one chunk to the next.

    ``caches`` maps a temporal convolution's name to the last ``k-1`` frames of its input
    ``[B, k-1, C, h, w]``; a missing entry means "nothing decoded yet" (zero padding, the
    same as the start of a whole-clip decode). ``position`` counts latent frames drawn.
    ``pending`` holds the latent frames a look-ahead decoder has received and not yet drawn
    ``[B, C, lookahead, h, w]`` (a render checkpoint must keep them: their frames come later).
    It is a flat ``dict[str, Tensor]`` underneath so render checkpoints can store it.
    """

    caches: dict[str, Tensor] = field(default_factory=dict)
    position: int = 0
    pending: Tensor | None = None

    def to_tensors(self) -> dict[str, Tensor]:
        out = {f"cache.{k}": v.contiguous() for k, v in self.caches.items()}
        out["position"] = torch.tensor(self.position, dtype=torch.int64)
        if self.pending is not None:
            out["pending"] = self.pending.contiguous()
        return out

    @classmethod
    def from_tensors(cls, d: dict[str, Tensor]) -> DecodeState:
        caches = {k[len("cache."):]: v for k, v in d.items() if k.startswith("cache.")}
        unknown = [k for k in d if k not in ("position", "pending") and not k.startswith("cache.")]
        if unknown:
            raise ValueError(f"not a DecodeState: unexpected keys {unknown}")
        position = int(d["position"].item()) if "position" in d else 0
        return cls(caches=caches, position=position, pending=d.get("pending"))


# --------------------------------------------------------------------------- layers


def _frames2d(x: Tensor) -> Tensor:
    """[B, T, C, H, W] -> [B*T, C, H, W] (a view)."""
    return x.flatten(0, 1)


def _unframes(x: Tensor, b: int) -> Tensor:
    """[B*T, C, H, W] -> [B, T, C, H, W] (a view)."""
    return x.unflatten(0, (b, x.shape[0] // b))


class CausalTemporalConv(nn.Module):
    """``k`` taps along time, left padding only, as one 1x1 conv over stacked shifted frames.

    Streaming: the caller passes the previous ``k-1`` input frames (or ``None`` = zeros) and
    gets back the new last ``k-1`` input frames.
    """

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.proj = nn.Conv2d(k * cin, cout, 1)

    def forward(self, x: Tensor, cache: Tensor | None) -> tuple[Tensor, Tensor | None]:
        b, t, c, h, w = x.shape  # [B, T, C, H, W]
        if self.k == 1:
            return _unframes(self.proj(_frames2d(x)), b), None
        if cache is None:
            cache = x.new_zeros(b, self.k - 1, c, h, w)
        xp = torch.cat([cache.to(x.dtype), x], dim=1)  # [B, T+k-1, C, H, W]
        cols = torch.cat([xp[:, j : j + t] for j in range(self.k)], dim=2)  # [B, T, k*C, H, W]
        y = _unframes(self.proj(_frames2d(cols)), b)  # [B, T, Cout, H, W]
        return y, xp[:, t:].contiguous()  # last k-1 input frames


class CausalBlock(nn.Module):
    """(2+1)D residual block: per-frame GroupNorm + 3x3 conv, then a causal temporal conv.

    GroupNorm statistics are per frame, so the block never looks at other frames except
    through the causal temporal convolution.
    """

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(32, c // 4), c)
        self.spatial = nn.Conv2d(c, c, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(32, c // 4), c)
        self.temporal = CausalTemporalConv(c, c, k)
        nn.init.zeros_(self.temporal.proj.weight)  # start as identity
        nn.init.zeros_(self.temporal.proj.bias)
        self.name = ""  # set by the owning model: key of this block's cache

    def forward(self, x: Tensor, caches: dict[str, Tensor]) -> Tensor:
        b = x.shape[0]
        h = self.spatial(F.silu(self.norm1(_frames2d(x))))
        h = F.silu(self.norm2(h))
        h, new = self.temporal(_unframes(h, b), caches.get(self.name))
        if new is not None:
            caches[self.name] = new
        return x + h


class FrameBlock(nn.Module):
    """Per-frame residual block (no time mixing); optional norm, skipped where speed matters."""

    def __init__(self, c: int, norm: bool) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(32, c // 4), c) if norm else nn.Identity()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(32, c // 4), c) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W]
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


# --------------------------------------------------------------------------- model


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        c0, c1, c2 = cfg.enc_channels
        k = cfg.temporal_kernel
        self.stem = nn.Conv2d(3 * 4, c0, 3, padding=1)  # after a 2x2 fold: stride 2
        self.levels = nn.ModuleList(
            [nn.ModuleList([CausalBlock(c, k) for _ in range(cfg.enc_blocks)]) for c in (c0, c1, c2)]
        )
        self.down = nn.ModuleList(
            [nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.Conv2d(c1, c2, 3, stride=2, padding=1)]
        )
        s = cfg.temporal_stride
        self.group = nn.Conv2d(s * c2, cfg.base_channels, 1)  # fold 4 frames into one latent frame
        self.latent_blocks = nn.ModuleList(
            [CausalBlock(cfg.base_channels, k) for _ in range(cfg.latent_blocks)]
        )
        self.norm_out = nn.GroupNorm(32, cfg.base_channels)
        self.out = nn.Conv2d(cfg.base_channels, cfg.latent_channels, 3, padding=1)
        self.stride = s

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]  # x: [B, T, 3, H, W]
        caches: dict[str, Tensor] = {}  # whole clip at once: zero left padding, nothing kept
        h = self.stem(F.pixel_unshuffle(_frames2d(x), 2))  # [B*T, c0, H/2, W/2]
        h = _unframes(h, b)
        for i, blocks in enumerate(self.levels):
            for blk in blocks:
                h = blk(h, caches)
            if i < len(self.down):
                h = _unframes(self.down[i](_frames2d(h)), b)
        # [B, T, c2, h, w] -> [B, T/s, s*c2, h, w]: latent i holds frames s*i .. s*i+s-1
        h = h.reshape(b, t // self.stride, self.stride * h.shape[2], *h.shape[3:])
        h = _unframes(self.group(_frames2d(h)), b)
        for blk in self.latent_blocks:
            h = blk(h, caches)
        z = self.out(F.silu(self.norm_out(_frames2d(h))))
        return _unframes(z, b)  # [B, T/s, C_lat, h, w]


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        k = cfg.temporal_kernel
        d = cfg.base_channels
        c0, c1, c2 = cfg.dec_channels
        self.stride = cfg.temporal_stride
        self.inp = nn.Conv2d(cfg.latent_channels * (1 + cfg.lookahead), d, 3, padding=1)
        self.latent_blocks = nn.ModuleList([CausalBlock(d, k) for _ in range(cfg.latent_blocks)])
        self.norm_split = nn.GroupNorm(32, d)
        self.split = nn.Conv2d(d, self.stride * c0, 1)  # one latent frame -> s video frames
        # video frames drawn from one latent frame's channel slices differ in their errors (the
        # picture shimmers in still shots); a causal block across video frames lets each see the last
        self.frame_blocks = nn.ModuleList([CausalBlock(c0, cfg.frame_kernel)] if cfg.frame_kernel else [])
        self.ahead = nn.Conv2d(cfg.latent_channels * (1 + cfg.lookahead), self.stride * c0, 3, padding=1) if cfg.ahead_path else None
        if self.ahead is not None:
            nn.init.zeros_(self.ahead.weight)
            nn.init.zeros_(self.ahead.bias)
        self.levels = nn.ModuleList(
            [
                nn.Sequential(*[FrameBlock(c, norm=(i == 0)) for _ in range(n)])
                for i, (c, n) in enumerate(zip(cfg.dec_channels, cfg.dec_blocks))
            ]
        )
        # pixel-shuffle upsamplers: conv at low resolution to 4x channels, then unfold 2x2
        self.up = nn.ModuleList([nn.Conv2d(c0, 4 * c1, 3, padding=1), nn.Conv2d(c1, 4 * c2, 3, padding=1)])
        self.out = nn.Conv2d(c2, 3 * 4, 3, padding=1)

    def forward(self, z: Tensor, caches: dict[str, Tensor]) -> Tensor:
        """z: [B, f, C_lat * (1 + lookahead), h, w], each latent frame with the ones after it
        stacked on its channels; caches is updated in place."""
        b, f = z.shape[:2]
        z2d = _frames2d(z)  # a copy when z is a transposed view (as decode_raw passes it): made once
        h = _unframes(self.inp(z2d), b)
        for blk in self.latent_blocks:
            h = blk(h, caches)
        h = self.split(F.silu(self.norm_split(_frames2d(h))))  # [B*f, s*c0, h, w]
        if self.ahead is not None:
            h = h + self.ahead(z2d)
        # [B, f, s*c0, h, w] -> [B*f*s, c0, h, w]: video frame s*i+j from slice j of latent i
        h = h.reshape(b * f * self.stride, -1, *h.shape[2:])
        for blk in self.frame_blocks:
            h = _frames2d(blk(_unframes(h, b), caches))
        # channels-last makes the narrow high-resolution convs ~2-3x faster on CPU (oneDNN)
        h = h.contiguous(memory_format=torch.channels_last)
        for i, level in enumerate(self.levels):
            h = level(h)
            if i < len(self.up):
                h = F.pixel_shuffle(self.up[i](F.silu(h)), 2)
        y = F.pixel_shuffle(self.out(F.silu(h)), 2)  # [B*T, 3, H, W]
        return _unframes(y.contiguous(), b)  # [B, T, 3, H, W]


class VideoAutoencoder(nn.Module):
    """Causal video autoencoder: ``[B,3,T,H,W]`` in [-1,1] <-> latents ``[B,C,T/4,H/8,W/8]``."""

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderConfig()
        self.latent_channels = self.config.latent_channels
        self.temporal_stride = self.config.temporal_stride
        self.spatial_stride = self.config.spatial_stride
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        for name, mod in self.named_modules():
            if isinstance(mod, CausalBlock):
                mod.name = name
        c = self.config.latent_channels
        # set after training from held-out latents so diffusion sees ~unit-variance inputs
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))

    # -- encoding -------------------------------------------------------------------------
    def encode(self, video: Tensor) -> Tensor:
        """[B,3,T,H,W] in [-1,1], T a multiple of 4 -> raw latents [B,C,T/4,H/8,W/8]."""
        b, c, t, h, w = video.shape
        s, p = self.temporal_stride, self.spatial_stride
        if c != 3 or t % s or h % p or w % p:
            raise ValueError(f"video must be [B,3,T,H,W] with T%{s}==0 and H,W%{p}==0, got {tuple(video.shape)}")
        z = self.encoder(video.transpose(1, 2))  # [B, T/s, C, h, w]
        return z.transpose(1, 2)

    # -- decoding -------------------------------------------------------------------------
    def init_decode_state(self, batch: int, device: torch.device | str | None = None,
                          dtype: torch.dtype | None = None) -> DecodeState:
        """The state before any latent frame: no caches (zero left padding).

        ``batch``/``device``/``dtype`` are accepted for API symmetry; caches are created
        lazily with the shape, device and dtype of the first chunk.
        """
        del batch, device, dtype
        return DecodeState()

    def compile_decoder(self) -> None:
        """Compile the decoder in place (torch.compile): its float32 norms and activations at full
        resolution fuse into the convolutions' neighbours. Streaming calls have one shape per
        film after the first chunk, so it compiles once or twice."""
        self.decoder.forward = torch.compile(self.decoder.forward, dynamic=False)  # type: ignore[method-assign]

    def decode_raw(self, latents: Tensor, state: DecodeState | None = None, *,
                   final: bool = True) -> tuple[Tensor, DecodeState]:
        """Unclamped decode used by training; ``[B,C,f,h,w] -> ([B,3,4n,H,W], new state)``.

        A look-ahead decoder draws a latent frame once the next one has arrived, so a chunk
        draws the frames it received minus the last (kept in ``state.pending``) plus the one
        held back from the chunk before. ``final`` says no latent frame will follow: the held
        back one is drawn too, looking ahead at itself (as training does at every clip's end).
        """
        state = state or DecodeState()
        lead = self.config.lookahead
        z = latents if state.pending is None else torch.cat([state.pending.to(latents.dtype), latents], dim=2)
        if final and lead:  # nothing follows: the last latent frame looks ahead at itself
            z = torch.cat([z, z[:, :, -1:].expand(-1, -1, lead, -1, -1)], dim=2)
        n = max(0, z.shape[2] - lead)
        x = z if lead == 0 else torch.cat([z[:, :, j : j + n] for j in range(lead + 1)], dim=1)  # [B, C*(1+lead), n, h, w]
        pending = z[:, :, n:].contiguous() if lead and not final else None
        caches = dict(state.caches)
        if n == 0:
            b, _, _, h, w = latents.shape
            s = self.spatial_stride
            return latents.new_zeros(b, 3, 0, h * s, w * s), DecodeState(caches, state.position, pending)
        y = self.decoder(x.transpose(1, 2), caches)
        return y.transpose(1, 2), DecodeState(caches=caches, position=state.position + n, pending=pending)

    def decode_chunk(self, latents: Tensor, state: DecodeState, *, final: bool = False) -> tuple[Tensor, DecodeState]:
        """The video frames the next latent frames let the decoder draw (``decode_raw``),
        given the state of everything decoded before; ``final`` for the film's last chunk."""
        y, new = self.decode_raw(latents, state, final=final)
        return y.clamp(-1.0, 1.0), new

    def decode(self, latents: Tensor) -> Tensor:
        """Whole clip at once (the reference that chunked decoding must match)."""
        y, _ = self.decode_raw(latents, DecodeState(), final=True)
        return y.clamp(-1.0, 1.0)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """Training pass: returns (unclamped reconstruction, raw latents)."""
        z = self.encode(video)
        return self.decode_raw(z)[0], z

    # -- latent normalisation --------------------------------------------------------------
    def normalize(self, z: Tensor) -> Tensor:
        """Raw latents -> ~unit-variance latents for the diffusion model ([B,C,...])."""
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return (z - self.latent_mean.view(shape).to(z.dtype)) / self.latent_std.view(shape).to(z.dtype)

    def denormalize(self, z: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return z * self.latent_std.view(shape).to(z.dtype) + self.latent_mean.view(shape).to(z.dtype)


def extend_decoder(model: VideoAutoencoder, *, lookahead: int, frame_kernel: int,
                   ahead_path: bool = False) -> VideoAutoencoder:
    """``model`` with a look-ahead input, a temporal block across video frames and/or the
    look-ahead's direct path added to its decoder, drawing exactly what ``model`` draws until
    trained: the look-ahead input's weights, the new block's temporal projection and the direct
    path start at zero. The encoder and latent statistics are copied bit for bit, so generators
    trained in ``model``'s latent space stay valid. Extensions ``model`` already has are kept
    (a decoder is never shrunk)."""
    old = model.config
    cfg = AutoencoderConfig.from_dict({**asdict(old), "lookahead": old.lookahead or lookahead,
                                       "frame_kernel": old.frame_kernel or frame_kernel,
                                       "ahead_path": old.ahead_path or ahead_path})
    if cfg == old:
        return model
    grown = VideoAutoencoder(cfg).to(next(model.parameters()).device)
    state = grown.state_dict()
    for key, value in model.state_dict().items():
        if key == "decoder.inp.weight" and value.shape != state[key].shape:
            state[key].zero_()[:, : value.shape[1]] = value  # the look-ahead channels start at zero
        else:
            state[key] = value
    grown.load_state_dict(state)
    return grown.train(model.training)


def save_autoencoder(model: VideoAutoencoder, path: Path | str) -> Path:
    """Weights as safetensors (float32) with the config JSON in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(sd, str(tmp), metadata={"format": FORMAT, "config": model.config.to_json()})
    tmp.replace(path)
    return path


def load_autoencoder(path: Path | str, device: torch.device | str = "cpu") -> VideoAutoencoder:
    """Inverse of :func:`save_autoencoder`; the architecture comes from the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path}: not a cinecli video autoencoder (metadata {sorted(meta)})")
    model = VideoAutoencoder(AutoencoderConfig.from_dict(json.loads(meta["config"])))
    model.load_state_dict(load_file(str(path), device=str(device)))
    return model.to(device).eval()
