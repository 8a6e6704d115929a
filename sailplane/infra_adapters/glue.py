"""AWS Glue Data Catalog through boto3, for `glue` catalogs.

A glue catalog authenticates in one of two ways:

- through an AWS connection (`connectionId`): Sailplane assumes the connection's role
  with its external id through STS and uses the short-lived credentials;
- with a static access key pair (`accessKeyId` and the sealed `secretAccessKey`).

The connections context answers which role belongs to a connection through the
`AwsConnections` port (`cloud_providers.AwsConnectionRoles` reads it from the infra view).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sailplane.domain.errors import InvalidValueError

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"}
)
SESSION_SECONDS = 900


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_session_token": self.session_token,
        }


@dataclass(frozen=True)
class AwsRole:
    role_arn: str
    external_id: str


class AwsConnections(Protocol):
    def role_of(self, organization_id: str, connection_id: str) -> AwsRole:
        """The role Sailplane assumes for this connection.

        Raises NotFoundError when the organization has no such connection and
        ConflictError when the connection cannot be used now (not active).
        """


def assume_role(
    role: AwsRole,
    *,
    region: str,
    session_name: str,
    endpoint_url: str | None = None,
    field: str = "configWrite.connectionId",
) -> AwsCredentials:
    """Short-lived credentials for `role`, assumed with its external id.

    Raises InvalidValueError (422, naming `field`) when STS refuses or cannot be reached.
    """
    sts = boto3.client("sts", region_name=region, endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    try:
        answer = sts.assume_role(
            RoleArn=role.role_arn,
            RoleSessionName=session_name,
            ExternalId=role.external_id,
            DurationSeconds=SESSION_SECONDS,
        )
    except (ClientError, BotoCoreError) as exc:
        raise InvalidValueError(
            f"Sailplane could not assume the connection's role {role.role_arn}: {_reason(exc)}",
            field=field,
            code="connection_unusable",
        ) from None
    credentials = answer["Credentials"]
    return AwsCredentials(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )


class GlueCatalogs:
    """Talks to the Glue Data Catalog a `glue` catalog's settings point at."""

    def __init__(self, connections: AwsConnections, *, sts_endpoint_url: str | None = None) -> None:
        self.connections = connections
        self.sts_endpoint_url = sts_endpoint_url

    def credentials(
        self, organization_id: str, config: dict[str, str], secrets: dict[str, str]
    ) -> AwsCredentials:
        if "connectionId" in config:
            role = self.connections.role_of(organization_id, config["connectionId"])
            return assume_role(
                role,
                region=config["region"],
                session_name=f"sailplane-catalog-{organization_id}",
                endpoint_url=self.sts_endpoint_url,
            )
        return AwsCredentials(config["accessKeyId"], secrets["secretAccessKey"])

    def client(self, organization_id: str, config: dict[str, str], secrets: dict[str, str]) -> Any:
        return boto3.client(
            "glue",
            region_name=config["region"],
            endpoint_url=config.get("endpointUrl"),
            config=CLIENT_CONFIG,
            **self.credentials(organization_id, config, secrets).client_kwargs(),
        )

    def ensure_initial_database(
        self, organization_id: str, config: dict[str, str], secrets: dict[str, str]
    ) -> bool:
        """Check that the catalog answers with these settings and that its initial database
        exists, creating it (described by `initialDatabaseComment`) when it does not.

        Returns whether the database was created. Raises InvalidValueError (422) when Glue
        cannot be reached or refuses the credentials.
        """
        glue = self.client(organization_id, config, secrets)
        catalog = {"CatalogId": config["glueCatalogId"]} if "glueCatalogId" in config else {}
        database = config.get("initialDatabase")
        try:
            glue.get_databases(MaxResults=1, **catalog)
            if database is None:
                return False
            try:
                glue.get_database(Name=database, **catalog)
                return False
            except ClientError as exc:
                if _code(exc) != "EntityNotFoundException":
                    raise
            comment = config.get("initialDatabaseComment")
            described = {"Description": comment} if comment is not None else {}
            try:
                glue.create_database(DatabaseInput={"Name": database, **described}, **catalog)
            except ClientError as exc:
                if _code(exc) != "AlreadyExistsException":  # created meanwhile by someone else
                    raise
                return False
            return True
        except (ClientError, BotoCoreError) as exc:
            raise InvalidValueError(
                f"AWS Glue did not accept the catalog's settings: {_reason(exc)}",
                field="configWrite",
                code="catalog_unreachable",
            ) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return str(exc)
