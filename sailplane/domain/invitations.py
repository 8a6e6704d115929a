"""Invitations: a token that lets a person join an organization with chosen roles and teams."""

from __future__ import annotations

from datetime import datetime

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, NotAuthenticatedError, NotFoundError
from sailplane.domain.identity import check_email, check_organization_roles, check_team_role


class Invitation(SailplaneAggregate):
    email: str
    organization_role_id: str
    account_type: str
    team_assignments: list[dict[str, str]]
    token_hash: str
    expires_at: datetime
    status: str  # "pending" or "accepted"
    ota_code_hash: str | None
    ota_expires_at: datetime | None

    class Created(SailplaneAggregate.Created):
        email: str
        name: str
        organization_role_id: str
        account_type: str
        team_assignments: list[dict[str, str]]
        token_hash: str
        expires_at: datetime
        send_email: bool

        def apply(self, aggregate: Invitation) -> None:
            super().apply(aggregate)
            aggregate.email = self.email
            aggregate.name = self.name
            aggregate.organization_role_id = self.organization_role_id
            aggregate.account_type = self.account_type
            aggregate.team_assignments = [dict(t) for t in self.team_assignments]
            aggregate.token_hash = self.token_hash
            aggregate.expires_at = self.expires_at
            aggregate.status = "pending"
            aggregate.ota_code_hash = None
            aggregate.ota_expires_at = None
            aggregate.invited_by = self.actor

    class Accepted(SailplaneAggregate.Event):
        user_id: str
        member_id: str
        ota_code_hash: str | None
        ota_expires_at: datetime

        def apply(self, aggregate: Invitation) -> None:
            aggregate.status = "accepted"
            aggregate.user_id = self.user_id
            aggregate.member_id = self.member_id
            aggregate.ota_code_hash = self.ota_code_hash
            aggregate.ota_expires_at = self.ota_expires_at

    class CodeRedeemed(SailplaneAggregate.Event):
        def apply(self, aggregate: Invitation) -> None:
            aggregate.ota_code_hash = None

    class EmailRecorded(SailplaneAggregate.Event):
        """What became of the invitation email: sent, failed or not_configured."""

        status: str
        message: str | None

    @classmethod
    def create(
        cls,
        *,
        id: str,
        email: str,
        name: str,
        organization_role_id: str,
        account_type: str,
        team_assignments: list[dict[str, str]],
        token_hash: str,
        expires_at: datetime,
        send_email: bool,
        by: Actor,
        at: datetime,
    ) -> Invitation:
        check_organization_roles([organization_role_id])
        assignments = []
        seen: set[str] = set()
        for assignment in team_assignments:
            team_id = assignment["team_id"]
            if team_id in seen:
                continue
            seen.add(team_id)
            assignments.append(
                {
                    "team_id": team_id,
                    "role_id": check_team_role(assignment["role_id"], field="teamAssignments"),
                }
            )
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            email=check_email(email),
            name=name.strip(),
            organization_role_id=organization_role_id,
            account_type=account_type,
            team_assignments=assignments,
            token_hash=token_hash,
            expires_at=expires_at,
            send_email=send_email,
        )

    def record_email(self, status: str, message: str | None, *, by: Actor, at: datetime) -> None:
        self._trigger(self.EmailRecorded, by=by, at=at, status=status, message=message)

    def check_open(self, at: datetime) -> None:
        """Pending and not expired: expired is 404, already used is 409."""
        if self.status != "pending":
            raise ConflictError("This invitation was already accepted.", code="invitation_used")
        if self.expires_at <= at:
            raise NotFoundError("This invitation has expired.", code="invitation_expired")

    def accept(
        self,
        *,
        user_id: str,
        member_id: str,
        ota_code_hash: str | None,
        ota_expires_at: datetime,
        by: Actor,
        at: datetime,
    ) -> None:
        self.check_open(at)
        self._trigger(
            self.Accepted,
            by=by,
            at=at,
            user_id=user_id,
            member_id=member_id,
            ota_code_hash=ota_code_hash,
            ota_expires_at=ota_expires_at,
        )

    def redeem_code(self, code_hash: str, *, by: Actor, at: datetime) -> None:
        if (
            self.ota_code_hash is None
            or self.ota_code_hash != code_hash
            or self.ota_expires_at is None
            or self.ota_expires_at <= at
        ):
            raise NotAuthenticatedError(
                "The one-time code is not valid.", code="invalid_credentials"
            )
        self._trigger(self.CodeRedeemed, by=by, at=at)
