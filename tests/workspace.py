"""The workspace under test: the app on the example site with four users, and browsers for it.

``make_workspace`` and ``ws`` (fixtures in conftest.py) give the app for the example site
with an admin, an editor of uk, an editor of dach and a contributor to uk; sign-in mail
goes to a real SMTP server (aiosmtpd). ``session_for`` gives a browser already signed in
(a session made in the database), for tests about what comes after signing in.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from newsletter.accounts import sessions, users
from newsletter.core.models import utcnow
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.delivery.transports.smtp import SmtpTransport
from newsletter.web import create_app
from newsletter.web.admin.auth import SESSION_COOKIE
from newsletter.web.security import RateLimits
from tests.conftest import Cli
from tests.smtp_server import Received, SmtpServer

KEY = "workspace-test-signing-key-0123456789abcdef"
ADMIN, EDITOR, OTHER_EDITOR, CONTRIBUTOR = (
    "ada@example.org",
    "eve@example.org",
    "dan@example.org",
    "cy@example.org",
)
PASSWORD = "correct horse battery staple"


class Clock:
    """The app's idea of now, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Workspace:
    cli: Cli
    site: Site
    app: Any
    smtp: SmtpServer
    clock: Clock

    def client(self) -> TestClient:
        """A browser: its own cookie jar, on https, not following redirects."""
        return TestClient(self.app, base_url="https://testserver", follow_redirects=False)

    def mails_to(self, address: str) -> list[Received]:
        return self.smtp.to(address)


def workspaces(cli: Cli, smtp_server: SmtpServer) -> Iterator[Callable[..., Workspace]]:
    """The app on the example site with four users; sign-in mail goes to the SMTP server."""
    cli("users", "add", ADMIN, "--role", "admin", "--name", "Ada")
    cli("users", "add", EDITOR, "--role", "editor", "--group", "uk")
    cli("users", "add", OTHER_EDITOR, "--role", "editor", "--group", "dach")
    cli("users", "add", CONTRIBUTOR, "--role", "contributor", "--group", "uk")
    settings = load_settings(
        cli.site, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": cli.db_url}
    )
    site = Site.open(settings)

    def make(limits: RateLimits | None = None) -> Workspace:
        clock = Clock()
        app = create_app(
            site,
            sign_in_transport=lambda: SmtpTransport(smtp_server.url()),
            sign_in_limits=limits or RateLimits(1000, 1000),
            clock=clock,
        )
        return Workspace(cli, site, app, smtp_server, clock)

    yield make
    site.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def csrf(client: TestClient) -> str:
    """A CSRF token for this browser (the sign-in page sets its cookie)."""
    page = client.get("/admin/sign-in")
    assert page.status_code == 200
    return csrf_of(page.text)


def session_for(ws: Workspace, address: str) -> TestClient:
    """A browser with a session made directly in the database (for the route matrix: fast)."""
    with ws.site.transaction() as session:
        user = users.get(session, address)
        secret = sessions.start(
            session, user.id or 0, now=ws.clock(), idle=timedelta(hours=1), user_agent="t", ip=None
        )
    client = ws.client()
    client.cookies.set(SESSION_COOKIE, secret, domain="testserver.local", path="/admin")
    return client


def signed_in(client: TestClient) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 303)
    return response.status_code == 200


# -- who asks, for the authorization matrix (tests/admin_routes/) ------------------------------

PEOPLE = {"admin": ADMIN, "editor": EDITOR, "other editor": OTHER_EDITOR, "contributor": CONTRIBUTOR}
WHO = (*PEOPLE, "anonymous")


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(WHO, status)


def signed_in_only(status: int) -> dict[str, int]:
    """``status`` for every signed-in person; anonymous visitors are sent to sign in."""
    return {**everyone(status), "anonymous": 303}
