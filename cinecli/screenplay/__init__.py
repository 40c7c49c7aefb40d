"""The screenplay: its YAML format, loading with line numbers, validation, and timeline planning.

Depends on nothing else in cinecli, so it can validate a film before any model exists.
"""

from cinecli.screenplay.errors import Problem, ScreenplayError
from cinecli.screenplay.format import FilmFormat, TemporalGrid, seconds_text
from cinecli.screenplay.load import load_screenplay, load_screenplay_resolving, parse_screenplay_text
from cinecli.screenplay.schema import Event, FilmSettings, MemorySettings, Screenplay, Shot
from cinecli.screenplay.timeline import LatentFrame, Plan, ShotPlan, noise_seed, plan_film, shot_hashes
from cinecli.screenplay.vocabulary import vocabulary_warnings

__all__ = [
    "Event", "FilmFormat", "FilmSettings", "LatentFrame", "MemorySettings", "Plan", "Problem",
    "Screenplay", "ScreenplayError", "Shot", "ShotPlan", "TemporalGrid", "load_screenplay",
    "load_screenplay_resolving", "noise_seed", "parse_screenplay_text", "plan_film", "seconds_text",
    "shot_hashes", "vocabulary_warnings",
]
