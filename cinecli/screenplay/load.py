"""Parse and validate a screenplay file, reporting every problem with its line.

We compose the YAML into a node tree (not plain Python objects) because only
the nodes remember where each value was written; every check then reports
`file:line:column: field.path: expected ..., found ...`. The whole file is
checked before raising so that a film-maker sees all mistakes at once, and the
absurd-size limits are enforced before anything proportional to the film's
length is built.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from cinecli.screenplay.errors import Problem, ScreenplayError, did_you_mean
from cinecli.screenplay.format import FilmFormat, seconds_text
from cinecli.screenplay.schema import (
    CUT_KINDS,
    MEMORY_POLICIES,
    QUANTIZE_MODES,
    Event,
    FilmSettings,
    MemorySettings,
    Screenplay,
    Shot,
)

MAX_FILE_BYTES = 5_000_000
MAX_SHOTS = 5000
MAX_FILM_SECONDS = 4 * 3600
MAX_PROMPT_CHARS = 10_000
MAX_ID_CHARS = 64
MAX_LOCATION_CHARS = 200
STEPS_RANGE = (1, 1000)
GUIDANCE_RANGE = (1.0, 20.0)
CUT_GUIDANCE_RANGE = (1.0, 10.0)
ANY_FPS_RANGE = (1, 120)
SEED_LIMIT = 2**63

TOP_KEYS = ("film", "shots")
FILM_KEYS = ("title", "model", "resolution", "fps", "seed", "memory", "quantize", "steps", "guidance", "cut_guidance")
MEMORY_KEYS = ("policy", "recent_chunks", "top_k", "sink_frames", "shot_window")
SHOT_KEYS = ("id", "duration", "prompt", "cut", "seed", "events", "location")
EVENT_KEYS = ("at", "prompt")

_TAG = "tag:yaml.org,2002:"
_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
_TIME_RE = re.compile(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")
_RESOLUTION_RE = re.compile(r"(\d+)\s*[xX×]\s*(\d+)")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FormatResolver = Callable[[str, Path], FilmFormat]


# ---------------------------------------------------------------- public entry points


def load_screenplay(path: Path, fmt: FilmFormat) -> Screenplay:
    """Read, parse and validate `path` against what the model `fmt` can render."""
    data = _read_bytes(path)
    root = _compose(_decode(data, str(path)), str(path))
    return _screenplay_from_tree(root, path, fmt, hashlib.sha256(data).hexdigest())


def parse_screenplay_text(text: str, path: Path, fmt: FilmFormat) -> Screenplay:
    """Like `load_screenplay` for text already in memory; `path` is only used in messages."""
    root = _compose(text.lstrip("\ufeff"), str(path))
    return _screenplay_from_tree(root, path, fmt, hashlib.sha256(text.encode("utf-8")).hexdigest())


def load_screenplay_resolving(path: Path, resolve: FormatResolver) -> tuple[Screenplay, FilmFormat]:
    """Load a screenplay whose `film.model` chooses the format it is validated against.

    The model reference lives inside the file, so it is read from the parsed tree
    first and handed to `resolve(model_ref, script_dir)`; a reference that cannot
    be resolved is reported at its own line like any other problem.
    """
    data = _read_bytes(path)
    file = str(path)
    root = _compose(_decode(data, file), file)
    fmt = _resolve_format(root, path, resolve)
    return _screenplay_from_tree(root, path, fmt, hashlib.sha256(data).hexdigest()), fmt


# ---------------------------------------------------------------- reading and parsing


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing missing files and sizes no hand-written screenplay reaches."""
    file = str(path)
    if not path.is_file():
        found = "a folder" if path.is_dir() else "nothing at this path"
        raise ScreenplayError([Problem(file, None, None, "", "a screenplay file", found)])
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ScreenplayError([Problem(
            file, None, None, "", f"a screenplay of at most {MAX_FILE_BYTES // 1_000_000} MB",
            f"{size / 1e6:.1f} MB", "a hand-written screenplay is far smaller; is this the right file?",
        )])
    return path.read_bytes()


