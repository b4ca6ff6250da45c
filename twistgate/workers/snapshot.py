"""
Configuration snapshots: the exact text every worker of one version loads.

The supervisor reads the configuration file once per start or reload,
checks it, and writes the text it checked into its private directory; the
workers load that copy, with the original path as the source (relative
paths, messages and ``/admin/config`` are as for a single process).  So an
edit to the file between two workers' loads, or a worker restarted after a
rejected reload, can never give the workers different configurations.
"""

from __future__ import annotations

import os
from typing import Tuple

from twistgate.config import ConfigError, load_text
from twistgate.config.model import ConfigIssue, GatewayConfig, Location
from twistgate.files import FileMaterial, read_files
from twistgate.validation import check_files, check_files_extra, validate


def read_checked(source: str) -> Tuple[str, GatewayConfig]:
    """The file's text and its configuration, validated and its files checked (blocking)."""
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError([ConfigIssue(location=Location(file=source), message=f"cannot read the configuration file: {reason}")])
    return text, check(text, source)


def check(text: str, source: str) -> GatewayConfig:
    config = load_text(text, filename=source, source=source)
    issues = validate(config) + check_files(config)
    if issues:
        raise ConfigError(issues)
    return config


def write(directory: str, version: int, text: str) -> str:
    """Write version ``version``'s text (owner-only: it may hold secrets); its path."""
    path = os.path.join(directory, f"config-{version}.yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def load_snapshot(path: str, source: str) -> Tuple[GatewayConfig, FileMaterial]:
    """
    A worker's load: the snapshot's text, as if read from ``source``, and
    what the files it names hold (as `twistgate.validation.load_prepared`).
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    config = load_text(text, filename=source, source=source)
    material, file_issues = read_files(config)
    issues = validate(config) + file_issues + check_files_extra(config)
    if issues:
        raise ConfigError(issues)
    return config, material


def forget_older(directory: str, keep_from: int) -> None:
    """Remove snapshots older than ``keep_from`` (no worker starts from them any more)."""
    for name in os.listdir(directory):
        if name.startswith("config-") and name.endswith(".yaml"):
            try:
                version = int(name[len("config-") : -len(".yaml")])
            except ValueError:
                continue
            if version < keep_from:
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
