"""Sampling rules that turn a seed into a FilmSpec.

A film is a sequence of *blocks* (several shots in one place): establishing shots that cut
in to a close-up, shot/reverse-shot dialogues, action shots with a mid-shot event followed
by a continued take, and camera moves. Blocks return to earlier settings and characters
after 2 to 10 shots, which is what a memory-equipped model must keep consistent. All
randomness comes from one `random.Random(seed)`, so a seed maps to the same film everywhere.
"""

from __future__ import annotations

import colorsys
import random
from dataclasses import dataclass

from cinecli.world import captions
from cinecli.world.captions import Beat
from cinecli.world.catalog import (COLOURS, FLOOR_Y, LIGHTS, MARKINGS, RGB, ROLES, SETTING_KINDS,
                                   SHAPES, SIZE_CLASSES, STAGE_X, TEXTURES, WIDE_CENTER)
from cinecli.world.spec import (Band, CameraSpec, Character, Event, FilmSpec, Motion, Prop,
                                Setting, ShotSpec, Texture)

# ---------------------------------------------------------------------------------- colour


def _clip(v: float) -> int:
    return int(min(255, max(0, round(v))))


def jitter(rng: random.Random, rgb: RGB, amount: float) -> RGB:
    """Per-channel jitter, so two films' harbours are never quite the same colour."""
    return tuple(_clip(c + rng.uniform(-amount, amount)) for c in rgb)  # type: ignore[return-value]


def hue_jitter(rng: random.Random, rgb: RGB) -> RGB:
    """A hidden exact hue: small hue/value shifts that keep the colour name true."""
    h, s, val = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    h = (h + rng.uniform(-0.025, 0.025)) % 1.0
    s = min(1.0, max(0.0, s + rng.uniform(-0.08, 0.05)))
    val = min(1.0, max(0.0, val + rng.uniform(-0.08, 0.04)))
    r, g, b = colorsys.hsv_to_rgb(h, s, val)
    return _clip(r * 255), _clip(g * 255), _clip(b * 255)


# -------------------------------------------------------------------------------- settings

_SKIES: dict[str, tuple[RGB, RGB]] = {
    "day": ((70, 130, 215), (175, 210, 240)),
    "dusk": ((70, 55, 125), (245, 150, 95)),
    "night": ((12, 18, 50), (50, 60, 110)),
}
_TINTS: dict[str, tuple[float, float, float]] = {
    "day": (1.0, 1.0, 1.0), "dusk": (1.03, 0.86, 0.76), "night": (0.62, 0.66, 0.92),
}
_GROUNDS: dict[str, tuple[float, RGB, RGB]] = {  # horizon, ground top, ground bottom
    "harbour": (0.5, (135, 135, 140), (95, 95, 102)),
    "forest": (0.58, (50, 115, 45), (28, 72, 28)),
    "desert": (0.55, (232, 198, 125), (206, 160, 92)),
    "snowfield": (0.56, (236, 242, 250), (200, 212, 232)),
    "city street": (0.62, (92, 92, 98), (62, 62, 68)),
    "meadow": (0.57, (115, 195, 75), (72, 150, 48)),
    "cave": (0.63, (100, 84, 68), (58, 48, 40)),
    "beach": (0.5, (242, 222, 165), (222, 196, 135)),
}
_X_RANGE = (-0.7, 2.2)


def _spread(rng: random.Random, n: int, lo: float = _X_RANGE[0], hi: float = _X_RANGE[1]) -> list[float]:
    """n positions spread over [lo, hi] with jitter, so props neither pile up nor align."""
    step = (hi - lo) / max(1, n)
    return [lo + step * (i + 0.5) + rng.uniform(-0.35, 0.35) * step for i in range(n)]


