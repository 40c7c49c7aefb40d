"""The closed caption vocabulary of the procedural world.

Captions are built only from the phrase tables below, so the set of words a caption can
contain is known exactly. The text encoder and the CLI's unknown-word warning both use
`tokenize` and `VOCABULARY`, so a screenplay written with these words is guaranteed to be
inside what the model saw in training.
"""

from __future__ import annotations

import re

from cinecli.world.catalog import COLOURS, ROLES, SETTING_KINDS, SHAPES, SIZE_CLASSES

_WORD = re.compile(r"[a-z]+")
_PLACEHOLDER = re.compile(r"\{[a-z_0-9]+\}")


def tokenize(text: str) -> list[str]:
    """Lower-case words of `text`, punctuation and digits dropped ("close-up" -> close, up).

    One definition shared by training captions and user screenplays keeps them comparable.
    """
    return _WORD.findall(text.lower())


# Synonyms per setting kind and the prepositions that read naturally with each.
SETTING_NAMES: dict[str, tuple[str, ...]] = {
    "harbour": ("harbour", "port", "docks"),
    "forest": ("forest", "woods"),
    "desert": ("desert", "dunes"),
    "snowfield": ("snowfield", "snowy field", "snow plain"),
    "city street": ("city street", "street", "town street"),
    "meadow": ("meadow", "grassy field", "pasture"),
    "cave": ("cave", "cavern"),
    "beach": ("beach", "shore", "seaside"),
}
SETTING_PREPS: dict[str, tuple[str, ...]] = {
    "harbour": ("at", "in"),
    "forest": ("in",),
    "desert": ("in", "across"),
    "snowfield": ("on", "across"),
    "city street": ("on", "in"),
    "meadow": ("in", "across"),
    "cave": ("in", "inside"),
    "beach": ("on", "at"),
}

# Framing names per camera kind. Moves are full clauses.
FRAMINGS: dict[str, tuple[str, ...]] = {
    "wide": ("wide shot", "long shot", "establishing shot"),
    "medium": ("medium shot", "mid shot"),
    "closeup": ("close-up", "close shot", "tight shot"),
    "reverse": ("reverse shot", "reverse angle", "countershot"),
}
MOVES: dict[str, tuple[str, ...]] = {
    "pan_left": ("the camera pans left", "pan left", "slow pan to the left"),
    "pan_right": ("the camera pans right", "pan right", "slow pan to the right"),
    "zoom_in": ("the camera zooms in", "zoom in", "push in"),
    "zoom_out": ("the camera zooms out", "zoom out", "pull back"),
}

# Verb forms per action: (present third person, gerund, base). "{side}" is left/right.
ACTION_FORMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "walk": (("walks", "walking", "walk"), ("strolls", "strolling", "stroll"),
             ("wanders", "wandering", "wander")),
    "run": (("runs", "running", "run"), ("dashes", "dashing", "dash"), ("races", "racing", "race")),
    "jump": (("jumps", "jumping", "jump"), ("hops", "hopping", "hop"), ("leaps", "leaping", "leap")),
    "spin": (("spins", "spinning", "spin"), ("twirls", "twirling", "twirl"),
             ("turns around", "turning around", "turn around")),
    "grow": (("grows", "growing", "grow"), ("gets bigger", "getting bigger", "get bigger"),
             ("swells", "swelling", "swell")),
    "stand": (("stands still", "standing still", "stand still"), ("waits", "waiting", "wait"),
              ("stands", "standing", "stand")),
    "enter": (("walks in from the {side}", "walking in from the {side}", "walk in from the {side}"),
              ("enters from the {side}", "entering from the {side}", "enter from the {side}"),
              ("comes in from the {side}", "coming in from the {side}", "come in from the {side}")),
    "leave": (("leaves to the {side}", "leaving to the {side}", "leave to the {side}"),
              ("walks away", "walking away", "walk away"),
              ("exits to the {side}", "exiting to the {side}", "exit to the {side}")),
}
DIRECTIONS: tuple[str, ...] = (" to the {side}", " towards the {side}")
SIDES: tuple[str, ...] = ("left", "right")

