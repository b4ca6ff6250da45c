"""Declared options of an extension factory (twistgate.plugins.options): validated and converted at load time."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Literal, Optional, Tuple

import attrs
import pytest

from twistgate.config import ConfigError, Rate, load_text
from twistgate.plugins.extension_points import BALANCERS, DISCOVERY, using_extensions
from twistgate.plugins.options import (
    NO_OPTIONS,
    DeclaredOptions,
    Duration,
    FreeOptions,
    Size,
    convert_options,
    options_spec,
    with_options,
)
from twistgate.plugins.views import TargetInfo

HEAD = 'listeners: [{name: p, endpoint: "tcp:0"}]\nroutes: [{name: r, path: /*, upstream: u}]\nupstreams:\n  u:\n'


@dataclasses.dataclass(frozen=True)
class Every:
    url: str
    interval: Duration = 5.0
    limit: Size = 1024
    rate: Optional[Rate] = None
    count: int = 1
    ratio: float = 0.5
    enabled: bool = True
    tags: List[str] = dataclasses.field(default_factory=list)
    pair: Tuple[int, ...] = ()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)
    mode: Literal["fast", "safe"] = "safe"
    note: Optional[str] = None
    raw: Any = None


class Source:
    """A discovery source recording the options it was built with."""

    Options = Every
    built: List[Dict[str, Any]] = []

    def __init__(self, options: Dict[str, Any]) -> None:
        Source.built.append(options)

    def targets(self) -> List[str]:
        return []


def load(text: str, environ: Optional[Dict[str, str]] = None, **extra: Any) -> Any:
    with using_extensions({DISCOVERY: {"src": Source}, **extra}):
        return load_text(HEAD + text, "gw.yaml", environ=environ or {})


def problems(text: str, **extra: Any) -> List[Tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load(text, **extra)
    return [(i.location.line, i.location.path, i.message) for i in info.value.issues]


def test_every_field_type_is_converted_with_the_gateways_parsers():
    """Durations, sizes, rates, lists, mappings, literals and optionals arrive converted; defaults are filled."""
    config = load(
        """
    targets_from:
      type: src
      url: http://consul:8500
      interval: 1m30s
      limit: 64KiB
      rate: 100/min
      count: 3
      ratio: 2
      enabled: false
      tags: [a, b]
      pair: [1, 2]
      labels: {x: 1}
      mode: fast
      raw: {anything: [1, two]}
"""
    )
    options = dict(config.upstreams["u"].policies["targets_from"].source.options)
    assert options == {
        "url": "http://consul:8500", "interval": 90.0, "limit": 65536, "rate": Rate(100, 60.0), "count": 3,
        "ratio": 2.0, "enabled": False, "tags": ["a", "b"], "pair": (1, 2), "labels": {"x": 1}, "mode": "fast",
        "note": None, "raw": {"anything": [1, "two"]},
    }  # fmt: skip


def test_an_option_named_like_a_gateway_key_gets_its_value_too():
    """targets_from's interval is the gateway's; a source declaring `interval` receives it as well."""
    config = load("    targets_from: {type: src, url: u, interval: 2s}\n")
    source = config.upstreams["u"].policies["targets_from"]
    assert source.interval == 2.0 and source.source.options["interval"] == 2.0
    found = problems("    targets_from: {type: src, url: u, interval: 2}\n")
    assert [f[1] for f in found] == ["upstreams.u.targets_from.interval"]  # reported once, by the gateway


def test_defaults_and_environment_substitution():
    """Only the required option written; ${NAME} works as everywhere in the file."""
    config = load("    targets_from: {type: src, url: '${CONSUL}'}\n", environ={"CONSUL": "http://c:8500"})
    options = config.upstreams["u"].policies["targets_from"].source.options
    assert options["url"] == "http://c:8500" and options["interval"] == 5.0 and options["tags"] == []


def test_mistakes_are_located_with_did_you_mean():
    """Unknown keys (with the closest name), wrong types and missing required options: file line and key path."""
    found = problems(
        """
    targets_from:
      type: src
      intervall: 5s
      limit: 10MB
      count: many
      tags: a
      mode: quick