def _props(rng: random.Random, kind: str, h: float, light: str) -> tuple[list[Prop], list[Band]]:
    """Kind-specific scenery at seeded positions (the hidden prop layout)."""
    P = Prop
    props: list[Prop] = []
    bands: list[Band] = []
    u = rng.uniform
    if kind == "harbour":
        bands.append(Band(h, h + 0.17, jitter(rng, (35, 100, 170), 15), jitter(rng, (20, 60, 120), 10)))
        props.append(P("lighthouse", u(-0.3, 1.8), h + 0.01, 0.07, 0.3, (236, 236, 236), (200, 40, 40)))
        for x in _spread(rng, rng.randint(2, 3)):
            hull = rng.choice([(150, 50, 40), (230, 230, 225), (60, 60, 72), (40, 95, 60)])
            props.append(P("boat", x, h + u(0.07, 0.13), u(0.22, 0.32), u(0.26, 0.34), hull, (246, 244, 232)))
        for x in _spread(rng, rng.randint(3, 5)):
            props.append(P("post", x, h + 0.22, 0.035, 0.07, (62, 56, 50), (90, 84, 76)))
        for x in _spread(rng, rng.randint(1, 3)):
            s = u(0.09, 0.13)
            props.append(P("box", x, FLOOR_Y - u(0.03, 0.08), s, s, jitter(rng, (150, 105, 60), 15), (105, 72, 40)))
    elif kind == "forest":
        for x in _spread(rng, rng.randint(6, 8)):
            props.append(P("tree", x, h + 0.02, u(0.14, 0.2), u(0.26, 0.36), jitter(rng, (30, 95, 45), 12), (85, 60, 38)))
        for x in _spread(rng, rng.randint(3, 5)):
            props.append(P("tree", x, h + u(0.1, 0.16), u(0.22, 0.3), u(0.45, 0.6), jitter(rng, (45, 125, 50), 15), (105, 72, 42)))
        for x in _spread(rng, rng.randint(2, 4)):
            props.append(P("bush", x, h + u(0.2, 0.26), u(0.12, 0.18), u(0.06, 0.09), jitter(rng, (35, 105, 40), 10), (30, 80, 30)))
    elif kind == "desert":
        for x in _spread(rng, rng.randint(2, 3)):
            props.append(P("dune", x, h + 0.01, u(0.7, 1.0), u(0.09, 0.14), jitter(rng, (214, 170, 100), 10), (0, 0, 0)))
        for x in _spread(rng, rng.randint(2, 4)):
            props.append(P("cactus", x, h + u(0.08, 0.2), 0.1, u(0.18, 0.3), jitter(rng, (50, 135, 70), 12), (35, 100, 50)))
        for x in _spread(rng, rng.randint(1, 3)):
            props.append(P("rock", x, h + u(0.16, 0.28), u(0.1, 0.16), u(0.05, 0.09), jitter(rng, (160, 118, 88), 12), (120, 85, 60)))
    elif kind == "snowfield":
        for x in _spread(rng, rng.randint(2, 3)):
            props.append(P("mountain", x, h + 0.005, u(0.6, 0.95), u(0.22, 0.34), jitter(rng, (120, 135, 165), 12), (250, 252, 255)))
        for x in _spread(rng, rng.randint(3, 5)):
            props.append(P("pine", x, h + u(0.05, 0.15), u(0.14, 0.2), u(0.26, 0.4), jitter(rng, (30, 90, 62), 10), (248, 250, 255)))
        for x in _spread(rng, rng.randint(0, 1)):
            props.append(P("snowman", x, h + u(0.18, 0.24), 0.08, 0.16, (250, 250, 252), (235, 120, 30)))
        for x in _spread(rng, rng.randint(1, 2)):
            props.append(P("rock", x, h + u(0.2, 0.28), u(0.1, 0.14), u(0.05, 0.08), jitter(rng, (110, 110, 120), 10), (80, 80, 90)))
    elif kind == "city street":
        bands.append(Band(h, h + 0.07, jitter(rng, (178, 172, 162), 8), (150, 145, 140)))
        window = (250, 226, 120) if light != "day" else (175, 208, 230)
        x = _X_RANGE[0] - 0.1
        while x < _X_RANGE[1] + 0.1:
            w = u(0.24, 0.4)
            wall = rng.choice([(170, 80, 60), (205, 185, 150), (130, 130, 140), (95, 110, 135), (180, 150, 110)])
            props.append(P("building", x + w / 2, h, w, u(0.3, 0.56), jitter(rng, wall, 12), window))
            x += w + u(0.0, 0.04)
        for x in _spread(rng, rng.randint(2, 4)):
            props.append(P("lamp", x, h + 0.065, 0.05, u(0.34, 0.4), (48, 48, 55), (255, 232, 150)))
    elif kind == "meadow":
        for x in _spread(rng, rng.randint(1, 2)):
            props.append(P("hill", x, h + 0.01, u(0.9, 1.3), u(0.1, 0.16), jitter(rng, (95, 175, 70), 10), (0, 0, 0)))
        props.append(P("fence", 0.75, h + u(0.07, 0.12), 3.2, 0.08, jitter(rng, (170, 130, 90), 12), (140, 100, 65)))
        for x in _spread(rng, rng.randint(1, 2)):
            props.append(P("tree", x, h + 0.06, u(0.24, 0.32), u(0.4, 0.5), jitter(rng, (50, 140, 55), 12), (105, 72, 42)))
        for x in _spread(rng, rng.randint(12, 20)):
            petal = rng.choice([(240, 70, 90), (250, 250, 250), (250, 210, 40), (170, 90, 230)])
            props.append(P("flower", x, u(h + 0.14, 1.05), 0.028, 0.035, petal, (250, 220, 60)))
    elif kind == "cave":
        for x in _spread(rng, rng.randint(7, 10)):
            props.append(P("stalactite", x, u(-0.15, 0.0), u(0.06, 0.12), u(0.14, 0.3), jitter(rng, (95, 78, 62), 10), (70, 58, 46)))
        for x in _spread(rng, rng.randint(2, 4)):
            props.append(P("stalagmite", x, h + u(0.05, 0.12), u(0.08, 0.13), u(0.12, 0.22), jitter(rng, (110, 92, 74), 10), (80, 66, 52)))
        glow = rng.choice([(150, 90, 240), (70, 220, 230), (90, 230, 120)])
        for x in _spread(rng, rng.randint(1, 3)):
            props.append(P("crystal", x, h + u(0.1, 0.24), 0.07, u(0.09, 0.14), jitter(rng, glow, 15), (240, 240, 255)))
    elif kind == "beach":
        bands.append(Band(h, h + 0.11, jitter(rng, (40, 130, 200), 12), jitter(rng, (85, 185, 215), 10)))
        bands.append(Band(h + 0.11, h + 0.125, (245, 248, 250), (235, 240, 245)))
        for x in _spread(rng, rng.randint(0, 1)):
            props.append(P("boat", x, h + 0.04, 0.12, 0.14, (240, 240, 235), (250, 250, 245)))
        for x in _spread(rng, rng.randint(2, 3)):
            props.append(P("palm", x, h + u(0.15, 0.24), u(0.24, 0.3), u(0.4, 0.5), jitter(rng, (40, 150, 60), 12), (140, 100, 55)))
        for x in _spread(rng, rng.randint(1, 2)):
            props.append(P("umbrella", x, h + u(0.24, 0.3), 0.2, 0.22, rng.choice([(225, 45, 45), (40, 90, 220), (250, 180, 30)]), (250, 250, 250)))
    return props, bands


