"""Outbound webhooks: signed, posted to a real HTTP receiver, retried, scoped, refused when private.

The receiver is a real ``http.server`` on 127.0.0.1; its address is loopback, so each
endpoint that should reach it says ``allow_private = true``, as a site would for an
intranet receiver. Signatures are checked here with an HMAC computed independently of
the code under test.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.core.errors import ConfigError
from newsletter.core.models import WebhookDelivery, WebhookEvent, utcnow
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.core.webhookevents import topic_of
from newsletter.delivery import webhooks
from newsletter.delivery.webhooks import sender
from tests.conftest import Cli
from tests.smtp_server import free_port
from tests.workspace import ADMIN, EDITOR, OTHER_EDITOR, Workspace, session_for, workspaces

KEY = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Receiver:
    """A webhook receiver: records each POST (headers, raw body) and answers ``status`` with ``answer``."""

    port: int
    status: int = 204
    answer: bytes = b""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    # Set: the receiver holds each answer until the event is set (a receiver that hangs).
    hold: threading.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/newsletter"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if receiver.hold is not None:
                receiver.hold.wait(60)
            self.send_response(receiver.status)
            self.send_header("Content-Length", str(len(receiver.answer)))
            self.end_headers()
            self.wfile.write(receiver.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client that stops reading at its limit is not the server's error.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Quiet(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def verify(headers: dict[str, str], body: bytes) -> None:
    """The Standard Webhooks check, written here from the spec: v1,base64(HMAC-SHA256(id.timestamp.body))."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert abs(int(headers["webhook-timestamp"]) - int(utcnow().timestamp())) < 300
    assert headers["webhook-id"].startswith("msg_")
    assert headers["content-type"] == "application/json"


def declare(site: Path, secret_file: Path, url: str, **options: Any) -> None:
    """Append one [[webhooks]] table to the site's newsletter.toml."""
    lines = ["", "[[webhooks]]", f'url = "{url}"', f'secret_file = "{secret_file}"']
    options.setdefault("name", "crm")
    for key, value in options.items():
        lines.append(f"{key} = {json.dumps(value)}")
    with (site / "newsletter.toml").open("a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "webhook"
    path.parent.mkdir()
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


@contextmanager
def opened(cli: Cli) -> Iterator[Site]:
    site = Site.open(load_settings(cli.site, env={}, overrides={"database.url": cli.db_url}))
    try:
        yield site
    finally:
        site.close()


def deliveries(site: Site) -> list[WebhookDelivery]:
    with site.transaction() as session:
        return list(session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))))


def test_a_signed_event_reaches_a_real_receiver_once(cli: Cli, secret_file: Path) -> None:
    """A member added in uk is posted to the site's endpoint, signed as Standard Webhooks say, once."""
    with receiving(Receiver(free_port())) as receiver:
        declare(cli.site, secret_file, receiver.url, allow_private=True, events=["member.subscribed"])
        cli("subscribers", "add", "uk", "ann@example.org", "--name", "Ann")
        with opened(cli) as site:
            report = webhooks.run(site)
            assert report.queued == 1
            assert len(report.delivered) == 1
            assert len(receiver.received) == 1
            headers, body = receiver.received[0]
            verify(headers, body)
            payload = json.loads(body)
            assert payload["type"] == "member.subscribed"
            assert payload["data"]["group"] == "uk"
            assert payload["data"]["member"] == {
                "email": "ann@example.org",
                "name": "Ann",
                "language": None,
                "status": "active",
            }
            [row] = deliveries(site)
            assert (row.status, row.attempts, row.last_status) == ("delivered", 1, 204)
            assert headers["webhook-id"] == row.message_id
            # Another round, even much later, posts nothing again.
            webhooks.run(site, utcnow() + timedelta(days=2))
            assert len(receiver.received) == 1
            with site.transaction() as session:
                assert session.exec(select(WebhookEvent)).all() == []


