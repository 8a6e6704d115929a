"""The stack states moto never reaches (it creates and deletes at once and never rolls back),
checked against botocore's Stubber: every request is validated against the CloudFormation
service model, every answer is shaped like AWS's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from sailplane.infra_adapters.aws import (
    OPERATION_TAG,
    _delete_stack,
    _ensure_stack,
    _step,
    client_token,
)

NAME = "sailplane-network-net0000001"
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}/abc"
WHEN = datetime(2026, 12, 1, tzinfo=UTC)


def _stack(status: str, *, operation: str = "OP1") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackId": STACK_ID,
                "StackName": NAME,
                "CreationTime": WHEN,
                "StackStatus": status,
                "Tags": [{"Key": OPERATION_TAG, "Value": operation}],
                "Outputs": [{"OutputKey": "VpcId", "OutputValue": "vpc-1"}],
            }
        ]
    }


def _client() -> Any:
    return boto3.client(
        "cloudformation", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


def _ensure(cloudformation: Any, operation: str) -> Any:
    return _step(
        lambda: _ensure_stack(
            cloudformation,
            name=NAME,
            body="Resources: {}",
            parameters={},
            resource_id="NET0000001",
            operation_id=operation,
            stage="network-stack",
        ),
        "network-stack",
    )


def test_a_stack_rolled_back_by_this_operation_fails_it_with_the_reason() -> None:
    cloudformation = _client()
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"), {"StackName": NAME})
        stub.add_response("describe_stack_resources", {"StackResources": []}, {"StackName": NAME})
        stub.add_response(
            "describe_stack_events",
            {
                "StackEvents": [
                    {
                        "StackId": STACK_ID,
                        "EventId": "2",
                        "StackName": NAME,
                        "LogicalResourceId": NAME,
                        "Timestamp": WHEN,
                        "ResourceStatus": "ROLLBACK_COMPLETE",
                    },
                    {
                        "StackId": STACK_ID,
                        "EventId": "1",
                        "StackName": NAME,
                        "LogicalResourceId": "NatGateway",
                        "Timestamp": WHEN,
                        "ResourceStatus": "CREATE_FAILED",
                        "ResourceStatusReason": "Elastic IP address limit exceeded",
                    },
                ]
            },
            {"StackName": STACK_ID},
        )
        status = _ensure(cloudformation, "OP1")
    assert status.state == "failed"
    assert status.message == (
        f"Stack {NAME} is ROLLBACK_COMPLETE: NatGateway: Elastic IP address limit exceeded"
    )


def test_the_next_operation_clears_a_rolled_back_stack_then_creates_it_again() -> None:
    cloudformation = _client()
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", _stack("ROLLBACK_COMPLETE"), {"StackName": NAME})
        stub.add_response("describe_stack_resources", {"StackResources": []}, {"StackName": NAME})
        stub.add_response(
            "delete_stack",
            {},
            {"StackName": NAME, "ClientRequestToken": client_token("NET0000001", "clear", "OP2")},
        )
        cleared = _ensure(cloudformation, "OP2")
        assert (cleared.state, cleared.message) == (
            "running",
            f"Removing the failed stack {NAME} before retrying.",
        )

        stub.add_client_error(
            "describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist"
        )
        stub.add_response(
            "create_stack",
            {"StackId": STACK_ID},
            {
                "StackName": NAME,
                "TemplateBody": "Resources: {}",
                "Parameters": [],
                "Capabilities": ["CAPABILITY_NAMED_IAM"],
                "ClientRequestToken": client_token("NET0000001", "create", "OP2"),
                "Tags": [
                    {"Key": "sailplane:resource", "Value": "NET0000001"},
                    {"Key": OPERATION_TAG, "Value": "OP2"},
                ],
            },
        )
        stub.add_response(
            "describe_stacks", _stack("CREATE_IN_PROGRESS", operation="OP2"), {"StackName": NAME}
        )
        stub.add_response("describe_stack_resources", {"StackResources": []}, {"StackName": NAME})
        created = _ensure(cloudformation, "OP2")
        assert (created.state, created.message) == (
            "running",
            f"Stack {NAME} is CREATE_IN_PROGRESS.",
        )
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("status", "state"), [("DELETE_IN_PROGRESS", "running"), ("DELETE_COMPLETE", "succeeded")]
)
def test_a_delete_in_flight_is_polled_without_a_second_delete(status: str, state: str) -> None:
    cloudformation = _client()
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", _stack(status), {"StackName": NAME})
        answer = _delete_stack(
            cloudformation,
            None,
            name=NAME,
            resource_id="NET0000001",
            operation_id="OP3",
            stage="network-stack",
        )
        stub.assert_no_pending_responses()  # no delete_stack call was made
    assert answer.state == state
