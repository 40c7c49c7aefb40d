"""The Wan2.1 VAE decoder with streaming decode, loading `Wan2.1_VAE.pth` by its own key names.

Why a module of our own rather than Diffusers' `AutoencoderKLWan` behind a wrapper:
* the render needs the decoder's causal-convolution cache to cross chunk boundaries and to be
  saved in every checkpoint. Diffusers keeps that cache as private mutable attributes cleared
  at each `decode()`; streaming through it would mean reaching into internals that change
  between releases. Here the cache is explicit: each causal convolution reads and writes its
  last input frames in a `DecodeState` (cinecli's own, so `state/` saves it unchanged);
* `Wan2.1_VAE.pth` (what the public causal checkpoints ship beside) loads by its original key
  names, with no conversion step and no 60 MB dependency at render time;
* only the decoder is built: rendering never encodes video. The encoder's keys are checked to be
  encoder keys and skipped.
Diffusers' implementation is the reference in the parity tests (tests/test_wan_parity.py).

Decoding walks the latent frames one at a time, as Wan's own decode does, so a chunk of any
length, and any split of a clip into chunks, gives the same frames as decoding the whole clip.
The first latent frame of a clip decodes to one video frame (its temporal upsamplers are
skipped), every later one to four: 1 + 4k frames, the grid `first_alone=True` describes.
Each causal convolution keeps the last two frames of its (zero-padded) input; a temporal
upsampler's cache starts at the second latent frame, with zeros, which is what Wan does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cinecli.model.autoencoder import DecodeState

# Wan2.1's per-channel latent statistics (the VAE's own, published with it).
LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
SKIPPED_PREFIXES = ("encoder.", "conv1.")  # the encoder and its output projection


@dataclass(frozen=True)
class WanVAEConfig:
    """Shape of the Wan2.1 VAE decoder; the defaults are the released model's."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    res_blocks: int = 2
    temporal_upsample: tuple[bool, ...] = (True, True, False)

    def __post_init__(self) -> None:
        if len(self.temporal_upsample) != len(self.dim_mult) - 1:
            raise ValueError("temporal_upsample needs one entry per upsampling level")

    @property
    def temporal_stride(self) -> int:
        return 2 ** sum(self.temporal_upsample)

    @property
    def spatial_stride(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)


class CausalConv3d(nn.Conv3d):
    """A 3-D convolution padded only into the past along time (zeros, or the cached frames).

    `caches` None means a stand-alone call with zero history; otherwise the convolution reads
    its previous input frames under `cache_name` and leaves its newest ones there.
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int, int], padding: int | tuple[int, int, int] = 0) -> None:
        super().__init__(cin, cout, kernel, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.time_pad = 2 * pt
        self.space_pad = (pw, pw, ph, ph, 0, 0)
        self.cache_name = ""

    def forward(self, x: Tensor, caches: dict[str, Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if self.time_pad:
            prev = caches.get(self.cache_name) if caches is not None else None
            if prev is None:
                prev = x.new_zeros(x.shape[0], x.shape[1], self.time_pad, *x.shape[3:])
            x = torch.cat([prev.to(x.dtype), x], dim=2)
            if caches is not None:
                caches[self.cache_name] = x[:, :, -self.time_pad:].clone()
        return super().forward(F.pad(x, self.space_pad))


class RMSNorm(nn.Module):
    """Wan's channel RMS norm: L2-normalise over channels, times sqrt(C) and a learned gain."""

    def __init__(self, dim: int, *, images: bool) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        # indices follow the released file: residual.{0,2,3,6}, shortcut
        self.residual = nn.Sequential(
            RMSNorm(cin, images=False), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
            RMSNorm(cout, images=False), nn.SiLU(), nn.Identity(), CausalConv3d(cout, cout, 3, padding=1),
        )
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, caches: dict[str, Tensor]) -> Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, caches) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (frames never mix here)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, caches: dict[str, Tensor]) -> Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).reshape(b * t, c, h, w))
        q, k, v = self.to_qkv(y).flatten(2).transpose(1, 2).unsqueeze(1).chunk(3, dim=-1)  # [bt, 1, hw, c]
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).view(b, t, c, h, w).transpose(1, 2)
        return x + y


