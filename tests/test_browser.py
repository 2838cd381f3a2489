"""End to end in a real browser: Chromium (through Playwright) against `newsletter serve`.

The web server runs as its own process on 127.0.0.1; the confirmation emails it
queues are sent by `newsletter worker --until-idle` over SMTP to a real aiosmtpd
server in this process; editions are built and sent with the CLI through the same
SMTP server. Screenshots of every page land in
``test-artifacts/screenshots/``. Debian's Chromium is used (``apt-get install
chromium``); Playwright's own browser downloads are never needed.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine
from sqlmodel import Session, col, select

from newsletter.core.models import Group, Membership, MembershipStatus, Subscriber
from tests.conftest import SCREENSHOTS, Cli, chromium, needs_chromium
from tests.smtp_server import Received, SmtpServer
from tests.web_server import over_smtp, serving

KEY = "browser-test-signing-key-0123456789abcdef"
READER = "erika@example.org"
CONTROL = "control@example.org"

pytestmark = needs_chromium


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    return smtp_server


@pytest.fixture
def base_url(cli: Cli, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """`newsletter serve` on a free port; the CLI in this process (worker, editions) sends over SMTP."""
    port = over_smtp(monkeypatch, smtp, KEY)
    # Migrate the database before the server opens it, and give the list a second member.
    cli("subscribers", "add", "cepiug", CONTROL)
    with serving(cli.site, cli.db_url, tmp_path / "serve.log", port=port) as base:
        yield base


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(locale="en-GB")
        try:
            yield context.new_page()
        finally:
            context.close()


@contextmanager
def database(url: str) -> Iterator[Session]:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def membership(url: str, address: str, slug: str) -> MembershipStatus | None:
    with database(url) as session:
        status = session.exec(
            select(Membership.status)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .join(Group, col(Group.id) == Membership.group_id)
            .where(col(Subscriber.email_key) == address, col(Group.slug) == slug)
        ).one_or_none()
    return MembershipStatus(status) if status is not None else None


def language_of(url: str, address: str) -> str | None:
    with database(url) as session:
        return session.exec(select(Subscriber.language).where(col(Subscriber.email_key) == address)).one()


def text_of(received: Received) -> str:
    part = received.message().get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link(text: str, base: str, path: str) -> str:
    found = re.search(rf"{re.escape(base)}/{path}/[\w.-]+", text)
    assert found, f"no {path} link in:\n{text}"
    return found.group(0)


def send_edition(cli: Cli, title: str) -> str:
    """Queue one item for CEPIUG, build, approve and send its edition over SMTP; the CLI's report."""
    url = "https://example.org/news/" + re.sub(r"\W+", "-", title.lower())
    added = re.search(r"#(\d+)", cli("items", "add", "--title", title, "--url", url).stdout)
    assert added
    cli("items", "approve", added.group(1))
    built = re.search(r"edition #(\d+)", cli("editions", "build", "cepiug").stdout)
    assert built
    cli("editions", "approve", built.group(1))
    return str(cli("editions", "send", built.group(1)).stdout)


def test_subscribe_confirm_receive_change_preferences_and_unsubscribe(
    page: Page, base_url: str, smtp: SmtpServer, cli: Cli
) -> None:
    """A reader joins, confirms, gets an edition, switches to German, leaves in one click and gets no more."""
    backend = "sqlite" if cli.db_url.startswith("sqlite") else "postgres"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{backend}-{name}.png"), full_page=True)

    # Fill in the sign-up form.
    page.goto(f"{base_url}/subscribe/cepiug")
    expect(page.locator("h1")).to_have_text("CEPIUG")
    page.fill("#email", READER)
    page.fill("#name", "Erika Mustermann")
    page.select_option("#language", "en")
    page.check("input[name=consent]")
    shot("01-subscribe")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Check your inbox")
    shot("02-check-your-inbox")
    assert membership(cli.db_url, READER, "cepiug") == MembershipStatus.PENDING

    # The worker sends the queued confirmation email over SMTP; its link shows a button, which confirms.
    assert "confirmations: sent 1," in cli("worker", "--until-idle").stdout
    smtp.wait_for(lambda: bool(smtp.to(READER)))
    [confirmation] = smtp.to(READER)
    assert confirmation.message()["Subject"] == "Please confirm your subscription to CEPIUG"
    page.goto(link(text_of(confirmation), base_url, "confirm"))
    expect(page.locator("h1")).to_have_text("Confirm your subscription")
    shot("03-confirm")
    assert membership(cli.db_url, READER, "cepiug") == MembershipStatus.PENDING
    page.click("button[type=submit]")
    expect(page.locator("main p")).to_have_text("Your subscription is confirmed. Welcome!")
    shot("04-confirmed")
    assert membership(cli.db_url, READER, "cepiug") == MembershipStatus.ACTIVE

    # An edition goes out; the reader receives it with the RFC 8058 headers.
    assert "sent 2," in send_edition(cli, "WIPO Patentscope adds new collections")
    smtp.wait_for(lambda: len(smtp.to(READER)) == 2)
    edition = smtp.to(READER)[1].message()
    assert edition["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = re.search(r"<(http[^>]+/unsubscribe/[^>]+)>", edition["List-Unsubscribe"])
    assert one_click
    assert one_click.group(1).startswith(f"{base_url}/unsubscribe/")

    # The preferences link in the email: switch the language to German.
    page.goto(link(text_of(smtp.to(READER)[1]), base_url, "preferences"))
    expect(page.locator("h1")).to_have_text("Your preferences")
    expect(page.locator("#name")).to_have_value("Erika Mustermann")
    shot("05-preferences")
    page.select_option("#language", "de")
    page.click("form button[type=submit] >> nth=0")
    expect(page.locator("[role=status]")).to_have_text("Gespeichert.")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator("h1")).to_have_text("Ihre Einstellungen")
    shot("06-preferences-saved-in-german")
    assert language_of(cli.db_url, READER) == "de"

    # Opening the unsubscribe link (as a link scanner would) only shows the page.
    page.goto(one_click.group(1))
    expect(page.locator("h1")).to_have_text("Abmelden")
    shot("07-unsubscribe-page")
    assert membership(cli.db_url, READER, "cepiug") == MembershipStatus.ACTIVE

    # The mail provider's one-click POST, without cookies, unsubscribes at once.
    with httpx.Client() as provider:
        response = provider.post(one_click.group(1), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert membership(cli.db_url, READER, "cepiug") == MembershipStatus.UNSUBSCRIBED

    # The next edition reaches the other member but not the reader who left.
    assert "sent 1," in send_edition(cli, "EPO publishes its quality report")
    smtp.wait_for(lambda: len(smtp.to(CONTROL)) == 2)
    assert len(smtp.to(READER)) == 2

    # The archive shows both editions.
    page.goto(f"{base_url}/archive/cepiug")
    expect(page.locator("main li")).to_have_count(2)
    shot("08-archive")
