"""
Path and query transformations of a route (orders 400 and 401): ``rewrite``
(the first match of a regex in the path, with captures) and ``query``
(``remove`` / ``set`` / ``add`` parameters, with substitutions).  Both run
on the way up only, after ``strip_prefix`` / ``add_prefix``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Pattern, Tuple, Union
from urllib.parse import quote, unquote_to_bytes

import attrs

from twistgate._text import plural
from twistgate.config._node import Node
from twistgate.config.model import ConfigIssue, Location, RouteConfig
from twistgate.errors import BadRequest
from twistgate.messages import ProxyRequest
from twistgate.pathnorm import InvalidPath, normalize_path
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import NOT_FORWARDING, Policy
from twistgate.policies._checks import issues_of
from twistgate.policies.transform.headers import Template, check_templates, template

__all__ = [
    "QueryConfig",
    "QueryStage",
    "RewriteConfig",
    "RewriteStage",
    "parse_query",
    "parse_rewrite",
    "query_stage",
    "rewrite_stage",
]


# -- rewrite: {regex, replacement} -----------------------------------------------


@attrs.frozen(kw_only=True)
class RewriteConfig:
    regex: Pattern[str]
    replacement: Tuple[Union[str, int], ...]  # literal text and group numbers
    text: str
    location: Location = Location()


# $1 (numbered), $<name> (named, as in JavaScript; ${...} would be an
# environment variable in the config), $$ for a literal $.
_REPLACEMENT = re.compile(r"\$\$|\$(\d+)|\$<([A-Za-z_][A-Za-z0-9_]*)>|\$")
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")


def parse_rewrite(node: Node) -> Optional[RewriteConfig]:
    fields = node.mapping(("regex", "replacement"), required=("regex", "replacement"))
    if fields is None:
        return None
    regex = fields.read("regex", _regex, None)
    replacement_node = fields["replacement"] if "replacement" in fields else None
    text = replacement_node.string(empty_ok=True) if replacement_node is not None else None
    if regex is None or text is None or replacement_node is None:
        return None
    parts: List[Union[str, int]] = []
    position = 0
    for match in _REPLACEMENT.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token == "$$":
            parts.append("$")
            continue
        ref = match.group(1) or match.group(2)
        if ref is None:
            replacement_node.issue(f"a lone '$' in {text!r}; write $$ for a literal $, $1 or $<name> for a capture")
            return None
        group = int(ref) if ref.isdigit() else regex.groupindex.get(ref)
        if group is None or group > regex.groups:
            replacement_node.issue(
                f"{token} refers to a capture the regex does not have (it has {plural(regex.groups, 'group')}"
                f"{', named ' + ', '.join(regex.groupindex) if regex.groupindex else ''})"
            )
            return None
        parts.append(group)
    if position < len(text):
        parts.append(text[position:])
    literal = "".join(p for p in parts if isinstance(p, str))
    if not _PATH_CHARS.fullmatch(literal):
        replacement_node.issue("the replacement may only contain path characters (percent-encode the others)")
        return None
    return RewriteConfig(regex=regex, replacement=tuple(parts), text=text, location=node.location(at_key=True))


def _regex(node: Node) -> Optional[Pattern[str]]:
    text = node.string()
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as e:
        node.issue(f"invalid regular expression {text!r}: {e}")
        return None


class RewriteStage:
    """Replaces the first match of ``regex`` in the path (after strip/add_prefix)."""

    def __init__(self, config: RewriteConfig) -> None:
        self.regex = config.regex
        self.replacement = config.replacement

    def rewrite(self, path: str) -> str:
        match = self.regex.search(path)
        if match is None:
            return path
        out = [path[: match.start()]]
        for part in self.replacement:
            out.append(part if isinstance(part, str) else (match.group(part) or ""))
        out.append(path[match.end() :])
        new = "".join(out)
        if not new.startswith("/"):
            new = "/" + new
        try:
            return normalize_path(new.encode("latin-1"))
        except (InvalidPath, UnicodeEncodeError):
            raise BadRequest("The rewritten path is not valid.") from None

    @hookimpl
    def on_request(self, request: ProxyRequest) -> None:
        request.path = self.rewrite(request.path)


# -- query: {remove, set, add} ---------------------------------------------------


@attrs.frozen(kw_only=True)
class QueryConfig:
    remove: Tuple[str, ...] = ()
    set: Tuple[Tuple[str, Template], ...] = ()
    add: Tuple[Tuple[str, Template], ...] = ()
    locations: Tuple[Tuple[Template, Location], ...] = ()
    location: Location = Location()


def parse_query(node: Node) -> Optional[QueryConfig]:
    fields = node.mapping(("remove", "set", "add"))
    if fields is None:
        return None
    ok = True
    remove: List[str] = []
    if "remove" in fields:
        for item in fields["remove"].sequence() or ():
            name = item.string()
            ok = ok and name is not None
            if name is not None:
                remove.append(name)
    found: Dict[str, List[Tuple[str, Template]]] = {"set": [], "add": []}
    locations: List[Tuple[Template, Location]] = []
    for op in ("set", "add"):
        if op not in fields:
            continue
        for key, value in fields[op].entries() or ():
            values = value.sequence() if (op == "add" and value.kind == "list") else [value]
            for item in values or ():
                tpl = template(item, what="query value")
                if tpl is None:
                    ok = False
                    continue
                found[op].append((key, tpl))
                locations.append((tpl, item.location()))
    if not ok:
        return None
    return QueryConfig(
        remove=tuple(remove),
        set=tuple(found["set"]),
        add=tuple(found["add"]),
        locations=tuple(locations),
        location=node.location(at_key=True),
    )


def _param_name(pair: bytes) -> bytes:
    return unquote_to_bytes(pair.split(b"=", 1)[0].replace(b"+", b" "))


class QueryStage:
    """Edits the query string; parameters it does not touch keep their bytes."""

    def __init__(self, config: QueryConfig) -> None:
        self.drop = frozenset(name.encode("utf-8") for name in config.remove) | frozenset(
            name.encode("utf-8") for name, _ in config.set
        )
        self.append = tuple((quote(name, safe=""), tpl) for name, tpl in (*config.set, *config.add))

    def transform(self, query: bytes, request: ProxyRequest) -> bytes:
        pairs = [p for p in query.split(b"&") if p] if query else []
        if self.drop:
            pairs = [p for p in pairs if _param_name(p) not in self.drop]
        for name, tpl in self.append:
            value = tpl.render(request)
            if value is not None:
                pairs.append(f"{name}={quote(value, safe='')}".encode("ascii"))
        return b"&".join(pairs)

    @hookimpl
    def on_request(self, request: ProxyRequest) -> None:
        request.query = self.transform(request.query, request)


def query_stage(config: QueryConfig, route: RouteConfig) -> QueryStage:
    check_templates(list(config.locations), route)
    return QueryStage(config)


def rewrite_stage(config: RewriteConfig, route: RouteConfig) -> RewriteStage:
    return RewriteStage(config)


def _validate_query(route: RouteConfig, config: Any) -> List[ConfigIssue]:
    return issues_of(query_stage, route.policies["query"], route)


#: The path rewrite (regex) sent upstream.
REWRITE = Policy(
    name="rewrite", key="rewrite", parse=parse_rewrite,
    build=lambda route, services: rewrite_stage(route.policies["rewrite"], route),
    sight=NOT_FORWARDING,  # the path
)  # fmt: skip
#: Query parameter edits.
QUERY = Policy(
    name="query", key="query", parse=parse_query,
    build=lambda route, services: query_stage(route.policies["query"], route), validate=_validate_query,
    sight=NOT_FORWARDING,  # the query; templates know no request header
)  # fmt: skip