def _decode(data: bytes, file: str) -> str:
    """UTF-8 text (a leading BOM is tolerated), or a problem at the first bad byte."""
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ScreenplayError([Problem(
            file, line, column, "", "UTF-8 text", f"the byte 0x{data[exc.start]:02x}",
            "save the file as UTF-8",
        )]) from None


def _compose(text: str, file: str) -> Node:
    """The YAML node tree (which keeps line numbers), or the syntax error at its position."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = (exc.problem or exc.context or "").strip()
        problem = problem[len("found "):] if problem.startswith("found ") else problem
        hint = "indent with spaces, not tabs" if "tab" in problem or "\\t" in problem else ""
        raise ScreenplayError([Problem(
            file, mark.line + 1 if mark else None, mark.column + 1 if mark else None,
            "", "valid YAML", f"a syntax error: {problem}" if problem else "a syntax error", hint,
        )]) from None
    except yaml.YAMLError as exc:
        raise ScreenplayError([Problem(file, None, None, "", "valid YAML", str(exc))]) from None
    if root is None:
        raise ScreenplayError([Problem(
            file, 1, 1, "", "a screenplay with 'film' and 'shots'", "an empty file",
            "see examples/quickstart.yaml",
        )])
    return root


def _resolve_format(root: Node, path: Path, resolve: FormatResolver) -> FilmFormat:
    """Ask the model side for the format named by `film.model` ("default" when absent)."""
    ref, node = _peek_model_ref(root)
    try:
        return resolve(ref, path.parent)
    except (ValueError, LookupError, OSError, yaml.YAMLError) as exc:
        line, column = _mark(node) if node is not None else (None, None)
        raise ScreenplayError([Problem(
            str(path), line, column, "film.model",
            "'default' or the path of a model description YAML", repr(ref), str(exc),
        )]) from None


def _peek_model_ref(root: Node) -> tuple[str, Node | None]:
    """`film.model` as written, without validating anything else (that comes later)."""
    film = _child(root, "film")
    model = _child(film, "model") if film is not None else None
    if isinstance(model, ScalarNode) and model.tag == _TAG + "str" and model.value.strip():
        return model.value.strip(), model
    return "default", model


def _child(node: Node, key: str) -> Node | None:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    return None


# ---------------------------------------------------------------- the problem collector


@dataclass
class _Report:
    """Problems and notes gathered during one validation (never shared between loads)."""

    file: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, node: Node, path: str, expected: str, found: str | None = None, hint: str = "") -> None:
        line, column = _mark(node)
        self.problems.append(Problem(
            self.file, line, column, path, expected, _found(node) if found is None else found, hint,
        ))


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _found(node: Node) -> str:
    """How a value is described back to the film-maker: as written, briefly."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "nothing"
    if not node.tag.startswith(_TAG) or node.tag.startswith(_TAG + "python"):
        return f"a value tagged {node.tag.replace(_TAG, '!!')}"
    text = str(node.value)
    if not text.strip():
        return "blank text"
    if node.tag == _TAG + "bool":
        return f"{text} (a yes/no value)"
    return text if len(text) <= 60 else text[:57] + "..."


def _is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == _TAG + "null")


# ---------------------------------------------------------------- generic field checks


def _fields(node: Node, path: str, keys: tuple[str, ...], what: str, report: _Report) -> dict[str, Node] | None:
    """The mapping's values by key, reporting unknown, duplicate and non-text keys."""
    if not isinstance(node, MappingNode):
        report.add(node, path, what)
        return None
    values: dict[str, Node] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        here = f"{path}.{key_node.value}" if path else str(key_node.value)
        if not isinstance(key_node, ScalarNode) or key_node.tag != _TAG + "str":
            report.add(key_node, path or "(top level)", f"a key that is a word ({', '.join(keys)})")
        elif key_node.value not in keys:
            report.add(
                key_node, here, f"one of the keys {', '.join(keys)}",
                f"unknown key '{key_node.value}'", did_you_mean(key_node.value, keys),
            )
        elif key_node.value in values:
            report.add(
                key_node, here, "each key once", f"'{key_node.value}' again",
                f"first given on line {lines[key_node.value]}",
            )
        else:
            values[key_node.value] = value_node
            lines[key_node.value] = key_node.start_mark.line + 1
    return values