def sample_setting(rng: random.Random, setting_id: str, kind: str) -> Setting:
    """A fresh setting of a kind; its light, colours, texture and props are hidden identity."""
    light = rng.choice(LIGHTS[:2] if kind == "cave" else LIGHTS)  # a night cave is just black
    horizon0, g_top, g_bottom = _GROUNDS[kind]
    horizon = horizon0 + rng.uniform(-0.03, 0.03)
    sky_top, sky_bottom = _SKIES[light]
    if kind == "cave":
        sky_top, sky_bottom = (40, 30, 26), (92, 74, 58)
    elif kind == "desert" and light == "day":
        sky_bottom = (235, 225, 200)
    tint = tuple(round(c + rng.uniform(-0.04, 0.04), 3) for c in _TINTS[light])
    g_top, g_bottom = jitter(rng, g_top, 10), jitter(rng, g_bottom, 10)
    shade = 1.25 if sum(g_top) < 450 else 0.8
    texture = Texture(
        kind=rng.choice(TEXTURES),
        rgb=tuple(_clip(c * shade * rng.uniform(0.92, 1.08)) for c in g_top),  # type: ignore[arg-type]
        scale=rng.uniform(0.025, 0.07), angle=rng.uniform(0.0, 3.1416), seed=rng.randrange(2**31),
        strength=rng.uniform(0.35, 0.6))
    props, bands = _props(rng, kind, horizon, light)
    return Setting(id=setting_id, kind=kind, light=light, sky_top=jitter(rng, sky_top, 10),
                   sky_bottom=jitter(rng, sky_bottom, 10), ground_top=g_top, ground_bottom=g_bottom,
                   horizon=horizon, texture=texture, tint=tint,  # type: ignore[arg-type]
                   bands=tuple(bands), props=tuple(props), sky_seed=rng.randrange(2**31))


