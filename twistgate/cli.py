"""
The `twistgate` command: offline tools over a configuration file.

    twistgate --version     print the version
    twistgate check FILE    validate (exit 0) or list every error (exit 1)
    twistgate routes FILE   print the route table in the order it matches
    twistgate explain FILE --path P [--method M] [--host H] [--json]
    twistgate keys create|list|revoke --config FILE ...
    twistgate plugins [--json]   installed plugins and extensions, with their options
    twistgate plugin new NAME [--dir DIR]   a plugin package to start from

Exit status, for every command: 0 done; 1 the configuration is invalid or
cannot be read, or the operation failed (a key store error, an unknown key
id); 2 a usage error (unknown command or option, a missing or malformed
argument); 3 ``explain`` found no route for the request.  A reader that
goes away (``twistgate explain ... --json | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

from twistgate._text import plural
from twistgate._version import __version__

from twistgate.config import ConfigError

T = TypeVar("T")


def _build(path: str):  # type: ignore[no-untyped-def]
    """
    Load, check and build a generation exactly as the gateway would, for
    ``routes`` and ``explain`` (which show the built chains).  The reactor
    is only handed to the objects it builds: nothing is started, nothing
    listens.
    """
    from twisted.internet import reactor

    from twistgate.generation import Generation
    from twistgate.validation import load_checked

    return Generation(load_checked(path), reactor)


def _validate(path: str):  # type: ignore[no-untyped-def]
    """
    ``twistgate check``: load and validate (pure), read every file the
    configuration names, and build its plugins (their factories validate
    their own options); no generation, no listener, no reactor started.
    """
    from twisted.internet import reactor

    from twistgate.plugins.instances import build_plugins
    from twistgate.plugins.registry import PluginContext
    from twistgate.validation import load_checked

    config = load_checked(path)
    build_plugins(config, lambda name: PluginContext(name=name, clock=reactor, http_client=None))
    return config


EXIT_OK = 0
EXIT_INVALID = 1  # invalid configuration, or the operation failed
EXIT_USAGE = 2  # argparse's own status for usage errors
EXIT_NO_ROUTE = 3  # `explain`: the request matches no route


def _loaded(path: str, load: Callable[[str], T]) -> Optional[T]:
    """`load(path)`, or None once stderr says why the file is invalid or cannot be read."""
    try:
        return load(path)
    except ConfigError as error:
        print(f"{path}: invalid configuration", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
    except OSError as error:
        print(f"{path}: cannot read: {error}", file=sys.stderr)
    return None


def _check(path: str) -> int:
    config = _loaded(path, _validate)
    if config is None:
        return EXIT_INVALID
    from twistgate.validation import warnings

    for warning in warnings(config):
        print(f"  warning: {warning}", file=sys.stderr)
    counts = (plural(len(config.listeners), "listener"), plural(len(config.upstreams), "upstream"),
              plural(len(config.routes), "route"))
    print(f"{path}: ok ({', '.join(counts)})")
    return EXIT_OK


def _routes(path: str) -> int:
    from twistgate.routing import format_routes

    generation = _loaded(path, _build)
    if generation is None:
        return EXIT_INVALID
    print(format_routes(generation.routes))
    return EXIT_OK


def _plugins(as_json: bool) -> int:
    """``twistgate plugins``: what is installed, what each one is for, and its options."""
    import json

    from twistgate.plugins.catalog import GROUP_TITLES, installed

    found = installed()
    if as_json:
        print(json.dumps([entry.as_json() for entry in found], indent=1, default=str))
        return EXIT_OK
    for group, title in GROUP_TITLES.items():
        print(title)
        for entry in (e for e in found if e.group == group):
            print(f"  {entry.name}  ({entry.origin})")
            if entry.summary:
                print(f"      {entry.summary}")
            if entry.error is not None:
                print(f"      error: {entry.error}")
            elif entry.options is None:
                print("      options: not declared (handed over as written)")
            elif not entry.options:
                print("      options: none")
            for option in entry.options or ():
                if not option.documented:
                    print(f"      {option.name}")
                    continue
                default = "required" if option.required else f"default {json.dumps(option.default, default=str)}"
                doc = f": {option.doc}" if option.doc else ""
                print(f"      {option.name} ({option.type}, {default}){doc}")
        print()
    return EXIT_OK


def _plugin_new(name: str, directory: str) -> int:
    """``twistgate plugin new NAME``: write the package, say what to do next."""
    from twistgate.plugins.scaffold import ScaffoldError, write_plugin

    try:
        root = write_plugin(name, Path(directory))
    except ScaffoldError as error:
        print(f"twistgate plugin new: {error}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {root}/")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(root)}")
    print(f"next: cd {root} && pip install -e '.[test]' && pytest")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twistgate",
        description="twistgate API gateway tools",
        epilog="exit status: 0 done, 1 invalid configuration or failed operation, 2 usage error, "
        "3 explain found no route",
    )
    parser.add_argument("--version", action="version", version=f"twistgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    routes = sub.add_parser("routes", help="print the route table in match order")
    routes.add_argument("file")
    explain = sub.add_parser("explain", help="which route a request takes, why, and what runs on it")
    explain.add_argument("file")
    explain.add_argument("--method", default="GET")
    explain.add_argument("--host", default=None)
    explain.add_argument("--path", required=True, help="the request target; a ?query is matched too")
    explain.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="a request header (repeatable)")
    explain.add_argument("--cookie", action="append", metavar="NAME=VALUE", help="a cookie (repeatable)")
    explain.add_argument("--listener", default=None, help="the listener the request arrives on")
    explain.add_argument("--json", action="store_true", help="print the explanation as JSON")
    plugins = sub.add_parser("plugins", help="list installed plugins and extensions with their options")
    plugins.add_argument("--json", action="store_true", help="print the list as JSON")
    plugin = sub.add_parser("plugin", help="plugin development tools")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser("new", help="write a plugin package (entry point, a hook, options, tests, README)")
    new.add_argument("name", help="the plugin's name, as users write it under plugins: (my_plugin)")
    new.add_argument("--dir", default=".", help="where to create twistgate-NAME/ (default: here)")
    from twistgate.policies.auth.cli import add_keys_command

    add_keys_command(sub)  # `twistgate keys create|list|revoke` (twistgate/policies/auth/cli.py)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command's exit status; usage errors and ``--version`` raise SystemExit (2 and 0) from argparse."""
    args = _parser().parse_args(argv)
    try:
        status = _run(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at exit
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_OK
    return status


def _discard_stdout() -> None:
    """The reader left (``| head``): send what is still buffered nowhere, so exit prints no error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (tests)
        pass


def _run(args: argparse.Namespace) -> int:
    if args.command == "keys":
        return int(args.handler(args))
    if args.command == "explain":
        from twistgate.ops.explain import main as explain_main

        return explain_main(args, _build)
    if args.command == "check":
        return _check(args.file)
    if args.command == "plugins":
        return _plugins(args.json)
    if args.command == "plugin":
        return _plugin_new(args.name, args.dir)
    return _routes(args.file)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