def _text(node: Node, path: str, what: str, report: _Report, max_chars: int = MAX_PROMPT_CHARS) -> str | None:
    """Non-blank text, stripped at its ends only (inner Unicode is kept exactly)."""
    if not isinstance(node, ScalarNode) or node.tag != _TAG + "str":
        hint = "put the text in quotes" if isinstance(node, ScalarNode) and not _is_null(node) else ""
        report.add(node, path, what, hint=hint)
        return None
    value = node.value.strip()
    if not value:
        report.add(node, path, what)
        return None
    if len(value) > max_chars:
        report.add(node, path, f"at most {max_chars} characters", f"{len(value)} characters")
        return None
    return value


def _ranged(node: Node, path: str, low: float, high: float, report: _Report, what: str, tags: tuple[str, ...],
            convert: Callable[[object], float]) -> float | None:
    """A scalar of one of the YAML `tags`, converted, in [low, high] (NaN is in no range)."""
    if not isinstance(node, ScalarNode) or node.tag not in tags:
        report.add(node, path, what)
        return None
    try:
        value = convert(yaml.constructor.SafeConstructor().construct_object(node))
    except (yaml.YAMLError, ValueError):
        report.add(node, path, what)
        return None
    if not low <= value <= high:
        report.add(node, path, what)
        return None
    return value


def _int(node: Node, path: str, low: int, high: int, report: _Report, what: str = "") -> int | None:
    """A whole number in [low, high]; yes/no and 7.0 are refused (they are usually typos)."""
    return _ranged(node, path, low, high, report, what or f"a whole number from {low} to {high}", (_TAG + "int",), int)  # type: ignore[return-value,arg-type]


def _number(node: Node, path: str, low: float, high: float, report: _Report) -> float | None:
    """A number in [low, high] (1 and 1.5 alike); yes/no and text are refused."""
    return _ranged(node, path, low, high, report, f"a number from {low:g} to {high:g}", (_TAG + "int", _TAG + "float"), float)  # type: ignore[arg-type]


def _flag(node: Node, path: str, report: _Report) -> bool | None:
    """true or false (YAML's yes/on spellings too, as YAML reads them)."""
    if not isinstance(node, ScalarNode) or node.tag != _TAG + "bool":
        report.add(node, path, "true or false")
        return None
    return bool(yaml.constructor.SafeConstructor().construct_object(node))


def _seed(node: Node, path: str, report: _Report) -> int | None:
    return _int(node, path, 0, SEED_LIMIT - 1, report, "a whole number seed, 0 or more (below 2^63)")


def _choice(node: Node, path: str, choices: tuple[str, ...], report: _Report) -> str | None:
    """One of a few fixed words, with a spelling hint."""
    what = "one of " + ", ".join(choices)
    if not isinstance(node, ScalarNode) or _is_null(node):
        report.add(node, path, what)
        return None
    value = str(node.value).strip()
    if value not in choices:
        report.add(node, path, what, hint=did_you_mean(value, choices))
        return None
    return value


@dataclass(frozen=True)
class _Time:
    """A scripted time: exact seconds, and the nearest whole frame at the film's fps."""

    seconds: Fraction
    frames: int
    text: str


def _time(node: Node, path: str, fps: int, report: _Report, what: str) -> _Time | None:
    """Parse "4s", "2.5s", "48f" or a bare number of seconds; exact, never via floats."""
    if not isinstance(node, ScalarNode) or node.tag not in (_TAG + "str", _TAG + "int", _TAG + "float"):
        report.add(node, path, what)
        return None
    text = node.value.strip()
    match = _TIME_RE.fullmatch(text)
    if match is None:
        hint = "write a time as 90s, not 1:30" if ":" in text else "times are seconds (4s, 2.5s) or frames (48f)"
        report.add(node, path, what, hint=hint)
        return None
    sign, number, unit = match.groups()
    unit = unit.lower()
    if unit not in ("", "s", "f"):
        hints = {"m": "minutes are not a unit here; write seconds, e.g. 90s",
                 "min": "minutes are not a unit here; write seconds, e.g. 90s",
                 "ms": "write milliseconds as seconds, e.g. 0.5s"}
        report.add(node, path, what, hint=hints.get(unit, "the units are s (seconds) and f (frames)"))
        return None
    amount = Fraction(number) * (-1 if sign == "-" else 1)
    if unit == "f" and amount.denominator != 1:
        report.add(node, path, "a whole number of frames")
        return None
    seconds = amount / fps if unit == "f" else amount
    if seconds > MAX_FILM_SECONDS:
        report.add(node, path, f"at most {MAX_FILM_SECONDS}s (4 hours)", hint="films are limited to 4 hours")
        return None
    exact = amount if unit == "f" else amount * fps
    return _Time(seconds, int(exact + Fraction(1, 2)) if exact >= 0 else -int(-exact + Fraction(1, 2)), text)


