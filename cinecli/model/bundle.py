"""A renderable model: transformer + text encoder + autoencoder + how to sample it.

The shipped default model lives in `cinecli/weights/default/` as safetensors files plus a
`model.json` card. When those files are absent (a development checkout before training), the
default is a seeded, randomly initialised model of the same shape, and the bundle says so
(`trained=False`) so the CLI can warn instead of pretending.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cinecli.memory.router import RoutingHead, load_router
from cinecli.model.autoencoder import AutoencoderConfig, VideoAutoencoder, load_autoencoder
from cinecli.model.config import TransformerConfig, preset
from cinecli.model.text import WordTextEncoder
from cinecli.model.transformer import WanTransformer
from cinecli.sampling.generator import SamplerConfig
from cinecli.model.card import DEFAULT_DIR, ModelCard, default_card
from cinecli.screenplay.format import FilmFormat

TRANSFORMER_FORMAT = "cinecli-transformer-v1"
BASE_GUIDANCE = 3.0  # classifier-free guidance of the default base model: its distillation teacher's (configs/train/distill*.yaml)


@dataclass
class ModelBundle:
    card: ModelCard
    transformer: WanTransformer
    text_encoder: WordTextEncoder
    autoencoder: VideoAutoencoder
    weights_id: str  # sha256 over the weight files, or a description of the random init
    trained: bool
    quantization: str = "none"  # "none" or "int8" (the transformer's block linears); part of weights_id
    router: RoutingHead | None = None  # CAMR's trained routing head (`cinecli.memory.router`); None: attention mass

    @property
    def format(self) -> FilmFormat:
        return self.card.film_format()

    @property
    def config(self) -> TransformerConfig:
        return self.transformer.config

    def sampler(self, steps: int | None = None) -> SamplerConfig:
        c = self.card
        return SamplerConfig(steps=steps or c.steps, shift=c.shift, mode=c.sampler, guidance=c.guidance)  # type: ignore[arg-type]

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        s = self.card.spatial_stride
        return self.autoencoder.latent_channels, height // s, width // s

    def quantize(self, mode: str, device: torch.device) -> "ModelBundle":
        """Quantize the transformer in place for rendering on `device`; call before `to(device, ...)`.

        The weights id gains the quantization, so a state folder of one never resumes as the other.
        A bundle quantized once cannot be quantized differently (its full-precision weights are gone).
        """
        from cinecli.model.quantize import check_mode, quantize_model, quantized_weights_id

        mode = check_mode(mode)
        if mode == self.quantization:
            return self
        if self.quantization != "none":
            raise ValueError(f"this model is already quantized ({self.quantization}); load it again for {mode}")
        quantize_model(self.transformer, mode, device)
        self.weights_id = quantized_weights_id(self.weights_id, mode)
        self.quantization = mode
        return self

    def compile(self) -> "ModelBundle":
        """torch.compile the transformer's blocks and the decoder in place (`render --compile`).

        The first chunks pay the compilation (seconds on a GPU, tens of seconds on a CPU), every
        later chunk runs faster: docs/BENCHMARKS.md has the measured ratios.
        """
        self.transformer.compile_blocks()
        compile_decoder = getattr(self.autoencoder, "compile_decoder", None)
        if compile_decoder is not None:
            compile_decoder()
        return self

    def to(self, device: torch.device, dtype: torch.dtype) -> "ModelBundle":
        self.transformer.to(device=device, dtype=dtype)
        self.text_encoder.to(device=device)
        self.autoencoder.to(device=device)
        if self.router is not None:
            self.router.to(device=device)  # scores stay float32, as the bank's descriptors are
        return self


def build_modules(card: ModelCard) -> tuple[WanTransformer, WordTextEncoder, VideoAutoencoder]:
    """Freshly initialised modules of the card's shape (weights are loaded on top, or trained)."""
    cfg = preset(card.preset)
    transformer = WanTransformer(cfg)
    text = WordTextEncoder(card.vocabulary, text_dim=cfg.text_dim, text_len=cfg.text_len, layers=card.text_layers)
    return transformer, text, VideoAutoencoder(AutoencoderConfig(latent_channels=cfg.in_channels))


