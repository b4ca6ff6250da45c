"""
Configuration: load and validate YAML into frozen, typed objects.

`load_file` and `load_text` return a `GatewayConfig` or raise `ConfigError`
carrying every issue found, each with file, line and key path.  The unit
parsers are public because plugins read durations, sizes and rates too.
"""

from twistgate.config._load import load_file, load_text
from twistgate.config._units import parse_duration, parse_rate, parse_size
from twistgate.config.model import (
    AdminConfig,
    ConfigError,
    ConfigIssue,
    DemoConfig,
    GatewayConfig,
    IPNetwork,
    KiB,
    LimitsConfig,
    ListenerCertificate,
    ListenerConfig,
    ListenerTLSConfig,
    Location,
    MiB,
    NO_RESUMPTION,
    PluginSection,
    PoolConfig,
    Rate,
    RouteConfig,
    SessionResumptionConfig,
    TargetConfig,
    UpstreamConfig,
    UpstreamTimeoutsConfig,
)

__all__ = [
    "load_file",
    "load_text",
    "parse_duration",
    "parse_size",
    "parse_rate",
    "AdminConfig",
    "ConfigError",
    "ConfigIssue",
    "DemoConfig",
    "GatewayConfig",
    "IPNetwork",
    "KiB",
    "LimitsConfig",
    "ListenerCertificate",
    "ListenerConfig",
    "ListenerTLSConfig",
    "Location",
    "MiB",
    "NO_RESUMPTION",
    "PluginSection",
    "PoolConfig",
    "Rate",
    "RouteConfig",
    "SessionResumptionConfig",
    "TargetConfig",
    "UpstreamConfig",
    "UpstreamTimeoutsConfig",
]
