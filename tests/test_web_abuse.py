"""The public pages under attack: enumeration, forged client addresses, replayed links, counting ids.

Against the real Starlette app on SQLite and PostgreSQL, a real SMTP server (aiosmtpd,
``tests/smtp_server.py``) for the confirmation emails, and a real ``newsletter serve``
(uvicorn on a socket) where the client's address matters.
"""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.models import ConfirmationMail, Consent, DeliveryStatus, utcnow
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery import confirmations
from newsletter.delivery.transports import open_transport
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.operations.status import site_status
from newsletter.scheduling.daemon import Daemon
from newsletter.web import create_app
from newsletter.web.security import SECURITY_HEADERS, RateLimits
from tests.conftest import Cli, migrated, wait_until
from tests.smtp_server import Received, SmtpServer, running_server
from tests.test_web import (
    ACTIVE,
    UNSUBSCRIBED,
    Web,
    _factory,
    confirm,
    confirm_path,
    csrf_of,
    membership,
    sign_up,
    status,
    subscribe,
    subscriber,
    token,
)
from tests.web_server import serving

KEY = "abuse-test-signing-key-0123456789abcdef"


@pytest.fixture
def web_on(site_dir: Path, db_url: str) -> Iterator[Callable[..., Web]]:
    """The app for the example site on SQLite and PostgreSQL (``test_web.py``'s), given its rate limits."""
    yield from _factory(site_dir, db_url)


@pytest.fixture
def members(web_on: Callable[..., Web]) -> Web:
    """The app with limits too high to matter, on SQLite and PostgreSQL."""
    return web_on()


