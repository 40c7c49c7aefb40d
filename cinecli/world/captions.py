"""Caption grammar: turns what a shot shows into varied wording from the closed vocabulary.

Captions name only the setting kind, characters (by role or by look), actions and framing;
hidden identity (exact hue, markings, textures, light, prop layout) never reaches the text,
so a model can only keep it consistent by remembering what it generated before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cinecli.world import vocabulary as v
from cinecli.world.spec import Character


@dataclass(frozen=True)
class Beat:
    """One character's action as a caption sees it."""

    character: Character
    action: str
    side: str | None = None  # enter/leave side, or walking direction
    directed: bool = False   # say which way a walk/run goes


def character_ref(rng: random.Random, character: Character, first_mention: bool) -> str:
    """A reference by role or by look, about half each; a first role mention sometimes adds
    the look in apposition so the two can be linked."""
    look = f"{character.colour_name} {character.shape}"
    if character.size_name != "medium" and rng.random() < 0.3:
        look = f"{character.size_name} {look}"
    if rng.random() < 0.5:
        role_ref = f"the {character.role}"
        if first_mention and rng.random() < 0.4:
            return v.APPOSITION_TEMPLATE.format(role_ref=role_ref, look=look)
        return role_ref
    return rng.choice(v.REF_TEMPLATES[1:]).format(look=look)


def verb_forms(rng: random.Random, beat: Beat) -> tuple[str, str, str]:
    """(present, gerund, base) for a beat, with its side filled in where the phrase has one."""
    forms = rng.choice(v.ACTION_FORMS[beat.action])
    side = beat.side or rng.choice(v.SIDES)
    forms = tuple(f.format(side=side) for f in forms)
    if beat.directed and beat.action in ("walk", "run") and beat.side:
        suffix = rng.choice(v.DIRECTIONS).format(side=beat.side)
        forms = tuple(f + suffix for f in forms)
    return forms  # type: ignore[return-value]


def clause(rng: random.Random, beat: Beat, mentioned: set[str], *, now: bool = False) -> str:
    """"<ref> <verb phrase>", marking the character as mentioned."""
    ref = character_ref(rng, beat.character, beat.character.id not in mentioned)
    mentioned.add(beat.character.id)
    pres, _, _ = verb_forms(rng, beat)
    template = rng.choice(v.NOW_TEMPLATES) if now else "{ref} {pres}"
    return template.format(ref=ref, pres=pres)


def clauses(rng: random.Random, beats: list[Beat], mentioned: set[str], *, now: bool = False) -> str:
    """Several clauses joined with varied connectives."""
    parts = [clause(rng, b, mentioned, now=now) for b in beats]
    text = parts[0]
    for part in parts[1:]:
        text += rng.choice(v.CLAUSE_JOINERS) + part
    return text


def _place(rng: random.Random, kind: str) -> dict[str, str]:
    return {"place": rng.choice(v.SETTING_NAMES[kind]), "prep": rng.choice(v.SETTING_PREPS[kind])}


def shot_prompt(rng: random.Random, camera_kind: str, setting_kind: str, beats: list[Beat],
                subject: Character | None, mentioned: set[str], *, continued: bool = False) -> str:
    """The prompt of a shot: framing or camera move, place, and what the cast does."""
    words = _place(rng, setting_kind)
    if continued:
        template = rng.choice(v.CONTINUE_TEMPLATES)
        return template.format(clauses=clauses(rng, beats, mentioned, now=True), **words)
    subject_beat = next((b for b in beats if subject is not None
                         and b.character.id == subject.id), None)
    if camera_kind in ("closeup", "reverse") and subject_beat is not None:
        table = v.SUBJECT_TEMPLATES if camera_kind == "closeup" else v.REVERSE_TEMPLATES
        template = rng.choice(table)
        ref = character_ref(rng, subject_beat.character, subject_beat.character.id not in mentioned)
        mentioned.add(subject_beat.character.id)
        if "as it" in template or "who" in template:
            ref = ref.rstrip(",")
        ref2 = character_ref(rng, subject_beat.character, False)
        pres, gerund, _ = verb_forms(rng, subject_beat)
        framing = rng.choice(v.FRAMINGS[camera_kind])
        return template.format(framing=framing, ref=ref, ref2=ref2, pres=pres, gerund=gerund,
                               **words)
    if camera_kind in ("zoom_in", "zoom_out") and subject_beat is not None:
        table = v.ZOOM_TEMPLATES if camera_kind == "zoom_in" else v.ZOOM_OUT_TEMPLATES
        template = rng.choice(table)
        ref = character_ref(rng, subject_beat.character, False)
        mentioned.add(subject_beat.character.id)
        pres, gerund, _ = verb_forms(rng, subject_beat)
        others = [b for b in beats if b is not subject_beat] or [subject_beat]
        return template.format(move=rng.choice(v.MOVES[camera_kind]), ref=ref, pres=pres,
                               gerund=gerund, clauses=clauses(rng, others, mentioned), **words)
    if camera_kind in ("pan_left", "pan_right", "zoom_in", "zoom_out"):
        template = rng.choice(v.MOVE_TEMPLATES)
        return template.format(move=rng.choice(v.MOVES[camera_kind]),
                               clauses=clauses(rng, beats, mentioned), **words)
    framing_kind = camera_kind if camera_kind in v.FRAMINGS else "wide"
    template = rng.choice(v.SHOT_TEMPLATES)
    return template.format(framing=rng.choice(v.FRAMINGS[framing_kind]),
                           clauses=clauses(rng, beats, mentioned), **words)


def event_prompt(rng: random.Random, beat: Beat, previous_action: str,
                 mentioned: set[str]) -> str:
    """A mid-shot change: "the keeper starts to run", "the red circle stops and spins"."""
    ref = character_ref(rng, beat.character, False).rstrip(",")
    mentioned.add(beat.character.id)
    pres, _, base = verb_forms(rng, beat)
    moving = previous_action in ("walk", "run", "enter")
    if moving and beat.action not in ("walk", "run") and rng.random() < 0.6:
        template = rng.choice(v.STOP_EVENT_TEMPLATES)
    else:
        template = rng.choice(v.EVENT_TEMPLATES)
    return template.format(ref=ref, pres=pres, base=base)
