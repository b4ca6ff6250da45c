"""
What is installed, for ``twistgate plugins``: the plugins (built-ins and the
``twistgate`` entry points) and the four extension groups, each with where
it comes from, what it does and the options it declares.

Listing imports every installed plugin and extension (the gateway itself
imports only the configured ones); one that cannot be imported is listed
with the reason, and the others still are.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Dict, List, Optional

import attrs

from twistgate.plugins.extension_points import GROUPS, ExtensionRegistry
from twistgate.plugins.options import OptionInfo, options_spec
from twistgate.plugins.registry import PluginRegistry

__all__ = ["GROUP_TITLES", "Installed", "installed", "summary_of"]

#: Each group's heading and where it is configured.
GROUP_TITLES: Dict[str, str] = {
    "twistgate": "Plugins (twistgate), configured under plugins: and routes[].plugins:",
    "twistgate.balancers": "Balancers (twistgate.balancers), configured as upstreams.NAME.balance:",
    "twistgate.health_checks": "Health checks (twistgate.health_checks), configured as upstreams.NAME.health_check.type:",
    "twistgate.authenticators": "Authenticators (twistgate.authenticators), configured as auth.NAME.type:",
    "twistgate.discovery": "Discovery (twistgate.discovery), configured as upstreams.NAME.targets_from.type:",
}


@attrs.frozen
class Installed:
    """One installed plugin or extension."""

    group: str
    name: str
    origin: str
    summary: str = ""
    options: Optional[List[OptionInfo]] = None  # None: not declared (handed over as written)
    error: Optional[str] = None  # it cannot be imported, or its Options are not a declaration

    def as_json(self) -> Dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "origin": self.origin,
            "summary": self.summary,
            "options": None if self.options is None else [attrs.asdict(o) for o in self.options],
            "error": self.error,
        }


def summary_of(factory: Any, limit: int = 110) -> str:
    """The first sentence of the factory's docstring, else of its module's (shortened to `limit`)."""
    for doc in (inspect.getdoc(factory), inspect.getdoc(sys.modules.get(getattr(factory, "__module__", ""), None))):
        if doc:
            paragraph = " ".join(doc.strip().split("\n\n")[0].split())
            sentence = paragraph.split(". ")[0].rstrip(".") + "."
            return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."
    return ""


def installed(plugins: Optional[PluginRegistry] = None, extensions: Optional[ExtensionRegistry] = None) -> List[Installed]:
    """Everything installed, group by group, sorted by name."""
    plugins = plugins if plugins is not None else PluginRegistry.default()
    extensions = extensions if extensions is not None else ExtensionRegistry()
    found: List[Installed] = []
    for name in plugins.names():
        origin = plugins.origin(name)
        try:
            factory = plugins.load(name)
            found.append(_entry("twistgate", name, origin, factory))
        except Exception as error:
            found.append(Installed("twistgate", name, origin, error=f"cannot be loaded: {type(error).__name__}: {error}"))
    for group in GROUPS:
        for name in extensions.names(group):
            try:
                extension = extensions.lookup(group, name)
            except Exception as error:
                found.append(Installed(group, name, "entry point", error=f"cannot be loaded: {type(error).__name__}: {error}"))
                continue
            origin = "built in" if extension.builtin else extension.origin
            found.append(_entry(group, name, origin, extension.factory))
    return found


def _entry(group: str, name: str, origin: str, factory: Any) -> Installed:
    try:
        options = options_spec(factory).describe()
    except TypeError as error:
        return Installed(group, name, origin, summary_of(factory), error=str(error))
    return Installed(group, name, origin, summary_of(factory), options)
