"""The JSON error bodies of the contract."""

from __future__ import annotations

import json

from twistgate.errors import error_body


def test_error_body_is_one_json_line_ending_in_a_newline():
    """`curl` users see the prompt on its own line; log shippers see one record per line."""
    body = error_body("route_not_found", "No route matches.", "abc")
    assert body.endswith(b"}\n") and body.count(b"\n") == 1
    assert json.loads(body) == {"error": "route_not_found", "message": "No route matches.", "request_id": "abc"}
