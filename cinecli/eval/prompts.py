"""What a prompt asks to see, read with the world's closed caption vocabulary.

Only what a detector can check is extracted: the kind of place, characters named by look
(colour, shape, size) or by role, and framing. A role ("the keeper") is tied to a look only
through the film itself, so it is checked as "some character is there".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cinecli.world.catalog import COLOURS, ROLES, SHAPES, SIZE_CLASSES
from cinecli.world.vocabulary import SETTING_NAMES

_FRAMING_WORDS: dict[str, tuple[str, ...]] = {
    "closeup": ("close-up", "close up", "close shot", "tight shot", "reverse shot",
                "reverse angle", "countershot", "cut back to"),
    "wide": ("wide shot", "long shot", "establishing shot"),
    "medium": ("medium shot", "mid shot"),
}
_LOOK = re.compile(r"\b(?:(%s) )?(%s) (%s)\b" % ("|".join(SIZE_CLASSES), "|".join(COLOURS),
                                                 "|".join(SHAPES)))
_ROLE = re.compile(r"\bthe (%s)\b" % "|".join(ROLES))


@dataclass(frozen=True)
class Look:
    """A character named by its look: "a small red circle"."""

    colour: str
    shape: str
    size: str | None


@dataclass(frozen=True)
class PromptRefs:
    """The checkable content of one prompt."""

    setting: str | None
    looks: tuple[Look, ...]
    roles: tuple[str, ...]
    framing: str | None


def _setting_kind(text: str) -> str | None:
    """The setting kind whose name appears first (longest names win ties: "city street")."""
    best: tuple[int, int, str] | None = None
    for kind, names in SETTING_NAMES.items():
        for name in names:
            m = re.search(r"\b%s\b" % re.escape(name), text)
            if m and (best is None or (m.start(), -len(name)) < (best[0], best[1])):
                best = (m.start(), -len(name), kind)
    return best[2] if best else None


def _framing(text: str) -> str | None:
    hits = [(text.find(w), kind) for kind, words in _FRAMING_WORDS.items() for w in words
            if w in text]
    return min(hits)[1] if hits else None


def parse_prompt(prompt: str) -> PromptRefs:
    """Setting kind, looks, roles and framing named by a prompt (each may be absent)."""
    text = " ".join(prompt.lower().split())
    looks = tuple(dict.fromkeys(Look(c, s, z) for z, c, s in _LOOK.findall(text)))
    looks = tuple(Look(lk.colour, lk.shape, lk.size or None) for lk in looks)
    roles = tuple(dict.fromkeys(_ROLE.findall(text)))
    return PromptRefs(setting=_setting_kind(text), looks=looks, roles=roles,
                      framing=_framing(text))
