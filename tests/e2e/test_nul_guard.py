"""A NUL character anywhere in a request is a 400 that stores nothing, never a 500."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sailplane.http.request_guard import has_nul


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/org/members", {"params": {"filter": '{"name": "a\x00b"}'}}),
        ("GET", "/org/teams/AB%00CD", {}),
        ("POST", "/org/teams", {"json": {"name": "nul\x00team"}}),
    ],
)
def test_a_nul_character_is_refused(
    client: httpx.Client, method: str, path: str, kwargs: dict
) -> None:
    before = client.get("/org/teams").json()["total"]
    response = client.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_character"
    assert client.get("/org/teams").json()["total"] == before


def test_an_escaped_backslash_before_u0000_is_plain_text(client: httpx.Client) -> None:
    response = client.post(
        "/org/teams",
        content=b'{"name": "literal \\\\u0000 text"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["team"]["name"] == "literal \\u0000 text"


@given(st.text())
@settings(max_examples=300)
def test_the_json_check_agrees_with_decoding(text: str) -> None:
    import json

    body = json.dumps({"v": text}).encode()
    assert has_nul("/", b"", body) == ("\x00" in text)
