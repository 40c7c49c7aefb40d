"""Warn about prompt words a closed-vocabulary model has never seen.

A small model trained on a procedural world only understands the words of
that world; an unknown word is not an error (the film still renders) but the
film-maker should know it will probably be ignored.
"""

from __future__ import annotations

import re

from cinecli.screenplay.format import FilmFormat
from cinecli.screenplay.schema import Screenplay

_WORD_RE = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def prompt_words(prompt: str) -> list[str]:
    """Lower-case words of a prompt; numbers and punctuation are not words."""
    return [word.lower() for word in _WORD_RE.findall(prompt)]


def unknown_words(prompt: str, vocabulary: frozenset[str]) -> list[str]:
    """Words outside `vocabulary`, each once; "close-up" passes if it or all its parts are known."""
    unknown: dict[str, None] = {}
    for word in prompt_words(prompt):
        parts = re.split(r"['’-]", word)
        if word not in vocabulary and not all(part in vocabulary for part in parts):
            unknown[word] = None
    return list(unknown)


def vocabulary_warnings(sp: Screenplay, fmt: FilmFormat) -> list[str]:
    """One warning per shot (or event) whose prompt uses words the model does not know."""
    if fmt.vocabulary is None:
        return []
    warnings: list[str] = []
    for shot in sp.shots:
        texts = [("prompt", shot.prompt)] + [(f"event at line {e.line}", e.prompt) for e in shot.events]
        for where, text in texts:
            words = unknown_words(text, fmt.vocabulary)
            if words:
                listed = ", ".join(f"'{w}'" for w in words)
                warnings.append(f"shot '{shot.id}' {where}: model '{fmt.model}' does not know {listed}")
    return warnings
