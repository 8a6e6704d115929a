"""Identifiers and pagination markers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailplane.domain.errors import InvalidRequestError
from sailplane.domain.ids import CROCKFORD, derived_id, index_id, is_valid_id, new_id
from sailplane.projections.query import decode_marker, encode_marker


def test_new_ids_are_ten_crockford_characters_and_distinct() -> None:
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 10 and set(i) <= set(CROCKFORD) and is_valid_id(i) for i in ids)


@given(st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_derived_ids_are_deterministic_valid_ids(parts: list[str]) -> None:
    assert derived_id(*parts) == derived_id(*parts)
    assert is_valid_id(derived_id(*parts)) and len(derived_id(*parts)) == 10


def test_derived_ids_differ_for_different_parts() -> None:
    assert derived_id("job", "2026-01-01T00:00") != derived_id("job", "2026-01-01T00:01")
    assert derived_id("a", "bc") != derived_id("ab", "c")


def test_index_ids_are_scoped_by_organization_and_kind() -> None:
    assert index_id("team-name", "ORG1", "x") != index_id("team-name", "ORG2", "x")
    assert index_id("team-name", "ORG1", "x") != index_id("job-key", "ORG1", "x")
    assert not is_valid_id(index_id("team-name", "ORG1", "x")), "index ids never look like API ids"


@given(
    st.lists(
        st.one_of(st.text(st.characters(exclude_characters="\x00")), st.integers(), st.none()),
        min_size=1,
        max_size=3,
    )
)
def test_markers_round_trip(values: list[object]) -> None:
    assert decode_marker(encode_marker(values), len(values)) == values


def test_markers_carry_datetimes_as_iso_text() -> None:
    moment = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert decode_marker(encode_marker([moment, "ID"]), 2) == [moment.isoformat(), "ID"]


@pytest.mark.parametrize(
    "marker",
    [
        "",
        "garbage!",
        encode_marker(["only-one"]),
        "e30",
        encode_marker([True, "x"]),
        encode_marker([1.5, "x"]),
        encode_marker([["x"], "y"]),
        encode_marker(["a\x00", "b"]),
    ],
)
def test_foreign_markers_are_invalid_requests(marker: str) -> None:
    with pytest.raises(InvalidRequestError) as error:
        decode_marker(marker, 2)
    assert error.value.code == "invalid_marker"
