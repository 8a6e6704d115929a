"""Property-based requests generated from Sailplane's own OpenAPI document (schemathesis).

For every declared operation, generated requests (valid and invalid) must never produce
a server error.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from sailplane.http.app import create_app
from sailplane.system import System
from tests.conftest import Org


def test_generated_requests_never_cause_server_errors(system: System, api: str, org: Org) -> None:
    schema = schemathesis.openapi.from_dict(create_app(system).openapi_schema.to_schema())
    headers = {"Authorization": f"Bearer {org.token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the document declares operations"
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def no_server_error(case: Any) -> None:
            case.call_and_validate(base_url=api, headers=headers, checks=[not_a_server_error])

        no_server_error()
