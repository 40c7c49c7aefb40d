"""The closed sets the procedural world draws from.

Everything a caption may name (setting kinds, shapes, colour names, roles, actions, framings)
and everything that stays hidden (markings, textures, light) is enumerated here, so the
caption grammar, the vocabulary and the tests all agree on one source of truth.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

SETTING_KINDS: tuple[str, ...] = (
    "harbour", "forest", "desert", "snowfield", "city street", "meadow", "cave", "beach",
)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")

# Base colours; each character gets a hidden hue/brightness jitter around these.
COLOURS: dict[str, RGB] = {
    "red": (220, 40, 40),
    "blue": (40, 90, 230),
    "green": (40, 190, 60),
    "yellow": (245, 215, 30),
    "orange": (250, 135, 20),
    "purple": (150, 60, 210),
    "white": (240, 240, 240),
    "pink": (250, 120, 190),
}

ROLES: tuple[str, ...] = (
    "stranger", "keeper", "child", "pilot", "guard", "painter", "sailor", "traveller",
    "doctor", "farmer",
)

SIZE_CLASSES: dict[str, float] = {"small": 0.16, "medium": 0.20, "large": 0.25}

ACTIONS: tuple[str, ...] = ("walk", "run", "jump", "spin", "grow", "enter", "leave", "stand")

CAMERA_KINDS: tuple[str, ...] = (
    "wide", "medium", "closeup", "pan_left", "pan_right", "zoom_in", "zoom_out", "reverse",
)

# Hidden details: never named by a caption.
MARKINGS: tuple[str, ...] = ("stripes", "spots", "band", "checks")
TEXTURES: tuple[str, ...] = ("stripes", "dots", "noise")
LIGHTS: tuple[str, ...] = ("day", "dusk", "night")

# Words that would leak hidden identity if a caption contained them.
HIDDEN_WORDS: frozenset[str] = frozenset(
    set(MARKINGS) | set(TEXTURES) | set(LIGHTS)
    | {"striped", "spotted", "checked", "dotted", "noisy", "hue", "tint", "marking", "markings",
       "pattern", "texture", "dusky", "nighttime", "evening", "dark", "light"}
)

# Where characters stand, in world units (1 unit = the frame height of a wide shot).
FLOOR_Y = 0.86
STAGE_X = (0.15, 1.35)
WIDE_CENTER = (0.75, 0.5)
