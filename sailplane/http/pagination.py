"""List parameters and envelopes shared by every list endpoint.

`limit` is 0..100 (default 100). `page` is 1-based. `marker` is the opaque cursor a
previous response returned (`null` when there is nothing more); lists documented with
`page` accept it too and return the marker of their next page, so clients may walk
either way. Normalized lists return `{total, items, included}`; describes return
`{item, included}`.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from litestar.params import QueryParameter

from sailplane.projections.query import Page, Sort

Limit = Annotated[
    int, QueryParameter(ge=0, le=100, description="The maximum number of items to list.")
]
PageNumber = Annotated[
    int,
    QueryParameter(
        ge=1,
        description="The page number to retrieve (1-indexed). Used with limit to support offset-based pagination.",
    ),
]
Marker = Annotated[
    str | None,
    QueryParameter(description="The pagination token returned from the previous list operation."),
]
# The `sortBy` parameter of every sorted list; each list names its fields:
# `Annotated[Literal["name", "email"], SORT_BY]`.
SORT_BY = QueryParameter(name="sortBy", description="The field to sort by.")
SortDirection = Annotated[
    Literal["asc", "desc"], QueryParameter(name="sortDirection", description="The sort direction.")
]


def page_of(page: int, limit: int) -> Page:
    return Page.number(page, limit)


def sort_of(field: str | None, direction: str) -> Sort:
    return Sort(field=field, direction=direction)


T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the type of `included`


class Listing(msgspec.Struct, Generic[T], kw_only=True):
    """`{total, items, marker}`: `marker` continues after the last item (null at the end)."""

    total: int
    items: list[T]
    marker: str | None = None


class NormalizedListing(msgspec.Struct, Generic[T, I], kw_only=True):
    """`{total, items, included, marker}`: items are thin rows of ids, included holds the entities."""

    total: int
    items: list[T]
    included: I
    marker: str | None = None


class MarkerListing(msgspec.Struct, Generic[T], kw_only=True):
    """`{items, marker}`: pass `marker` back to get the next page; null at the end."""

    items: list[T]
    marker: str | None


class Described(msgspec.Struct, Generic[T, I], kw_only=True):
    """`{item, included}`"""

    item: T
    included: I
