"""The one error table: every failure becomes `{"message", "code"}` with one status code.

Domain errors map by class; the framework's own errors (malformed JSON, unknown or
invalid fields and parameters, unknown routes) keep their status and get the same body.
A lost optimistic-concurrency race is 409. Anything else is a 500 that says nothing
about the internals, and is logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol, TypeVar

import msgspec
from eventsourcing.persistence import IntegrityError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from sailplane.domain.errors import (
    ConflictError,
    DomainError,
    InvalidRequestError,
    InvalidValueError,
    NotAuthenticatedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServiceUnavailableError,
    TooManyRequestsError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    InvalidRequestError: 400,
    NotAuthenticatedError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidValueError: 422,
    TooManyRequestsError: 429,
    ServiceUnavailableError: 503,
}

CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_value",
    429: "too_many_requests",
    503: "service_unavailable",
}


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return HTTP_500_INTERNAL_SERVER_ERROR


def or_404(row: T | None, kind: str, identifier: str) -> T:
    """The row a view answered, or the resource's 404 (`{kind}_not_found`): the one way a
    handler describes a resource it was named by path."""
    if row is None:
        raise NotFoundError.of(kind, identifier)
    return row


def error_body(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "code": code, **extra}


# Where a validation error of the handler's arguments lies in the body (`data`).
_IN_BODY = re.compile(r"`\$\.data(`|\.|\[)")


class ErrorRender(Protocol):
    """The body an API dialect answers an error with, from what every error carries."""

    def __call__(
        self, request: Request[Any, Any, Any], message: str, code: str, extra: dict[str, Any]
    ) -> Any: ...


def _sailplane_body(
    request: Request[Any, Any, Any], message: str, code: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return error_body(message, code, **extra)


def exception_handlers(render: ErrorRender = _sailplane_body) -> dict[Any, Any]:
    """The error table as Litestar exception handlers, each body made by `render`: the same
    status codes and messages under every API dialect, in that dialect's shape."""

    def answer(
        request: Request[Any, Any, Any],
        status: int,
        message: str,
        code: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response[Any]:
        body = render(request, message, code, extra or {})
        return Response(body, status_code=status, headers=headers or {})

    def domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
        extra: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if isinstance(exc, InvalidValueError) and exc.field:
            extra["field"] = exc.field
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, NotAuthenticatedError):
            headers["WWW-Authenticate"] = 'Bearer realm="sailplane"'
        return answer(request, status_of(exc), exc.message, exc.code, extra, headers)

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        status = exc.status_code
        message = exc.detail or "The request could not be processed."
        if isinstance(exc, ValidationException):
            message = _validation_message(exc)
        elif (
            status == 500
            and isinstance(exc.__cause__, msgspec.ValidationError)
            and _IN_BODY.search(str(exc.__cause__))
        ):
            # Litestar takes a body field named like a handler's dependency (`runs` of the
            # run queue's batch create) for a broken dependency: an error in the body
            # (`$.data`) is the client's input; a dependency's own stays a 500.
            status = 400
            message = "Validation failed: " + str(exc.__cause__).replace("$.data.", "$.")
        if status >= 500:
            log.error(
                "HTTP %s on %s %s: %s",
                status,
                request.method,
                request.url.path,
                exc.detail,
                exc_info=exc,
            )
        code = CODE_BY_STATUS.get(status, "error")
        return answer(request, status, message, code, headers=exc.headers or {})

    def conflict(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[Any]:
        message = (
            "The resource was changed by another request at the same time; reload it and try again."
        )
        return answer(request, 409, message, "concurrent_modification")

    def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        message = "The server failed to process the request."
        return answer(request, HTTP_500_INTERNAL_SERVER_ERROR, message, "internal_error")

    return {
        DomainError: domain_error,
        HTTPException: http_error,
        IntegrityError: conflict,
        Exception: internal_error,
    }


def _validation_message(exc: ValidationException) -> str:
    details = exc.extra if isinstance(exc.extra, list) else []
    parts = []
    for item in details:
        if isinstance(item, dict):
            key = item.get("key")
            text = str(item.get("message", "")).strip()
            parts.append(f"{key}: {text}" if key else text)
    detail = exc.detail or "Validation failed"
    return f"{detail}: {'; '.join(parts)}" if parts else detail


EXCEPTION_HANDLERS = exception_handlers()