_MARK_COLOURS: tuple[RGB, ...] = ((30, 30, 35), (250, 250, 250), (90, 40, 20), (20, 40, 110),
                                  (250, 230, 60), (0, 120, 110))


def sample_character(rng: random.Random, character_id: str, role: str, colour: str,
                     shape: str) -> Character:
    """A character with a hidden exact hue and marking around its named colour and shape."""
    size_name = rng.choice(tuple(SIZE_CLASSES))
    marking_rgb = rng.choice([m for m in _MARK_COLOURS
                              if sum(abs(a - b) for a, b in zip(m, COLOURS[colour])) > 150])
    return Character(id=character_id, role=role, shape=shape, colour_name=colour,
                     rgb=hue_jitter(rng, COLOURS[colour]), size_name=size_name,
                     size=round(SIZE_CLASSES[size_name] * rng.uniform(0.94, 1.06), 4),
                     marking=rng.choice(MARKINGS), marking_rgb=jitter(rng, marking_rgb, 12))


# ----------------------------------------------------------------------------------- shots


def frames_for(rng: random.Random, lo_s: float, hi_s: float, fps: int) -> int:
    """A shot length in [lo_s, hi_s] seconds, snapped to whole latent frames (4 video frames)."""
    frames = rng.uniform(lo_s, hi_s) * fps
    return max(12, int(round(frames / 4.0)) * 4)


def zoom_y(zoom: float) -> float:
    """Camera centre height for a zoom: the floor sits low in frame, a little lower when
    close, so even a close-up keeps the horizon (and so the setting) in view."""
    return FLOOR_Y - (0.36 + 0.06 * min(1.0, (zoom - 1.0) / 1.3)) / zoom


@dataclass
class _Actor:
    """Mutable per-block stage state of one character (local to a sampling run)."""

    x: float
    facing: int
    lo: float = STAGE_X[0]
    hi: float = STAGE_X[1]
    scale: float = 1.0


def resolve(rng: random.Random, cid: str, action: str, actor: _Actor, a: int, b: int,
            fps: int, side: str | None = None) -> Motion:
    """Turn an action over frames [a, b) into an explicit motion, advancing the actor."""
    secs = (b - a) / fps
    x0, facing, scale0 = actor.x, actor.facing, actor.scale
    x1, scale1 = x0, scale0
    lo, hi = actor.lo, actor.hi
    if action in ("walk", "run"):
        dist = (0.16 if action == "walk" else 0.42) * secs
        room = hi - x0 if facing > 0 else x0 - lo
        other = x0 - lo if facing > 0 else hi - x0
        if room < dist and other > room:
            facing = -facing
        x1 = min(hi, max(lo, x0 + facing * dist))
        side = "right" if facing > 0 else "left"
    elif action == "enter":
        side = side or rng.choice(("left", "right"))
        x0 = -0.2 if side == "left" else 1.7
        facing = 1 if side == "left" else -1
        x1 = actor.x
    elif action == "leave":
        side = "right" if facing > 0 else "left"
        x1 = 1.8 if side == "right" else -0.3
    elif action == "jump":
        x1 = min(hi, max(lo, x0 + facing * 0.03 * secs))
    elif action == "grow":
        scale1 = min(1.7, scale0 * 1.4)
    actor.x, actor.facing, actor.scale = x1, facing, scale1
    return Motion(character_id=cid, start=a, end=b, action=action, x0=round(x0, 5),
                  x1=round(x1, 5), facing=facing, scale0=round(scale0, 5),
                  scale1=round(scale1, 5), side=side)


