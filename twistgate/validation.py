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
from typing import Any, Callable, List, Tuple

import attrs

from twistgate import chain
from twistgate.config import load_file
from twistgate.config.model import ConfigError, ConfigIssue, GatewayConfig
from twistgate.files import FileMaterial, read_files
from twistgate.routing import RouteTable

__all__ = ["check_files", "load_checked", "load_prepared", "validate", "warnings"]


def validate(config: GatewayConfig) -> List[ConfigIssue]:
    """Every cross-section problem of `config` (pure: no files, no reactor)."""
    issues: List[ConfigIssue] = []
    issues.extend(_raised(lambda: RouteTable((route, None) for route in config.routes)))
    issues.extend(chain.validate(config))
    issues.extend(_edge_routes(config))
    issues.extend(_shared_sockets(config))
    return issues


def warnings(config: GatewayConfig) -> List[ConfigIssue]:
    """
    What loads but will not do what it seems to (``twistgate check`` prints
    these; the configuration is still valid).
    """
    import math

    found: List[ConfigIssue] = []
    for upstream in config.upstreams.values():
        outlier = upstream.policies.get("outlier_detection")
        fixed = [t for t in upstream.targets if not t.srv]
        # Like twistgate.upstream.outlier: two or more targets can always lose one.
        if outlier is not None and len(fixed) == len(upstream.targets) == 1:
            if math.floor(outlier.max_ejected + 1e-9) < 1:
                found.append(ConfigIssue(location=outlier.location, message=(
                    f"upstream {upstream.name!r} has a single target: with max_ejected {outlier.max_ejected:.0%} outlier "
                    "detection never ejects one (as nginx ignores max_fails for a single server); "
                    "add targets, or rely on circuit_breaker and health_check"
                )))
    default_timeout = config.limits.request_timeout
    for route in config.routes:
        timeout = route.timeout if route.timeout is not None else default_timeout
        overrides = route.policies.get("timeouts")
        for name in route.upstream_names:
            upstream = config.upstreams.get(name)
            if upstream is None:
                continue
            read = overrides.read if overrides is not None and overrides.read is not None else upstream.timeouts.read
            if read > timeout:
                found.append(ConfigIssue(location=route.location, message=(
                    f"route {route.name!r}: upstream {name!r} timeouts.read ({read:g}s) is longer than the route's "
                    f"timeout ({timeout:g}s), so it has no effect: the route answers 504 first"
                )))
    return found


def _edge_routes(config: GatewayConfig) -> List[ConfigIssue]:
    """Listener names, redirect templates, and keys that need an upstream."""
    from twistgate.answers import BUILTINS, template_names
    from twistgate.config._issues import suggest

    issues: List[ConfigIssue] = []
    listeners = [listener.name for listener in config.listeners]
    for route in config.routes:
        where = route.location

        def issue(path: str, message: str) -> None:
            issues.append(ConfigIssue(location=attrs.evolve(where, path=f"{where.path}.{path}"), message=message))

        for name in route.listeners or ():
            if name not in listeners:
                issue("listeners", f"unknown listener {name!r} (defined: {', '.join(listeners)}){suggest(name, listeners)}")
        if route.redirect is not None:
            try:
                names = template_names(route.redirect.to)
            except ValueError as error:
                issue("redirect.to", str(error))
                names = ()
            params = _route_params(route.path)
            for name in names:
                if name not in params and name not in BUILTINS:
                    known = ", ".join(sorted(set(params) | set(BUILTINS)))
                    issue("redirect.to", f"unknown substitution {{{name}}}; known here: {known}")
        if not route.upstream_names:
            for key in ("retry", "timeouts"):
                if key in route.policies:
                    issue(key, f"'{key}' applies to forwarded requests; this route answers itself")
    return issues


def _route_params(path: str) -> List[str]:
    """The ``{param}`` names and regex named groups of a route path."""
    import re

    if path.startswith("~"):
        try:
            return list(re.compile(path[1:]).groupindex)
        except re.error:
            return []
    return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", path)


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


def _shared_sockets(config: GatewayConfig) -> List[ConfigIssue]:
    """Listeners workers share must be sockets a supervisor can hand over."""
    from twistgate.workers.sockets import check_endpoints

    return check_endpoints(config)
