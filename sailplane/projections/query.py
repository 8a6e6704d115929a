"""Pagination and sorting over view tables, shared by every list endpoint.

Two styles, as the API documents them: `page` (1-based, offset) with a `total`, and
`marker` (an opaque keyset cursor: the sort key of the last row returned). Markers stay
correct while rows are inserted, and never skip or repeat a row.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg

from sailplane.domain.errors import InvalidRequestError


class Queryable(Protocol):
    def fetch_all(self, template: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def fetch_one(self, template: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Page:
    limit: int = 100
    offset: int = 0

    @classmethod
    def number(cls, page: int, limit: int) -> Page:
        return cls(limit=limit, offset=(page - 1) * limit)


@dataclass(frozen=True)
class Sort:
    field: str | None = None
    direction: str = "asc"

    @property
    def descending(self) -> bool:
        return self.direction == "desc"

    def keys(self, columns: dict[str, str], *, tiebreak: str) -> list[str]:
        """The key expressions rows are ordered by: the chosen column, then the id."""
        return [columns.get(self.field or "", next(iter(columns.values()))), tiebreak]


def paginate(
    view: Queryable,
    from_where: str,
    params: Sequence[Any],
    *,
    select: str,
    keys: Sequence[str],
    descending: bool = False,
    page: Page,
    marker: str | None = None,
) -> tuple[int, list[dict[str, Any]], str | None]:
    """(total matching rows, this page's rows, the marker of the next page or None).

    With a marker the page starts right after it (keyset); otherwise at the page's
    offset. Either way the returned marker continues after the last row returned.
    """
    total_row = view.fetch_one(f"SELECT count(*) AS total {from_where}", params)
    total = int(total_row["total"]) if total_row else 0
    if marker is not None:
        rows, next_marker = keyset_page(
            view,
            from_where,
            params,
            select=select,
            keys=keys,
            limit=page.limit,
            marker=marker,
            descending=descending,
        )
        return total, _strip_keys(rows), next_marker
    if page.limit == 0 or page.offset >= total:
        return total, [], None
    direction = "DESC" if descending else "ASC"
    rows = view.fetch_all(
        f"SELECT {select}, {_key_columns(keys)} {from_where} "
        f"ORDER BY {', '.join(f'{k} {direction}' for k in keys)} LIMIT %s OFFSET %s",
        [*params, page.limit, page.offset],
    )
    next_marker = (
        _marker_of(rows[-1], len(keys)) if rows and page.offset + len(rows) < total else None
    )
    return total, _strip_keys(rows), next_marker


def _key_columns(keys: Sequence[str]) -> str:
    return ", ".join(f"{expr} AS _k{i}" for i, expr in enumerate(keys))


def _marker_of(row: dict[str, Any], arity: int) -> str:
    return encode_marker([row[f"_k{i}"] for i in range(arity)])


def _strip_keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("_k")} for row in rows]


def encode_marker(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return (
        base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_marker(marker: str, arity: int) -> list[Any]:
    """The key values a marker holds: `arity` plain JSON scalars, or 400 `invalid_marker`."""
    try:
        padded = marker + "=" * (-len(marker) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError):
        values = None
    if not isinstance(values, list) or len(values) != arity or not all(map(_is_key, values)):
        raise invalid_marker()
    return values


def invalid_marker() -> InvalidRequestError:
    return InvalidRequestError("The marker is not one this list returned.", code="invalid_marker")


def _is_key(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def keyset_page(
    view: Queryable,
    from_where: str,
    params: Sequence[Any],
    *,
    select: str,
    keys: Sequence[str],
    limit: int,
    marker: str | None,
    descending: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows after the marker in key order, and the marker of the next page (None at the end).

    `keys` are SQL expressions that together identify a row (end with the id).
    """
    if limit == 0:
        return [], marker
    where, extra = from_where, list(params)
    if marker:
        values = decode_marker(marker, len(keys))
        op = "<" if descending else ">"
        joiner = " AND " if " where " in from_where.lower() else " WHERE "
        where += f"{joiner}({', '.join(keys)}) {op} ({', '.join(['%s'] * len(keys))})"
        extra += values
    direction = "DESC" if descending else "ASC"
    order = ", ".join(f"{expr} {direction}" for expr in keys)
    try:
        rows = view.fetch_all(
            f"SELECT {select}, {_key_columns(keys)} {where} ORDER BY {order} LIMIT %s",
            [*extra, limit + 1],
        )
    except (
        psycopg.DataError,
        psycopg.errors.UndefinedFunction,
        psycopg.errors.DatatypeMismatch,
    ) as error:
        # A marker of another list, or a forged one: its values do not fit this list's keys.
        if not marker:
            raise
        raise invalid_marker() from error
    next_marker = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_marker = _marker_of(rows[-1], len(keys))
    return _strip_keys(rows), next_marker
