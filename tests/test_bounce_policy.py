"""One bounce policy: a 5xx refusal at send time and a returned notice are judged and scored alike.

The send-time tests drive `editions send` through a real SMTP server on 127.0.0.1 that
refuses chosen recipients, and compare what the policy did with what `bounces process`
does for a failure notice (DSN) with the same status.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter import feedback
from newsletter.core import verp
from newsletter.core.models import Delivery, Event, Group, Membership, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.feedback import Incoming
from newsletter.feedback.policy import judge, reply_status
from tests.conftest import Cli
from tests.smtp_server import SmtpServer, running_server
from tests.test_bounces import dsn, original

KEY = "policy-test-signing-key-3c8e1f5a7b"
UK_LIST_ID = '"UK Patent Information Users (example)" <uk.example.org>'
# The keys of every bounce event, whichever path wrote it.
EVENT_KEYS = {"message_id", "verdict", "status", "reason", "permanent", "via", "outcome", "added", "score"}


@pytest.mark.parametrize(
    ("code", "text", "status"),
    [
        (550, "sofia@example.org refused: 550 5.1.1 <sofia@example.org>: user unknown", "5.1.1"),
        (552, "x@example.org refused: 552 5.2.2 Mailbox full", "5.2.2"),
        (550, "x@example.org refused: 550-5.1.1 The account does not exist\n5.1.1 Try again", "5.1.1"),
        (554, "user554@example.org refused: 554 5.7.1 Rejected", "5.7.1"),
        (550, "x@example.org refused: 550 Requested action not taken: mailbox unavailable", None),
        (550, "x@example.org refused: 550 4.2.1 class of the status differs from the reply's", None),
        (None, "x@example.net: the address needs SMTPUTF8", None),
    ],
)
def test_the_enhanced_status_is_read_from_the_reply(code: int | None, text: str, status: str | None) -> None:
    """The RFC 3463 code is the one right after the reply code, of the same class; else there is none."""
    assert reply_status(code, text) == status


def test_the_rule_is_the_one_dsns_get() -> None:
    """Hard needs a permanent failure and a gone status; a full mailbox or no status at all is soft."""
    assert judge(True, "5.1.1") == (True, "mailbox does not exist")
    assert judge(True, "5.2.2") == (False, "mailbox full")
    assert judge(True, None) == (False, "failed, no status given")
    assert judge(False, "4.1.1") == (False, "delayed, still trying")


# Sending through a real SMTP server ------------------------------------------------------


@pytest.fixture
def relay(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A plain SMTP server on 127.0.0.1; the example site's uk and cepiug members imported."""
    with running_server() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url())
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
        for group in ("uk", "cepiug"):
            cli("subscribers", "import", group, str(cli.site / "subscribers" / f"{group}.csv"))
        yield server


def send_uk(cli: Cli, item: str) -> tuple[int, str]:
    """Add an approved item, build and approve uk's edition, send it over SMTP; its id and the output."""
    cli("items", "add", "--approve", "--file", str(cli.site / "samples" / "items" / item))
    edition_id = int(json.loads(cli("editions", "build", "uk", "--json").stdout)["id"])
    cli("editions", "approve", str(edition_id))
    result = cli("--transport", "smtp", "editions", "send", str(edition_id))
    return edition_id, result.output


def memberships(cli: Cli, email: str) -> dict[str, tuple[str, float]]:
    """The person's memberships: group -> (status, bounce score)."""
    with cli.database() as session:
        rows = session.exec(
            select(Group.slug, Membership)
            .join(Membership, col(Membership.group_id) == Group.id)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .where(Subscriber.email == email)
        )
        return {slug: (str(m.status), m.bounce_score) for slug, m in rows}


def bounce_events(cli: Cli, email: str) -> list[tuple[Event, dict[str, Any]]]:
    with cli.database() as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        rows = session.exec(
            select(Event)
            .where(Event.kind == "bounce", Event.subscriber_id == subscriber.id)
            .order_by(col(Event.id))
        )
        return [(event, json.loads(event.detail)) for event in rows]


def delivery_status(cli: Cli, edition_id: int, email: str) -> str:
    with cli.database() as session:
        row = session.exec(
            select(Delivery.status)
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(Delivery.edition_id == edition_id, Subscriber.email == email)
        ).one()
        return str(row)


