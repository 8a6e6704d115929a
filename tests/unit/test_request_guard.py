"""The request guard's body checks agree with a real JSON parser."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sailplane.http.request_guard import is_json_media_type, json_depth_exceeds

# Strings full of what could fool a scanner: brackets, quotes and backslashes.
TRICKY_TEXT = st.text(alphabet='[]{}"\\ab', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(JSON_VALUES, st.integers(min_value=0, max_value=6))
@settings(max_examples=500)
def test_depth_is_the_parsers_whatever_the_strings_hold(value: Any, limit: int) -> None:
    text = json.dumps(value).encode()
    assert json_depth_exceeds(text, limit) == (_depth(value) > limit)


def test_unclosed_brackets_count_as_nesting() -> None:
    assert json_depth_exceeds(b"[" * 401)
    assert json_depth_exceeds(b'{"a":' * 401)
    assert not json_depth_exceeds(b"[" * 400)
    assert not json_depth_exceeds(b'"' + b"[" * 1000 + b'"')


def test_json_media_types() -> None:
    assert is_json_media_type("application/json")
    assert is_json_media_type("Application/JSON; charset=utf-8")
    assert is_json_media_type("application/merge-patch+json")
    assert not is_json_media_type("text/plain")
    assert not is_json_media_type("application/x-www-form-urlencoded")
    assert not is_json_media_type("text/json+xml")
