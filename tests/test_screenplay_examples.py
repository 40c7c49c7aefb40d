"""The shipped example screenplays validate, plan, and speak the default model's vocabulary."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cinecli.model.formats import film_format
from cinecli.screenplay import load_screenplay, plan_film, vocabulary_warnings

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_plans_without_snapping(path: Path) -> None:
    fmt = film_format("default", path.parent)
    sp = load_screenplay(path, fmt)
    plan = plan_film(sp, fmt)
    assert plan.frames == sp.frames and plan.notes == ()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_uses_only_words_of_the_world(path: Path) -> None:
    vocabulary = pytest.importorskip("cinecli.world.vocabulary").VOCABULARY
    fmt = replace(film_format("default", path.parent), vocabulary=frozenset(vocabulary))
    assert vocabulary_warnings(load_screenplay(path, fmt), fmt) == []


def test_example_lengths() -> None:
    by_name = {p.stem: p for p in EXAMPLES}
    fmt = film_format("default", Path("examples"))
    seconds = {name: load_screenplay(by_name[name], fmt).seconds for name in ("quickstart", "return", "events")}
    assert 8 <= seconds["quickstart"] <= 12 and 25 <= seconds["return"] <= 35
    events = load_screenplay(by_name["events"], fmt)
    assert any(s.events for s in events.shots) and any(s.cut == "continue" for s in events.shots)
    back = load_screenplay(by_name["return"], fmt)
    prompts = [s.prompt for s in back.shots]
    assert any(prompts.index(p) < i - 2 for i, p in enumerate(prompts))  # cuts back after several shots
