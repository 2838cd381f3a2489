"""A confirmation email the relay refuses: recorded as a bounce, retried, or sent, with one page for all.

A real SMTP server (``tests/smtp_server.py``) refuses one recipient with ``550 5.1.1`` at
RCPT and another once with ``450 4.2.1``. The sign-up page answers every address the
same; the queue then records the 550 as a hard bounce of that pending member (through
the bounce policy), retries the 450, and sends the rest.
"""

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from newsletter.core import verp
from newsletter.core.models import DeliveryStatus, Event, MembershipStatus, utcnow
from tests.smtp_server import SmtpServer, running_server
from tests.test_web import membership, subscribe, subscriber
from tests.test_web_abuse import drain, queue, smtp_web

GONE = "gone@example.org"
BUSY = "busy@example.org"
FINE = "fine@example.org"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_server() as server:
        yield server


def test_a_refused_confirmation_is_a_hard_bounce_and_a_busy_one_is_retried(
    site_dir: Path, db_url: str, smtp: SmtpServer
) -> None:
    """550 5.1.1 at RCPT: the row fails, the pending member has a hard bounce; 450: retried; pages alike."""
    smtp.handler.rcpt_replies[GONE] = "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown"
    smtp.handler.rcpt_once[BUSY] = "450 4.2.1 Mailbox busy, try later"
    with smtp_web(site_dir, db_url, smtp) as web:
        answers = [subscribe(web, "cepiug", address) for address in (GONE, BUSY, FINE)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert len({a.text for a in answers}) == 1

        report = drain(web.site)
        assert (report.sent, report.retried, report.failed) == (1, 1, 1)
        rows = {row.subscriber_id: row for row in queue(web.site)}
        gone = subscriber(web, GONE)
        assert gone.id is not None
        refused = rows[gone.id]
        assert refused.status == DeliveryStatus.FAILED
        assert refused.last_error
        assert "5.1.1" in refused.last_error

        # The refusal went through the bounce policy: a hard bounce of the pending member.
        with web.site.transaction() as session:
            events = list(
                session.exec(
                    select(Event).where(col(Event.kind) == "bounce", col(Event.subscriber_id) == gone.id)
                )
            )
        [event] = events
        detail = json.loads(event.detail)
        assert (detail["verdict"], detail["status"], detail["via"]) == ("hard", "5.1.1", "smtp")
        # The site's policy (hard_is_final, the default) ends the pending membership at once.
        assert web.site.settings.bounces.hard_is_final
        assert detail["outcome"] == "bounced"
        ended = membership(web, GONE, "cepiug")
        assert ended is not None
        assert ended.status == MembershipStatus.BOUNCED
        # Nobody else was touched.
        for address in (BUSY, FINE):
            other = membership(web, address, "cepiug")
            assert other is not None
            assert other.bounce_score == 0

        # The busy mailbox is tried again when its turn comes, and gets its email.
        busy = rows[subscriber(web, BUSY).id or 0]
        assert busy.status == DeliveryStatus.QUEUED
        later = drain(web.site, now=utcnow() + timedelta(minutes=2))
        assert later.sent == 1
        [received] = smtp.to(BUSY)
        assert verp.decode(received.mail_from, web.site.settings.signing_key) == verp.VerpAddress(
            0, subscriber(web, BUSY).id or 0
        )
        assert smtp.to(GONE) == []
        # A later drain sends nothing more: the refused row is done with.
        assert not drain(web.site, now=utcnow() + timedelta(hours=2)).busy


def test_the_refused_address_gets_the_same_page_the_next_time(
    site_dir: Path, db_url: str, smtp: SmtpServer
) -> None:
    """After its refusal, a second sign-up with the same address still gets the usual page."""
    smtp.handler.rcpt_replies[GONE] = "550 5.1.1 <gone@example.org>: User unknown"
    with smtp_web(site_dir, db_url, smtp) as web:
        first = subscribe(web, "cepiug", GONE)
        drain(web.site)
        again = subscribe(web, "cepiug", GONE)
        fresh = subscribe(web, "cepiug", FINE)
        assert first.status_code == again.status_code == fresh.status_code == 200
        assert first.text == again.text == fresh.text


def test_without_hard_is_final_the_refusal_scores_the_pending_member(
    site_dir: Path, db_url: str, smtp: SmtpServer
) -> None:
    """With hard_is_final off, the 550 adds the hard weight to the pending membership's score."""
    smtp.handler.rcpt_replies[GONE] = "550 5.1.1 <gone@example.org>: User unknown"
    config = site_dir / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[bounces]\nhard_is_final = false\n")
    with smtp_web(site_dir, db_url, smtp) as web:
        assert not web.site.settings.bounces.hard_is_final
        subscribe(web, "cepiug", GONE)
        assert drain(web.site).failed == 1
        pending = membership(web, GONE, "cepiug")
        assert pending is not None
        assert pending.status == MembershipStatus.PENDING
        assert pending.bounce_score == web.site.settings.bounces.hard_weight
