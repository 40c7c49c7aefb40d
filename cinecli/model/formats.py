"""Film formats of the models cinecli can render with, available without loading weights.

Validation and planning run before any model is loaded, so a model's format comes from its
card (`model.json`), never from the weights.
"""

from __future__ import annotations

from pathlib import Path

from cinecli.screenplay.format import FilmFormat


def film_format(model_ref: str, script_dir: Path) -> FilmFormat:
    """The format of the model named by a screenplay's `film.model`.

    `script_dir` is where relative model paths are looked up: "default" is the shipped model,
    a `.yaml` path a model description (read alone: no weights are opened).
    """
    if model_ref == "default":
        from cinecli.model.card import default_card

        return default_card().film_format()
    from cinecli.model.wan.spec import is_model_file, read_model_file, resolve_model_file

    if is_model_file(model_ref):
        return read_model_file(resolve_model_file(model_ref, script_dir)).film_format()
    raise ValueError(f"unknown model '{model_ref}' (looked in {script_dir}); use 'default' or a model description (.yaml)")
