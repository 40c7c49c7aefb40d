"""A renderable ModelBundle from a Wan model description: transformer, umT5, VAE, sampling.

Files are checked before anything heavy is read, and the optional packages before the 1.3B
transformer is loaded, so a missing tokenizer or extra fails in a second with the path or the
install command, not after minutes of loading.
"""

from __future__ import annotations

from pathlib import Path

from cinecli.model.bundle import ModelBundle
from cinecli.model.loading import WeightsError, load_transformer
from cinecli.model.wan.spec import WanModelSpec


def check_files(spec: WanModelSpec) -> None:
    """Every file the description names exists; else name the role, the path and the description."""
    for role, path in spec.files():
        if not Path(path).exists():
            raise WeightsError(f"{spec.path}: {role}: expected at {path}, which does not exist")


def load_wan_bundle(spec: WanModelSpec) -> ModelBundle:
    from cinecli.model.wan.text import load_text_encoder, require_transformers
    from cinecli.model.wan.vae import load_wan_vae

    check_files(spec)
    require_transformers()
    cfg = spec.transformer_config()
    transformer, _ = load_transformer(cfg, spec.transformer, key=spec.checkpoint_key, lora=spec.lora,
                                      lora_alpha=spec.lora_alpha)
    text = load_text_encoder(spec.text_encoder, spec.tokenizer, text_len=cfg.text_len,
                             dtype=spec.text_encoder_dtype, device_policy=spec.text_encoder_device)
    if text.text_dim != cfg.text_dim:
        raise WeightsError(f"{spec.text_encoder}: the text encoder is {text.text_dim} wide; "
                           f"preset {spec.preset} reads {cfg.text_dim}-wide prompts")
    vae = load_wan_vae(spec.vae)
    if vae.latent_channels != cfg.in_channels:
        raise WeightsError(f"{spec.vae}: the VAE has {vae.latent_channels} latent channels; "
                           f"the transformer takes {cfg.in_channels}")
    return ModelBundle(spec.card(), transformer, text, vae, spec.fingerprint(), trained=True)  # type: ignore[arg-type]