def test_a_receiver_that_is_down_gets_the_event_later_exactly_once(cli: Cli, secret_file: Path) -> None:
    """Nothing listens at first: the attempt fails and waits; once up, the receiver gets it, once."""
    receiver = Receiver(free_port())
    declare(cli.site, secret_file, receiver.url, allow_private=True)
    cli("subscribers", "add", "uk", "bo@example.org")
    cli("subscribers", "add", "uk", "cy@example.org")
    with opened(cli) as site:
        start = utcnow()
        report = webhooks.run(site, start)
        # The endpoint could not be reached: its second delivery waits for the next round.
        assert len(report.retrying) == 1
        assert not report.delivered
        first, second = deliveries(site)
        assert (first.status, first.attempts, first.last_status) == ("queued", 1, None)
        assert "cannot fetch" in first.last_error
        assert first.next_attempt_at == start + sender.backoff(1)
        assert second.attempts == 0
        with receiving(receiver):
            # The row never tried goes at once; the failed one waits for its backoff.
            soon = webhooks.run(site, start + timedelta(seconds=1))
            assert soon.delivered == ["member.subscribed to crm (HTTP 204)"]
            assert [row.status for row in deliveries(site)] == ["queued", "delivered"]
            later = start + sender.backoff(1) + timedelta(seconds=1)
            assert len(webhooks.run(site, later).delivered) == 1
            assert webhooks.run(site, later + timedelta(days=1)).delivered == []
        emails = sorted(body["data"]["member"]["email"] for body in receiver.bodies())
        assert emails == ["bo@example.org", "cy@example.org"]
        for headers, body in receiver.received:
            verify(headers, body)
        assert [row.status for row in deliveries(site)] == ["delivered", "delivered"]


def test_deliveries_to_an_endpoint_taken_out_of_the_site_are_given_up_with_the_reason(
    cli: Cli, secret_file: Path
) -> None:
    """Queued deliveries whose endpoint was removed from newsletter.toml are not left waiting for ever."""
    receiver = Receiver(free_port())
    declare(cli.site, secret_file, receiver.url, allow_private=True)
    cli("subscribers", "add", "uk", "bo@example.org")
    with opened(cli) as site:
        webhooks.run(site)  # nothing listens: the delivery waits for its retry
        assert [row.status for row in deliveries(site)] == ["queued"]
    config = cli.site / "newsletter.toml"
    config.write_text(config.read_text().split("\n[[webhooks]]\n")[0] + "\n")
    with opened(cli) as site:
        report = webhooks.run(site)
        assert report.given_up == [
            "member.subscribed to crm (the endpoint is no longer in the site's configuration)"
        ]
        (row,) = deliveries(site)
        assert row.status == "failed"
        assert row.last_error == "the endpoint is no longer in the site's configuration"
        assert webhooks.run(site).given_up == []


def test_a_claim_left_by_a_process_that_died_is_delivered_after_its_lease(
    cli: Cli, secret_file: Path
) -> None:
    """A deliverer that claimed a row and died before posting leaves it to the next, once its lease lapses."""
    with receiving(Receiver(free_port())) as receiver:
        declare(cli.site, secret_file, receiver.url, allow_private=True)
        cli("subscribers", "add", "dach", "dora@example.org")
        with opened(cli) as site:
            assert webhooks.dispatch(site) == 1
            now = utcnow()
            hooks = {hook.name: hook for hook in site.settings.webhooks}
            assert sender._claim(site, now, "died", hooks, set()) is not None
            assert webhooks.deliver(site, now).delivered == []
            assert receiver.received == []
            after = now + timedelta(seconds=hooks["crm"].timeout) + sender.LEASE_SLACK + timedelta(seconds=1)
            assert len(webhooks.deliver(site, after).delivered) == 1
            assert len(receiver.received) == 1


def test_a_long_answer_is_cut_and_a_hanging_receiver_times_out(cli: Cli, secret_file: Path) -> None:
    """Only the start of an answer is read and kept; a receiver that does not answer is a failed attempt."""
    with receiving(Receiver(free_port(), status=200, answer=b"x" * 1_000_000)) as receiver:
        declare(cli.site, secret_file, receiver.url, allow_private=True)
        cli("subscribers", "add", "uk", "ivy@example.org")
        with opened(cli) as site:
            assert len(webhooks.run(site).delivered) == 1
            [row] = deliveries(site)
            assert row.last_status == 200
            assert row.last_response == "x" * sender.KEPT_CHARACTERS
    hold = threading.Event()
    hanging = Receiver(free_port(), hold=hold)
    with receiving(hanging):
        declare(cli.site, secret_file, hanging.url, name="slow", allow_private=True, timeout=0.5)
        cli("subscribers", "add", "uk", "jo@example.org")
        try:
            with opened(cli) as site:
                report = webhooks.run(site)
                slow = f"member.subscribed to slow (timed out fetching {hanging.url}: a fetch may take 0.5 s)"
                assert slow in report.retrying
        finally:
            hold.set()