# ---------------------------------------------------------------- the screenplay tree


def _screenplay_from_tree(root: Node, path: Path, fmt: FilmFormat, sha256: str) -> Screenplay:
    report = _Report(str(path))
    top = _fields(root, "", TOP_KEYS, "a screenplay: a mapping with 'film' and 'shots'", report)
    if top is None:
        raise ScreenplayError(report.problems)
    parsed = _film(top.get("film"), path, fmt, report)
    fps = parsed[0].fps if parsed is not None else fmt.default_fps
    shots = _shots(top.get("shots"), root, fps, report)
    if report.problems or parsed is None or shots is None:
        raise ScreenplayError(report.problems)
    film, memory_given = parsed
    located = any(shot.location is not None for shot in shots)
    if film.memory.policy != "camr" and located:
        report.notes.append(f"shot locations are only used by the camr policy's routing, not {film.memory.policy}")
    memory = located_memory(film.memory, memory_given, located)
    if memory != film.memory:
        film = replace(film, memory=memory)
        report.notes.append(f"shots name locations, so film.memory defaults to sink_frames: {memory.sink_frames}, top_k: {memory.top_k} "
                            "(the film's first latent frames while a chunk is at their location, the chunk's location routed "
                            "elsewhere); set either to choose otherwise")
    return Screenplay(path, film, shots, sha256, tuple(report.notes))


LOCATED_SINK_FRAMES = 5  # with locations: the film's first latent frames kept while a chunk is at their location


def located_memory(memory: MemorySettings, given: frozenset[str], located: bool) -> MemorySettings:
    """The memory defaults of a screenplay whose shots name locations: `sink_frames: 5, top_k: 0`
    (the same 14-frame budget as `top_k: 5`), unless the screenplay sets either itself.

    Why: with locations, CAMR keeps sink frames only while the chunk is at their location and
    routes their slots by location elsewhere, so the opening scene comes back from its first
    frames and later scenes from their own. On the benchmark films with the film's own past
    that leads routing by location with the old defaults by +0.029 ± 0.010 (12 films of 30-45 s)
    and +0.020 ± 0.016 (the 12 shortest) in inter-shot consistency, cut accuracy level
    (docs/DEFAULT_MODEL_EVAL.md, "Routing by location").
    """
    if not located or given & {"sink_frames", "top_k"}:
        return memory
    return replace(memory, sink_frames=LOCATED_SINK_FRAMES, top_k=0)


