"""Procedural multi-shot films: training data, ground truth and the benchmark set."""

from cinecli.world.spec import (CameraSpec, Character, Event, FilmSpec, Motion, Setting,
                                ShotSpec, sample_film)

__all__ = ["CameraSpec", "Character", "Event", "FilmSpec", "Motion", "Setting", "ShotSpec",
           "sample_film"]
