"""cinecli: render a screenplay into a film with a causal video diffusion model."""

__version__ = "0.1.0"
