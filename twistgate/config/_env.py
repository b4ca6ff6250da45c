"""
``${NAME}`` substitution from the environment, so secrets and ports stay out
of the file.  ``$${`` writes a literal ``${``.  There are no defaults
(``${NAME:-x}``): the contract makes a missing variable an error.
"""

from __future__ import annotations

import re
from typing import List, Mapping, Tuple

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def substitute(text: str, environ: Mapping[str, str]) -> Tuple[str, List[str]]:
    """
    Replace every ``${NAME}`` in ``text``.

    :return: the new text and a list of problems (missing variables, bad
        names); when the list is not empty the text must not be used.
    """
    problems: List[str] = []

    def replace(match: "re.Match[str]") -> str:
        whole, name = match.group(0), match.group(1)
        if whole == "$${":
            return "${"
        if name is None:
            problems.append("unterminated '${' (write '$${' for a literal '${')")
            return whole
        if not _NAME.fullmatch(name):
            problems.append(f"invalid environment variable name {name!r} in '${{{name}}}'")
            return whole
        if name not in environ:
            problems.append(f"environment variable {name!r} is not set")
            return whole
        return environ[name]

    return _REFERENCE.sub(replace, text), problems


def has_reference(text: str) -> bool:
    """Whether ``text`` takes anything from the environment."""
    return any(m.group(1) is not None for m in _REFERENCE.finditer(text))
