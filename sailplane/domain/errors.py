"""Domain errors. Each carries a human message and a stable machine code.

The HTTP layer maps each class to one status code in `sailplane/http/errors.py`; nothing
else decides a status code.
"""

from __future__ import annotations


class DomainError(Exception):
    default_code = "error"
    retry_after: int | None = None  # seconds, sent as `Retry-After` when set

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code


class NotFoundError(DomainError):
    """The resource does not exist, or the caller may not know that it exists."""

    default_code = "not_found"

    @classmethod
    def of(cls, kind: str, identifier: str) -> NotFoundError:
        label = kind.replace("_", " ")
        return cls(
            f"{label[:1].upper()}{label[1:]} {identifier} was not found.", code=f"{kind}_not_found"
        )


class ConflictError(DomainError):
    """The request conflicts with the current state (wrong status, duplicate key, stale version)."""

    default_code = "conflict"


class InvalidRequestError(DomainError):
    """The request is malformed or breaks a documented precondition answered with 400."""

    default_code = "invalid_request"


class InvalidValueError(DomainError):
    """The request is well formed but one of its values is not acceptable (422)."""

    default_code = "invalid_value"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class PayloadTooLargeError(DomainError):
    """What the request would record is larger than one event may hold (413)."""

    default_code = "request_too_large"


class NotAuthenticatedError(DomainError):
    default_code = "unauthenticated"


class PermissionDeniedError(DomainError):
    default_code = "forbidden"


class ServiceUnavailableError(DomainError):
    """Something Sailplane depends on (a cloud provider, a cluster) did not answer: retry later."""

    default_code = "service_unavailable"


class ViewsBehindError(ServiceUnavailableError):
    """A change was saved, but the views did not show it within the read-your-writes wait.

    Never a cached answer: the idempotency layer releases the key of a request that got it.
    """

    default_code = "views_behind"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EventLogBusyError(ServiceUnavailableError):
    """A write could not append to the event log in time (its lock or statement timeout);
    nothing of it was recorded, so it may simply be sent again."""

    default_code = "event_log_busy"
    retry_after = 1


class TooManyRequestsError(DomainError):
    default_code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
