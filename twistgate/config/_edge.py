"""
The edge-routing keys of a route, as frozen values, and their parsers:
``listeners``, ``match``, ``split``, ``sticky``, ``redirect``, ``respond``,
``max_request_body`` and ``access_log``.  What they mean at run time lives in
`twistgate.routing` (listeners, match), `twistgate.destination` (split,
sticky) and `twistgate.answers` (redirect, respond); what needs other sections
(upstream and listener names, template names) is checked in
`twistgate.validation`.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Optional, Pattern, Sequence, Tuple

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location
from twistgate.headers import InvalidHeaderName, canonical_name

__all__ = [
    "Condition", "MatchConfig", "RedirectConfig", "RespondConfig", "SplitArm", "StickyConfig",
    "EDGE_KEYS", "TERMINAL_KEYS", "REDIRECT_STATUSES",
]  # fmt: skip

#: Route keys read here (beside the core ones in `twistgate.config._routes`).
EDGE_KEYS = ("listeners", "match", "split", "sticky", "redirect", "respond", "max_request_body", "access_log")
#: What a route does with a request: exactly one of them.  `defaults` never
#: mixes them: a route that sets one takes none of the others from there.
TERMINAL_KEYS = ("upstream", "split", "redirect", "respond")
MATCH_KEYS = ("headers", "cookies", "query")
SPLIT_KEYS = ("upstream", "weight")
STICKY_KEYS = ("cookie", "max_age", "secret")
REDIRECT_KEYS = ("to", "status")
RESPOND_KEYS = ("status", "body", "headers")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)

_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 6265 token
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Framing belongs to the gateway: a fixed answer may not set these.
_FRAMING = frozenset({b"Content-Length", b"Transfer-Encoding", b"Connection", b"Keep-Alive", b"Upgrade", b"Te", b"Trailer"})


# -- match ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Condition:
    """
    One condition on a header, cookie or query parameter: ``exact`` value,
    ``regex`` (``~...``, searched, as nginx's ``~``) or ``present`` (``*``).
    """

    name: str  # as written (header names: canonical)
    kind: str  # exact | regex | present
    text: str  # the value as written
    pattern: Optional[Pattern[str]] = attrs.field(default=None, eq=False)

    def test(self, values: Sequence[str]) -> bool:
        """Whether any of the field's values (none: absent) satisfies it."""
        if not values:
            return False
        kind = self.kind
        if kind == "present":
            return True
        if kind == "exact":
            return self.text in values
        assert self.pattern is not None
        return any(self.pattern.search(value) is not None for value in values)

    def describe(self) -> str:
        if self.kind == "present":
            return f"{self.name} present"
        if self.kind == "regex":
            return f"{self.name} ~ {self.text[1:]}"
        return f"{self.name} = {self.text!r}"


@attrs.frozen(kw_only=True)
class MatchConfig:
    """``routes[].match``: every condition must hold."""

    headers: Tuple[Condition, ...] = ()
    cookies: Tuple[Condition, ...] = ()
    query: Tuple[Condition, ...] = ()
    location: Location = attrs.field(default=Location(), eq=False)

    @property
    def count(self) -> int:
        return len(self.headers) + len(self.cookies) + len(self.query)


def parse_match(node: Node) -> Optional[MatchConfig]:
    count = len(node.issues.found)
    fields = node.mapping(MATCH_KEYS)
    if fields is None:
        return None
    found: Dict[str, Tuple[Condition, ...]] = {}
    for key in MATCH_KEYS:
        if key in fields:
            found[key] = _conditions(fields[key], header=key == "headers")
    if len(node.issues.found) != count:
        return None
    config = MatchConfig(location=node.location(at_key=True), **found)
    if config.count == 0:
        node.issue("needs at least one condition under headers, cookies or query (or leave 'match' out)")
        return None
    return config


def _conditions(node: Node, *, header: bool) -> Tuple[Condition, ...]:
    found: List[Condition] = []
    for name, value in node.entries() or ():
        if header:
            try:
                name = canonical_name(name).decode("ascii")
            except InvalidHeaderName:
                value.issue(f"{name!r} is not a valid header name", at_key=True)
                continue
        condition = _condition(name, value)
        if condition is not None:
            found.append(condition)
    return tuple(found)


def _condition(name: str, node: Node) -> Optional[Condition]:
    if node.kind in ("integer", "number"):
        text = str(node.node.value)  # `version: 2` means the text "2"
    elif node.kind == "string":
        text = node.string(empty_ok=True)
        if text is None:
            return None
    else:
        hint = " (quote it: YAML reads yes/no/on/off as booleans)" if node.kind == "boolean" else ""
        node.issue(f'expected a value, "~regex" or "*", got {node.describe()}{hint}')
        return None
    if text == "*":
        return Condition(name=name, kind="present", text=text)
    if text.startswith("~"):
        try:
            pattern = re.compile(text[1:])
        except re.error as e:
            node.issue(f"invalid regular expression {text[1:]!r}: {e}")
            return None
        return Condition(name=name, kind="regex", text=text, pattern=pattern)
    return Condition(name=name, kind="exact", text=text)


# -- split and sticky -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SplitArm:
    upstream: str
    weight: int


def parse_split(node: Node, reference: Callable[[Node], Optional[str]] = Node.string) -> Optional[Tuple[SplitArm, ...]]:
    """:param reference: reads (and checks) an upstream name."""
    items = node.sequence()
    if items is None:
        return None
    if len(items) < 2:
        node.issue("a split needs at least two arms like {upstream: api-v2, weight: 10}; use 'upstream' for one")
        return None
    arms: List[SplitArm] = []
    seen: Dict[str, int] = {}
    ok = True
    for item in items:
        fields = item.mapping(SPLIT_KEYS, required=SPLIT_KEYS)
        if fields is None:
            ok = False
            continue
        upstream = fields.read("upstream", reference, None)
        weight = fields.read("weight", lambda n: n.integer(min=0), None)
        if upstream is None or weight is None:
            ok = False
            continue
        if upstream in seen:
            item.issue(f"upstream {upstream!r} appears twice in the split (first on line {seen[upstream]})")
            ok = False
            continue
        seen[upstream] = item.line
        arms.append(SplitArm(upstream=upstream, weight=weight))
    if ok and not any(arm.weight for arm in arms):
        node.issue("at least one arm needs a weight above 0")
        ok = False
    return tuple(arms) if ok else None


@attrs.frozen(kw_only=True)
class StickyConfig:
    """``routes[].sticky``: an affinity cookie naming a target, opaquely."""

    cookie: str
    max_age: Optional[float] = None  # None: a session cookie
    secret: Optional[bytes] = attrs.field(default=None, repr=False)  # the cookie value is then an HMAC
    location: Location = attrs.field(default=Location(), eq=False)


def parse_sticky(node: Node) -> Optional[StickyConfig]:
    fields = node.mapping(STICKY_KEYS, required=("cookie",))
    if fields is None:
        return None
    count = len(node.issues.found)
    cookie = fields.read("cookie", Node.string, None)
    if cookie is not None and not _COOKIE_NAME.fullmatch(cookie):
        fields["cookie"].issue(f"{cookie!r} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)")
    max_age = fields.read("max_age", Node.duration, None)
    secret = fields.read("secret", Node.string, None)
    if cookie is None or len(node.issues.found) != count:
        return None
    return StickyConfig(
        cookie=cookie,
        max_age=max_age,
        secret=secret.encode("utf-8") if secret is not None else None,
        location=node.location(at_key=True),
    )


# -- answers the gateway gives itself ------------------------------------------------


@attrs.frozen(kw_only=True)
class RedirectConfig:
    """``routes[].redirect``: ``to`` may use ``{name}`` (regex groups, ``{param}``s, ``{host}``...)."""

    to: str
    status: int = 302
    location: Location = attrs.field(default=Location(), eq=False)


def parse_redirect(node: Node) -> Optional[RedirectConfig]:
    fields = node.mapping(REDIRECT_KEYS, required=("to",))
    if fields is None:
        return None
    to = fields.read("to", Node.string, None)
    if to is not None and (_CONTROL.search(to) or " " in to):
        fields["to"].issue("a redirect target must not contain spaces or control characters (percent-encode them)")
        to = None
    status = fields.read("status", _redirect_status, 302)
    if to is None:
        return None
    return RedirectConfig(to=to, status=status, location=node.location(at_key=True))


def _redirect_status(node: Node) -> Optional[int]:
    status = node.integer()
    if status is not None and status not in REDIRECT_STATUSES:
        node.issue(f"a redirect status is one of {', '.join(map(str, REDIRECT_STATUSES))}, got {status}")
        return None
    return status


@attrs.frozen(kw_only=True)
class RespondConfig:
    """``routes[].respond``: a fixed answer."""

    status: int = 200
    body: bytes = b""
    headers: Tuple[Tuple[bytes, bytes], ...] = ()
    location: Location = attrs.field(default=Location(), eq=False)


def parse_respond(node: Node) -> Optional[RespondConfig]:
    fields = node.mapping(RESPOND_KEYS)
    if fields is None:
        return None
    count = len(node.issues.found)
    status = fields.read("status", _answer_status, 200)
    body = fields.read("body", lambda n: n.string(empty_ok=True), "")
    headers = fields.read("headers", _fixed_headers, ())
    if len(node.issues.found) != count:
        return None
    data = body.encode("utf-8")
    if data and not any(name == b"Content-Type" for name, _ in headers):
        headers = headers + ((b"Content-Type", b"text/plain; charset=utf-8"),)
    if data and status in (204, 304):
        fields["body"].issue(f"a {status} answer has no body")
        return None
    return RespondConfig(status=status, body=data, headers=headers, location=node.location(at_key=True))


def _answer_status(node: Node) -> Optional[int]:
    status = node.integer()
    if status is not None and not 200 <= status <= 599:
        node.issue(f"expected a final status from 200 to 599, got {status}")
        return None
    return status


def _fixed_headers(node: Node) -> Optional[Tuple[Tuple[bytes, bytes], ...]]:
    found: List[Tuple[bytes, bytes]] = []
    for name, value in node.entries() or ():
        try:
            canonical = canonical_name(name)
        except InvalidHeaderName:
            value.issue(f"{name!r} is not a valid header name", at_key=True)
            continue
        if canonical in _FRAMING:
            value.issue(f"{name!r} is set by the gateway itself", at_key=True)
            continue
        text = str(value.node.value) if value.kind in ("integer", "number") else value.string(empty_ok=True)
        if text is None:
            continue
        if _CONTROL.search(text):
            value.issue("a header value must not contain control characters")
            continue
        found.append((canonical, text.encode("utf-8")))
    return tuple(found)


# -- listeners ---------------------------------------------------------------------


def parse_listeners(node: Node) -> Optional[Tuple[str, ...]]:
    """Listener names (checked against ``listeners`` by `twistgate.validation`)."""
    items = node.sequence()
    if items is None:
        return None
    if not items:
        node.issue("must name at least one listener (leave 'listeners' out to serve the route on all)")
        return None
    names: List[str] = []
    for item in items:
        name = item.string()
        if name is None:
            return None
        if name in names:
            item.issue(f"{name!r} is listed twice")
            return None
        names.append(name)
    return tuple(names)