"""
    )
    assert found == [
        (6, "upstreams.u.targets_from.url", "required key 'url' is missing"),
        (8, "upstreams.u.targets_from.intervall", "unknown key 'intervall'; did you mean 'interval'?"),
        (9, "upstreams.u.targets_from.limit", "ambiguous size unit 'MB' in '10MB': write 10MiB (1 MiB = 1048576 bytes)"),
        (10, "upstreams.u.targets_from.count", "expected an integer, got string 'many'"),
        (11, "upstreams.u.targets_from.tags", "expected a list, got string 'a'"),
        (12, "upstreams.u.targets_from.mode", "unknown value 'quick'; expected one of fast, safe"),
    ]


def test_the_declarations_own_checks_are_config_errors():
    """A ValueError from __post_init__ / attrs validators is reported at the section."""

    @attrs.frozen
    class Checked:
        port: int = attrs.field(validator=attrs.validators.in_(range(1, 65536)))

    @with_options(Checked)
    def balancer(options: Dict[str, Any]) -> Any:
        raise AssertionError("not built when only loading")

    found = problems("    targets: [{url: 'http://a'}]\n    balance: {type: mine, port: 70000}\n", **{BALANCERS: {"mine": balancer}})
    assert len(found) == 1 and found[0][:2] == (6, "upstreams.u.balance")
    assert found[0][2].startswith("invalid options: ") and "port" in found[0][2]


def test_a_name_alone_uses_the_defaults_or_says_options_are_needed():
    """``balance: NAME`` for a balancer with defaults works; with required options it says what to write."""

    @dataclasses.dataclass(frozen=True)
    class Header:
        header: str = "X-Pin"

    @dataclasses.dataclass(frozen=True)
    class Needs:
        header: str

    class Pin:
        Options = Header

        def __init__(self, options: Dict[str, Any]) -> None:
            self.options = options

        def choose(self, targets: Any, request: Any) -> Any:
            return targets[0]

    class Strict(Pin):
        Options = Needs

    config = load("    targets: [{url: 'http://a'}]\n    balance: pin\n", **{BALANCERS: {"pin": Pin, "strict": Strict}})
    assert config.upstreams["u"].balance == "pin"
    assert dict(config.upstreams["u"].policies["balance"].options) == {"header": "X-Pin"}
    found = problems("    targets: [{url: 'http://a'}]\n    balance: strict\n", **{BALANCERS: {"pin": Pin, "strict": Strict}})
    assert found == [
        (6, "upstreams.u.balance", "needs options (header): write it as a mapping with 'type' and them")
    ]


def test_no_declaration_hands_the_section_over_as_written():
    """Without Options every key is an option, as pluggy plugins get theirs."""

    class Loose:
        def __init__(self, options: Dict[str, Any]) -> None:
            pass

        def targets(self) -> List[str]:
            return []

    config = load("    targets_from: {type: loose, interval: 2s, anything: [1, {b: 2}]}\n", **{DISCOVERY: {"loose": Loose}})
    source = config.upstreams["u"].policies["targets_from"]
    assert source.interval == 2.0 and dict(source.source.options) == {"anything": [1, {"b": 2}]}
    assert isinstance(options_spec(Loose), FreeOptions)


def test_declarations_that_yaml_cannot_fill_are_refused_early():
    """An unsupported field type is a TypeError when the factory is resolved, naming the field."""

    @dataclasses.dataclass(frozen=True)
    class Odd:
        target: TargetInfo

    with pytest.raises(TypeError, match="Odd.target"):
        DeclaredOptions(Odd)
    with pytest.raises(TypeError, match="not an options declaration"):
        options_spec(type("F", (), {"Options": 42}))


def test_convert_options_for_factories_built_from_code():
    """The same conversion for a plain dict (plugin authors' tests)."""
    spec = options_spec(Source)
    assert convert_options(spec, {"url": "u", "interval": "250ms"})["interval"] == 0.25
    with pytest.raises(ConfigError, match="options.interval: a duration needs a unit"):
        convert_options(spec, {"url": "u", "interval": 5})


def test_no_options_refuses_any_key():
    """Built-ins without options (round_robin...) reject keys with a suggestion."""
    assert NO_OPTIONS.keys == ()
    found = problems("    targets: [{url: 'http://a'}]\n    balance: {type: round_robin, weight: 2}\n")
    assert found == [(6, "upstreams.u.balance.weight", "unknown key 'weight'")]