_SHOT_SECONDS: dict[str, tuple[float, float]] = {
    "wide": (3.0, 6.0), "medium": (2.5, 5.0), "closeup": (1.7, 4.0), "reverse": (1.4, 2.7),
    "pan_left": (3.0, 6.0), "pan_right": (3.0, 6.0), "zoom_in": (3.0, 5.0), "zoom_out": (3.0, 5.0),
    "action": (3.4, 7.0), "continue": (2.0, 4.0),
}
_STILL = ("stand", "spin", "grow", "jump")
_NEXT_ACTION: dict[str, tuple[str, ...]] = {
    "walk": ("run", "stand", "jump", "spin"), "run": ("stand", "jump", "spin", "walk"),
    "stand": ("walk", "spin", "jump", "grow", "run"), "jump": ("stand", "walk", "spin"),
    "spin": ("stand", "walk", "jump"), "grow": ("spin", "stand", "jump"),
    "enter": ("stand", "spin", "jump"),
}


def _camera(kind: str, motions: list[Motion], subject: str | None,
            cam_from: CameraSpec | None) -> CameraSpec:
    """Camera path for a shot kind, framed on the cast's positions."""
    if cam_from is not None:  # continued take: hold the previous shot's final state
        z = cam_from.zoom1
        held = "wide" if z < 1.25 else "medium" if z < 2.0 else "closeup"
        return CameraSpec(held, cam_from.x1, cam_from.y1, z, cam_from.x1, cam_from.y1, z,
                          subject=cam_from.subject, follow=cam_from.follow)
    wx, wy = WIDE_CENTER
    xs = [(m.x0 + m.x1) / 2 for m in motions if m.action not in ("enter", "leave")]
    mid = min(1.2, max(0.3, sum(xs) / len(xs))) if xs else wx
    sub = [m for m in motions if m.character_id == subject]
    sx = min(1.3, max(0.2, sub[-1].x1)) if sub else mid
    if kind == "wide":
        return CameraSpec(kind, wx, wy, 1.0, wx, wy, 1.0)
    if kind == "medium":
        return CameraSpec(kind, mid, zoom_y(1.7), 1.7, mid, zoom_y(1.7), 1.7)
    if kind in ("closeup", "reverse"):
        return CameraSpec(kind, sx, zoom_y(2.3), 2.3, sx, zoom_y(2.3), 2.3, subject=subject, follow=True)
    if kind in ("pan_left", "pan_right"):
        a, b = (1.15, 0.35) if kind == "pan_left" else (0.35, 1.15)
        return CameraSpec(kind, a, zoom_y(1.4), 1.4, b, zoom_y(1.4), 1.4)
    if kind == "zoom_in":
        return CameraSpec(kind, wx, wy, 1.0, sx, zoom_y(2.2), 2.2, subject=subject)
    return CameraSpec(kind, sx, zoom_y(2.2), 2.2, wx, wy, 1.0, subject=subject)


# ------------------------------------------------------------------------------------ film


