"""The one error table: every domain error has exactly one status code."""

from __future__ import annotations

import pytest

from sailplane.domain import errors
from sailplane.http.errors import STATUS_BY_ERROR, status_of


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidRequestError("x"), 400),
        (errors.NotAuthenticatedError("x"), 401),
        (errors.PermissionDeniedError("x"), 403),
        (errors.NotFoundError.of("team", "T1"), 404),
        (errors.ConflictError("x"), 409),
        (errors.InvalidValueError("x", field="name"), 422),
        (errors.TooManyRequestsError("x", retry_after=3), 429),
        (errors.ServiceUnavailableError("x"), 503),
    ],
)
def test_each_domain_error_maps_to_its_status(error: errors.DomainError, status: int) -> None:
    assert status_of(error) == status


def test_every_domain_error_class_is_in_the_table() -> None:
    subclasses = set(errors.DomainError.__subclasses__())
    assert subclasses == set(STATUS_BY_ERROR), "a new error class needs its row in the table"


def test_subclasses_inherit_their_parents_status() -> None:
    class JobKeyTaken(errors.ConflictError):
        pass

    assert status_of(JobKeyTaken("taken")) == 409


def test_not_found_messages_name_the_resource() -> None:
    error = errors.NotFoundError.of("job_run", "R1")
    assert error.message == "Job run R1 was not found."
    assert error.code == "job_run_not_found"
