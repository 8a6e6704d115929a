"""Fixtures of the identity tests: people with passwords, an OIDC issuer, an SMTP server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from sailplane.system import System
from tests.conftest import Org, http_client
from tests.oidc_provider import OidcProvider, oidc_provider
from tests.services import free_port

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Person:
    member_id: str
    user_id: str
    email: str
    password: str


def person(
    system: System, org: Org, roles: list[str] | None = None, password: str = PASSWORD
) -> Person:
    """A new member of `org` whose user has a password (set by the owner)."""
    email = f"person-{uuid.uuid4().hex[:8]}@example.com"
    member_id, _ = system.identity.commands.add_member(
        email=email, display_name="Person", role_ids=roles or ["MEMBER"], by=org.owner
    )
    user_id = system.identity.commands.user_by_email(email).id
    system.wait_for_views(
        system.identity.commands.change_password(
            user_id, current_password=None, new_password=password, by=org.owner
        )
    )
    return Person(member_id, user_id, email, password)


def sign_in(api: str, email: str, password: str, **extra: object) -> httpx.Response:
    with httpx.Client(base_url=api + "/api/v1", timeout=30) as anonymous:
        return anonymous.post("/auth/login", json={"email": email, "password": password, **extra})


def signed_in_client(api: str, who: Person) -> httpx.Client:
    response = sign_in(api, who.email, who.password)
    assert response.status_code == 200, response.text
    return http_client(api, response.json()["token"])


@pytest.fixture(scope="session")
def oidc() -> Iterator[OidcProvider]:
    with oidc_provider() as provider:
        yield provider


@dataclass
class Mailbox(Message):
    """An aiosmtpd handler that keeps every message it receives."""

    messages: list = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def handle_message(self, message) -> None:  # type: ignore[no-untyped-def]
        self.messages.append(message)


@pytest.fixture
def smtp(system: System) -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free port, wired as the system's mailer for one test."""
    from sailplane.infra_adapters.mail import SmtpMailer

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    previous = system.email.mailer
    system.email.mailer = SmtpMailer("127.0.0.1", port, "sailplane@example.com")
    try:
        yield mailbox
    finally:
        system.email.mailer = previous
        controller.stop()