class Resample(nn.Module):
    """2× spatial upsampling (nearest, then a conv halving the channels), optionally 2× in time."""

    def __init__(self, dim: int, *, temporal: bool) -> None:
        super().__init__()
        self.resample = nn.Sequential(nn.Identity(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0)) if temporal else None

    def frames(self, x: Tensor, caches: dict[str, Tensor], first: bool) -> Tensor:
        """The temporal 2× (none for the film's first frame, nor without a time conv)."""
        if self.time_conv is None or first:
            return x
        y = self.time_conv(x, caches)  # [b, 2c, t, h, w]: channel halves are the two output frames
        b, c2, t, h, w = y.shape
        return y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)

    def forward(self, x: Tensor, caches: dict[str, Tensor], first: bool) -> Tensor:
        x = self.frames(x, caches, first)
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        y = F.interpolate(y.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)
        y = self.resample[1](y)
        return y.view(b, t, -1, 2 * h, 2 * w).transpose(1, 2)


class Decoder3d(nn.Module):
    def __init__(self, cfg: WanVAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0]))
        layers: list[nn.Module] = []
        cout = dims[0]
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if i > 0 else cin  # the previous level's resample halved the channels
            for _ in range(cfg.res_blocks + 1):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i < len(cfg.dim_mult) - 1:
                layers.append(Resample(cout, temporal=cfg.temporal_upsample[i]))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(cout, images=False), nn.SiLU(), CausalConv3d(cout, 3, 3, padding=1))

    def forward(self, x: Tensor, caches: dict[str, Tensor], first: bool) -> Tensor:
        x = self.conv1(x, caches)
        for layer in self.middle:
            x = layer(x, caches)
        for layer in self.upsamples:
            x = layer(x, caches, first) if isinstance(layer, Resample) else layer(x, caches)
        for layer in self.head:
            x = layer(x, caches) if isinstance(layer, CausalConv3d) else layer(x)
        return x


