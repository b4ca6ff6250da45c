"""
Authentication: who is calling (API keys, JWT, Basic, client certificates)
and whether they may call a route.  docs/auth.md is the user's guide.

Modules, one concern each: `config` (types) and `parse` (the ``auth:``
sections); `base` (identity, refusals); an authenticator per module
(`api_keys`, `jwt_auth`, `basic`, `mtls`) with their helpers (`keys`,
`key_store*`, `jwt_keys`, `jwks`); `service` (built per generation);
`policy` (the route stage); `admin` (``/admin/keys``) and `cli`
(``twistgate keys``).
"""

from twistgate.policies.auth.base import BackendUnavailable, Identity, InvalidCredentials, NotPermitted

__all__ = ["Identity", "InvalidCredentials", "NotPermitted", "BackendUnavailable"]
