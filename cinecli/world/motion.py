"""Closed-form poses and camera states: frame k needs only the spec and k.

Both the renderer and the ground truth call these, so pixels and labels can never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cinecli.world.catalog import FLOOR_Y
from cinecli.world.spec import CameraSpec, Character, FilmSpec, Motion, ShotSpec

# How far below its centre each shape's lowest point lies, in radii (so it stands on the floor).
SHAPE_BOTTOM: dict[str, float] = {
    "circle": 1.0, "square": 0.85, "triangle": 0.55, "diamond": 1.0, "star": 0.85,
    "hexagon": 0.9,
}
# Half-extents (x, top, bottom) in radii for the ground-truth box of an unrotated shape.
SHAPE_EXTENT: dict[str, tuple[float, float, float]] = {
    "circle": (1.0, 1.0, 1.0), "square": (0.85, 0.85, 0.85), "triangle": (0.95, 1.1, 0.55),
    "diamond": (1.0, 1.0, 1.0), "star": (1.0, 1.05, 0.85), "hexagon": (1.04, 0.9, 0.9),
}


@dataclass(frozen=True)
class Pose:
    """Where and how a character appears at one frame, in world units."""

    x: float
    y: float
    radius: float
    angle: float
    facing: int
    action: str


@dataclass(frozen=True)
class CameraState:
    """Camera centre (world units) and zoom (1 = wide shot) at one frame."""

    x: float
    y: float
    zoom: float


def ease(p: float) -> float:
    """Smoothstep, so camera moves and growth start and stop gently."""
    p = min(1.0, max(0.0, p))
    return p * p * (3.0 - 2.0 * p)


def pose_at(motion: Motion, character: Character, local: int, fps: int) -> Pose:
    """Pose of a character at a shot-local frame, from its motion segment alone."""
    span = max(1, motion.end - motion.start)
    t = min(max(local - motion.start, 0), span)
    p = t / span
    beat = t * 12.0 / fps  # gait phases are tuned at 12 fps
    x = motion.x0 + (motion.x1 - motion.x0) * p
    scale = motion.scale0
    lift = 0.0
    angle = 0.0
    if motion.action in ("walk", "enter", "leave"):
        lift = 0.018 * abs(math.sin(math.pi * beat / 6.0))
    elif motion.action == "run":
        lift = 0.035 * abs(math.sin(math.pi * beat / 4.0))
        angle = 0.18 * motion.facing
    elif motion.action == "jump":
        lift = 0.16 * abs(math.sin(math.pi * beat / 9.0))
    elif motion.action == "spin":
        turns = max(1, round(span / fps / 1.5))
        angle = 2.0 * math.pi * turns * ease(p)
    elif motion.action == "grow":
        scale = motion.scale0 + (motion.scale1 - motion.scale0) * ease(p)
    elif motion.action == "stand":
        scale = motion.scale0 * (1.0 + 0.015 * math.sin(2.0 * math.pi * beat / 24.0))
    radius = 0.5 * character.size * scale
    y = FLOOR_Y - SHAPE_BOTTOM[character.shape] * radius - lift
    return Pose(x=x, y=y, radius=radius, angle=angle, facing=motion.facing, action=motion.action)


def camera_at(camera: CameraSpec, shot: ShotSpec, film: FilmSpec, local: int) -> CameraState:
    """Camera state at a shot-local frame; a following camera tracks its subject's x."""
    p = ease(local / max(1, shot.duration_frames - 1))
    zoom = camera.zoom0 + (camera.zoom1 - camera.zoom0) * p
    y = camera.y0 + (camera.y1 - camera.y0) * p
    if camera.follow and camera.subject is not None:
        motion = shot.motion_at(camera.subject, local)
        pose = pose_at(motion, film.character(camera.subject), local, film.fps)
        return CameraState(x=pose.x, y=y, zoom=zoom)
    x = camera.x0 + (camera.x1 - camera.x0) * p
    return CameraState(x=x, y=y, zoom=zoom)


def to_pixels(cam: CameraState, x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """World point -> pixel coordinates (continuous; pixel centres at .5)."""
    s = cam.zoom * height
    return (x - cam.x) * s + width / 2.0, (y - cam.y) * s + height / 2.0


def pose_bbox(pose: Pose, shape: str, cam: CameraState, width: int,
              height: int) -> tuple[float, float, float, float]:
    """Unclipped pixel box (x0, y0, x1, y1) of a posed character; rotation uses the
    circumscribed square so a spinning shape never pokes out of its box."""
    ex, top, bottom = SHAPE_EXTENT[shape]
    if abs(math.sin(pose.angle)) > 1e-6 or abs(math.cos(pose.angle) - 1.0) > 1e-6:
        ex = top = bottom = max(ex, top, bottom) * 1.05
    cx, cy = to_pixels(cam, pose.x, pose.y, width, height)
    r = pose.radius * cam.zoom * height
    return cx - ex * r, cy - top * r, cx + ex * r, cy + bottom * r