class WanVAE(nn.Module):
    """Latents [B, 16, f, H/8, W/8] → video [B, 3, 1 + 4(f-1) or 4f, H, W] in [-1, 1], streamed.

    Same interface as cinecli's VideoAutoencoder for rendering: `init_decode_state`,
    `decode_chunk`, `decode`, `normalize`/`denormalize` (Wan's per-channel mean and std).
    """

    def __init__(self, config: WanVAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or WanVAEConfig()
        self.latent_channels = cfg.z_dim
        self.temporal_stride = cfg.temporal_stride
        self.spatial_stride = cfg.spatial_stride
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        for name, module in self.named_modules():
            if isinstance(module, CausalConv3d):
                module.cache_name = name
        mean = torch.tensor(LATENT_MEAN if cfg.z_dim == len(LATENT_MEAN) else (0.0,) * cfg.z_dim)
        std = torch.tensor(LATENT_STD if cfg.z_dim == len(LATENT_STD) else (1.0,) * cfg.z_dim)
        # not in the state dict: Wan2.1_VAE.pth does not carry them, they belong to the release
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)

    def init_decode_state(self, batch: int, device: torch.device | str | None = None,
                          dtype: torch.dtype | None = None) -> DecodeState:
        """Nothing decoded yet: no caches; they are created with the first chunk's shapes."""
        del batch, device, dtype
        return DecodeState()

    def compile_decoder(self) -> None:
        """Compile the decoder in place (torch.compile), channels-last.

        At 832×480 the decoder's norms and activations run over 96-channel maps of every pixel;
        compiled, they fuse into their neighbours, and in the channels-last 3-D layout cuDNN's
        convolutions and the fused kernels meet without transposes. Measured on an H100 for one
        chunk of 12 frames (docs/BENCHMARKS.md): 272 ms eager, 192 ms compiled, 131 ms compiled
        channels-last. Streaming calls take one shape per film after the first chunk, so it
        compiles three times (the film's first frame alone, without temporal upsampling; the
        rest of the first chunk; every later chunk).

        It also turns on cuDNN autotuning (`torch.backends.cudnn.benchmark`, a process-wide
        setting): with one shape per film, the one-off search per convolution pays for itself,
        and by default cuDNN ran some of these convolutions with Ampere (sm80) kernels on Hopper.
        """
        torch.backends.cudnn.benchmark = True
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                m.weight.data = m.weight.data.to(memory_format=torch.channels_last_3d)
        compiled = torch.compile(self.decoder.forward, dynamic=False)

        def forward(x: Tensor, caches: dict[str, Tensor], first: bool) -> Tensor:
            return compiled(x.contiguous(memory_format=torch.channels_last_3d), caches, first)

        self.decoder.forward = forward  # type: ignore[method-assign]

    @torch.no_grad()
    def decode_chunk(self, latents: Tensor, state: DecodeState, *, final: bool = False) -> tuple[Tensor, DecodeState]:
        """Decode the next latent frames given the cache of everything before; `state` is not changed.
        This decoder draws every latent frame as it arrives, so `final` (the film's last chunk) changes nothing."""
        del final
        caches = dict(state.caches)
        x = self.conv2(latents.to(self.conv2.weight.dtype))
        position = state.position
        frames = []
        # The film's first frame decodes alone (no temporal upsampling); every other latent frame
        # of the chunk goes through the decoder in one call. Causal convolutions with a cache
        # give the same frames either way, and one call of 3 frames keeps the GPU's convolution
        # kernels busier than three calls of 1 (docs/BENCHMARKS.md).
        start = 1 if position == 0 else 0
        if start:
            frames.append(self.decoder(x[:, :, :1], caches, first=True))
        if x.shape[2] > start:
            frames.append(self.decoder(x[:, :, start:], caches, first=False))
        video = torch.cat(frames, dim=2).clamp(-1.0, 1.0)
        return video, DecodeState(caches=caches, position=position + x.shape[2])

    def decode(self, latents: Tensor) -> Tensor:
        """A whole clip from scratch (the reference chunked decoding must equal)."""
        return self.decode_chunk(latents, DecodeState())[0]

    def normalize(self, z: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return (z - self.latent_mean.view(shape).to(z)) / self.latent_std.view(shape).to(z)

    def denormalize(self, z: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return z * self.latent_std.view(shape).to(z) + self.latent_mean.view(shape).to(z)


def config_from_state(state: dict[str, Any], path: Path) -> WanVAEConfig:
    """The decoder's widths read off the file (the released VAE: dim 96, z 16); the layout is fixed."""
    try:
        dim = int(state["decoder.head.2.weight"].shape[1])
        z_dim = int(state["conv2.weight"].shape[0])
    except KeyError as exc:
        raise ValueError(f"{path}: not a Wan2.1 VAE: no key {exc.args[0]!r}") from None
    return WanVAEConfig(dim=dim, z_dim=z_dim)


def load_wan_vae(path: Path, *, dtype: torch.dtype = torch.float32) -> WanVAE:
    """`Wan2.1_VAE.pth` (or the Diffusers `AutoencoderKLWan` safetensors), strictly.

    Every decoder key must be present with its shape and every other key must belong to the
    encoder (skipped); anything else is refused with its name.
    """
    from cinecli.model.loading import WeightsError, check_strict, clean_names, pick_state_dict, read_file
    from cinecli.model.wan import names

    path = Path(path)
    state, _ = pick_state_dict(read_file(path), path, "auto")
    state = clean_names(state)
    if names.is_diffusers_vae(state):
        state = names.rename_all(state, names.diffusers_vae_key)
    try:
        cfg = config_from_state(state, path)
    except ValueError as exc:
        raise WeightsError(str(exc)) from None
    with torch.device("meta"):
        model = WanVAE(cfg)
    decoder = {k: v for k, v in state.items() if not k.startswith(SKIPPED_PREFIXES)}
    check_strict({k: tuple(v.shape) for k, v in model.state_dict().items()}, decoder, path)
    model.load_state_dict({k: v.to(dtype) for k, v in decoder.items()}, strict=True, assign=True)
    model.latent_mean = torch.tensor(LATENT_MEAN if cfg.z_dim == 16 else (0.0,) * cfg.z_dim)
    model.latent_std = torch.tensor(LATENT_STD if cfg.z_dim == 16 else (1.0,) * cfg.z_dim)
    return model.eval()