def test_a_550_5_1_1_at_send_time_ends_the_membership_as_a_dsn_does(cli: Cli, relay: SmtpServer) -> None:
    """A recipient refused with 550 5.1.1 is bounced in all groups, with the event a 5.1.1 DSN writes."""
    gone, jane = "sofia.lindqvist@example.org", "jane.doe@example.org"  # both in uk and cepiug
    relay.handler.rcpt_replies[gone] = f"550 5.1.1 <{gone}>: Recipient address rejected: user unknown"
    audience = set(cli.members("uk", "--status", "active"))
    edition_id, output = send_uk(cli, "2026-11-wipo-user-survey.md")

    assert "failed 1" in output
    arrived = [message.rcpt_tos for message in relay.messages]
    assert sorted(address for rcpt in arrived for address in rcpt) == sorted(audience - {gone})
    assert delivery_status(cli, edition_id, gone) == "failed"
    assert memberships(cli, gone) == {"uk": ("bounced", 0.0), "cepiug": ("bounced", 0.0)}
    assert memberships(cli, jane) == {"uk": ("active", 0.0), "cepiug": ("active", 0.0)}
    assert set(cli.members("uk", "--status", "active")) == audience - {gone}

    # The same failure comes back for Jane as a notice to her VERP address.
    (received,) = relay.to(jane)
    assert verp.decode(received.mail_from, KEY) is not None
    notice = cli.site / "jane.eml"
    notice.write_bytes(dsn(jane, status="5.1.1", to=received.mail_from, returned=original(UK_LIST_ID, jane)))
    result = cli("bounces", "process", str(notice))
    assert "bounced in cepiug, uk" in result.stdout
    assert memberships(cli, jane) == {"uk": ("bounced", 0.0), "cepiug": ("bounced", 0.0)}

    refused, returned = bounce_events(cli, gone), bounce_events(cli, jane)
    uk, cepiug = cli.group_id("uk"), cli.group_id("cepiug")
    for events, source in ((refused, "smtp"), (returned, "mail")):
        # One event per membership; the edition counts only in its own group.
        assert {e.group_id: (e.edition_id, e.source) for e, _ in events} == {
            uk: (edition_id, source),
            cepiug: (None, source),
        }
        assert all(set(detail) == EVENT_KEYS for _, detail in events)
    same = EVENT_KEYS - {"message_id", "via"}
    assert [{k: d[k] for k in same} for _, d in refused] == [{k: d[k] for k in same} for _, d in returned]
    assert refused[0][1] | {"message_id": None, "via": None} == {
        "message_id": None,
        "verdict": "hard",
        "status": "5.1.1",
        "reason": "mailbox does not exist",
        "permanent": True,
        "via": None,
        "outcome": "bounced",
        "added": 0.0,
        "score": 0.0,
    }
    assert {d["via"] for _, d in refused} == {"smtp"}
    assert {d["via"] for _, d in returned} == {"verp"}
    assert all(gone not in event.detail for event, _ in refused), "never an address in an event"


def test_a_soft_5xx_at_send_time_scores_and_crosses_the_threshold_like_soft_dsns(
    cli: Cli, relay: SmtpServer, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """552 5.2.2 at send time adds the soft weight once a day, on the same score as soft DSNs."""
    full, fresh, bare = "owen.jones@example.org", "raj.patel@example.org", "library@example.net"
    # The delivery engine records at a fixed moment, so "the same day" cannot cross midnight.
    now = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
    monkeypatch.setattr("newsletter.delivery.outbox.utcnow", lambda: now)
    # Owen's mailbox was full on each of the nine days before: nine soft notices, 4.5.
    site = Site.open(load_settings(cli.site, overrides={"database.url": db_url}))
    try:
        for days in range(9, 0, -1):
            notice = dsn(full, status="5.2.2", message_id=f"<full-{days}@mx>", returned=original(UK_LIST_ID))
            incoming, day = [Incoming(f"day-{days}", notice)], now - timedelta(days=days)
            with site.transaction() as session:
                feedback.process(session, site.settings, incoming, actor="test", at=day)
    finally:
        site.close()
    assert memberships(cli, full) == {"uk": ("active", 4.5)}

    for address in (full, fresh):
        relay.handler.rcpt_replies[address] = "552 5.2.2 Mailbox full"
    relay.handler.rcpt_replies[bare] = "550 Requested action not taken: mailbox unavailable"
    edition_id, output = send_uk(cli, "2026-11-wipo-user-survey.md")
    assert "failed 3" in output

    # Today's refusal is the tenth day: 5.0 reaches the threshold.
    assert memberships(cli, full) == {"uk": ("bounced", 5.0)}
    *_, (last, detail) = bounce_events(cli, full)
    assert (last.source, last.edition_id) == ("smtp", edition_id)
    assert (detail["verdict"], detail["status"], detail["reason"]) == ("soft", "5.2.2", "mailbox full")
    assert (detail["outcome"], detail["added"], detail["score"]) == ("bounced", 0.5, 5.0)
    # A first soft refusal only scores; a bare 550 has no status, as a notice without one.
    assert memberships(cli, fresh) == {"uk": ("active", 0.5)}
    ((_, first),) = bounce_events(cli, fresh)
    assert (first["outcome"], first["verdict"], first["status"]) == ("scored", "soft", "5.2.2")
    assert memberships(cli, bare) == {"uk": ("active", 0.5)}
    ((_, no_status),) = bounce_events(cli, bare)
    assert (no_status["verdict"], no_status["status"], no_status["reason"]) == (
        "soft",
        None,
        "failed, no status given",
    )

    # A second refusal the same day adds nothing more: one weight per day, as for notices.
    send_uk(cli, "2026-11-wipo-inspire-report.md")
    assert memberships(cli, fresh) == {"uk": ("active", 0.5)}
    assert [d["added"] for _, d in bounce_events(cli, fresh)] == [0.5, 0.0]


def test_hard_refusals_score_when_hard_is_not_final(cli: Cli, relay: SmtpServer) -> None:
    """With hard_is_final = false a 550 5.1.1 at send time adds hard_weight, as a hard DSN then does."""
    with (cli.site / "newsletter.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n[bounces]\nhard_is_final = false\nhard_weight = 2.0\n")
    gone = "sofia.lindqvist@example.org"
    relay.handler.rcpt_replies[gone] = "550 5.1.1 No such user"
    send_uk(cli, "2026-11-wipo-user-survey.md")
    assert memberships(cli, gone) == {"uk": ("active", 2.0), "cepiug": ("active", 0.0)}
    ((_, detail),) = bounce_events(cli, gone)
    assert (detail["verdict"], detail["outcome"], detail["added"]) == ("hard", "scored", 2.0)