def file_sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def save_generator(transformer: WanTransformer, text: WordTextEncoder, path: Path, dtype: torch.dtype = torch.bfloat16) -> None:
    """Transformer and text encoder in one safetensors file (they are trained together)."""
    tensors = {f"transformer.{k}": v.detach().to(dtype).cpu().contiguous() for k, v in transformer.state_dict().items()}
    tensors.update({f"text_encoder.{k}": v.detach().to(dtype).cpu().contiguous() for k, v in text.state_dict().items()})
    write_generator_tensors(tensors, path)


def write_generator_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A generator's tensors, named as `save_generator` names them, written with the generator
    format tag; through a temporary file, so a crash never leaves half a weights file."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": TRANSFORMER_FORMAT})
    tmp.replace(path)


def load_generator(transformer: WanTransformer, text: WordTextEncoder, path: Path) -> None:
    """Strict load: every key used, every shape matching, or an error naming the first offender."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    for prefix, module in (("transformer.", transformer), ("text_encoder.", text)):
        own = module.state_dict()
        theirs = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing = sorted(set(own) - set(theirs))
        extra = sorted(set(theirs) - set(own))
        if missing or extra:
            raise ValueError(f"{path}: {prefix[:-1]} keys do not match: missing {missing[:3]}, unexpected {extra[:3]}")
        for k, v in theirs.items():
            if v.shape != own[k].shape:
                raise ValueError(f"{path}: {prefix}{k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in theirs.items()})


def router_path(generator: Path) -> Path:
    """Where a generator's routing head lives: beside it, `<name>.router.safetensors`."""
    return generator.with_suffix(".router.safetensors")


def weight_files(generator: Path, autoencoder: Path) -> list[Path]:
    """The files a default bundle is made of, and identified by: the generator, the autoencoder,
    and the generator's routing head where one lies beside it (CAMR routes differently with it,
    so a state folder must never resume across the two)."""
    head = router_path(generator)
    return [generator, autoencoder] + ([head] if head.exists() else [])


def load_default(variant: str = "student", *, seed: int = 0) -> ModelBundle:
    """The default model. `variant` is "student" (4-step) or "base" (multi-step ODE).

    A generator's routing head is loaded when one lies beside it (`weight_files`); the shipped
    model has none (docs/DEFAULT_MODEL_EVAL.md says why).
    """
    card = default_card()
    gen_path = DEFAULT_DIR / f"{variant}.safetensors"
    ae_path = DEFAULT_DIR / "autoencoder.safetensors"
    if gen_path.exists() and ae_path.exists():
        transformer, text, _ = build_modules(card)
        load_generator(transformer, text, gen_path)
        ae = load_autoencoder(ae_path)
        files, head = weight_files(gen_path, ae_path), router_path(gen_path)
        cfg = transformer.config
        router = load_router(head, num_layers=cfg.num_layers, num_heads=cfg.num_heads, head_dim=cfg.head_dim) if head in files else None
        if variant == "base":
            # sampled as the student's teacher was: its probability-flow ODE with classifier-free
            # guidance (configs/train/distill*.yaml), which its training's prompt dropout is for
            card = ModelCard(**{**asdict(card), "steps": 32, "sampler": "ode", "shift": card.shift, "guidance": BASE_GUIDANCE})
        bundle = ModelBundle(card, transformer, text, ae, file_sha256(files), trained=True, router=router)
    else:
        torch.manual_seed(seed)
        transformer, text, ae = build_modules(card)
        bundle = ModelBundle(card, transformer, text, ae, f"random-init-seed-{seed}", trained=False)
    bundle.transformer.eval()
    bundle.text_encoder.eval()
    bundle.autoencoder.eval()
    return bundle


def load_model(ref: str, script_dir: Path, *, variant: str = "student") -> ModelBundle:
    """The model a screenplay names: "default" (shipped), or a model description YAML (Wan2.1 family)."""
    if ref == "default":
        return load_default(variant)
    from cinecli.model.wan.spec import is_model_file, read_model_file, resolve_model_file

    if is_model_file(ref):
        from cinecli.model.wan.bundle import load_wan_bundle

        return load_wan_bundle(read_model_file(resolve_model_file(ref, script_dir)))
    raise ValueError(f"unknown model {ref!r}: use 'default' or the path of a model description (.yaml)")