def _film(node: Node | None, path: Path, fmt: FilmFormat, report: _Report) -> tuple[FilmSettings, frozenset[str]] | None:
    """Film-wide settings, every one optional and defaulting to the model's, and the keys the
    screenplay gives under film.memory (some defaults depend on the shots: `located_memory`)."""
    values = {} if _is_null(node) else _fields(node, "film", FILM_KEYS, "a mapping of film settings", report)
    if values is None:
        return None
    ok = True

    def get(key: str, parse: Callable[[Node], object], default: object) -> object:
        nonlocal ok
        value_node = values.get(key)
        if _is_null(value_node):
            return default
        value = parse(value_node)
        ok = ok and value is not None
        return value

    title = get("title", lambda n: _text(n, "film.title", "a title (text)", report, 200), path.stem)
    model = get("model", lambda n: _text(n, "film.model", "a model name or path (text)", report, 4096), "default")
    size = get("resolution", lambda n: _resolution(n, fmt, report), fmt.default_resolution)
    fps = get("fps", lambda n: _fps(n, fmt, report), fmt.default_fps)
    seed = get("seed", lambda n: _seed(n, "film.seed", report), 0)
    memory, memory_given = get("memory", lambda n: _memory(n, report), (MemorySettings(), frozenset()))  # type: ignore[misc]
    ok = ok and memory is not None
    if isinstance(memory, MemorySettings) and memory.sink_frames and memory.policy not in ("camr", "window"):
        report.notes.append(f"film.memory.sink_frames is only used by the camr and window policies, not {memory.policy}")
    if isinstance(memory, MemorySettings) and memory.shot_window and memory.policy not in ("camr", "window"):
        report.notes.append(f"film.memory.shot_window is only used by the camr and window policies, not {memory.policy}")
    quantize = get("quantize", lambda n: _choice(n, "film.quantize", QUANTIZE_MODES, report), "none")
    steps = get("steps", lambda n: _int(n, "film.steps", *STEPS_RANGE, report), None)
    guidance = get("guidance", lambda n: _number(n, "film.guidance", *GUIDANCE_RANGE, report), None)
    cut_guidance = get("cut_guidance", lambda n: _number(n, "film.cut_guidance", *CUT_GUIDANCE_RANGE, report), None)
    if not ok:
        return None
    width, height = size  # type: ignore[misc]
    return FilmSettings(title, model, width, height, fps, seed, memory, quantize, steps, guidance, cut_guidance), memory_given  # type: ignore[arg-type]


def _resolution(node: Node, fmt: FilmFormat, report: _Report) -> tuple[int, int] | None:
    """WIDTHxHEIGHT that the model can render, with the nearest valid size as a hint."""
    path = "film.resolution"
    match = _RESOLUTION_RE.fullmatch(str(node.value).strip()) if isinstance(node, ScalarNode) else None
    if match is None:
        report.add(node, path, "WIDTHxHEIGHT, like 192x128")
        return None
    width, height = int(match.group(1)), int(match.group(2))
    m = fmt.spatial_multiple
    if width < 1 or height < 1 or width % m or height % m:
        nearest = f"{max(m, round(width / m) * m)}x{max(m, round(height / m) * m)}"
        report.add(node, path, f"a width and height that are multiples of {m}", hint=f"try {nearest}")
        return None
    if width * height > fmt.max_pixels:
        report.add(node, path, f"at most {fmt.max_pixels} pixels for model '{fmt.model}'",
                   f"{width}x{height} ({width * height} pixels)")
        return None
    if fmt.resolutions is not None and (width, height) not in fmt.resolutions:
        allowed = ", ".join(f"{w}x{h}" for w, h in fmt.resolutions)
        report.add(node, path, f"one of {allowed} (what model '{fmt.model}' renders)")
        return None
    return width, height


def _fps(node: Node, fmt: FilmFormat, report: _Report) -> int | None:
    """A frame rate the model was made for (any 1..120 when the model does not say)."""
    if fmt.fps is None:
        return _int(node, "film.fps", *ANY_FPS_RANGE, report, "a frame rate from 1 to 120")
    what = f"one of {', '.join(str(f) for f in fmt.fps)} (what model '{fmt.model}' renders)"
    value = _int(node, "film.fps", min(fmt.fps), max(fmt.fps), report, what)
    if value is not None and value not in fmt.fps:
        report.add(node, "film.fps", what)
        return None
    return value


def _memory(node: Node, report: _Report) -> tuple[MemorySettings | None, frozenset[str]]:
    """The memory settings (None where one is invalid) and the keys the screenplay gives."""
    values = _fields(node, "film.memory", MEMORY_KEYS, "a mapping of memory settings", report)
    if values is None:
        return None, frozenset()
    defaults = MemorySettings()
    parsed: dict[str, object] = {}
    for key in MEMORY_KEYS:
        value_node = values.get(key)
        if _is_null(value_node):
            parsed[key] = getattr(defaults, key)
        elif key == "policy":
            parsed[key] = _choice(value_node, "film.memory.policy", MEMORY_POLICIES, report)
        elif key == "shot_window":
            parsed[key] = _flag(value_node, "film.memory.shot_window", report)
        else:
            parsed[key] = _int(value_node, f"film.memory.{key}", 0, 1_000_000, report,
                               "a whole number, 0 or more")
    given = frozenset(key for key, value_node in values.items() if not _is_null(value_node))
    if any(value is None for value in parsed.values()):
        return None, given
    return MemorySettings(**parsed), given  # type: ignore[arg-type]