def test_a_private_address_is_refused_unless_allowed_and_recorded(cli: Cli, secret_file: Path) -> None:
    """Without allow_private the loopback receiver is never reached; the refusal is an attempt on record."""
    with receiving(Receiver(free_port())) as receiver:
        declare(cli.site, secret_file, receiver.url)
        cli("subscribers", "add", "uk", "eve@example.org")
        with opened(cli) as site:
            report = webhooks.run(site)
            assert len(report.retrying) == 1
        assert receiver.received == []
        listed = json.loads(cli("webhooks", "list", "--json").stdout)
        [attempt] = listed[0]["recent"]
        assert attempt["status"] == "queued"
        assert attempt["attempts"] == 1
        assert "refused" in attempt["last_error"]
        assert "loopback" in attempt["last_error"]
        shown = cli("webhooks", "list").stdout
        assert "crm:" in shown
        assert "1 queued" in shown
        assert "refused" in shown
        # Its retry is not due yet: the command posts nothing and says so.
        assert "nothing was due" in cli("webhooks", "deliver").stdout


def test_an_event_of_another_group_does_not_reach_a_group_endpoint(cli: Cli, secret_file: Path) -> None:
    """An endpoint for uk gets uk's members and items meant for uk, nothing of dach's."""
    with receiving(Receiver(free_port())) as receiver:
        declare(cli.site, secret_file, receiver.url, allow_private=True, groups=["uk"])
        cli("subscribers", "add", "dach", "dirk@example.org")
        cli("subscribers", "add", "uk", "una@example.org")
        cli("items", "add", "--title", "DACH meeting", "--group", "dach")
        cli("items", "add", "--title", "Shared survey", "--group", "dach", "--group", "uk")
        with opened(cli) as site:
            webhooks.run(site)
        bodies = receiver.bodies()
        assert sorted(body["type"] for body in bodies) == ["item.proposed", "member.subscribed"]
        member = next(body for body in bodies if body["type"] == "member.subscribed")
        assert member["data"]["member"]["email"] == "una@example.org"
        item = next(body for body in bodies if body["type"] == "item.proposed")
        # The endpoint is told only of the groups it is for.
        assert item["data"]["item"]["title"] == "Shared survey"
        assert item["data"]["item"]["groups"] == ["uk"]


def test_erasing_a_person_deletes_their_queued_webhooks(cli: Cli, secret_file: Path) -> None:
    """`subscribers forget` leaves no captured event nor queued body holding the address."""
    declare(cli.site, secret_file, f"http://127.0.0.1:{free_port()}/", allow_private=True)
    cli("subscribers", "add", "uk", "fay@example.org")
    with opened(cli) as site:
        assert webhooks.dispatch(site) == 1
    # Captured, not yet dispatched.
    cli("subscribers", "add", "dach", "fay@example.org")
    cli("subscribers", "forget", "fay@example.org", "--yes")
    with opened(cli) as site:
        assert deliveries(site) == []
        with site.transaction() as session:
            assert session.exec(select(WebhookEvent)).all() == []


def test_the_secret_never_comes_from_the_file(cli: Cli, tmp_path: Path) -> None:
    """A secret written in newsletter.toml is refused; secret_env reads it from the environment."""
    with (cli.site / "newsletter.toml").open("a") as file:
        file.write('\n[[webhooks]]\nname = "crm"\nurl = "https://crm.example.org/"\nsecret = "whsec_x"\n')
    with pytest.raises(ConfigError, match="secrets are never read from this file"):
        load_settings(cli.site, env={})
    text = (
        (cli.site / "newsletter.toml").read_text().replace('secret = "whsec_x"', 'secret_env = "CRM_SECRET"')
    )
    (cli.site / "newsletter.toml").write_text(text)
    settings = load_settings(cli.site, env={"CRM_SECRET": SECRET})
    assert settings.webhook_secrets["crm"].get_secret_value() == SECRET
    assert SECRET not in repr(settings)


def test_run_due_posts_the_proposals_its_collect_made(cli: Cli, secret_file: Path) -> None:
    """One scheduler tick: the feed entries waiting for an editor are posted as item.proposed."""
    with receiving(Receiver(free_port())) as receiver:
        declare(cli.site, secret_file, receiver.url, allow_private=True, events=["item.proposed"])
        result = cli("run-due", "--at", "2026-11-23T10:00:00+01:00")
        assert "webhooks: delivered item.proposed to crm" in result.stdout
    bodies = receiver.bodies()
    assert bodies
    assert {body["type"] for body in bodies} == {"item.proposed"}
    assert all(body["data"]["item"]["status"] == "proposed" for body in bodies)
    for headers, body in receiver.received:
        verify(headers, body)


