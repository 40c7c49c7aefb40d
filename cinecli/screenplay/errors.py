"""Problems found in a screenplay, reported all at once with file:line:column.

Film-makers write screenplays by hand, so a failed validation should read like a
compiler diagnostic: where (file, line, column, field path), what was expected,
what was found, and a hint when we can guess the intent. Collecting every
problem before raising saves them a fix-one-rerun loop.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a screenplay; `line`/`column` are 1-based, None when unknown."""

    file: str
    line: int | None
    column: int | None
    field: str
    expected: str
    found: str
    hint: str = ""

    def location(self) -> str:
        """`file:line:column` with the unknown parts left out, as editors expect."""
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        text = f"{self.location()}: {field}expected {self.expected}, found {self.found}"
        return f"{text} ({self.hint})" if self.hint else text


class ScreenplayError(Exception):
    """A screenplay that cannot be rendered; carries every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("ScreenplayError needs at least one problem")
        self.problems: list[Problem] = sorted(problems, key=_file_order)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def _file_order(problem: Problem) -> tuple[int, int]:
    """Problems without a line (whole-file problems) come first, the rest top to bottom."""
    return (problem.line or 0, problem.column or 0)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint for a misspelt key or value, or "" when nothing is close enough to be useful."""
    close = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