def _shots(node: Node | None, root: Node, fps: int, report: _Report) -> tuple[Shot, ...] | None:
    """All shots; the size limits are checked before any shot is walked."""
    if node is None:
        report.add(root, "shots", "a list of shots", "no 'shots' key")
        return None
    if not isinstance(node, SequenceNode):
        report.add(node, "shots", "a list of shots")
        return None
    if not node.value:
        report.add(node, "shots", "at least one shot", "an empty list")
        return None
    if len(node.value) > MAX_SHOTS:
        report.add(node, "shots", f"at most {MAX_SHOTS} shots", f"{len(node.value)} shots",
                   "split the film into several screenplays")
        return None
    shots = [_shot(shot_node, i, fps, report) for i, shot_node in enumerate(node.value)]
    _check_ids(node.value, report)
    total = sum(shot.duration_frames for shot in shots if shot is not None)
    if total > MAX_FILM_SECONDS * fps:
        report.add(node, "shots", "a film of at most 4 hours", f"{_long_time(total / fps)} in total",
                   "split the film into several screenplays")
    if any(shot is None for shot in shots):
        return None
    return _carry_locations(shots, node.value, report)  # type: ignore[arg-type]


def _carry_locations(shots: list[Shot], nodes: list[Node], report: _Report) -> tuple[Shot, ...] | None:
    """A `continue` shot goes on with the same take, so it is where that take is: it inherits
    the location of the shot it continues, and naming another one is an error."""
    out: list[Shot] = []
    before_problems = len(report.problems)
    for shot, node in zip(shots, nodes):
        if shot.cut == "continue" and out:
            before = out[-1].location
            if shot.location is None:
                shot = replace(shot, location=before)
            elif before is not None and shot.location.casefold() != before.casefold():
                report.add(_child(node, "location"), f"shots[{shot.index}].location", f"'{before}', the location of the take it continues",  # type: ignore[arg-type]
                           f"'{shot.location}'", "make it a cut to change location")
        out.append(shot)
    return None if len(report.problems) > before_problems else tuple(out)


def _long_time(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s"


def _shot(node: Node, index: int, fps: int, report: _Report) -> Shot | None:
    path = f"shots[{index}]"
    values = _fields(node, path, SHOT_KEYS, "a shot: a mapping with at least prompt and duration", report)
    if values is None:
        return None
    before = len(report.problems)
    shot_id = _shot_id(values.get("id"), path, index, report)
    prompt = _required(values, "prompt", "a prompt", node, path, report,
                       lambda n: _text(n, f"{path}.prompt", "a prompt (non-blank text)", report))
    duration = _required(values, "duration", "a duration", node, path, report,
                         lambda n: _duration(n, f"{path}.duration", fps, report))
    cut = "cut" if _is_null(values.get("cut")) else _choice(values["cut"], f"{path}.cut", CUT_KINDS, report)
    if index == 0 and cut == "continue":
        report.add(values["cut"], f"{path}.cut", "'cut' for the first shot", "continue",
                   "there is nothing before the first shot to continue")
    seed = None if _is_null(values.get("seed")) else _seed(values["seed"], f"{path}.seed", report)
    location = None if _is_null(values.get("location")) else _text(values["location"], f"{path}.location", "a location name (non-blank text)",
                                                                     report, MAX_LOCATION_CHARS)
    events = _events(values.get("events"), path, duration, fps, report)
    if len(report.problems) > before:
        return None
    if duration.frames != duration.seconds * fps:  # type: ignore[union-attr]
        report.notes.append(
            f"shot '{shot_id}' lasts {duration.text} = {float(duration.seconds * fps):.2f} frames "  # type: ignore[union-attr]
            f"at {fps} fps; rounded to {duration.frames} frames"  # type: ignore[union-attr]
        )
    return Shot(index, shot_id, duration.frames, prompt, cut, seed, events, _mark(node)[0], location)  # type: ignore[arg-type,union-attr]


def _required(values: dict[str, Node], key: str, noun: str, node: Node, path: str, report: _Report,
              parse: Callable[[Node], object]) -> object:
    """A key that must be there; a missing one is reported at the line of its mapping."""
    value_node = values.get(key)
    if _is_null(value_node):
        where = value_node if value_node is not None else node
        report.add(where, f"{path}.{key}", noun, "nothing" if value_node is not None else f"no '{key}' key")
        return None
    return parse(value_node)


def _shot_id(node: Node | None, path: str, index: int, report: _Report) -> str:
    """The id as written (so `id: 007` stays "007"), or shot-N for an unnamed shot."""
    text = _id_text(node, index)
    if text is None:
        written = str(node.value).strip() if isinstance(node, ScalarNode) else ""
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "-", written).strip("-")[:MAX_ID_CHARS]
        report.add(node, f"{path}.id", f"an id of letters, digits, - and _ (at most {MAX_ID_CHARS})",  # type: ignore[arg-type]
                   hint=f"try '{suggestion}'" if suggestion else "")
        return f"shot-{index + 1}"
    return text


