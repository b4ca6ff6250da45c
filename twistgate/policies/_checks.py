"""Turning a stage constructor's `ConfigError` into the issues a validation pass collects."""

from __future__ import annotations

from typing import Any, Callable, List

from twistgate.config.model import ConfigError, ConfigIssue


def issues_of(check: Callable[..., Any], *args: Any) -> List[ConfigIssue]:
    """The issues `check(*args)` raises (none when it returns)."""
    try:
        check(*args)
    except ConfigError as error:
        return list(error.issues)
    return []
