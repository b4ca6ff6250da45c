"""
The `twistgate` command: offline tools over a configuration file.

    twistgate check FILE    validate (exit 0) or list every error (exit 1)
    twistgate routes FILE   print the route table in the order it matches
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from twisted.internet.testing import MemoryReactorClock

from twistgate.config import ConfigError, load_file


def _build(path: str):  # type: ignore[no-untyped-def]
    """Load and build a generation exactly as the gateway would, without the network."""
    from twistgate.gateway import Generation

    config = load_file(path)
    from twistgate.listeners import build_listener

    for index, listener in enumerate(config.listeners):  # TLS listeners read their certificate files
        build_listener(listener, MemoryReactorClock(), source=path, index=index)
    return Generation(config, MemoryReactorClock())


def _check(path: str) -> int:
    try:
        generation = _build(path)
    except ConfigError as error:
        print(f"{path}: invalid configuration", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{path}: cannot read: {error}", file=sys.stderr)
        return 1
    config = generation.config
    print(
        f"{path}: ok ({len(config.listeners)} listeners, {len(config.upstreams)} upstreams, "
        f"{len(config.routes)} routes)"
    )
    return 0


def _routes(path: str) -> int:
    from twistgate.routing import format_routes

    try:
        generation = _build(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{path}: cannot read: {error}", file=sys.stderr)
        return 1
    print(format_routes(generation.routes))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="twistgate", description="twistgate API gateway tools")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    routes = sub.add_parser("routes", help="print the route table in match order")
    routes.add_argument("file")
    explain = sub.add_parser("explain", help="which route a request takes, why, and what runs on it")
    explain.add_argument("file")
    explain.add_argument("--method", default="GET")
    explain.add_argument("--host", default=None)
    explain.add_argument("--path", required=True)
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    from twistgate.policies.auth.cli import add_keys_command

    add_keys_command(sub)  # `twistgate keys create|list|revoke` (twistgate/policies/auth/cli.py)
    args = parser.parse_args(argv)
    if args.command == "keys":
        return int(args.handler(args))
    if args.command == "explain":
        from twistgate.ops.explain import main as explain_main

        return explain_main(args, _build)
    if args.command == "check":
        return _check(args.file)
    return _routes(args.file)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
