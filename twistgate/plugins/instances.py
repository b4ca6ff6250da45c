"""
Build the plugin instances a configuration asks for: the entry point of the
plugin system (`build_plugins`), with the names the gateway uses re-exported
from `twistgate.plugins.registry` (names -> factories) and
`twistgate.plugins.calls` (calling the hooks).

`build_plugins` runs once per configuration (startup, reload, ``twistgate
check``).  It resolves each configured name through a `PluginRegistry`
(built-ins plus the ``twistgate`` entry point group, imported lazily), calls
the factory with the section's own options, registers every instance with a
pluggy `PluginManager` holding the hookspecs (so misspelled hooks and wrong
argument names are configuration errors), and precomputes, for every route
and per-request hook, the ordered list of bound methods to call.

Per request, `RouteChain` walks that list directly, without pluggy's hook
caller: pluggy hooks are synchronous, and ours may return Deferreds or
coroutines that must settle before the next plugin runs.  When every result is
synchronous the returned Deferred has already fired; the reactor is never
involved.

Call order: for a route, its plugins are the global plugins in configuration
order (a route section that overrides a global one takes the global's place),
then the route's own plugins in configuration order.  Within a hook,
implementations marked ``tryfirst`` come first and ``trylast`` last, each
group keeping that order.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import pluggy

from twistgate.config.model import ConfigError, ConfigIssue, GatewayConfig, PluginSection
from twistgate.plugins import hookspecs
from twistgate.plugins.calls import PluginError, RouteChain, _Call, _Instance
from twistgate.plugins.lifecycle import GatewayPlugins, PluginStartupError
from twistgate.plugins.options import FreeOptions, convert_options, options_spec
from twistgate.plugins.hookspecs import HOOK_NAMES, PROJECT_NAME
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginContext, PluginFactory, PluginRegistry

__all__ = [
    "BUILTIN_PLUGINS",
    "GatewayPlugins",
    "PluginContext",
    "PluginError",
    "PluginFactory",
    "PluginRegistry",
    "PluginStartupError",
    "RouteChain",
    "build_plugins",
]


def _registration_name(name: str, route: Optional[str]) -> str:
    return name if route is None else f"{name}@{route}"


class _Builder:
    """The state of one `build_plugins` run: issues are collected, not raised."""

    def __init__(
        self,
        registry: PluginRegistry,
        context_factory: Callable[[str], PluginContext],
    ) -> None:
        self.registry = registry
        self.context_factory = context_factory
        self.issues: List[ConfigIssue] = []
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.instances: List[_Instance] = []

    def issue(self, section: PluginSection, message: str) -> None:
        self.issues.append(ConfigIssue(location=section.location, message=message))

    def known(self, section: PluginSection) -> bool:
        if section.name in self.registry:
            return True
        names = self.registry.names()
        close = difflib.get_close_matches(section.name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        available = ", ".join(names) or "none"
        self.issue(
            section,
            f"unknown plugin {section.name!r}{hint} (available plugins: {available})",
        )
        return False

    def unique(self, sections: Sequence[PluginSection]) -> None:
        seen: Dict[str, PluginSection] = {}
        for section in sections:
            if section.name in seen:
                self.issue(
                    section,
                    f"plugin {section.name!r} is configured twice "
                    f"(first at {seen[section.name].location})",
                )
            else:
                seen[section.name] = section

    def build(self, section: PluginSection, route: Optional[str]) -> Optional[_Instance]:
        name = section.name
        try:
            factory = self.registry.load(name)
        except Exception as error:
            self.issue(section, f"plugin {name!r} could not be loaded: {type(error).__name__}: {error}")
            return None
        options = self.options(section, factory)
        if options is None:
            return None
        try:
            plugin = factory(options, self.context_factory(name))
        except (ValueError, TypeError) as error:
            self.issue(section, f"plugin {name!r}: {error}")
            return None
        except Exception as error:
            self.issue(section, f"plugin {name!r} could not be built: {type(error).__name__}: {error}")
            return None
        if plugin is None:
            self.issue(section, f"plugin {name!r}: its factory returned None")
            return None
        if not self.register(section, plugin, route):
            return None
        instance = _Instance(name=name, route=route, plugin=plugin, location=section.location)
        self.instances.append(instance)
        return instance

    def options(self, section: PluginSection, factory: PluginFactory) -> Optional[Mapping[str, Any]]:
        """
        What the factory gets: the section's options, converted through the
        factory's declaration if the loader did not already (a factory
        given in code, a configuration built in code); None after an issue.
        """
        try:
            spec = options_spec(factory)
        except TypeError as error:
            self.issue(section, f"plugin {section.name!r}: {error}")
            return None
        if isinstance(spec, FreeOptions) or section.declared == spec:
            return section.options
        try:
            return convert_options(spec, section.options, where=section.name)
        except ConfigError as error:
            for found in error.issues:
                path = found.location.path
                key = path.partition(".")[2] if "." in path else ""
                where = f"{key}: " if key else ""
                self.issue(section, f"plugin {section.name!r}: {where}{found.message}")
            return None

    def register(self, section: PluginSection, plugin: object, route: Optional[str]) -> bool:
        manager = self.manager
        if manager.is_registered(plugin):
            return True  # a factory handed out the same object twice
        if not self.all_marked(section, plugin):
            return False
        try:
            manager.register(plugin, name=_registration_name(section.name, route))
        except pluggy.PluginValidationError as error:
            detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
            self.issue(section, f"plugin {section.name!r} does not match the hook specification: {detail}")
            return False
        ok = True
        for caller in manager.get_hookcallers(plugin) or ():
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
            if not caller.has_spec():
                if all(impl.optionalhook for impl in impls):
                    continue
                close = difflib.get_close_matches(caller.name, HOOK_NAMES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.issue(
                    section,
                    f"plugin {section.name!r} implements unknown hook {caller.name!r}{hint} "
                    f"(hooks: {', '.join(HOOK_NAMES)})",
                )
                ok = False
            elif any(impl.wrapper or impl.hookwrapper for impl in impls):
                self.issue(
                    section,
                    f"plugin {section.name!r}: {caller.name} is a hook wrapper; "
                    "twistgate hooks do not support wrapper=True or hookwrapper=True",
                )
                ok = False
        if not ok:
            manager.unregister(plugin)
        return ok

    def all_marked(self, section: PluginSection, plugin: object) -> bool:
        """
        A method named after a hook but not marked ``@hookimpl`` would never
        be called (pluggy registers marked methods only): a mistake to
        report, not to ignore.
        """
        attribute = f"{PROJECT_NAME}_impl"
        unmarked = [
            hook
            for hook in HOOK_NAMES
            if callable(getattr(plugin, hook, None)) and getattr(getattr(plugin, hook), attribute, None) is None
        ]
        for hook in unmarked:
            self.issue(
                section,
                f"plugin {section.name!r}: {hook}() is not marked with @hookimpl, so it would never be called; "
                "decorate it with @hookimpl from twistgate.plugins",
            )
        return not unmarked

    def calls(self, hook: str, instances: Sequence[_Instance], *, unwind: bool = False) -> Tuple[_Call, ...]:
        """
        ``hook``'s implementations among ``instances``: tryfirst, others,
        trylast; each in ``instances`` order, or in reverse with ``unwind``
        (responses travel back through the layers: an onion, as Envoy's
        encoder filters).  Each call knows its layer: its instance's position.
        """
        caller: pluggy.HookCaller = getattr(self.manager.hook, hook)
        assert caller.spec is not None
        by_plugin: Dict[int, List[pluggy.HookImpl]] = {}
        for impl in caller.get_hookimpls():
            by_plugin.setdefault(id(impl.plugin), []).append(impl)
        ranked = []
        for position, instance in enumerate(instances):
            for impl in by_plugin.get(id(instance.plugin), ()):
                rank = 0 if impl.tryfirst else 2 if impl.trylast else 1
                order = -position if unwind else position
                ranked.append((rank, order, _Call(instance, impl, caller.spec.argnames, layer=position)))
        ranked.sort(key=lambda entry: entry[:2])
        return tuple(call for _, _, call in ranked)


def build_plugins(
    config: GatewayConfig,
    context_factory: Callable[[str], PluginContext],
    *,
    registry: Optional[PluginRegistry] = None,
    stages: Optional[Mapping[str, Sequence[Tuple[str, object]]]] = None,
) -> "GatewayPlugins":
    """
    Build every plugin instance ``config`` asks for.

    * A global section that is enabled gives one instance shared by every
      route; a disabled one is not built.
    * A route section with the same name replaces the global instance on
      that route (with only its own options), in the global's position; with
      ``enabled: false`` it removes the plugin from that route.
    * A route section with a new name adds an instance after the globals.

    Every section's name is checked, even a disabled one (a misspelt
    ``enabled: false`` would otherwise silently disable nothing).

    :param config: the validated configuration.
    :param context_factory: makes the `PluginContext` for a plugin name.
    :param registry: where names are looked up; default
        `PluginRegistry.default` (built-ins plus the ``twistgate`` entry
        points).
    :param stages: route name -> the route's policies (twistgate.chain.build_policies)
        as (section key, object); they run before the route's plugins and are
        validated against the hook specifications like plugins.
    :raises ConfigError: with every issue found: unknown names (with the
        closest match), factories rejecting their options, plugins that do
        not match the hook specifications.
    """
    builder = _Builder(registry or PluginRegistry.default(), context_factory)

    builder.unique(config.plugins)
    global_names = {section.name for section in config.plugins}
    shared: Dict[str, _Instance] = {}
    for section in config.plugins:
        if builder.known(section) and section.enabled and section.name not in shared:
            instance = builder.build(section, None)
            if instance is not None:
                shared[section.name] = instance

    route_instances: Dict[str, List[_Instance]] = {}
    for route in config.routes:
        builtin: List[_Instance] = []
        for key, obj in (stages or {}).get(route.name, ()):
            location = getattr(route.policies.get(key), "location", route.location)
            section = PluginSection(name=key, location=location)
            if builder.register(section, obj, route.name):
                builtin.append(_Instance(name=key, route=route.name, plugin=obj, location=section.location))
        builder.unique(route.plugins)
        own: Dict[str, Optional[_Instance]] = {}
        for section in route.plugins:
            if section.name in own:
                continue
            own[section.name] = (
                builder.build(section, route.name)
                if builder.known(section) and section.enabled
                else None
            )
        ordered: List[_Instance] = list(builtin)
        for section in config.plugins:
            if section.name in own:
                overriding = own[section.name]
                if overriding is not None and overriding not in ordered:
                    ordered.append(overriding)
            elif section.name in shared and shared[section.name] not in ordered:
                ordered.append(shared[section.name])
        ordered.extend(
            instance
            for name, instance in own.items()
            if name not in global_names and instance is not None
        )
        route_instances[route.name] = ordered

    if builder.issues:
        raise ConfigError(builder.issues)
    builder.manager.check_pending()

    def route_plugins(route: Optional[str], instances: Sequence[_Instance]) -> RouteChain:
        return RouteChain(
            route=route,
            names=tuple(instance.name for instance in instances),
            on_request=builder.calls("on_request", instances),
            on_response=builder.calls("on_response", instances, unwind=True),
            on_error=builder.calls("on_error", instances),
        )

    globals_only = [shared[s.name] for s in config.plugins if s.name in shared]
    admin: Dict[str, Dict[Optional[str], _Call]] = {}
    for call in builder.calls("admin_get", builder.instances):
        admin.setdefault(call.plugin, {}).setdefault(call.route, call)
    return GatewayPlugins(
        admin=admin,
        instances=tuple(builder.instances),
        route_instances={name: tuple(i for i in instances if i in builder.instances) for name, instances in route_instances.items()},
        manager=builder.manager,
        global_plugins=route_plugins(None, list(dict.fromkeys(globals_only))),
        routes={name: route_plugins(name, instances) for name, instances in route_instances.items()},
        on_startup=builder.calls("on_startup", builder.instances),
        on_shutdown=builder.calls("on_shutdown", builder.instances)[::-1],
    )
