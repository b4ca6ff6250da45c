"""Loading YAML snippets in tests, and reading back the issues of a refused one."""

from __future__ import annotations

import textwrap
from typing import Any, Callable, List, Tuple

import pytest

from twistgate.config import ConfigError, load_text


def config_loader(head: str = "") -> Tuple[Callable[[str], Any], Callable[[str], List[Tuple[int, str, str]]]]:
    """
    ``load(text)`` and ``issues(text)`` for snippets placed after ``head``:
    ``issues`` expects a refusal and gives its (line, key path, message) list.
    """

    def load(text: str) -> Any:
        return load_text(head + textwrap.dedent(text).lstrip("\n"), filename="gw.yaml", environ={})

    def issues(text: str) -> List[Tuple[int, str, str]]:
        with pytest.raises(ConfigError) as info:
            load(text)
        return [(i.location.line, i.location.path, i.message) for i in info.value.issues]

    return load, issues
