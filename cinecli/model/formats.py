"""Film formats of the models cinecli can render with, available without loading weights."""

from __future__ import annotations

from pathlib import Path

from cinecli.screenplay.format import FilmFormat, TemporalGrid


def film_format(model_ref: str, script_dir: Path) -> FilmFormat:
    """The format of the model named by a screenplay's `film.model`.

    `script_dir` is where relative model paths are looked up; only the shipped
    "default" model is known so far.
    """
    if model_ref == "default":
        return FilmFormat(
            model="default",
            grid=TemporalGrid(stride=4, first_alone=False),
            chunk_frames=3,
            spatial_multiple=16,
            resolutions=((192, 128),),
            fps=(12,),
            default_resolution=(192, 128),
            default_fps=12,
            default_steps=4,
            max_pixels=192 * 128,
            vocabulary=None,
        )
    raise ValueError(f"unknown model '{model_ref}' (looked in {script_dir}); only 'default' is available")
