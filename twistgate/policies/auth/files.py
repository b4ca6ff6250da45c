"""
The files authenticators read (PEM public keys, htpasswd), and the checks
that make a bad one a configuration error with the section's location.

Blocking work (file reads, parsing, the bcrypt dummy hash): a reload runs
`check_auth_files` in a thread before it builds anything.
"""

from __future__ import annotations

from typing import Any, Dict, List

from twistgate.config.model import ConfigError, ConfigIssue, Location
from twistgate.policies.auth.basic import HtpasswdError, parse_htpasswd
from twistgate.policies.auth.config import AuthSection, BasicConfig, JwtConfig
from twistgate.policies.auth.jwt_keys import HMAC, KeyProblem, VerificationKey, hmac_key, pem_key

__all__ = ["check_auth_files", "jwt_keys", "read_htpasswd"]


def _problem(config: Any, key: str, message: str) -> ConfigError:
    location = config.location
    at = Location(file=location.file, line=location.line, path=f"{location.path}.{key}")
    return ConfigError([ConfigIssue(location=at, message=message)])


def jwt_keys(config: JwtConfig) -> List[VerificationKey]:
    """The static keys of a jwt authenticator: its HMAC secret and PEM public key."""
    keys: List[VerificationKey] = []
    if config.secret is not None:
        try:
            keys.append(hmac_key(config.secret, config.algorithms))
        except Exception as error:
            raise _problem(config, "secret", f"unusable secret: {error}") from None
    if config.public_key is not None:
        try:
            with open(config.public_key, "rb") as f:
                keys.append(pem_key(f.read(), [a for a in config.algorithms if a not in HMAC]))
        except OSError as error:
            raise _problem(config, "public_key", f"cannot read {config.public_key!r}: {error.strerror}") from None
        except KeyProblem as problem:
            raise _problem(config, "public_key", f"{config.public_key!r}: {problem}") from None
    return keys


def read_htpasswd(config: BasicConfig) -> Dict[str, bytes]:
    """The users of a basic authenticator's htpasswd file (bcrypt entries only)."""
    try:
        with open(config.htpasswd, "rb") as f:
            return parse_htpasswd(f.read())
    except OSError as error:
        raise _problem(config, "htpasswd", f"cannot read {config.htpasswd!r}: {error.strerror}") from None
    except HtpasswdError as error:
        raise _problem(config, "htpasswd", f"{config.htpasswd}: {error}") from None


def check_auth_files(section: AuthSection) -> List[ConfigIssue]:
    """Every authenticator file that cannot be used."""
    issues: List[ConfigIssue] = []
    for config in section.authenticators.values():
        try:
            if isinstance(config, JwtConfig):
                jwt_keys(config)
            elif isinstance(config, BasicConfig):
                read_htpasswd(config)
        except ConfigError as error:
            issues.extend(error.issues)
    return issues
