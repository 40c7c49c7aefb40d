"""Public Wan2.1-family causal checkpoints (Self-Forcing, CausVid, LongLive) rendered by cinecli.

A model description YAML names every file by local path (`spec.py`, readable without torch);
`loading.py` one level up reads the transformer checkpoint strictly; `text.py` is the umT5-XXL
encoder, `vae.py` the Wan2.1 VAE with streaming decode, `names.py` the rename tables from the
Diffusers layout, and `bundle.py` puts them together as a `ModelBundle`.
"""
