"""The subscriber web pages, in-process: every route and every bad input, on real databases.

Each test drives ``newsletter.web.create_app`` through Starlette's TestClient, with a
memory transport catching the confirmation emails, against a fresh SQLite file or
PostgreSQL schema (``db_url``). Tokens are made the way the emails make them.
"""

import email
import html
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast, get_args

import feedparser
import itsdangerous.timed
import pytest
from icalendar import Calendar
from markupsafe import escape
from sqlmodel import col, func, select
from starlette.applications import Starlette
from starlette.convertors import Convertor, IntegerConvertor
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from newsletter.audience.selfservice import CONFIRM_MAX_AGE
from newsletter.core.models import Consent, Event, Group, Membership, MembershipStatus, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.core.tokens import Purpose, Signer
from newsletter.delivery import confirmations, runner
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.editions.render import Renderer
from newsletter.web import create_app
from newsletter.web.forms import MAX_BODY
from newsletter.web.security import CSRF_COOKIE, HSTS, SECURITY_HEADERS, RateLimits
from tests.conftest import Cli, migrated

KEY = "web-test-signing-key-0123456789abcdef"
ACTIVE, PENDING, UNSUBSCRIBED = (
    MembershipStatus.ACTIVE,
    MembershipStatus.PENDING,
    MembershipStatus.UNSUBSCRIBED,
)
SCRIPT = "<script>alert(1)</script>"


@dataclass
class Web:
    """One app on one site and database, a browser-like client and the captured emails."""

    site: Site
    transport: MemoryTransport
    app: Any
    client: TestClient
    signer: Signer

    def provider(self) -> TestClient:
        """A client with an empty cookie jar, as a mail provider's one-click POST comes."""
        return TestClient(self.app)

    def mails(self) -> list[OutgoingMessage]:
        """Every email sent so far, once the queued confirmations have gone out (as a worker sends them)."""
        confirmations.drain(self.site, self.transport)
        return list(self.transport.messages)

    def sent_to(self, address: str) -> list[OutgoingMessage]:
        return [m for m in self.mails() if m.recipient == address]


def _factory(site_dir: Path, url: str) -> Iterator[Callable[..., Web]]:
    sites: list[Site] = []

    def make(limits: RateLimits | None = None) -> Web:
        settings = load_settings(
            site_dir, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": url}
        )
        site = sites[0] if sites else Site.open(settings)
        sites[:] = [site]
        transport = MemoryTransport()
        app = create_app(site, limits=limits or RateLimits(1000, 1000))
        return Web(site, transport, app, TestClient(app), Signer(KEY))

    yield make
    for site in sites:
        site.close()


@pytest.fixture
def make_web(site_dir: Path, db_url: str) -> Iterator[Callable[..., Web]]:
    """Build the app for the example site on SQLite and PostgreSQL; ``limits`` are its rate limits."""
    yield from _factory(site_dir, db_url)


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database."""
    return migrated(f"sqlite:///{tmp_path / 'pages.db'}")


@pytest.fixture
def make_page_web(site_dir: Path, sqlite_url: str) -> Iterator[Callable[..., Web]]:
    """The same app on SQLite only: for checks of the HTTP layer that no database engine changes."""
    yield from _factory(site_dir, sqlite_url)


@pytest.fixture
def page_web(make_page_web: Callable[..., Web]) -> Web:
    return make_page_web()


# -- helpers ---------------------------------------------------------------------------------


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def action_of(page: str, index: int = 0) -> str:
    actions = re.findall(r'<form method="post" action="([^"]*)"', page)
    assert len(actions) > index, "the page has no such form"
    return html.unescape(actions[index])


def consent_shown(page: str) -> str:
    found = re.search(r'name="consent" value="yes" required> <span>(.*?)</span>', page, re.S)
    assert found, "the form shows no consent text"
    return html.unescape(found.group(1))


def subscribe(
    web: Web,
    slug: str,
    address: str,
    *,
    name: str = "",
    language: str = "",
    consent: bool = True,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> Any:
    """Fill in and send the group's sign-up form, as a browser would."""
    form_page = web.client.get(f"/subscribe/{slug}{query}", headers=headers)
    assert form_page.status_code == 200
    data = {"csrf": csrf_of(form_page.text), "email": address, "name": name, "language": language}
    if consent:
        data["consent"] = "yes"
    return web.client.post(action_of(form_page.text), data=data, headers=headers)