# Whole-prompt templates. {framing} {move} {place} {prep} {clauses} {ref} {gerund} {pres} {base}
SHOT_TEMPLATES: tuple[str, ...] = (
    "{framing} of the {place}, {clauses}",
    "{framing}: {clauses} {prep} the {place}",
    "{clauses} {prep} the {place}, {framing}",
    "{prep} the {place}, {clauses}, {framing}",
)
SUBJECT_TEMPLATES: tuple[str, ...] = (
    "{framing} on {ref} as it {pres}",
    "{framing} of {ref} {gerund} {prep} the {place}",
    "{framing} on {ref} {prep} the {place}, {ref2} {pres}",
)
MOVE_TEMPLATES: tuple[str, ...] = (
    "{move} across the {place}, {clauses}",
    "{move} over the {place} as {clauses}",
)
ZOOM_TEMPLATES: tuple[str, ...] = (
    "{move} on {ref} {gerund} {prep} the {place}",
    "{move} on {ref} {prep} the {place} as it {pres}",
)
ZOOM_OUT_TEMPLATES: tuple[str, ...] = (
    "{move} from {ref} to reveal the {place}, {clauses}",
    "{move} from {ref} {gerund} {prep} the {place}",
)
REVERSE_TEMPLATES: tuple[str, ...] = (
    "{framing} on {ref} as it {pres}",
    "{framing}, {ref} {pres}",
    "cut back to {ref}, who {pres}",
)
CONTINUE_TEMPLATES: tuple[str, ...] = (
    "{clauses}",
    "the camera holds as {clauses}",
    "same shot, {clauses}",
    "still {prep} the {place}, {clauses}",
)
EVENT_TEMPLATES: tuple[str, ...] = (
    "{ref} starts to {base}",
    "{ref} begins to {base}",
    "now {ref} {pres}",
    "suddenly {ref} {pres}",
)
STOP_EVENT_TEMPLATES: tuple[str, ...] = ("{ref} stops and {pres}",)
CLAUSE_JOINERS: tuple[str, ...] = (" and ", " while ", ", ")
NOW_TEMPLATES: tuple[str, ...] = ("{ref} {pres}", "{ref} now {pres}")
REF_TEMPLATES: tuple[str, ...] = ("the {role}", "the {look}", "a {look}")
APPOSITION_TEMPLATE = "{role_ref}, a {look},"


def _phrase_words() -> set[str]:
    """Every word any template or table entry can put into a caption."""
    pieces: list[str] = []
    for names in SETTING_NAMES.values():
        pieces.extend(names)
    for preps in SETTING_PREPS.values():
        pieces.extend(preps)
    for table in (FRAMINGS, MOVES):
        for names in table.values():
            pieces.extend(names)
    for forms in ACTION_FORMS.values():
        for triple in forms:
            pieces.extend(triple)
    pieces.extend(DIRECTIONS + SIDES + SHOT_TEMPLATES + SUBJECT_TEMPLATES + MOVE_TEMPLATES
                  + ZOOM_TEMPLATES + ZOOM_OUT_TEMPLATES + REVERSE_TEMPLATES
                  + CONTINUE_TEMPLATES + EVENT_TEMPLATES + STOP_EVENT_TEMPLATES
                  + CLAUSE_JOINERS + NOW_TEMPLATES + REF_TEMPLATES + (APPOSITION_TEMPLATE,))
    pieces.extend(SETTING_KINDS + SHAPES + ROLES + tuple(COLOURS) + tuple(SIZE_CLASSES))
    words: set[str] = set()
    for piece in pieces:
        words.update(tokenize(_PLACEHOLDER.sub(" ", piece)))
    return words


VOCABULARY: frozenset[str] = frozenset(_phrase_words())
