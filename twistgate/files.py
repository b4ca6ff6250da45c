"""
What a configuration needs from the files it names, read and parsed once:
listener certificates (as TLS contexts), upstream CA bundles and client
certificates (as TLS policies), JWT public keys and secrets, htpasswd users
and the bcrypt dummy hash that keeps unknown users as slow as known ones.

This is the blocking part of building a gateway (file reads, PEM parsing,
bcrypt): `read_files` never touches the reactor, so a reload runs it in a
thread and only swaps on the reactor thread.  A generation takes the result
as it is; nothing reads these files again until the next reload.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from twistgate.config.model import ConfigError, ConfigIssue, GatewayConfig

__all__ = ["FileMaterial", "read_files", "read_files_or_raise"]


@attrs.frozen(eq=False)
class FileMaterial:
    """
    :ivar listener_contexts: listener name -> `twistgate.tls.ServerContexts`.
    :ivar upstream_tls: upstream name -> its `IPolicyForHTTPS` (upstreams with TLS only).
    :ivar jwt_keys: jwt authenticator name -> its static verification keys.
    :ivar htpasswd: basic authenticator name -> (users, dummy bcrypt hash).
    """

    listener_contexts: Mapping[str, Any] = attrs.field(factory=dict)
    upstream_tls: Mapping[str, Any] = attrs.field(factory=dict)
    jwt_keys: Mapping[str, List[Any]] = attrs.field(factory=dict)
    htpasswd: Mapping[str, Tuple[Dict[str, bytes], bytes]] = attrs.field(factory=dict)


def read_files(config: GatewayConfig) -> Tuple[FileMaterial, List[ConfigIssue]]:
    """Read and parse every file `config` names; what could not be used, as issues."""
    from twistgate.policies.auth.basic import dummy_hash
    from twistgate.policies.auth.config import BasicConfig, JwtConfig
    from twistgate.policies.auth.files import jwt_keys, read_htpasswd
    from twistgate.tls.server_contexts import build_server_contexts
    from twistgate.upstream.tls import policy_for, uses_tls

    issues: List[ConfigIssue] = []

    def attempt(make: Callable[[], Any]) -> Optional[Any]:
        try:
            return make()
        except ConfigError as error:
            issues.extend(_in_file(config, error.issues))
            return None

    listeners: Dict[str, Any] = {}
    for index, listener in enumerate(config.listeners):
        if listener.tls is not None:
            tls, where = listener.tls, f"listeners[{index}].tls"
            contexts = attempt(lambda: build_server_contexts(tls, where=where))
            if contexts is not None:
                listeners[listener.name] = contexts
    upstreams: Dict[str, Any] = {}
    for upstream in config.upstreams.values():
        if uses_tls(upstream):
            policy = attempt(lambda: policy_for(upstream))
            if policy is not None:
                upstreams[upstream.name] = policy
    keys: Dict[str, List[Any]] = {}
    users: Dict[str, Tuple[Dict[str, bytes], bytes]] = {}
    auth = config.sections.get("auth")
    for name, authenticator in (auth.authenticators.items() if auth is not None else ()):
        if isinstance(authenticator, JwtConfig):
            found = attempt(lambda: jwt_keys(authenticator))
            if found is not None:
                keys[name] = found
        elif isinstance(authenticator, BasicConfig):
            table = attempt(lambda: read_htpasswd(authenticator))
            if table is not None:
                users[name] = (table, dummy_hash(table))
    material = FileMaterial(listener_contexts=listeners, upstream_tls=upstreams, jwt_keys=keys, htpasswd=users)
    return material, issues


def read_files_or_raise(config: GatewayConfig) -> FileMaterial:
    material, issues = read_files(config)
    if issues:
        raise ConfigError(issues)
    return material


def _in_file(config: GatewayConfig, issues: Any) -> List[ConfigIssue]:
    """Issues of a config built from text carry "<config>": name the real file."""
    if config.source is None:
        return list(issues)
    return [
        attrs.evolve(issue, location=attrs.evolve(issue.location, file=config.source))
        if issue.location.file == "<config>"
        else issue
        for issue in issues
    ]
