"""Transformer configuration and named presets.

Every size the generator needs at run time (tokens per latent frame, tokens per chunk) is
derived here from the config and the latent resolution, so no other module writes a
resolution-dependent number as a literal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of a Wan2.1-style video diffusion transformer.

    Field names follow the Wan2.1 release so a real checkpoint's config maps one to one.
    """

    dim: int = 1536  # model width
    num_layers: int = 30
    num_heads: int = 12
    ffn_dim: int = 8960
    text_dim: int = 4096  # width of the text encoder's output
    freq_dim: int = 256  # sinusoidal timestep embedding width
    in_channels: int = 16  # latent channels in
    out_channels: int = 16  # latent channels out
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (time, height, width)
    text_len: int = 512  # prompt tokens per prompt (padded), as the text encoder delivers them
    eps: float = 1e-6
    cross_attn_norm: bool = True
    cut_embedding: bool = False  # learned flag for "this latent frame follows a hard cut" (default model only)
    rope_theta: float = 10000.0
    rope_max_positions: int = 1024  # latent frames/rows/columns the rotary tables cover

    def __post_init__(self) -> None:
        assert self.dim % self.num_heads == 0, "dim must split evenly into heads"
        assert self.head_dim % 2 == 0, "rotary embedding needs an even head dimension"
        assert self.patch_size[0] == 1, "temporal patching is not supported: a latent frame is the unit of memory"

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Split of the head dimension between time, height and width (Wan's rule)."""
        d = self.head_dim
        hw = 2 * (d // 6)
        return d - 2 * hw, hw, hw

    def tokens_per_frame(self, latent_height: int, latent_width: int) -> int:
        _, ph, pw = self.patch_size
        assert latent_height % ph == 0 and latent_width % pw == 0, "latent size must be a multiple of the patch"
        return (latent_height // ph) * (latent_width // pw)

    def grid(self, latent_height: int, latent_width: int) -> tuple[int, int]:
        """Token grid (rows, columns) of one latent frame."""
        _, ph, pw = self.patch_size
        return latent_height // ph, latent_width // pw

    def params(self) -> int:
        """Parameter count, computed from the shape (for cards and VRAM planning)."""
        d, f, t = self.dim, self.ffn_dim, self.text_dim
        patch = self.in_channels * self.patch_size[0] * self.patch_size[1] * self.patch_size[2]
        attn = 4 * (d * d + d) + 2 * d
        block = 2 * attn + (d * f + f) + (f * d + d) + 2 * d + 6 * d
        embed = patch * d + d + (t * d + d) + (d * d + d) + (self.freq_dim * d + d) + (d * d + d) + (d * 6 * d + 6 * d)
        head = d * self.out_channels * self.patch_size[1] * self.patch_size[2] + self.out_channels * self.patch_size[1] * self.patch_size[2] + 2 * d
        cut = 2 * d if self.cut_embedding else 0
        return embed + self.num_layers * block + head + cut


PRESETS: dict[str, TransformerConfig] = {
    # The shipped default model: small enough to render a short film on a laptop CPU.
    "tiny": TransformerConfig(
        dim=256, num_layers=6, num_heads=4, ffn_dim=1024, text_dim=128, freq_dim=128,
        in_channels=16, out_channels=16, text_len=32, cut_embedding=True,
    ),
    # A few-thousand-parameter shape for fast tests of every code path (not a usable model).
    "micro": TransformerConfig(
        dim=32, num_layers=2, num_heads=2, ffn_dim=64, text_dim=32, freq_dim=32,
        in_channels=16, out_channels=16, text_len=8, cut_embedding=True,
    ),
    # The Wan2.1 text-to-video 1.3B shape used by the public causal checkpoints.
    "wan2.1-t2v-1.3b": TransformerConfig(
        dim=1536, num_layers=30, num_heads=12, ffn_dim=8960, text_dim=4096, freq_dim=256,
        in_channels=16, out_channels=16, text_len=512,
    ),
    "wan2.1-t2v-14b": TransformerConfig(
        dim=5120, num_layers=40, num_heads=40, ffn_dim=13824, text_dim=4096, freq_dim=256,
        in_channels=16, out_channels=16, text_len=512,
    ),
}


def preset(name: str, **overrides: object) -> TransformerConfig:
    """A named preset, optionally with fields replaced (tests shrink presets this way)."""
    if name not in PRESETS:
        known = ", ".join(sorted(PRESETS))
        raise KeyError(f"unknown model preset {name!r}; known presets: {known}")
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]
