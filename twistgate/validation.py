"""
Whether a configuration can work, decided without building a gateway.

`load_file` already validates every section on its own.  What needs two
sections at once (a route naming an authenticator, a cache object larger
than the store) is checked here by pure functions over the frozen config
(`validate`); what needs the files a configuration names (certificates,
keys, CA bundles, htpasswd) is read and parsed by `check_files`.
`load_prepared` is both, keeping what the files hold (`twistgate.files`)
for the generation to use: a reload runs it in a thread, so nothing here
touches the reactor.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List, Tuple

import attrs

from twistgate import chain
from twistgate.config import load_file
from twistgate.config.model import ConfigError, ConfigIssue, GatewayConfig
from twistgate.files import FileMaterial, read_files
from twistgate.routing import RouteTable

__all__ = ["check_files", "load_checked", "load_prepared", "validate"]


def validate(config: GatewayConfig) -> List[ConfigIssue]:
    """Every cross-section problem of `config` (pure: no files, no reactor)."""
    issues: List[ConfigIssue] = []
    issues.extend(_raised(lambda: RouteTable((route, None) for route in config.routes)))
    issues.extend(chain.validate(config))
    return issues


def check_files(config: GatewayConfig) -> List[ConfigIssue]:
    """Read and parse every file the configuration names; what cannot be used."""
    return list(read_files(config)[1]) + check_files_extra(config)


def load_prepared(path: str) -> Tuple[GatewayConfig, FileMaterial]:
    """Load `path`, validate it, and read what its files hold; `ConfigError` with every issue."""
    config = load_file(path)
    material, file_issues = read_files(config)
    issues = validate(config) + file_issues + check_files_extra(config)
    if issues:
        raise ConfigError(issues)
    return config, material


def check_files_extra(config: GatewayConfig) -> List[ConfigIssue]:
    """File-system checks beyond reading: the access log's directory exists."""
    access_log = config.sections.get("access_log")
    if access_log is not None and access_log.path != "-":
        directory = os.path.dirname(os.path.abspath(access_log.path))
        if not os.path.isdir(directory):
            return [ConfigIssue(location=access_log.location, message=f"access_log.path: directory {directory!r} does not exist")]
    return []


def load_checked(path: str) -> GatewayConfig:
    """Load `path`, validate it and check its files; `ConfigError` with every issue."""
    return load_prepared(path)[0]


def _raised(check: Callable[[], Any]) -> List[ConfigIssue]:
    try:
        check()
    except ConfigError as error:
        return list(error.issues)
    return []
