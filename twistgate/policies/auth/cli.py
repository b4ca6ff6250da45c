"""
``twistgate keys``: manage API keys from the shell, straight against the
key store named in the configuration (no running gateway needed).

    twistgate keys create --config etc/gw.yaml --consumer acme [--expires-in 30d] [--authenticator keys] [--json]
    twistgate keys list   --config etc/gw.yaml [--authenticator keys] [--json]
    twistgate keys revoke --config etc/gw.yaml KEY_ID [--authenticator keys]

``create`` prints the key alone on stdout (so ``KEY=$(twistgate keys create
...)`` works) and the rest on stderr; the key is not shown again.  A running
gateway sees a revocation made here within its ``cache_ttl``.

Exit status (as for every ``twistgate`` command): 0 done; 1 the
configuration is invalid or has no ``api_key`` authenticator, the key store
failed, or no such key; 2 a usage error (a bad ``--consumer``,
``--expires-in`` or ``--authenticator``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Dict, Optional, TextIO

from twistgate.policies.auth.admin import AdminRequestError, choose_authenticator
from twistgate.policies.auth.config import ApiKeyConfig
from twistgate.policies.auth.key_store import BlockingKeyStore, Database, dialect_for
from twistgate.policies.auth.keys import new_key, timestamp, valid_consumer
from twistgate.config import ConfigError, load_file, parse_duration


def add_keys_command(sub: Any) -> None:
    """Register ``keys`` on the ``twistgate`` command's subparsers."""
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", "-c", default="etc/gw.yaml", help="the gateway's configuration file")
        parser.add_argument("--authenticator", "-a", help="the api_key authenticator (needed when there are several)")

    create = actions.add_parser("create", help="create a key (shown once)")
    common(create)
    create.add_argument("--consumer", required=True, help="who the key belongs to")
    create.add_argument("--expires-in", help="a duration such as 30d or 12h; never expires by default")
    create.add_argument("--json", action="store_true", help="print the result as JSON")
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    common(listing)
    listing.add_argument("--json", action="store_true", help="print the result as JSON")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    common(revoke)
    revoke.add_argument("id", help="the key's id (the part after tg_)")
    keys.set_defaults(handler=run)


_NO_API_KEY_AUTHENTICATOR = """no api_key authenticator under 'auth'; add one, for example:

auth:
  keys:
    type: api_key
    header: X-API-Key
    store: sqlite:var/twistgate.db

then name it on the routes it protects (auth: [keys]) and run this command again.
See docs/auth.md, "API keys"."""


def _api_keys(config: Any) -> Dict[str, ApiKeyConfig]:
    section = config.sections.get("auth")
    if section is None:
        return {}
    return {n: a for n, a in section.authenticators.items() if isinstance(a, ApiKeyConfig)}


def run(
    args: argparse.Namespace,
    *,
    now: Callable[[], float] = time.time,  # an offline command: the wall clock is the only clock
    out: Optional[TextIO] = None,
    err: Optional[TextIO] = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        config = load_file(args.config)
    except ConfigError as error:
        print(f"{args.config}: invalid configuration", file=err)
        for issue in error.issues:
            print(f"  {issue}", file=err)
        return 1
    authenticators = _api_keys(config)
    if not authenticators:
        print(f"{args.config}: {_NO_API_KEY_AUTHENTICATOR}", file=err)
        return 1
    try:
        name = choose_authenticator(authenticators, args.authenticator)
    except AdminRequestError as error:
        print(error.message.replace("'authenticator'", "--authenticator"), file=err)
        return 2
    store = BlockingKeyStore(Database(dialect_for(authenticators[name].store)))
    try:
        return _ACTIONS[args.action](args, name, store, now(), out, err)
    except BrokenPipeError:
        raise  # the reader of our output left (`| head`): twistgate.cli ends quietly
    except Exception as error:  # the store: unreachable, locked, permissions
        print(f"the key store of {name!r} failed: {type(error).__name__}: {error}", file=err)
        return 1
    finally:
        store.close()


def _create(args: Any, name: str, store: BlockingKeyStore, now: float, out: TextIO, err: TextIO) -> int:
    problem = valid_consumer(args.consumer)
    if problem:
        print(problem.replace("'consumer'", "--consumer"), file=err)
        return 2
    expires_in: Optional[float] = None
    if args.expires_in is not None:
        try:
            expires_in = parse_duration(args.expires_in)
        except ValueError as error:
            print(f"--expires-in: {error}", file=err)
            return 2
    record, key = new_key(name, args.consumer, now, expires_in)
    store.create(record)
    if args.json:
        shown = {"key": key, **record.public()}
        print(json.dumps(shown, indent=2), file=out)
    else:
        print(key, file=out)
        expires = timestamp(record.expires_at) or "never"
        print(f"created key {record.id} for {record.consumer!r} ({name}), expires: {expires}", file=err)
        print("store it now: it is not shown again", file=err)
    return 0


def _list(args: Any, name: str, store: BlockingKeyStore, now: float, out: TextIO, err: TextIO) -> int:
    records = store.list(name)
    if args.json:
        print(json.dumps([r.public(now) for r in records], indent=2), file=out)
        return 0
    rows = [("ID", "CONSUMER", "CREATED", "EXPIRES", "STATUS")]
    for r in records:
        status = "revoked" if r.revoked_at is not None else "expired" if not r.usable_at(now) else "active"
        rows.append((r.id, r.consumer, timestamp(r.created_at) or "", timestamp(r.expires_at) or "never", status))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    return 0


def _revoke(args: Any, name: str, store: BlockingKeyStore, now: float, out: TextIO, err: TextIO) -> int:
    if not store.revoke(name, args.id, now):
        print(f"no key {args.id!r} in {name!r}", file=err)
        return 1
    print(f"revoked {args.id}", file=out)
    return 0


_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}