def body_of(message: OutgoingMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def confirm_path(message: OutgoingMessage) -> str:
    part = body_of(message).get_body(("plain",))
    assert part is not None
    found = re.search(r"https://news\.example\.org(/confirm/\S+)", part.get_content())
    assert found, "the confirmation email has no link"
    return found.group(1)


def confirm(web: Web, path: str) -> Any:
    page = web.client.get(path)
    assert page.status_code == 200
    return web.client.post(action_of(page.text), data={"csrf": csrf_of(page.text)})


def sign_up(web: Web, slug: str, address: str, **fields: Any) -> int:
    """Subscribe through the form and confirm through the emailed link; the subscriber's id."""
    before = len(web.sent_to(address))
    assert subscribe(web, slug, address, **fields).status_code == 200
    assert len(web.sent_to(address)) == before + 1
    assert confirm(web, confirm_path(web.sent_to(address)[-1])).status_code == 200
    return subscriber(web, address).id or 0


def subscriber(web: Web, address: str) -> Subscriber:
    with web.site.transaction() as session:
        found = session.exec(select(Subscriber).where(col(Subscriber.email_key) == address.lower())).one()
        session.expunge(found)
        return found


def membership(web: Web, address: str, slug: str) -> Membership | None:
    with web.site.transaction() as session:
        row = session.exec(
            select(Membership)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .join(Group, col(Group.id) == Membership.group_id)
            .where(col(Subscriber.email_key) == address.lower(), col(Group.slug) == slug)
        ).one_or_none()
        if row is not None:
            session.expunge(row)
        return row


def status(web: Web, address: str, slug: str) -> MembershipStatus | None:
    row = membership(web, address, slug)
    return row.status if row else None


def group_id(web: Web, slug: str) -> int:
    with web.site.transaction() as session:
        return session.exec(select(Group.id).where(col(Group.slug) == slug)).one() or 0


def token(web: Web, purpose: Purpose, address: str, slug: str) -> str:
    return web.signer.make(purpose, subscriber(web, address).id or 0, group_id(web, slug))


def snapshot(web: Web) -> tuple[Any, ...]:
    """Everything a request could change: people, memberships, audit rows, emails sent."""
    with web.site.transaction() as session:
        people = sorted((s.id, s.email, s.name, s.language) for s in session.exec(select(Subscriber)))
        rows = sorted(
            (m.subscriber_id, m.group_id, str(m.status), m.consent_text, m.confirmed_at)
            for m in session.exec(select(Membership))
        )
        events = session.exec(select(func.count()).select_from(Event)).one()
        consents = session.exec(select(func.count()).select_from(Consent)).one()
    return people, rows, events, consents, len(web.mails())


def alter(signed: str) -> str:
    """The token with the first character of its signature changed (the last may be padding bits)."""
    rest, signature = signed.rsplit(".", 1)
    return f"{rest}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def send_edition(web: Web, cli: Cli, slug: str, title: str) -> int:
    """Queue an item, build, approve and send an edition to the group; its id."""
    added = cli("items", "add", "--title", title, "--url", "https://example.org/news", "--group", slug)
    item = re.search(r"#(\d+)", added.stdout)
    assert item
    cli("items", "approve", item.group(1))
    built = re.search(r"edition #(\d+)", cli("editions", "build", slug).stdout)
    assert built
    cli("editions", "approve", built.group(1))
    edition_id = int(built.group(1))
    runner.send_edition(web.site, Renderer(web.site.settings), web.transport, edition_id, actor="test")
    return edition_id


# -- subscribe -------------------------------------------------------------------------------


# -- subscribe -------------------------------------------------------------------------------


def test_subscribe_form_has_fields_consent_and_csrf(page_web: Web) -> None:
    """The sign-up form asks for address, name, language and consent, with a CSRF field and cookie."""
    page = page_web.client.get("/subscribe/cepiug")
    assert page.status_code == 200
    for field in ('name="email"', 'name="name"', 'name="language"', 'name="consent"'):
        assert field in page.text
    assert consent_shown(page.text).startswith("I agree to receive CEPIUG by email.")
    assert csrf_of(page.text)
    assert CSRF_COOKIE in page.cookies
    assert "httponly" in page.headers["set-cookie"].lower()
    assert "samesite=strict" in page.headers["set-cookie"].lower()


def test_sign_up_records_consent_and_sends_one_confirmation(web: Web) -> None:
    """A sign-up is pending, with time, source, IP and the exact consent text shown; one email goes out."""
    before = datetime.now(UTC)
    form_page = web.client.get("/subscribe/uk")
    shown = consent_shown(form_page.text)
    response = web.client.post(
        action_of(form_page.text),
        data={
            "csrf": csrf_of(form_page.text),
            "email": "Ada@Example.org",
            "name": "Ada",
            "language": "fr",
            "consent": "yes",
        },
    )
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    row = membership(web, "ada@example.org", "uk")
    assert row is not None
    assert row.status == PENDING
    assert row.source == "web"
    assert row.consent_text == shown
    assert row.consent_ip == "testclient"
    assert row.consent_at is not None
    assert before <= row.consent_at <= datetime.now(UTC)
    assert row.confirmed_at is None
    person = subscriber(web, "ada@example.org")
    assert (person.name, person.language) == ("Ada", "fr")
    [message] = web.mails()
    assert message.recipient == "Ada@example.org"
    # The confirmation speaks the language the person chose.
    subject = body_of(message)["Subject"]
    assert subject == "Veuillez confirmer votre abonnement à UK Patent Information Users (example)"
    with web.site.transaction() as session:
        kinds = [e.kind for e in session.exec(select(Event).where(col(Event.subscriber_id) == person.id))]
    assert kinds == ["consent"]


def test_consent_text_stored_is_the_one_shown_in_the_visitors_language(page_web: Web) -> None:
    """A visitor who read the German form has the German consent text on record, whatever the browser says."""
    web = page_web
    form_page = web.client.get("/subscribe/cepiug?lang=de", headers={"accept-language": "en"})
    shown = consent_shown(form_page.text)
    assert shown.startswith("Ich bin damit einverstanden, CEPIUG per E-Mail zu erhalten.")
    response = web.client.post(
        action_of(form_page.text),
        data={"csrf": csrf_of(form_page.text), "email": "de@example.org", "consent": "yes"},
        headers={"accept-language": "en"},
    )
    assert response.status_code == 200
    row = membership(web, "de@example.org", "cepiug")
    assert row is not None
    assert row.consent_text == shown


INVALID_ADDRESSES = [
    "not-an-address",
    "a@",
    "@example.org",
    "a@b@example.org",
    "",
    "   ",
    f"{SCRIPT}@example.org",
    "a" * 400 + "@example.org",
    "a@example.org\r\nBcc: b@example.org",
]


def test_sign_up_without_consent_or_with_a_bad_address_is_refused(page_web: Web) -> None:
    """No consent, no address or an address we cannot send to: the form again, nothing stored or sent."""
    web = page_web
    before = snapshot(web)
    response = subscribe(web, "cepiug", "noconsent@example.org", consent=False)
    assert response.status_code == 400
    assert "Please tick the box" in response.text
    for address in INVALID_ADDRESSES:
        response = subscribe(web, "cepiug", address)
        assert response.status_code == 400, address
        assert 'role="alert"' in response.text
        assert "<script>" not in response.text
    token_value = csrf_of(web.client.get("/subscribe/cepiug").text)
    assert (
        web.client.post("/subscribe/cepiug", data={"csrf": token_value, "consent": "yes"}).status_code == 400
    )
    assert web.client.post("/subscribe/cepiug", data={"csrf": token_value}).status_code == 400
    assert snapshot(web) == before


def _pieces(prefix: bytes, total: int) -> Iterator[bytes]:
    """A form body sent in pieces, so that no Content-Length announces its size."""
    yield prefix + b"consent=yes&email=big%40example.org&List-Unsubscribe=One-Click&name="
    sent = 0
    while sent < total:
        yield b"x" * 4096
        sent += 4096


def test_oversized_or_multipart_bodies_are_refused(page_web: Web) -> None:
    """Bodies over the limit (with or without Content-Length) are 413, file uploads 4xx; nothing changes."""
    web = page_web
    sign_up(web, "cepiug", "huge@example.org")
    prefix = f"csrf={csrf_of(web.client.get('/subscribe/cepiug').text)}&".encode()
    one_click = f"/unsubscribe/{token(web, 'unsubscribe', 'huge@example.org', 'cepiug')}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    before = snapshot(web)
    for path in ("/subscribe/cepiug", one_click):
        announced = web.client.post(path, content=b"".join(_pieces(prefix, MAX_BODY * 4)), headers=form)
        assert announced.status_code == 413, path
        chunked = web.client.post(path, content=_pieces(prefix, MAX_BODY * 4), headers=form)
        assert chunked.status_code == 413, path
    upload = web.client.post(
        "/subscribe/cepiug",
        data={"csrf": prefix[5:-1].decode(), "email": "file@example.org", "consent": "yes"},
        files={"upload": ("a.txt", b"hello", "text/plain")},
    )
    assert 400 <= upload.status_code < 500
    assert snapshot(web) == before
    assert status(web, "huge@example.org", "cepiug") == ACTIVE


def test_rate_limit_per_client(make_page_web: Callable[..., Web]) -> None:
    """One client gets two sign-ups an hour; the third is a 429 and sends nothing."""
    web = make_page_web(RateLimits(per_client_per_hour=2, per_address_per_hour=100))
    assert subscribe(web, "cepiug", "one@example.org").status_code == 200
    assert subscribe(web, "uk", "two@example.org").status_code == 200
    third = subscribe(web, "cepiug", "three@example.org")
    assert third.status_code == 429
    assert "Too many requests" in third.text
    assert [m.recipient for m in web.mails()] == ["one@example.org", "two@example.org"]
    assert membership(web, "three@example.org", "cepiug") is None
    # Another client is not held back by the first one's limit.
    other = TestClient(web.app, client=("192.0.2.7", 50000))
    form_page = other.get("/subscribe/cepiug")
    response = other.post(
        action_of(form_page.text),
        data={"csrf": csrf_of(form_page.text), "email": "four@example.org", "consent": "yes"},
    )
    assert response.status_code == 200
    assert web.mails()[-1].recipient == "four@example.org"


def test_rate_limit_per_address_counts_every_spelling(make_page_web: Callable[..., Web]) -> None:
    """One mailbox gets two confirmation emails an hour, however it is spelt; the page stays the same."""
    web = make_page_web(RateLimits(per_client_per_hour=100, per_address_per_hour=2))
    spellings = [
        "victim@example.org",
        "Victim@Example.org",
        "Someone <VICTIM@example.org>",
        " victim@EXAMPLE.ORG ",
    ]
    pages = [subscribe(web, "cepiug", spelling) for spelling in spellings]
    assert {p.status_code for p in pages} == {200}
    assert len({p.text for p in pages}) == 1
    assert len(web.mails()) == 2


def test_page_is_the_same_for_a_new_and_an_active_address(web: Web) -> None:
    """The sign-up answer never tells whether an address is already subscribed; the member gets no email."""
    sign_up(web, "cepiug", "member@example.org")
    sent = len(web.mails())
    for_member = subscribe(web, "cepiug", "member@example.org")
    assert len(web.mails()) == sent
    for_new = subscribe(web, "cepiug", "newcomer@example.org")
    assert len(web.mails()) == sent + 1
    assert (for_member.status_code, for_member.text) == (for_new.status_code, for_new.text)
    assert status(web, "member@example.org", "cepiug") == ACTIVE


def test_new_sign_up_after_unsubscribing_needs_a_new_confirmation(web: Web) -> None:
    """An unsubscribe is sticky: a new sign-up leaves it ended until the new link is confirmed."""
    sign_up(web, "cepiug", "back@example.org")
    one_click = web.provider().post(
        f"/unsubscribe/{token(web, 'unsubscribe', 'back@example.org', 'cepiug')}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert one_click.status_code == 200
    assert subscribe(web, "cepiug", "back@example.org").status_code == 200
    assert status(web, "back@example.org", "cepiug") == UNSUBSCRIBED
    assert confirm(web, confirm_path(web.sent_to("back@example.org")[-1])).status_code == 200
    assert status(web, "back@example.org", "cepiug") == ACTIVE


def test_unknown_group_is_404(page_web: Web) -> None:
    """Sign-up and archive pages of a group the site does not declare are 404s."""
    client = page_web.client
    assert client.get("/subscribe/nope").status_code == 404
    assert client.post("/subscribe/nope", data={"email": "a@example.org"}).status_code == 404
    assert client.get("/archive/nope").status_code == 404
    assert client.get("/archive/nope/feed.atom").status_code == 404
    assert client.get("/archive/nope/1").status_code == 404


# -- confirm ---------------------------------------------------------------------------------


def test_confirm_shows_a_button_activates_on_post_and_a_replay_changes_nothing(web: Web) -> None:
    """Opening the link (GET or HEAD, as scanners do) changes nothing; the button activates; replays don't."""
    subscribe(web, "cepiug", "yes@example.org")
    path = confirm_path(web.mails()[-1])
    before = snapshot(web)
    for _ in range(2):
        page = web.provider().get(path)
        assert page.status_code == 200
        assert action_of(page.text) == path
        assert "<button" in page.text
    assert web.provider().head(path).status_code == 200
    assert snapshot(web) == before
    assert status(web, "yes@example.org", "cepiug") == PENDING
    first = confirm(web, path)
    assert first.status_code == 200
    assert "Your subscription is confirmed" in first.text
    row = membership(web, "yes@example.org", "cepiug")
    assert row is not None
    assert row.status == ACTIVE
    assert row.confirmed_at is not None
    after = snapshot(web)
    again = confirm(web, path)
    assert again.status_code == 200
    assert "already confirmed" in again.text
    assert snapshot(web) == after
    with web.site.transaction() as session:
        events = session.exec(select(Event).where(col(Event.subscriber_id) == row.subscriber_id))
        assert [e.kind for e in events] == ["consent", "confirm"]


def _signed_at(
    web: Web, monkeypatch: pytest.MonkeyPatch, purpose: Purpose, address: str, at: datetime
) -> str:
    """A token made with itsdangerous' clock set to ``at``."""
    with monkeypatch.context() as frozen:
        frozen.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: int(at.timestamp()))
        return token(web, purpose, address, "cepiug")


def test_expired_confirmation_link_is_refused(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """A confirmation link older than two days is a 4xx and activates nothing; one just inside still works."""
    subscribe(web, "cepiug", "late@example.org")
    now = datetime.now(UTC)
    # The person asked three days ago (a link is never older than the subscriber it names).
    with web.site.transaction() as session:
        person = session.exec(select(Subscriber).where(col(Subscriber.email_key) == "late@example.org")).one()
        person.created_at = now - timedelta(days=3)
        session.add(person)
    age = timedelta(seconds=CONFIRM_MAX_AGE)
    expired = _signed_at(web, monkeypatch, "confirm", "late@example.org", now - age - timedelta(minutes=1))
    fresh = _signed_at(web, monkeypatch, "confirm", "late@example.org", now - age + timedelta(hours=1))
    before = snapshot(web)
    page = web.client.get(f"/confirm/{expired}")
    assert page.status_code == 400
    assert "expired" in page.text
    csrf_value = csrf_of(web.client.get("/subscribe/cepiug").text)
    assert web.client.post(f"/confirm/{expired}", data={"csrf": csrf_value}).status_code == 400
    assert snapshot(web) == before
    assert confirm(web, f"/confirm/{fresh}").status_code == 200
    assert status(web, "late@example.org", "cepiug") == ACTIVE


def test_forged_and_altered_tokens_are_refused_everywhere(web: Web) -> None:
    """Altered, foreign, wrong-purpose and unknown-person tokens are 4xx on every route and change nothing."""
    sign_up(web, "cepiug", "target@example.org")
    subscribe(web, "uk", "target@example.org")
    sid, cepiug, uk = (
        subscriber(web, "target@example.org").id or 0,
        group_id(web, "cepiug"),
        group_id(web, "uk"),
    )

    def forgeries(purpose: Purpose, group: int) -> list[str]:
        real = web.signer.make(purpose, sid, group)
        other: Purpose = "confirm" if purpose != "confirm" else "unsubscribe"
        return [
            alter(real),
            real[:-3],
            real.split(".")[0],
            Signer("another key").make(purpose, sid, group),
            web.signer.make(other, sid, group),
            web.signer.make("preferences" if purpose != "preferences" else "unsubscribe", sid, group),
            web.signer.make(purpose, sid + 1000, group),
            "e30.aaaa.bbbb",
        ]

    csrf_value = csrf_of(web.client.get("/subscribe/cepiug").text)
    form = {"csrf": csrf_value, "everything": "yes", "groups": ["dach"], "name": "X", "language": "fr"}
    before = snapshot(web)
    for bad in forgeries("confirm", uk):
        assert web.client.get(f"/confirm/{bad}").status_code == 400, bad
        assert web.client.post(f"/confirm/{bad}", data=form).status_code == 400, bad
    for bad in forgeries("unsubscribe", cepiug):
        assert web.provider().get(f"/unsubscribe/{bad}").status_code == 400, bad
        one_click = web.provider().post(f"/unsubscribe/{bad}", data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 400, bad
        assert web.client.post(f"/unsubscribe/{bad}/confirm", data=form).status_code == 400, bad
    for bad in forgeries("preferences", cepiug):
        assert web.client.get(f"/preferences/{bad}").status_code == 400, bad
        assert web.client.post(f"/preferences/{bad}", data=form).status_code == 400, bad
        assert web.client.get(f"/preferences/{bad}/export").status_code == 400, bad
        assert web.client.post(f"/preferences/{bad}/forget", data=form).status_code == 400, bad
    assert snapshot(web) == before
    assert status(web, "target@example.org", "cepiug") == ACTIVE
    assert status(web, "target@example.org", "uk") == PENDING


# -- unsubscribe -----------------------------------------------------------------------------


def test_unsubscribe_get_never_unsubscribes(web: Web) -> None:
    """The unsubscribe link shows a page with a button; GET and HEAD (link scanners) change nothing."""
    sign_up(web, "cepiug", "keep@example.org")
    path = f"/unsubscribe/{token(web, 'unsubscribe', 'keep@example.org', 'cepiug')}"
    before = snapshot(web)
    for _ in range(3):
        page = web.provider().get(path)
        assert page.status_code == 200
        assert action_of(page.text) == f"{path}/confirm"
    assert web.provider().head(path).status_code == 200
    assert snapshot(web) == before
    assert status(web, "keep@example.org", "cepiug") == ACTIVE


def test_one_click_post_without_cookies_unsubscribes_at_once(web: Web) -> None:
    """The RFC 8058 POST (urlencoded or multipart, no cookies, no CSRF) ends that membership and no other."""
    for person in ("url@example.org", "multi@example.org"):
        sign_up(web, "cepiug", person)
        sign_up(web, "uk", person)
    provider = web.provider()
    url_path = f"/unsubscribe/{token(web, 'unsubscribe', 'url@example.org', 'cepiug')}"
    multi_path = f"/unsubscribe/{token(web, 'unsubscribe', 'multi@example.org', 'uk')}"
    assert provider.post(url_path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert provider.post(multi_path, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    assert not provider.cookies
    assert status(web, "url@example.org", "cepiug") == UNSUBSCRIBED
    assert status(web, "url@example.org", "uk") == ACTIVE
    assert status(web, "multi@example.org", "uk") == UNSUBSCRIBED
    assert status(web, "multi@example.org", "cepiug") == ACTIVE
    # Mail providers retry: a second POST is just as successful and changes nothing more.
    before = snapshot(web)
    assert provider.post(url_path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert snapshot(web) == before
    with web.site.transaction() as session:
        sources = [e.source for e in session.exec(select(Event).where(col(Event.kind) == "unsubscribe"))]
    assert sources == ["one-click", "one-click"]


WRONG_ONE_CLICK_BODIES = [
    (b"", "application/x-www-form-urlencoded"),
    (b"List-Unsubscribe=Yes", "application/x-www-form-urlencoded"),
    (b"list-unsubscribe=one-click", "application/x-www-form-urlencoded"),
    (b"Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
    (b'{"List-Unsubscribe": "One-Click"}', "application/json"),
    (b"List-Unsubscribe=One-Click", "text/plain"),
]


def test_one_click_with_a_wrong_body_is_400(web: Web) -> None:
    """A POST to the one-click URL without exactly List-Unsubscribe=One-Click is a 400 and changes nothing."""
    sign_up(web, "cepiug", "stay@example.org")
    path = f"/unsubscribe/{token(web, 'unsubscribe', 'stay@example.org', 'cepiug')}"
    before = snapshot(web)
    for content, content_type in WRONG_ONE_CLICK_BODIES:
        response = web.provider().post(path, content=content, headers={"content-type": content_type})
        assert response.status_code == 400, content
    assert web.provider().post(path).status_code == 400
    assert snapshot(web) == before


def test_unsubscribe_button_leaves_one_list_or_all(web: Web) -> None:
    """The page's button ends only this list, unless the person asks to leave them all."""
    for person in ("one@example.org", "all@example.org"):
        for slug in ("cepiug", "uk", "dach"):
            sign_up(web, slug, person)
    for person, everything in (("one@example.org", False), ("all@example.org", True)):
        page = web.client.get(f"/unsubscribe/{token(web, 'unsubscribe', person, 'uk')}")
        data = {"csrf": csrf_of(page.text)} | ({"everything": "yes"} if everything else {})
        response = web.client.post(action_of(page.text), data=data)
        assert response.status_code == 200
        assert "You will receive no more emails from these lists" in response.text
        again = web.client.post(action_of(page.text), data=data)
        assert "You were already unsubscribed" in again.text
    assert {slug: status(web, "one@example.org", slug) for slug in ("cepiug", "uk", "dach")} == {
        "cepiug": ACTIVE,
        "uk": UNSUBSCRIBED,
        "dach": ACTIVE,
    }
    assert {status(web, "all@example.org", slug) for slug in ("cepiug", "uk", "dach")} == {UNSUBSCRIBED}


# -- preferences -----------------------------------------------------------------------------


def test_preferences_show_and_change_lists_language_and_name(web: Web) -> None:
    """The page shows the current choices; saving joins and leaves lists, renames, and switches to German."""
    sign_up(web, "cepiug", "choose@example.org", name="Old Name", language="fr")
    sign_up(web, "uk", "choose@example.org")
    path = f"/preferences/{token(web, 'preferences', 'choose@example.org', 'cepiug')}"
    page = web.client.get(path)
    assert page.status_code == 200
    assert "choose@example.org" in page.text
    assert set(re.findall(r'name="groups" value="(\w+)" checked', page.text)) == {"cepiug", "uk"}
    assert 'value="Old Name"' in page.text
    assert '<option value="fr" selected>' in page.text
    assert '<html lang="fr">' in page.text
    response = web.client.post(
        action_of(page.text),
        data={
            "csrf": csrf_of(page.text),
            "groups": ["uk", "dach", "no-such-group"],
            "name": "  New   Name ",
            "language": "de",
        },
    )
    assert response.status_code == 200
    assert "Gespeichert." in response.text
    assert '<html lang="de">' in response.text
    assert set(re.findall(r'name="groups" value="(\w+)" checked', response.text)) == {"uk", "dach"}
    assert {slug: status(web, "choose@example.org", slug) for slug in ("cepiug", "uk", "dach", "fr")} == {
        "cepiug": UNSUBSCRIBED,
        "uk": ACTIVE,
        "dach": ACTIVE,
        "fr": None,
    }
    person = subscriber(web, "choose@example.org")
    assert (person.name, person.language) == ("New Name", "de")
    # The list joined here has a consent record of its own: the sentence the (French) page showed.
    shown = re.search(r"<legend>[^<]*</legend>\s*<p>([^<]*)</p>", page.text)
    assert shown
    assert shown.group(1).startswith("Cochez les listes")
    joined = membership(web, "choose@example.org", "dach")
    assert joined is not None
    assert (joined.consent_text, joined.consent_ip) == (html.unescape(shown.group(1)), "testclient")
    assert joined.consent_at is not None


def test_preferences_with_an_invalid_language_change_nothing(page_web: Web) -> None:
    """A language that is not a language tag is refused, and the lists and name stay as they were."""
    web = page_web
    sign_up(web, "cepiug", "lang@example.org", name="Kept")
    path = f"/preferences/{token(web, 'preferences', 'lang@example.org', 'cepiug')}"
    page = web.client.get(path)
    before = snapshot(web)
    response = web.client.post(
        path, data={"csrf": csrf_of(page.text), "groups": ["uk"], "name": "Changed", "language": "!!no!!"}
    )
    assert response.status_code == 400
    assert snapshot(web) == before


def test_export_contains_memberships_consent_and_history(web: Web) -> None:
    """The data export is UTF-8 JSON with every membership, its consent record and the audit trail."""
    sign_up(web, "cepiug", "mine@example.org", name="Zoë Lefèvre")
    subscribe(web, "uk", "mine@example.org")
    response = web.client.get(
        f"/preferences/{token(web, 'preferences', 'mine@example.org', 'cepiug')}/export"
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    data = response.json()
    assert (data["email"], data["name"]) == ("mine@example.org", "Zoë Lefèvre")
    memberships = {m["group"]: m for m in data["memberships"]}
    assert {g: m["status"] for g, m in memberships.items()} == {"cepiug": "active", "uk": "pending"}
    for entry in memberships.values():
        assert entry["consent_text"].startswith("I agree to receive")
        assert entry["consent_ip"] == "testclient"
        assert datetime.fromisoformat(entry["consent_at"]).tzinfo is not None
    assert memberships["cepiug"]["confirmed_at"]
    assert memberships["uk"]["confirmed_at"] is None
    assert [e["kind"] for e in data["events"]] == ["consent", "confirm", "consent"]
    # Every consent asked for, in order, whether confirmed or not.
    assert [(c["group"], bool(c["confirmed_at"])) for c in data["consents"]] == [
        ("cepiug", True),
        ("uk", False),
    ]


def test_forget_erases_and_the_links_stop_working(web: Web) -> None:
    """ "Delete me" erases the person everywhere; afterwards their links are 4xx and show nothing of them."""
    sign_up(web, "cepiug", "gone@example.org", name="Gone")
    sign_up(web, "uk", "gone@example.org")
    sign_up(web, "uk", "other@example.org")
    preferences = token(web, "preferences", "gone@example.org", "cepiug")
    unsubscribe = token(web, "unsubscribe", "gone@example.org", "uk")
    page = web.client.get(f"/preferences/{preferences}")
    response = web.client.post(action_of(page.text, 1), data={"csrf": csrf_of(page.text)})
    assert response.status_code == 200
    assert "erased" in response.text
    with web.site.transaction() as session:
        gone = session.exec(select(Subscriber).where(col(Subscriber.email_key) == "gone@example.org"))
        assert gone.all() == []
        events = list(session.exec(select(Event)))
    assert all("gone@example.org" not in (e.detail + e.source) for e in events)
    assert "erase" in [e.kind for e in events]
    for path in (
        f"/preferences/{preferences}",
        f"/preferences/{preferences}/export",
        f"/unsubscribe/{unsubscribe}",
    ):
        after = web.client.get(path)
        assert after.status_code == 400
        assert "gone@example.org" not in after.text
    one_click = web.provider().post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    assert status(web, "other@example.org", "uk") == ACTIVE


def test_links_of_an_erased_person_do_not_reach_the_next_subscriber(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erased person's old links never open the data of a later subscriber."""
    first = sign_up(web, "cepiug", "first@example.org")
    # The first person joined yesterday and got an edition an hour ago.
    now = datetime.now(UTC)
    with web.site.transaction() as session:
        person = session.exec(select(Subscriber).where(col(Subscriber.id) == first)).one()
        person.created_at = now - timedelta(days=1)
        session.add(person)
    an_hour_ago = now - timedelta(hours=1)
    old_preferences = _signed_at(web, monkeypatch, "preferences", "first@example.org", an_hour_ago)
    old_unsubscribe = _signed_at(web, monkeypatch, "unsubscribe", "first@example.org", an_hour_ago)
    page = web.client.get(f"/preferences/{old_preferences}")
    assert page.status_code == 200
    assert web.client.post(action_of(page.text, 1), data={"csrf": csrf_of(page.text)}).status_code == 200
    second = sign_up(web, "cepiug", "second@example.org")
    # Ids are never handed out again (sqlite_autoincrement); links signed before
    # their subscriber existed are refused as well, as a second guard.
    assert second != first
    export = web.client.get(f"/preferences/{old_preferences}/export")
    assert export.status_code == 400
    assert "second@example.org" not in export.text
    assert "second@example.org" not in web.client.get(f"/preferences/{old_preferences}").text
    one_click = web.provider().post(f"/unsubscribe/{old_unsubscribe}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 400
    assert status(web, "second@example.org", "cepiug") == ACTIVE
    # The second person's own links work.
    assert (
        web.client.get(
            f"/preferences/{token(web, 'preferences', 'second@example.org', 'cepiug')}"
        ).status_code
        == 200
    )


# -- archive and events ----------------------------------------------------------------------


def test_archive_and_feed_show_only_sent_editions_without_personal_links(web: Web, cli: Cli) -> None:
    """The archive and its Atom feed list sent editions only, and hold none of a reader's personal links."""
    empty = feedparser.parse(web.client.get("/archive/cepiug/feed.atom").content)
    assert not empty.bozo
    assert empty.entries == []
    sign_up(web, "cepiug", "reader@example.org", name="Reader Person")
    sent_id = send_edition(web, cli, "cepiug", "Espacenet gets a new look")
    cli("items", "add", "--title", "Not sent yet", "--url", "https://example.org/later", "--group", "cepiug")
    cli("items", "approve", "2")
    built = re.search(r"edition #(\d+)", cli("editions", "build", "cepiug").stdout)
    assert built
    approved_id = int(built.group(1))
    cli("editions", "approve", str(approved_id))

    listing = web.client.get("/archive/cepiug")
    assert listing.status_code == 200
    assert f'href="/archive/cepiug/{sent_id}"' in listing.text
    assert "CEPIUG: " in listing.text
    assert f'href="/archive/cepiug/{approved_id}"' not in listing.text
    assert web.client.get(f"/archive/cepiug/{approved_id}").status_code == 404
    assert web.client.get(f"/archive/uk/{sent_id}").status_code == 404
    assert "No edition has been sent yet" in web.client.get("/archive/uk").text

    page = web.client.get(f"/archive/cepiug/{sent_id}")
    assert page.status_code == 200
    assert "Espacenet gets a new look" in page.text
    assert "Not sent yet" not in page.text
    [delivered] = [m for m in web.mails() if m.edition_id == sent_id]
    personal = re.search(r"/unsubscribe/([^>]+)>", body_of(delivered)["List-Unsubscribe"])
    assert personal
    text_part = body_of(delivered).get_body(("plain",))
    assert text_part is not None
    assert personal.group(1) in text_part.get_content()
    assert personal.group(1) not in page.text
    assert re.search(r"/(unsubscribe|preferences|confirm)/[\w.-]{8,}", page.text) is None
    assert "Reader Person" not in page.text
    assert "reader@example.org" not in page.text
    # The archive page is the site's, not the email: no unsubscribe link at all.
    assert "/unsubscribe" not in page.text

    response = web.client.get("/archive/cepiug/feed.atom")
    assert response.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.title.startswith("CEPIUG")
    [entry] = feed.entries
    assert entry.link == f"https://news.example.org/archive/cepiug/{sent_id}"
    assert entry.id == entry.link
    assert entry.updated_parsed is not None
    assert personal.group(1) not in response.text


def _event(cli: Cli, title: str, *, group: str = "cepiug", start: str = "2026-12-03T14:00+01:00") -> str:
    """Queue an event item for the group; its id."""
    added = cli("items", "add", "--kind", "event", "--title", title, "--start", start, "--group", group)
    found = re.search(r"#(\d+)", added.stdout)
    assert found
    return found.group(1)


def _built(cli: Cli, slug: str) -> str:
    """Build and approve the group's next edition; its id."""
    built = re.search(r"edition #(\d+)", cli("editions", "build", slug).stdout)
    assert built
    cli("editions", "approve", built.group(1))
    return built.group(1)


def test_event_is_an_ics_file_that_parses(web: Web, cli: Cli) -> None:
    """An event sent in an edition downloads as an iCalendar file with its title, times and place."""
    sign_up(web, "cepiug", "cal@example.org")
    added = cli(
        "items",
        "add",
        "--kind",
        "event",
        "--title",
        "PATLIB webinar",
        "--url",
        "https://example.org/webinar",
        "--start",
        "2026-12-03T14:00+01:00",
        "--end",
        "2026-12-03T15:30+01:00",
        "--place",
        "Online",
        "--group",
        "cepiug",
    )
    found = re.search(r"#(\d+)", added.stdout)
    assert found
    event_id = found.group(1)
    cli("items", "approve", event_id)
    runner.send_edition(
        web.site, Renderer(web.site.settings), web.transport, int(_built(cli, "cepiug")), actor="test"
    )
    response = web.client.get(f"/events/{event_id}.ics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.content)
    [event] = calendar.walk("VEVENT")
    assert str(event["summary"]) == "PATLIB webinar"
    assert event.decoded("dtstart") == datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    assert event.decoded("dtend") == datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
    assert str(event["location"]) == "Online"
    assert str(event["uid"]).startswith(f"item-{event_id}@")
    assert web.client.get("/events/999.ics").status_code == 404


def test_only_events_of_sent_editions_are_served(web: Web, cli: Cli) -> None:
    """Proposed, rejected and unsent events and plain news are 404 by id; a sent event is served."""
    sign_up(web, "cepiug", "cal@example.org")
    sent = _event(cli, "Sent webinar")
    cli("items", "approve", sent)
    runner.send_edition(
        web.site, Renderer(web.site.settings), web.transport, int(_built(cli, "cepiug")), actor="test"
    )
    proposed = _event(cli, "Proposed meeting")
    rejected = _event(cli, "Rejected meeting")
    cli("items", "reject", rejected)
    waiting = _event(cli, "In an approved edition, not sent yet")
    cli("items", "approve", waiting)
    _built(cli, "cepiug")
    news = cli("items", "add", "--title", "Plain news", "--url", "https://example.org/plain")
    plain = re.search(r"#(\d+)", news.stdout)
    assert plain
    assert web.client.get(f"/events/{sent}.ics").status_code == 200
    for item in (proposed, rejected, waiting, plain.group(1)):
        response = web.client.get(f"/events/{item}.ics")
        assert response.status_code == 404, item
        assert b"BEGIN:VCALENDAR" not in response.content


# -- security --------------------------------------------------------------------------------


def test_security_headers_on_every_response(page_web: Web, site_dir: Path, sqlite_url: str) -> None:
    """Every response, page or file or error, has the CSP, no framing and nosniff."""
    web, cli = page_web, Cli(site_dir, sqlite_url)
    sign_up(web, "cepiug", "h@example.org")
    send_edition(web, cli, "cepiug", "Headers")
    cli("items", "add", "--kind", "event", "--title", "E", "--start", "2026-12-03T14:00+01:00")
    unsubscribe = token(web, "unsubscribe", "h@example.org", "cepiug")
    preferences = token(web, "preferences", "h@example.org", "cepiug")
    paths = [
        "/",
        "/subscribe/cepiug",
        f"/confirm/{token(web, 'confirm', 'h@example.org', 'cepiug')}",
        "/confirm/forged",
        f"/unsubscribe/{unsubscribe}",
        "/unsubscribe",
        f"/preferences/{preferences}",
        f"/preferences/{preferences}/export",
        "/preferences",
        "/archive/cepiug",
        "/archive/cepiug/1",
        "/archive/cepiug/feed.atom",
        "/events/2.ics",
        "/no/such/page",
        "/archive/nope",
    ]
    responses = [web.client.get(path) for path in paths]
    responses += [
        web.client.post("/subscribe/cepiug", data={}),
        web.provider().post(f"/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"}),
        web.client.delete("/subscribe/cepiug"),
    ]
    assert {r.status_code for r in responses} == {200, 400, 403, 404, 405}
    for response in responses:
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, response.url
        assert "default-src 'none'" in csp
        # Scripts only from the site itself (the vendored htmx): never inline, never eval.
        assert "script-src 'self';" in csp
        assert response.headers.get("x-frame-options") == "DENY"
        assert response.headers.get("x-content-type-options") == "nosniff"
        assert response.headers.get("referrer-policy") == "no-referrer"


def _http_routes(
    routes: Sequence[BaseRoute], prefix: str = "", outer: dict[str, Convertor[Any]] | None = None
) -> Iterator[tuple[str, set[str], dict[str, Convertor[Any]]]]:
    """Each HTTP route of the app: path template, methods, parameter types; through mounts to any depth."""
    for route in routes:
        convertors = {**(outer or {}), **getattr(route, "param_convertors", {})}
        if isinstance(route, Mount):
            # The mount's own path, without the {path} that stands for the rest of the URL.
            mount = prefix + re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
            convertors.pop("path", None)
            if route.routes:
                yield from _http_routes(route.routes, mount, convertors)
            else:
                # A mounted app without a route table (static files): its root stands for it.
                yield f"{mount}/", {"GET", "HEAD"}, convertors
        else:
            assert isinstance(route, Route), f"{route!r} is a kind of route this test cannot call yet"
            yield prefix + route.path_format, set(route.methods or {"GET", "HEAD"}), convertors


def test_every_route_of_the_app_answers_with_the_security_headers(
    page_web: Web, site_dir: Path, sqlite_url: str
) -> None:
    """Every route in the app's route table, each method, good and bad parameters: every security header."""
    web, cli = page_web, Cli(site_dir, sqlite_url)
    sign_up(web, "cepiug", "routes@example.org")
    edition_id = send_edition(web, cli, "cepiug", "Every route")
    added = cli("items", "add", "--kind", "event", "--title", "E", "--start", "2026-12-03T14:00+01:00")
    event = re.search(r"#(\d+)", added.stdout)
    assert event
    starlette = web.app.app
    assert isinstance(starlette, Starlette), "create_app no longer wraps the Starlette app in SecurityHeaders"
    routes = list(_http_routes(starlette.routes))
    assert len(routes) >= 14
    # Real values where the test knows the parameter, so that pages answer 200 as well as 4xx;
    # a token is made for the purpose its path names (/confirm/{token}: a confirmation token).
    known = {"group": "cepiug", "edition": str(edition_id), "item": event.group(1), "name": "htmx.min.js"}
    statuses: set[int] = set()
    for template, methods, convertors in routes:
        segment = template.strip("/").split("/")[0]
        purpose = cast(Purpose, segment) if segment in get_args(Purpose) else "preferences"
        real = {n: known.get(n) or token(web, purpose, "routes@example.org", "cepiug") for n in convertors}
        junk = {
            n: "999999" if isinstance(c, IntegerConvertor) else "no-such-thing" for n, c in convertors.items()
        }
        for values in (real, junk):
            path = template.format(**values)
            for method in sorted(methods | {"DELETE"}):
                response = web.client.request(method, path, data={} if method == "POST" else None)
                statuses.add(response.status_code)
                # The example site is https, so HSTS is among them.
                for name, value in (*SECURITY_HEADERS, HSTS):
                    assert response.headers.get(name.decode()) == value.decode(), (method, path, name)
    # Pages, refusals, missing things and wrong methods were all among the answers.
    assert {200, 400, 403, 404, 405} <= statuses


def _form_request(web: Web, form: str) -> tuple[str, dict[str, Any]]:
    """The URL and a correct body (less the CSRF field) for one of the site's forms."""
    preferences = f"/preferences/{token(web, 'preferences', 'csrf@example.org', 'cepiug')}"
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "subscribe": ("/subscribe/cepiug", {"email": "csrf-new@example.org", "consent": "yes"}),
        "confirm": (f"/confirm/{token(web, 'confirm', 'csrf-pending@example.org', 'cepiug')}", {}),
        "unsubscribe": (
            f"/unsubscribe/{token(web, 'unsubscribe', 'csrf@example.org', 'cepiug')}/confirm",
            {"everything": "yes"},
        ),
        "preferences": (preferences, {"groups": ["dach"], "name": "Changed", "language": "fr"}),
        "forget": (f"{preferences}/forget", {}),
    }
    return requests[form]


@pytest.mark.parametrize("form", ["subscribe", "confirm", "unsubscribe", "preferences", "forget"])
def test_csrf_is_required_on_every_form(page_web: Web, form: str) -> None:
    """A form POST without the CSRF token matching the visitor's cookie is a 403 and changes nothing."""
    web = page_web
    sign_up(web, "cepiug", "csrf@example.org", name="Kept")
    subscribe(web, "cepiug", "csrf-pending@example.org")
    url, data = _form_request(web, form)
    mine = csrf_of(web.client.get("/subscribe/cepiug").text)
    theirs = csrf_of(web.provider().get("/subscribe/cepiug").text)
    before = snapshot(web)
    attacks = {
        "missing": (web.client, {}),
        "forged": (web.client, {"csrf": "0" * 64}),
        "empty": (web.client, {"csrf": ""}),
        "another visitor's": (web.client, {"csrf": theirs}),
        "no cookie": (web.provider(), {"csrf": mine}),
    }
    for attack, (client, extra) in attacks.items():
        response = client.post(url, data=data | extra)
        assert response.status_code == 403, attack
        assert "Request refused" in response.text
        assert snapshot(web) == before, attack
    # The same request with the right token goes through: the 403s were about CSRF alone.
    assert web.client.post(url, data=data | {"csrf": mine}).status_code == 200
    assert snapshot(web) != before


def test_nothing_a_subscriber_types_is_rendered_unescaped(page_web: Web) -> None:
    """Markup in a name or address comes back escaped on every page that shows it."""
    web = page_web
    attack = f'"><img src=x onerror=alert(1)>{SCRIPT}'
    sign_up(web, "cepiug", "xss@example.org", name=attack)
    stored = subscriber(web, "xss@example.org").name
    assert stored == " ".join(attack.split())
    preferences = web.client.get(f"/preferences/{token(web, 'preferences', 'xss@example.org', 'cepiug')}")
    assert preferences.status_code == 200
    assert str(escape(stored)) in preferences.text
    refused = subscribe(web, "cepiug", f"{SCRIPT}@example.org", name=attack)
    no_consent = subscribe(web, "uk", "xss2@example.org", name=attack, consent=False)
    assert str(escape(attack)) in no_consent.text
    for page in (preferences, refused, no_consent):
        assert "<script>" not in page.text
        assert "<img src=x" not in page.text
    assert "&lt;script&gt;" in refused.text


def test_index_and_generic_pages(page_web: Web) -> None:
    """The front page lists each group's sign-up and archive; the archive's neutral links only explain."""
    page = page_web.client.get("/")
    assert page.status_code == 200
    for slug in ("cepiug", "uk", "dach", "fr"):
        assert f'href="/subscribe/{slug}"' in page.text
        assert f'href="/archive/{slug}"' in page.text
    assert "Patentinformation DACH (Beispiel)" in page.text
    for path in ("/unsubscribe", "/preferences"):
        generic = page_web.client.get(path)
        assert generic.status_code == 200
        assert "personal to you" in generic.text
    assert page_web.client.post("/unsubscribe", data={"List-Unsubscribe": "One-Click"}).status_code == 405


# -- languages -------------------------------------------------------------------------------

LANGUAGE_CASES = [
    # path, Accept-Language, expected page language, a string on the page
    ("/subscribe/cepiug", None, "en", "Email address"),
    ("/subscribe/dach", None, "de", "E-Mail-Adresse"),
    ("/subscribe/fr", None, "fr", "Adresse e-mail"),
    ("/subscribe/cepiug", "de-DE,de;q=0.9,en;q=0.5", "de", "E-Mail-Adresse"),
    ("/subscribe/cepiug", "fr-CH, fr;q=0.9", "fr", "Adresse e-mail"),
    ("/subscribe/cepiug", "it, fr;q=0.2, de;q=0.8", "de", "E-Mail-Adresse"),
    ("/subscribe/cepiug", "de;q=0, fr", "fr", "Adresse e-mail"),
    ("/subscribe/dach", "en-GB", "en", "Email address"),
    ("/subscribe/dach", "ja, *;q=0.1", "de", "E-Mail-Adresse"),
    ("/subscribe/dach", "de;q=nonsense,,;", "de", "E-Mail-Adresse"),
    ("/subscribe/cepiug?lang=fr", "de", "fr", "Adresse e-mail"),
    ("/subscribe/fr?lang=xx", None, "fr", "Adresse e-mail"),
    ("/?lang=de", None, "de", "Abonnieren"),
    ("/archive/fr", None, "fr", "Aucune édition n'a encore été envoyée."),
    ("/archive/cepiug?lang=de", None, "de", "Es wurde noch keine Ausgabe versandt."),
]


def test_page_language_follows_lang_then_accept_language_then_the_group(page_web: Web) -> None:
    """Public pages speak ?lang=, else the browser's best-rated language we have, else the group's."""
    for path, accept, language, expected in LANGUAGE_CASES:
        headers = {"accept-language": accept} if accept else {}
        page = page_web.client.get(path, headers=headers)
        assert page.status_code == 200, (path, accept)
        assert f'<html lang="{language}">' in page.text, (path, accept)
        assert expected in html.unescape(page.text), (path, accept)


def test_personal_pages_speak_the_subscribers_language(page_web: Web) -> None:
    """Confirmation, unsubscribe and error pages follow the subscriber's language, not the browser's."""
    web = page_web
    subscribe(web, "dach", "dieter@example.org")
    [message] = web.mails()
    assert body_of(message)["Subject"].startswith("Bitte bestätigen Sie Ihr Abonnement")
    page = web.client.get(confirm_path(message), headers={"accept-language": "en"})
    assert "Bestätigen Sie Ihr Abonnement" in page.text
    done = web.client.post(action_of(page.text), data={"csrf": csrf_of(page.text)})
    assert "Ihr Abonnement ist bestätigt" in done.text
    unsubscribe = web.client.get(f"/unsubscribe/{token(web, 'unsubscribe', 'dieter@example.org', 'dach')}")
    assert "Alle Listen dieser Website verlassen" in unsubscribe.text
    bad = web.client.get("/confirm/forged", headers={"accept-language": "fr"})
    assert "Ce lien ne fonctionne pas" in bad.text
    assert "Ce lien n'est pas valide" in html.unescape(bad.text)


def test_the_vendored_scripts_are_served_and_nothing_else(page_web: Web) -> None:
    """/static/ serves the files it names (htmx) and no other path, however it is written."""
    script = page_web.client.get("/static/htmx.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.text.startswith("var htmx=")
    for path in ("/static/htmx.LICENSE", "/static/..%2fapp.py", "/static/%2e%2e/static.py", "/static/"):
        assert page_web.client.get(path).status_code == 404, path


def test_rejoining_from_the_preferences_page_starts_a_fresh_bounce_record(web: Web) -> None:
    """A member who left uk with bounces on record and joins again from their own email starts at zero."""
    sign_up(web, "cepiug", "rejoin@example.org")
    sign_up(web, "uk", "rejoin@example.org")
    with web.site.transaction() as session:
        row = session.exec(
            select(Membership)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .join(Group, col(Group.id) == Membership.group_id)
            .where(col(Subscriber.email_key) == "rejoin@example.org", col(Group.slug) == "uk")
        ).one()
        row.bounce_score = 2.5
        session.add(row)
    path = f"/preferences/{token(web, 'preferences', 'rejoin@example.org', 'cepiug')}"
    page = web.client.get(path)
    web.client.post(action_of(page.text), data={"csrf": csrf_of(page.text), "groups": ["cepiug"]})
    assert status(web, "rejoin@example.org", "uk") == UNSUBSCRIBED
    page = web.client.get(path)
    web.client.post(action_of(page.text), data={"csrf": csrf_of(page.text), "groups": ["cepiug", "uk"]})
    rejoined = membership(web, "rejoin@example.org", "uk")
    assert rejoined is not None
    assert (rejoined.status, rejoined.bounce_score) == (ACTIVE, 0.0)


def test_preferences_offer_the_groups_topics_and_save_the_choice(web: Web) -> None:
    """The page lists a group's topics (all ticked without a choice); saving keeps the ticked ones,
    drops a topic the group does not offer, and unticking every one is everything again."""
    sign_up(web, "uk", "topics@example.org")
    path = f"/preferences/{token(web, 'preferences', 'topics@example.org', 'uk')}"
    page = web.client.get(path)
    # The example site's sources bring WIPO and EPO to the UK group.
    assert set(re.findall(r'name="topics-uk" value="([^"]+)" checked', page.text)) == {"EPO", "WIPO"}
    form = {"csrf": csrf_of(page.text), "groups": ["uk"], "topics-shown": ["uk"], "language": "en"}
    response = web.client.post(action_of(page.text), data={**form, "topics-uk": ["WIPO", "Forged"]})
    assert response.status_code == 200
    assert set(re.findall(r'name="topics-uk" value="([^"]+)" checked', response.text)) == {"WIPO"}
    assert 'name="topics-uk" value="EPO">' in response.text
    row = membership(web, "topics@example.org", "uk")
    assert row is not None
    assert row.topics == '["WIPO"]'
    web.client.post(action_of(page.text), data={**form, "csrf": csrf_of(response.text)})
    row = membership(web, "topics@example.org", "uk")
    assert row is not None
    assert row.topics is None
