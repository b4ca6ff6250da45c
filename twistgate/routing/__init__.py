"""
Request routing: from (method, Host, normalised path) to one configured route.

`table.RouteTable` matches (a segment trie per host form, ranked once);
`compiled` turns each route configuration into what the match loop reads;
`hosts` holds the host rules both sides share; `listing` shows the table to
operators.  See docs/routing.md for the order routes are preferred in.
"""

from twistgate.conditions import RequestFacts
from twistgate.routing.compiled import RouteMatch
from twistgate.routing.hosts import host_forms, normalize_host
from twistgate.routing.listing import RouteRow, destination_text, format_routes
from twistgate.routing.table import RouteTable

__all__ = ["RequestFacts", "RouteMatch", "RouteRow", "RouteTable", "destination_text", "format_routes", "host_forms", "normalize_host"]
