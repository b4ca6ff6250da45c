"""
Where a configuration problem is and how it is worded: the `Issues` every
reader records into (one pass reports every problem, each once), the key
paths that locate a value (``routes[0].upstream``), and the "did you mean"
for a misspelt name.  Apart from `twistgate.config._node` so that checks
that hold no YAML node (cross-section validation, plugins) can word their
problems alike.
"""

from __future__ import annotations

import difflib
import re
from typing import Collection, List, Mapping, Optional

import attrs

from twistgate.config.model import ConfigIssue, Location

__all__ = ["Issues", "closest", "join", "suggest"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


@attrs.define
class Issues:
    """Every problem found in one file, in the order found."""

    file: str
    environ: Mapping[str, str]
    found: List[ConfigIssue] = attrs.Factory(list)

    def add(self, line: int, path: str, message: str, column: int = 0) -> None:
        location = Location(file=self.file, line=line, path=path, column=column)
        issue = ConfigIssue(location=location, message=message)
        # `defaults:` is read once per route that takes it: say each problem once.
        if issue not in self.found:
            self.found.append(issue)


def closest(word: str, choices: Collection[str]) -> Optional[str]:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(word: str, choices: Collection[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or nothing."""
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match else ""


def join(path: str, key: str) -> str:
    """``routes[0]`` + ``upstream`` -> ``routes[0].upstream``."""
    part = key if _PLAIN_KEY.fullmatch(key) else f"[{key!r}]"
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"
