"""
Whether a configuration can work, decided without building a gateway.

`load_file` already validates every section on its own.  What needs two
sections at once (a route naming an authenticator, a cache object larger
than the store) is checked here by pure functions over the frozen config
(`validate`); what needs the files a configuration names (certificates,
keys, CA bundles, htpasswd) is read and parsed by `check_files`.
`load_checked` is both, as ``twistgate check`` and a reload run them: a
reload runs it in a thread, so nothing here touches the reactor.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, List

import attrs

from twistgate import chain
from twistgate.config import load_file
from twistgate.config.model import ConfigError, ConfigIssue, GatewayConfig, Location
from twistgate.routing import RouteTable

__all__ = ["check_files", "load_checked", "validate"]


def validate(config: GatewayConfig) -> List[ConfigIssue]:
    """Every cross-section problem of `config` (pure: no files, no reactor)."""
    issues: List[ConfigIssue] = []
    issues.extend(_raised(lambda: RouteTable((route, None) for route in config.routes)))
    issues.extend(chain.validate(config))
    issues.extend(_admin_not_public(config))
    issues.extend(_shared_sockets(config))
    return issues


def check_files(config: GatewayConfig) -> List[ConfigIssue]:
    """Read and parse every file the configuration names; what cannot be used."""
    from twistgate.policies.auth.files import check_auth_files
    from twistgate.tls import build_server_contexts
    from twistgate.upstream.tls import policy_for, uses_tls

    issues: List[ConfigIssue] = []
    for index, listener in enumerate(config.listeners):
        if listener.tls is not None:
            where = f"listeners[{index}].tls"
            issues.extend(_in_file(config, _raised(lambda: build_server_contexts(listener.tls, where=where))))
    for upstream in config.upstreams.values():
        if uses_tls(upstream):
            issues.extend(_raised(lambda: policy_for(upstream)))
    auth = config.sections.get("auth")
    if auth is not None:
        issues.extend(check_auth_files(auth))
    access_log = config.sections.get("access_log")
    if access_log is not None and access_log.path != "-":
        directory = os.path.dirname(os.path.abspath(access_log.path))
        if not os.path.isdir(directory):
            message = f"access_log.path: directory {directory!r} does not exist"
            issues.append(ConfigIssue(location=access_log.location, message=message))
    return issues


def load_checked(path: str) -> GatewayConfig:
    """Load `path`, validate it and check its files; `ConfigError` with every issue."""
    config = load_file(path)
    issues = validate(config) + check_files(config)
    if issues:
        raise ConfigError(issues)
    return config


def _raised(check: Callable[[], Any]) -> List[ConfigIssue]:
    try:
        check()
    except ConfigError as error:
        return list(error.issues)
    return []


def _in_file(config: GatewayConfig, issues: Iterable[ConfigIssue]) -> List[ConfigIssue]:
    """Issues of a config built from text carry "<config>": name the real file."""
    if config.source is None:
        return list(issues)
    return [
        attrs.evolve(issue, location=attrs.evolve(issue.location, file=config.source))
        if issue.location.file == "<config>"
        else issue
        for issue in issues
    ]


def _shared_sockets(config: GatewayConfig) -> List[ConfigIssue]:
    from twistgate.workers.sockets import check_endpoints

    return check_endpoints(config)


def _admin_not_public(config: GatewayConfig) -> List[ConfigIssue]:
    """The admin API must never share an address with a public listener."""
    from twistgate.config.endpoints import same_address

    admin = config.sections.get("admin")
    if admin is None:
        return []
    issues = []
    for index, listener in enumerate(config.listeners):
        if same_address(admin.endpoint, listener.endpoint):
            message = (
                f"admin.endpoint {admin.endpoint!r} is the address of listener {listener.name!r} "
                f"(listeners[{index}]); the admin API must never be on a public listener"
            )
            issues.append(ConfigIssue(location=getattr(admin, "location", Location()), message=message))
    return issues