def test_an_edition_is_announced_approved_then_sent_once_each(
    cli: Cli, secret_file: Path, smtp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approving and sending an edition to a real SMTP server posts edition.approved and edition.sent."""
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "webhook-test-signing-key-0123456789abcdef")
    with receiving(Receiver(free_port())) as receiver:
        declare(
            cli.site,
            secret_file,
            receiver.url,
            allow_private=True,
            events=["edition.approved", "edition.sent"],
        )
        cli("subscribers", "add", "uk", "hal@example.org")
        cli(
            "items",
            "add",
            "--approve",
            "--group",
            "uk",
            "--title",
            "EPO news",
            "--url",
            "https://example.org/n",
        )
        edition_id = int(json.loads(cli("editions", "build", "uk", "--json").stdout)["id"])
        cli("editions", "approve", str(edition_id))
        cli("--transport", "smtp", "editions", "send", str(edition_id))
        cli("webhooks", "deliver")
        cli("webhooks", "deliver")
    bodies = receiver.bodies()
    assert [body["type"] for body in bodies] == ["edition.approved", "edition.sent"]
    sent = bodies[1]["data"]
    assert sent["group"] == "uk"
    assert sent["edition"]["id"] == edition_id
    assert sent["edition"]["status"] == "sent"
    assert sent["edition"]["sent"] == 1


def test_check_lists_a_webhook_whose_secret_is_missing(cli: Cli, secret_file: Path) -> None:
    """`newsletter check` names the endpoint whose variable is unset, with its line."""
    declare(cli.site, secret_file, "https://crm.example.org/hooks", name="fine")
    with (cli.site / "newsletter.toml").open("a") as file:
        file.write(
            '\n[[webhooks]]\nname = "unset"\nurl = "https://x.example.org/"\nsecret_env = "NO_SUCH_VAR"\n'
        )
    result = cli("check", ok=False)
    assert result.exit_code != 0
    assert "webhooks.unset.secret_env" in result.output
    assert "NO_SUCH_VAR is not set" in result.output
    assert "webhooks.fine" not in result.output


@pytest.fixture
def hooked_site(site_dir: Path, secret_file: Path) -> Path:
    """The example site with a site-wide endpoint and one for uk, both on a loopback receiver."""
    port = free_port()
    declare(site_dir, secret_file, f"http://127.0.0.1:{port}/site", name="everything", allow_private=True)
    declare(
        site_dir, secret_file, f"http://127.0.0.1:{port}/uk", name="uk-crm", allow_private=True, groups=["uk"]
    )
    (site_dir / "port").write_text(str(port))
    return site_dir


def test_the_workspace_shows_each_person_their_endpoints_and_escaped_answers(
    hooked_site: Path, db_url: str, smtp_server: Any
) -> None:
    """Admins see every endpoint; uk's editor only uk's; the receiver's answer is shown escaped."""
    cli = Cli(hooked_site, db_url, migrate=False)
    made = workspaces(cli, smtp_server)
    ws: Workspace = next(made)()
    try:
        receiver = Receiver(
            int((hooked_site / "port").read_text()), status=500, answer=b"<script>alert(1)</script>"
        )
        with receiving(receiver):
            cli("subscribers", "add", "uk", "gus@example.org")
            with opened(cli) as site:
                webhooks.run(site)
        assert len(receiver.received) == 2
        admin = session_for(ws, ADMIN).get("/admin/webhooks")
        assert admin.status_code == 200
        assert "everything" in admin.text
        assert "uk-crm" in admin.text
        assert "HTTP 500" in admin.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin.text
        assert "<script>alert" not in admin.text
        editor = session_for(ws, EDITOR)
        page = editor.get("/admin/groups/uk/webhooks")
        assert page.status_code == 200
        assert "uk-crm" in page.text
        assert "everything" not in page.text
        assert editor.get("/admin/webhooks").status_code == 403
        assert session_for(ws, OTHER_EDITOR).get("/admin/groups/uk/webhooks").status_code == 404
    finally:
        next(made, None)


def test_backoff_doubles_up_to_its_cap() -> None:
    """30 s, 60 s, 120 s, ... and never more than 6 hours between attempts."""
    assert [sender.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert sender.backoff(40) == sender.BACKOFF_CAP == timedelta(hours=6)


def test_only_the_record_that_moved_an_edition_is_news() -> None:
    """The runner's note of a pause someone else made is not a second edition.paused."""
    assert topic_of("edition-paused", {"moved": True}) == "edition.paused"
    assert topic_of("edition-paused", {"moved": False}) is None
    assert topic_of("edition-pause", {}) == "edition.paused"
    assert topic_of("bounce", {"outcome": "scored"}) is None
    assert topic_of("bounce", {"outcome": "bounced"}) == "member.bounced"
    assert topic_of("item-add", {"status": "approved"}) is None
    assert topic_of("sign-in", {}) is None