def _id_text(node: Node | None, index: int) -> str | None:
    """A shot's id, or None when the written id is not a valid one."""
    if _is_null(node):
        return f"shot-{index + 1}"
    text = str(node.value).strip() if isinstance(node, ScalarNode) else ""
    return text if _ID_RE.fullmatch(text) and len(text) <= MAX_ID_CHARS else None


def _check_ids(nodes: list[Node], report: _Report) -> None:
    """Ids name shots in resume state and output files, so they must be unique.

    Checked on the raw nodes so a duplicate is reported even in a shot with other problems.
    """
    seen: dict[str, Node] = {}
    for index, node in enumerate(nodes):
        id_node = _child(node, "id")
        shot_id = _id_text(id_node, index)
        if shot_id is None:
            continue
        if shot_id in seen:
            first = seen[shot_id]
            report.add(id_node or node, f"shots[{index}].id", "a unique shot id", f"'{shot_id}' again",
                       f"the shot on line {first.start_mark.line + 1} already uses it")
        else:
            seen[shot_id] = node


def _duration(node: Node, path: str, fps: int, report: _Report) -> _Time | None:
    what = "a positive duration like 4s, 2.5s or 48f"
    time = _time(node, path, fps, report, what)
    if time is None:
        return None
    if time.seconds <= 0:
        report.add(node, path, what)
        return None
    if time.frames < 1:
        report.add(node, path, f"at least one frame ({seconds_text(Fraction(1, fps))} at {fps} fps)")
        return None
    return time


def _events(node: Node | None, shot_path: str, duration: _Time | None, fps: int,
            report: _Report) -> tuple[Event, ...]:
    """Timed prompt changes, inside the shot and in increasing order."""
    if _is_null(node):
        return ()
    path = f"{shot_path}.events"
    if not isinstance(node, SequenceNode):
        report.add(node, path, "a list of events (each with at and prompt)")
        return ()
    events: list[Event] = []
    previous: _Time | None = None
    for i, event_node in enumerate(node.value):
        here = f"{path}[{i}]"
        values = _fields(event_node, here, EVENT_KEYS, "an event: a mapping with at and prompt", report)
        if values is None:
            continue
        prompt = _required(values, "prompt", "a prompt", event_node, here, report,
                           lambda n: _text(n, f"{here}.prompt", "a prompt (non-blank text)", report))
        at = _required(values, "at", "a time", event_node, here, report,
                       lambda n: _time(n, f"{here}.at", fps, report, "a time like 2.5s or 30f"))
        if not isinstance(at, _Time):
            continue
        if at.seconds < 0 or (duration is not None and at.frames >= duration.frames):
            report.add(values["at"], f"{here}.at",
                       f"a time inside the shot (0s–{seconds_text(duration.seconds) if duration else '?'})",
                       at.text)
            continue
        if previous is not None and at.frames <= previous.frames:
            report.add(values["at"], f"{here}.at",
                       f"a time after the previous event ({previous.text})", at.text,
                       "list a shot's events in time order")
            continue
        previous = at
        if isinstance(prompt, str):
            events.append(Event(at.frames, prompt, _mark(event_node)[0]))
    return tuple(events)