@pytest.fixture
def web_on_sqlite(site_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """The same app on SQLite only, for what no database engine changes."""
    yield from _factory(site_dir, migrated(f"sqlite:///{tmp_path / 'pages.db'}"))


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_server() as server:
        yield server


@contextmanager
def smtp_web(site_dir: Path, url: str, smtp: SmtpServer, **env: str) -> Iterator[Web]:
    """The app on the example site and ``url``; its confirmation emails go over SMTP to ``smtp``.

    The memory transport of :class:`Web` stays unused: :func:`drain` sends through the
    site's own SMTP transport, as a worker does.
    """
    settings = load_settings(
        site_dir,
        env={
            "NEWSLETTER_SECRET_KEY": KEY,
            "NEWSLETTER_TRANSPORT": "smtp",
            "NEWSLETTER_SMTP_URL": smtp.url(),
            **env,
        },
        overrides={"database.url": url},
    )
    site = Site.open(settings)
    try:
        app = create_app(site, limits=RateLimits(1000, 1000))
        yield Web(site, MemoryTransport(), app, TestClient(app), Signer(KEY))
    finally:
        site.close()


def drain(site: Site, **kwargs: Any) -> confirmations.DrainReport:
    """Send the queued confirmation emails through the site's own transport, as a worker does."""
    transport = open_transport(site.settings)
    try:
        return confirmations.drain(site, transport, **kwargs)
    finally:
        transport.close()


def queue(site: Site) -> list[ConfirmationMail]:
    with site.transaction() as session:
        rows = list(session.exec(select(ConfirmationMail).order_by(col(ConfirmationMail.id))))
        for row in rows:
            session.expunge(row)
        return rows


def link_in(received: Received) -> str:
    """The path of the confirmation link in an email as the SMTP server got it."""
    part = received.message().get_body(("plain",))
    assert part is not None
    found = re.search(r"https://news\.example\.org(/confirm/\S+)", part.get_content())
    assert found, "the confirmation email has no link"
    return found.group(1)


def one_click(web: Web, address: str, slug: str = "cepiug") -> None:
    path = f"/unsubscribe/{token(web, 'unsubscribe', address, slug)}"
    assert web.provider().post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


# -- enumeration -----------------------------------------------------------------------------


def test_sign_up_answers_alike_for_known_new_and_ended_addresses_and_relay_down(
    site_dir: Path, db_url: str, smtp: SmtpServer
) -> None:
    """One status and page for a member, a newcomer, an ended member, relay up or down; no SMTP meanwhile."""
    with smtp_web(site_dir, db_url, smtp) as web:
        # A member, confirmed through the emailed link, and one who left again.
        for address in ("member@example.org", "left@example.org"):
            assert subscribe(web, "cepiug", address).status_code == 200
            assert drain(web.site).sent == 1
            assert confirm(web, link_in(smtp.to(address)[-1])).status_code == 200
        one_click(web, "left@example.org")
        connections = smtp.handler.connections
        answers = [subscribe(web, "cepiug", a) for a in ("member@example.org", "new@example.org")]
        answers.append(subscribe(web, "cepiug", "left@example.org"))
        smtp.handler.down = True
        answers.append(subscribe(web, "cepiug", "down@example.org"))
        answers.append(subscribe(web, "cepiug", "member@example.org"))
        assert [a.status_code for a in answers] == [200] * 5
        assert len({a.text for a in answers}) == 1
        assert "Check your inbox" in answers[0].text
        # Nothing was sent while the visitor waited: the emails are queued.
        assert smtp.handler.connections == connections
        assert [row.status for row in queue(web.site)][-5:] == [DeliveryStatus.QUEUED] * 5
        smtp.handler.down = False
        report = drain(web.site)
        # The member gets no second email; the others get theirs.
        assert (report.sent, report.skipped) == (3, 2)
        assert len(smtp.to("member@example.org")) == 1
        assert len(smtp.to("left@example.org")) == 2
        assert len(smtp.to("new@example.org")) == len(smtp.to("down@example.org")) == 1
        assert status(web, "member@example.org", "cepiug") == ACTIVE
        assert status(web, "left@example.org", "cepiug") == UNSUBSCRIBED


def test_relay_down_keeps_the_confirmation_queued_across_a_restart_until_it_goes_out(
    site_dir: Path, db_url: str, smtp: SmtpServer
) -> None:
    """Relay down: the usual 200 page; the email stays queued, survives a restart and goes out later."""
    smtp.handler.down = True
    with smtp_web(site_dir, db_url, smtp) as web:
        answer = subscribe(web, "cepiug", "patient@example.org")
        assert answer.status_code == 200
        assert "Check your inbox" in answer.text
        report = drain(web.site)
        assert (report.sent, report.retried) == (0, 1)
        [row] = queue(web.site)
        assert (row.status, row.attempts) == (DeliveryStatus.QUEUED, 1)
        assert row.last_error
        assert row.due_at > utcnow()
        with web.site.transaction() as session:
            assert site_status(session, web.site.settings).confirmations == {"queued": 1}
        # Not due yet: a drain now sends nothing and does not even try.
        smtp.handler.down = False
        connections = smtp.handler.connections
        assert not drain(web.site).busy
        assert smtp.handler.connections == connections
    # A restart: a new process opens the same database and finds the email waiting.
    with smtp_web(site_dir, db_url, smtp) as web:
        assert drain(web.site, now=utcnow() + timedelta(minutes=2)).sent == 1
        [received] = smtp.to("patient@example.org")
        assert received.message()["Subject"] == "Please confirm your subscription to CEPIUG"
        [row] = queue(web.site)
        assert row.status == DeliveryStatus.SENT
        assert confirm(web, link_in(received)).status_code == 200
        assert status(web, "patient@example.org", "cepiug") == ACTIVE


def test_worker_until_idle_sends_the_queued_confirmations(
    site_dir: Path, db_url: str, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`newsletter worker --until-idle` sends what sign-ups queued, over SMTP, once."""
    with smtp_web(site_dir, db_url, smtp) as web:
        for address in ("w1@example.org", "w2@example.org"):
            assert subscribe(web, "uk", address).status_code == 200
        assert smtp.messages == []
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp.url())
    cli = Cli(site_dir, db_url, migrate=False)
    result = cli("--transport", "smtp", "worker", "--until-idle")
    assert "confirmations: sent 2, skipped 0" in result.stdout
    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == ["w1@example.org", "w2@example.org"]
    again = cli("--transport", "smtp", "worker", "--until-idle")
    assert "confirmations: sent 0," in again.stdout
    assert len(smtp.messages) == 2


def test_daemon_sends_the_queued_confirmations(site_dir: Path, db_url: str, smtp: SmtpServer) -> None:
    """The daemon's confirmation job sends a sign-up's email within its interval, no schedule firing."""
    with smtp_web(site_dir, db_url, smtp) as web:
        settings = web.site.settings
        daemon = Daemon(web.site, lambda: open_transport(settings), confirmation_seconds=0.2)
        thread = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
        thread.start()
        try:
            assert subscribe(web, "dach", "daemon@example.org").status_code == 200
            assert wait_until(lambda: bool(smtp.to("daemon@example.org")))
        finally:
            daemon.request_stop()
            thread.join(timeout=60)
        assert not thread.is_alive()
        [row] = queue(web.site)
        assert row.status == DeliveryStatus.SENT


def test_two_drainers_never_claim_the_same_email(members: Web) -> None:
    web = members
    """A claimed email is the claimer's until its lease runs out; then another drainer may take it."""
    for n in range(3):
        subscribe(web, "cepiug", f"claim{n}@example.org")
    now = utcnow()
    first = confirmations.claim(web.site, "first", now=now)
    assert len(first) == 3
    assert confirmations.claim(web.site, "second", now=now) == []
    later = now + confirmations.LEASE + timedelta(seconds=1)
    assert confirmations.claim(web.site, "second", now=later) == first


# -- replays and overwrites ------------------------------------------------------------------


def test_a_confirmation_link_never_undoes_a_later_unsubscribe(members: Web) -> None:
    web = members
    """Confirmed, then unsubscribed: the same link, replayed within its two days, changes nothing."""
    sign_up(web, "cepiug", "replay@example.org")
    path = confirm_path(web.sent_to("replay@example.org")[-1])
    one_click(web, "replay@example.org")
    replay = confirm(web, path)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert status(web, "replay@example.org", "cepiug") == UNSUBSCRIBED


def test_a_pending_sign_up_ended_by_its_own_email_cannot_be_confirmed_afterwards(members: Web) -> None:
    web = members
    """The confirmation email's List-Unsubscribe ends the request; its link then confirms nothing."""
    subscribe(web, "uk", "changed-mind@example.org")
    path = confirm_path(web.sent_to("changed-mind@example.org")[-1])
    one_click(web, "changed-mind@example.org", "uk")
    assert status(web, "changed-mind@example.org", "uk") == UNSUBSCRIBED
    assert confirm(web, path).status_code == 400
    assert status(web, "changed-mind@example.org", "uk") == UNSUBSCRIBED
    # A new sign-up brings a new link, which works (once).
    subscribe(web, "uk", "changed-mind@example.org")
    fresh = confirm_path(web.sent_to("changed-mind@example.org")[-1])
    assert fresh != path
    assert confirm(web, fresh).status_code == 200
    assert status(web, "changed-mind@example.org", "uk") == ACTIVE
    assert "already confirmed" in confirm(web, fresh).text


def test_a_link_made_before_consent_requests_were_kept_cannot_revive_an_ended_member(members: Web) -> None:
    web = members
    """An old-style link (no consent request in it) may confirm a pending member only, never an ended one."""
    sign_up(web, "cepiug", "old-link@example.org")
    one_click(web, "old-link@example.org")
    old_style = f"/confirm/{token(web, 'confirm', 'old-link@example.org', 'cepiug')}"
    assert confirm(web, old_style).status_code == 400
    assert status(web, "old-link@example.org", "cepiug") == UNSUBSCRIBED


def test_an_unconfirmed_sign_up_does_not_overwrite_the_consent_on_record(members: Web) -> None:
    web = members
    """Every consent is kept; the membership's consent in force changes only when a new one is confirmed."""
    sign_up(web, "cepiug", "kept@example.org")
    one_click(web, "kept@example.org")
    before = membership(web, "kept@example.org", "cepiug")
    assert before is not None
    assert before.consent_ip == "testclient"
    stranger = TestClient(web.app, client=("192.0.2.66", 40000))
    web.client, own = stranger, web.client
    subscribe(web, "cepiug", "kept@example.org")
    web.client = own
    after = membership(web, "kept@example.org", "cepiug")
    assert after is not None
    assert (after.status, after.consent_ip, after.consent_at, after.consent_text) == (
        UNSUBSCRIBED,
        before.consent_ip,
        before.consent_at,
        before.consent_text,
    )
    with web.site.transaction() as session:
        kept = session.exec(select(Consent).order_by(col(Consent.id))).all()
        assert [(c.ip, c.confirmed_at is not None) for c in kept] == [
            ("testclient", True),
            ("192.0.2.66", False),
        ]
    # Confirmed, the new request becomes the consent in force.
    assert confirm(web, confirm_path(web.sent_to("kept@example.org")[-1])).status_code == 200
    confirmed = membership(web, "kept@example.org", "cepiug")
    assert confirmed is not None
    assert (confirmed.status, confirmed.consent_ip) == (ACTIVE, "192.0.2.66")


def test_a_name_from_the_sign_up_form_keeps_no_control_characters(members: Web) -> None:
    """Escape sequences and NULs typed into the form never reach the database, a header or a terminal."""
    sign_up(members, "cepiug", "ctrl@example.org", name="Ann\x1b]8;;http://evil\x07 \x00Lee\x1b[2J")
    assert subscriber(members, "ctrl@example.org").name == "Ann]8;;http://evil Lee[2J"


# -- rate limits -----------------------------------------------------------------------------


def test_the_per_address_limit_counts_plus_tags_and_case_as_one_mailbox(
    web_on_sqlite: Callable[..., Web],
) -> None:
    """a+x@ and A@ count against a@'s limit; each keeps its own spelling when stored."""
    web = web_on_sqlite(RateLimits(per_client_per_hour=100, per_address_per_hour=2))
    pages = [
        subscribe(web, "cepiug", spelling)
        for spelling in ("tagged+news@example.org", "Tagged+Other@Example.org", "tagged@example.org")
    ]
    assert {p.status_code for p in pages} == {200}
    assert len({p.text for p in pages}) == 1
    assert [m.recipient for m in web.mails()] == ["tagged+news@example.org", "Tagged+Other@example.org"]
    assert membership(web, "tagged@example.org", "cepiug") is None


def test_ipv6_clients_share_a_bucket_per_64(web_on_sqlite: Callable[..., Web]) -> None:
    """Hopping addresses inside one IPv6 /64 does not get past the per-client limit; another /64 does."""
    web = web_on_sqlite(RateLimits(per_client_per_hour=2, per_address_per_hour=100))
    answers = []
    for n, host in enumerate(
        ("2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1:ffff::3", "2001:db8:1:2::1")
    ):
        web.client = TestClient(web.app, client=(host, 40000))
        answers.append(subscribe(web, "cepiug", f"v6-{n}@example.org").status_code)
    assert answers == [200, 200, 429, 200]


# -- client addresses, through a real `newsletter serve` -------------------------------------


def post_sign_up(client: httpx.Client, address: str, forwarded_for: str) -> int:
    page = client.get("/subscribe/cepiug")
    data = {"csrf": csrf_of(page.text), "email": address, "consent": "yes"}
    return client.post("/subscribe/cepiug", data=data, headers={"x-forwarded-for": forwarded_for}).status_code


def consent_ips(cli: Cli) -> dict[str, str | None]:
    with cli.database() as session:
        rows = session.exec(select(Consent.ip, Consent.subscriber_id).order_by(col(Consent.id))).all()
    return {str(sid): ip for ip, sid in rows}


def test_forwarded_for_is_not_believed_without_a_trusted_proxy(cli: Cli, tmp_path: Path) -> None:
    """From 127.0.0.1, X-Forwarded-For picks neither the rate-limit bucket nor the IP recorded as consent."""
    cli("migrate")
    with (
        serving(cli.site, cli.db_url, tmp_path / "serve.log", NEWSLETTER_SECRET_KEY=KEY) as base,
        httpx.Client(base_url=base) as client,
    ):
        statuses = [post_sign_up(client, f"spoof{n}@example.org", f"203.0.113.{n}") for n in range(11)]
    # The default limit is ten sign-ups an hour per client, whatever each request claims to be.
    assert statuses == [200] * 10 + [429]
    assert set(consent_ips(cli).values()) == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_trusted_proxy_only_as_far_as_the_proxy(
    cli: Cli, tmp_path: Path
) -> None:
    """Behind a trusted proxy the client is the address the proxy appended, not what the client wrote."""
    with (cli.site / "newsletter.toml").open("a") as config:
        config.write('\n[web]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8"]\n')
    cli("migrate")
    with (
        serving(cli.site, cli.db_url, tmp_path / "serve.log", NEWSLETTER_SECRET_KEY=KEY) as base,
        httpx.Client(base_url=base) as client,
    ):
        # The client wrote the first entry itself; the proxy (10.1.2.3 after 127.0.0.1) appended the rest.
        assert post_sign_up(client, "behind@example.org", "198.51.100.7, 203.0.113.9, 10.1.2.3") == 200
        statuses = [post_sign_up(client, f"many{n}@example.org", "203.0.113.9") for n in range(10)]
        other = post_sign_up(client, "other@example.org", "203.0.113.10")
    assert statuses == [200] * 9 + [429]
    assert other == 200
    assert set(consent_ips(cli).values()) == {"203.0.113.9", "203.0.113.10"}


def test_trusted_proxies_must_be_addresses_or_networks(cli: Cli) -> None:
    """A proxy that is not an IP address or network is a configuration error naming the value."""
    with (cli.site / "newsletter.toml").open("a") as config:
        config.write('\n[web]\ntrusted_proxies = ["proxy.example.org"]\n')
    result = cli("check", ok=False)
    assert result.exit_code != 0
    assert "proxy.example.org" in result.output
    assert "Traceback" not in result.output


# -- HSTS ------------------------------------------------------------------


def test_hsts_only_when_the_site_is_https(site_dir: Path, tmp_path: Path) -> None:
    """Strict-Transport-Security is sent when [site] base_url is https, and not for a plain http site."""
    sqlite_url = migrated(f"sqlite:///{tmp_path / 'hsts.db'}")
    for base_url, expected in (("https://news.example.org", True), ("http://news.example.org", False)):
        settings = load_settings(
            site_dir,
            env={"NEWSLETTER_SECRET_KEY": KEY, "NEWSLETTER_BASE_URL": base_url},
            overrides={"database.url": sqlite_url},
        )
        site = Site.open(settings)
        try:
            client = TestClient(create_app(site))
            for path in ("/", "/subscribe/cepiug", "/no/such/page"):
                response = client.get(path)
                assert ("strict-transport-security" in response.headers) is expected, (base_url, path)
                for name, value in SECURITY_HEADERS:
                    assert response.headers.get(name.decode()) == value.decode()
            if expected:
                assert client.get("/").headers["strict-transport-security"] == "max-age=31536000"
        finally:
            site.close()