def build_film(seed: int, *, duration_s: float, fps: int, width: int, height: int,
               returns: bool) -> FilmSpec:
    """Sample a whole film; see the module docstring for the block structure."""
    rng = random.Random(seed)
    total = max(12, int(round(duration_s * fps)))
    kinds = list(SETTING_KINDS)
    rng.shuffle(kinds)
    looks_c = list(COLOURS)
    looks_s = list(SHAPES)
    roles = list(ROLES)
    rng.shuffle(looks_c)
    rng.shuffle(looks_s)
    rng.shuffle(roles)
    max_pool = min(len(SHAPES), 3 + total // (fps * 45))
    settings: list[Setting] = []
    characters: list[Character] = []
    shots: list[ShotSpec] = []
    last_shot: dict[str, int] = {}
    last_cast: dict[str, tuple[str, ...]] = {}
    mentioned: set[str] = set()
    by_id: dict[str, Character] = {}
    done = {"return": False, "dialogue": False}

    def new_character() -> Character:
        i = len(characters)
        ch = sample_character(rng, f"c{i + 1}", roles[i % len(roles)], looks_c[i % len(looks_c)],
                              looks_s[i % len(looks_s)])
        characters.append(ch)
        by_id[ch.id] = ch
        return ch

    def new_setting() -> Setting:
        i = len(settings)
        st = sample_setting(rng, f"scene{i + 1}", kinds[i % len(kinds)])
        settings.append(st)
        return st

    def pick_cast(n: int, setting_id: str, returning: bool) -> list[str]:
        cast: list[str] = []
        if returning and last_cast.get(setting_id):
            cast.append(rng.choice(last_cast[setting_id]))
        while len(cast) < n:
            pool = [c.id for c in characters if c.id not in cast]
            fresh_ok = len(characters) < max_pool or not returns
            if pool and (not fresh_ok or (returns and rng.random() < 0.6)):
                cast.append(rng.choice(pool))
            elif fresh_ok:
                cast.append(new_character().id)
            else:
                break
        return cast

    frame = 0
    block = 0
    prev_setting: str | None = None
    while frame < total:
        # --- where: a return to an earlier setting 2-10 shots back, or a new place
        setting: Setting | None = None
        returning = False
        if returns and block > 0:
            cands = [s for s in settings if s.id != prev_setting
                     and 2 <= len(shots) - last_shot[s.id] <= 10]
            urgent = not done["return"] and total - frame < 0.4 * total
            if cands and (urgent or rng.random() < (0.85 if not done["return"] else 0.45)):
                setting, returning = rng.choice(cands), True
                done["return"] = True
        if setting is None:
            setting = new_setting()
        # --- what kind of block
        if block == 0:
            btype = "establish"
        elif not done["dialogue"]:
            btype = "dialogue"
        else:
            btype = rng.choice(("establish", "dialogue", "action", "move", "action"))
        n_cast = 2 if btype == "dialogue" else rng.choice((1, 2, 2, 3))
        if not returns:
            fresh = [new_character().id for _ in range(n_cast)] if len(characters) + n_cast <= len(SHAPES) else []
            cast = fresh or pick_cast(n_cast, setting.id, False)
        else:
            cast = pick_cast(n_cast, setting.id, returning)
        if btype == "dialogue" and len(cast) < 2:
            btype = "action"
        done["dialogue"] |= btype == "dialogue"
        # each character keeps to its own lane of the stage, so they never pile up
        actors: dict[str, _Actor] = {}
        lane = (STAGE_X[1] - STAGE_X[0]) / len(cast)
        for i, cid in enumerate(cast):
            lo, hi = STAGE_X[0] + i * lane + 0.12, STAGE_X[0] + (i + 1) * lane - 0.12
            x = rng.uniform(lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
            facing = rng.choice((-1, 1))
            if btype == "dialogue":
                x = 0.75 + (rng.uniform(0.25, 0.3) * (1 if i else -1))
                facing = -1 if i else 1
            actors[cid] = _Actor(x=x, facing=facing, lo=lo, hi=hi)

        # --- the block's shots as (camera kind, per-cast actions, subject, continued, event?)
        plan: list[tuple[str, dict[str, str], str | None, bool, bool]] = []
        a, b = cast[0], cast[-1]
        if btype == "establish":
            plan.append(("wide", {c: rng.choice(("enter", "walk", "stand", "enter", "run")) for c in cast}, None, False, False))
            subj = rng.choice(cast)
            plan.append((rng.choice(("closeup", "closeup", "medium")), {c: rng.choice(("spin", "stand", "grow", "walk")) for c in cast}, subj, False, False))
            if rng.random() < 0.5:
                plan.append(("continue", {c: rng.choice(_STILL) for c in cast}, subj, True, False))
        elif btype == "dialogue":
            plan.append((rng.choice(("wide", "medium")), {c: "stand" for c in cast}, None, False, rng.random() < 0.3))
            for k in range(rng.randint(2, 3) if total < 30 * fps else rng.randint(3, 5)):
                subj = a if k % 2 == 0 else b
                kind = "closeup" if k == 0 else "reverse"
                plan.append((kind, {c: rng.choice(("stand", "stand", "spin", "grow", "jump")) if c == subj else "stand" for c in cast}, subj, False, False))
        elif btype == "action":
            plan.append((rng.choice(("wide", "medium")), {c: rng.choice(("walk", "run", "stand")) for c in cast}, None, False, True))
            plan.append(("continue", {}, None, True, rng.random() < 0.3))
        else:
            move = rng.choice(("pan_left", "pan_right", "zoom_in", "zoom_out"))
            plan.append((move, {c: rng.choice(("walk", "stand", "spin")) for c in cast}, rng.choice(cast), False, False))
            if rng.random() < 0.6:
                plan.append(("closeup", {c: rng.choice(("spin", "grow", "stand")) for c in cast}, rng.choice(cast), False, False))
        if rng.random() < 0.3 and plan[-1][0] in ("wide", "medium", "continue", "pan_left", "pan_right"):
            kind, acts, subj, cont, ev = plan[-1]
            leaver = rng.choice(cast)
            if leaver != subj:
                plan[-1] = (kind, {**acts, leaver: "leave"}, subj, cont, ev)

        # --- resolve the plan into shots
        for n_done, (kind, acts, subj, cont, with_event) in enumerate(plan):
            if frame >= total:
                break
            if returns and block > 0 and n_done > 0 and not done["return"] and total - frame < 64 \
                    and (btype != "dialogue" or n_done >= 3):
                break  # end the block early so a short film still gets its return
            remaining = total - frame
            lo_s, hi_s = _SHOT_SECONDS["action" if with_event else kind]
            dur = frames_for(rng, lo_s, hi_s, fps)
            if remaining - dur < 16:
                dur = remaining
            prev = shots[-1] if cont and shots and shots[-1].setting_id == setting.id else None
            if cont and prev is None:
                kind, cont = "medium", False
            if cont and prev is not None:
                prev_end = {m.character_id: m.action for m in prev.motions}
                acts = {c: acts.get(c) or rng.choice(_NEXT_ACTION.get(prev_end[c], _STILL))
                        for c in prev.cast if prev_end[c] != "leave"}
                if not acts:
                    kind, cont, prev = "wide", False, None
                    acts = {c: "enter" for c in cast}
            shot_cast = [c for c in cast if c in acts]
            ev_at = None
            if with_event and dur >= 32:
                ev_at = 4 * rng.randint(3, (dur - 12) // 4)
            motions: list[Motion] = []
            beats: list[Beat] = []
            ev_change: tuple[str, str, str] | None = None
            for c in shot_cast:
                act = acts[c]
                if act == "grow" and actors[c].scale >= 1.6:
                    act = "spin"
                side = None
                if act == "enter":
                    side = rng.choice(("left", "right"))
                first_end = dur
                if ev_at is not None and ev_change is None and act != "leave":
                    nxt = rng.choice(_NEXT_ACTION.get(act, _STILL))
                    if nxt == "grow" and actors[c].scale >= 1.6:
                        nxt = "spin"
                    ev_change = (c, act, nxt)
                    first_end = ev_at
                m = resolve(rng, c, act, actors[c], 0, first_end, fps, side)
                motions.append(m)
                beats.append(Beat(by_id[c], act, m.side, directed=rng.random() < 0.35))
                if first_end < dur and ev_change is not None:
                    motions.append(resolve(rng, c, ev_change[2], actors[c], first_end, dur, fps))
            if subj not in shot_cast:
                subj = shot_cast[0] if kind in ("closeup", "reverse", "zoom_in", "zoom_out") else None
            cam = _camera(kind, motions, subj, prev.camera if prev is not None else None)
            subject = by_id[subj] if subj else None
            prompt = captions.shot_prompt(rng, "continue" if cont else kind, setting.kind, beats,
                                          subject, mentioned, continued=cont)
            events: tuple[Event, ...] = ()
            if ev_change is not None and ev_at is not None:
                c, old, new = ev_change
                text = captions.event_prompt(rng, Beat(by_id[c], new), old, mentioned)
                events = (Event(at_frame=ev_at, prompt=text, changes=((c, new),)),)
            index = len(shots)
            shots.append(ShotSpec(id=f"s{index + 1}", setting_id=setting.id, start_frame=frame,
                                  duration_frames=dur, cut="continue" if cont else "cut",
                                  prompt=prompt, camera=cam, cast=tuple(shot_cast),
                                  motions=tuple(motions), events=events))
            frame += dur
            last_shot[setting.id] = index
            last_cast[setting.id] = tuple(c for c in shot_cast if actors[c].x > -0.1 and actors[c].x < 1.6)
            for c in list(shot_cast):
                if actors[c].x <= -0.1 or actors[c].x >= 1.6:  # left the stage: out of the block
                    cast = [k for k in cast if k != c] or cast
        prev_setting = setting.id
        block += 1

    return FilmSpec(seed=seed, title=f"world film {seed}", fps=fps, width=width, height=height,
                    settings=tuple(settings), characters=tuple(characters), shots=tuple(shots))
