"""Hostile mail to the bounce mailbox: forged bounces and complaints, probes, bad MIME, mailto: unsubscribe.

With ``[delivery] bounce_address`` set, only a report that comes back to the member's own
signed VERP address may end a membership; anything else is recorded as unverified and a
bounce asks for a probe, sent through a real SMTP server here, whose own bounce alone ends
the membership. A message that cannot be read is quarantined and never blocks the others.
A mail to the List-Unsubscribe mailto: address unsubscribes by its signed token.
Everything runs through the CLI on a real Maildir and a real SQLite (or PostgreSQL) database.
"""

import json
import mailbox
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlmodel import select

from newsletter.core import verp
from newsletter.core.models import Event, Probe, Subscriber, utcnow
from newsletter.feedback.reading import MAX_MESSAGE_BYTES
from tests.conftest import Cli
from tests.smtp_server import Received, SmtpServer, running_server
from tests.test_bounces import CORPUS, EXPECTED, arf, dsn
from tests.test_send_smtp import tampered

KEY = "bounce-forgery-test-key-5b7e2c9d0a1f"
BOUNCES = "news-bounces@example.org"
UNSUBSCRIBE = "news-unsubscribe@example.org"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_server() as server:
        yield server


def _members(cli: Cli) -> None:
    for group in ("uk", "cepiug"):
        cli("subscribers", "import", group, str(cli.site / "subscribers" / f"{group}.csv"))


@pytest.fixture
def site(cli: Cli, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The example site with VERP configured (bounce_address) and the smtp transport on the test server."""
    config = cli.site / "newsletter.toml"
    config.write_text(
        config.read_text().replace("[delivery]\n", f'[delivery]\nbounce_address = "{BOUNCES}"\n', 1)
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    _members(cli)
    return cli


def process(cli: Cli, *paths: Path, ok: bool = True) -> dict[str, Any]:
    result = cli("--transport", "smtp", "bounces", "process", *map(str, paths), "--json", ok=ok)
    assert "Traceback" not in result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def status(cli: Cli, email: str) -> dict[str, str]:
    """The person's memberships: group -> status."""
    found = {}
    for group in ("uk", "cepiug"):
        member = cli.members(group).get(email)
        if member is not None:
            found[group] = member["status"]
    return found


def events(cli: Cli, *kinds: str) -> list[tuple[Event, dict[str, Any]]]:
    return [(e, json.loads(e.detail)) for e in cli.events() if e.kind in kinds]


def maildir(tmp_path: Path, *messages: bytes) -> tuple[Path, mailbox.Maildir]:
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(path, create=True)
    for message in messages:
        box.add(message)
    return path, box


def send_edition(cli: Cli, server: SmtpServer) -> dict[str, Received]:
    """Send uk an edition over SMTP; what each member received, by address."""
    cli(
        "items",
        "add",
        "--file",
        str(cli.site / "samples" / "items" / "2026-11-wipo-user-survey.md"),
        "--approve",
    )
    edition = json.loads(cli("editions", "build", "uk", "--json").stdout)["id"]
    cli("editions", "approve", str(edition))
    cli("--transport", "smtp", "editions", "send", str(edition))
    return {m.rcpt_tos[0]: m for m in server.messages}


def test_forged_bounces_are_recorded_and_only_the_probes_bounce_ends_the_membership(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Bounces to the plain or a wrongly signed address end nobody; one probe goes out; its bounce ends it."""
    forged_plain = dsn("jane.doe@example.org", to=BOUNCES, message_id="<forged-1@mx>")
    forged_signature = dsn(
        "raj.patel@example.org", to="news-bounces+e1.s2.00000000@example.org", message_id="<forged-2@mx>"
    )
    path, box = maildir(tmp_path, forged_plain, forged_signature)
    report = process(site, path)
    assert [(o["verdict"], o["action"]) for o in report["outcomes"]] == [
        ("hard", "unverified; probe wanted in uk"),
        ("hard", "unverified; probe wanted in uk"),
    ]
    assert (report["changed"], report["unverified"], report["probes_wanted"]) == (0, 2, 2)
    assert report["probes"]["sent"] == 2
    assert status(site, "jane.doe@example.org") == {"uk": "active", "cepiug": "active"}
    assert status(site, "raj.patel@example.org") == {"uk": "active"}
    assert events(site, "bounce") == []
    unverified = events(site, "bounce-unverified")
    assert sorted((d["message_id"], d["via"], d["probe"]) for _, d in unverified) == [
        ("<forged-1@mx>", "list-id", "wanted"),
        ("<forged-2@mx>", "list-id", "wanted"),
    ]

    # The probes went through the SMTP server, each from its own signed probe address.
    probes = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert set(probes) == {"jane.doe@example.org", "raj.patel@example.org"}
    for address, probe in probes.items():
        decoded = verp.decode(probe.mail_from, KEY)
        assert decoded is not None, probe.mail_from
        assert decoded.probe_id is not None, probe.mail_from
        headers = probe.message()
        assert headers["List-Id"].endswith("<uk.example.org>")
        assert address in str(headers["To"])

    # Running again, or another forged bounce for Jane, sends no second probe.
    process(site, path)
    again = dsn("jane.doe@example.org", to=BOUNCES, message_id="<forged-3@mx>")
    (tmp_path / "again.eml").write_bytes(again)
    (outcome,) = process(site, tmp_path / "again.eml")["outcomes"]
    assert outcome["action"] == "unverified; a probe is already out in uk"
    assert len(smtp_server.messages) == 2
    with site.database() as session:
        assert len(session.exec(select(Probe)).all()) == 2

    # Jane's probe bounces: that, and only that, ends her uk membership.
    jane = probes["jane.doe@example.org"]
    returned = jane.content.decode()
    box.add(dsn("jane.doe@example.org", to=jane.mail_from, returned=returned, message_id="<probe-bounce@mx>"))
    report = process(site, path)
    # The Maildir lists its messages in no fixed order: compare the actions as a set.
    assert sorted(o["action"] for o in report["outcomes"]) == [
        "already processed",
        "already processed",
        "bounced in uk (the probe bounced)",
    ]
    assert status(site, "jane.doe@example.org") == {"uk": "bounced", "cepiug": "active"}
    assert status(site, "raj.patel@example.org") == {"uk": "active"}
    (bounce,) = events(site, "bounce")
    assert (bounce[1]["via"], bounce[1]["outcome"]) == ("probe", "bounced")

    # Erasing a person erases their probes too.
    site("subscribers", "forget", "raj.patel@example.org", "--yes")
    with site.database() as session:
        assert [p.subscriber_id for p in session.exec(select(Probe))] == [bounce[0].subscriber_id]


def test_a_probe_the_relay_could_not_take_goes_out_with_the_next_tick(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """With the relay down the probe stays wanted (one line says so); the scheduler's next tick sends it."""
    (tmp_path / "forged.eml").write_bytes(dsn("raj.patel@example.org", to=BOUNCES))
    smtp_server.handler.down = True
    result = site("--transport", "smtp", "bounces", "process", str(tmp_path / "forged.eml"))
    assert "Traceback" not in result.output
    assert re.search(r"^probes: 0 sent, 1 deferred \(probe \d+: .+\)$", result.stdout, re.M)
    smtp_server.handler.down = False
    # A probe for someone who left meanwhile is dropped, not sent.
    (tmp_path / "owen.eml").write_bytes(dsn("owen.jones@example.org", to=BOUNCES))
    smtp_server.handler.down = True
    site("--transport", "smtp", "bounces", "process", str(tmp_path / "owen.eml"))
    smtp_server.handler.down = False
    site("subscribers", "remove", "uk", "owen.jones@example.org")
    tick = site("--transport", "smtp", "run-due")
    assert "probes: 1 sent" in tick.stdout
    (probe,) = smtp_server.messages
    assert probe.rcpt_tos == ("raj.patel@example.org",)
    site("--transport", "smtp", "run-due")
    assert len(smtp_server.messages) == 1


def test_only_a_notice_to_the_verp_address_itself_acts_at_once(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A notice to the member's own signed VERP address acts at once; one that only quotes it does not."""
    sent = send_edition(site, smtp_server)
    owen = sent["owen.jones@example.org"]
    bounce = dsn("owen.jones@example.org", to=owen.mail_from, returned=owen.content.decode())
    (tmp_path / "owen.eml").write_bytes(bounce)
    # Raj's genuine VERP address only quoted in a notice sent to the plain address is not believed.
    raj = sent["raj.patel@example.org"]
    quoted = f"Return-Path: <{raj.mail_from}>\r\n{raj.content.decode()}"
    (tmp_path / "raj.eml").write_bytes(dsn("raj.patel@example.org", to=BOUNCES, returned=quoted))
    outcomes = process(site, tmp_path / "owen.eml", tmp_path / "raj.eml")["outcomes"]
    assert [o["action"] for o in outcomes] == ["bounced in uk", "unverified; probe wanted in uk"]
    assert status(site, "owen.jones@example.org") == {"uk": "bounced"}
    assert status(site, "raj.patel@example.org") == {"uk": "active"}


def test_a_groups_own_bounce_address_also_believes_only_verp(
    cli: Cli, smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no site-wide bounce_address but the group's own, a notice to the plain address is not believed."""
    config = cli.site / "newsletter.toml"
    group_bounces = "uk-bounces@example.org"
    config.write_text(
        config.read_text().replace("[groups.uk]\n", f'[groups.uk]\nbounce_address = "{group_bounces}"\n', 1)
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    _members(cli)
    sent = send_edition(cli, smtp_server)
    raj = sent["raj.patel@example.org"]
    assert raj.mail_from.startswith("uk-bounces+")  # the group's VERP address
    quoted = f"Return-Path: <{raj.mail_from}>\r\n{raj.content.decode()}"
    (tmp_path / "raj.eml").write_bytes(dsn("raj.patel@example.org", to=group_bounces, returned=quoted))
    outcomes = process(cli, tmp_path / "raj.eml")["outcomes"]
    assert [o["action"] for o in outcomes] == ["unverified; probe wanted in uk"]
    assert status(cli, "raj.patel@example.org") == {"uk": "active"}


def test_a_complaint_without_a_genuine_verp_address_is_recorded_not_applied(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """An ARF report naming a member by List-Id and recipient is recorded; one with a VERP sender acts."""
    sent = send_edition(site, smtp_server)
    fiona, raj = sent["fiona.macleod@example.net"], sent["raj.patel@example.org"]
    text = fiona.content.decode()
    forged = arf(text, rcpt_to="fiona.macleod@example.net", message_id="<arf-forged@fbl>")
    genuine = arf(f"Return-Path: <{raj.mail_from}>\r\n{raj.content.decode()}", mail_from=raj.mail_from)
    path, _ = maildir(tmp_path, forged, genuine)
    outcomes = process(site, path)["outcomes"]
    assert sorted(o["action"] for o in outcomes) == [
        "complained in uk",
        "unverified, recorded, not applied in uk",
    ]
    assert status(site, "fiona.macleod@example.net") == {"uk": "active"}
    assert status(site, "raj.patel@example.org") == {"uk": "complained"}
    ((_, detail),) = events(site, "complaint-unverified")
    assert (detail["message_id"], detail["feedback_type"]) == ("<arf-forged@fbl>", "abuse")
    assert len(smtp_server.messages) == len(sent), "a complaint asks for no probe"


def nested(depth: int) -> bytes:
    """A failure notice whose body is ``depth`` multiparts, each inside the last."""
    head = (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {BOUNCES}\r\nSubject: Undelivered\r\n"
        "Message-ID: <deep@mx>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    opening = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
        for level in range(depth)
    )
    closing = b"".join(f"\r\n--b{level}--\r\n".encode() for level in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\njane.doe@example.org: 550 5.1.1\r\n" + closing


def test_a_message_nested_too_deep_is_quarantined_and_the_rest_are_processed(
    cli: Cli, tmp_path: Path
) -> None:
    """A bounce nested 3,000 deep and an oversized one are moved aside; the real bounces around them act."""
    _members(cli)
    good = dsn("owen.jones@example.org", message_id="<good@mx>")
    huge = b"From: x@example.net\r\nTo: news-bounces@example.org\r\n\r\n" + b"x" * (MAX_MESSAGE_BYTES + 10)
    path, box = maildir(tmp_path, nested(3000), good, huge)
    corpus = [e["file"] for e in EXPECTED if e["file"].startswith("flufl-bounce/postfix")]
    for name in corpus:
        box.add((CORPUS / name).read_bytes())
    result = cli("bounces", "process", str(path))
    assert "Traceback" not in result.output
    assert "2 unreadable" in result.stdout.splitlines()[-1]
    assert re.search(
        r"unreadable: \S+: more than 100 nested MIME parts; moved to \S+\.quarantine", result.stdout
    )
    assert re.search(r"unreadable: \S+: larger than 10 MB; moved to", result.stdout)
    assert cli.members("uk")["owen.jones@example.org"]["status"] == "bounced"
    quarantined = mailbox.Maildir(path / ".quarantine", create=False)
    assert len(quarantined) == 2
    assert len(box) == 1 + len(corpus)

    again = json.loads(cli("bounces", "process", str(path), "--json").stdout)
    assert again["unreadable"] == []
    assert {o["verdict"] for o in again["outcomes"]} - {"hard", "soft", "not a bounce"} == set()


def test_a_deeply_nested_file_given_by_name_is_reported_not_fatal(cli: Cli, tmp_path: Path) -> None:
    """A single .eml nested too deep is reported as unreadable in one line; the other file acts."""
    _members(cli)
    (tmp_path / "deep.eml").write_bytes(nested(3000))
    (tmp_path / "good.eml").write_bytes(dsn("owen.jones@example.org"))
    result = cli("bounces", "process", str(tmp_path / "deep.eml"), str(tmp_path / "good.eml"))
    assert "Traceback" not in result.output
    assert f"unreadable: {tmp_path / 'deep.eml'}: more than 100 nested MIME parts" in result.stdout
    assert cli.members("uk")["owen.jones@example.org"]["status"] == "bounced"
    assert (tmp_path / "deep.eml").exists()


def mailto(received: Received) -> tuple[str, str]:
    """The List-Unsubscribe mailto's address and subject, as a mail client reads them."""
    header = str(received.message()["List-Unsubscribe"])
    url = next(u for u in re.findall(r"<([^>]+)>", header) if u.startswith("mailto:"))
    parts = urlsplit(url)
    return unquote(parts.path), parse_qs(parts.query)["subject"][0]


def client_mail(to: str, subject: str, sender: str, number: int) -> bytes:
    """The mail a client sends for a mailto: link."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <unsub-{number}@client.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nThis message was sent to unsubscribe.\r\n"
    ).encode()


def test_the_mailto_unsubscribe_address_unsubscribes_by_its_signed_token(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A mail to the List-Unsubscribe mailto: unsubscribes as one click does; forged tokens are recorded."""
    sent = send_edition(site, smtp_server)
    address, subject = mailto(sent["raj.patel@example.org"])
    assert address == UNSUBSCRIBE
    token = subject.split()[1]
    other, altered = tampered(token)
    messages = [
        client_mail(address, subject, "raj.patel@example.org", 1),
        # Raj's token altered to name the next subscriber, with its signature broken, or none at all.
        client_mail(address, f"unsubscribe {other}", "mallory@example.com", 2),
        client_mail(address, f"unsubscribe {altered}", "mallory@example.com", 3),
        client_mail(address, "unsubscribe", "mallory@example.com", 4),
        dsn("owen.jones@example.org", to=BOUNCES, message_id="<same-box@mx>"),
    ]
    path, _ = maildir(tmp_path, *messages)
    report = process(site, path)
    actions = [o["action"] for o in report["outcomes"]]
    # (A Maildir's order is its keys' order, not the order the messages were added in.)
    assert sorted(actions) == [
        "nothing (no unsubscribe token in the subject; recorded)",
        "nothing (the unsubscribe token is forged or broken; recorded)",
        "nothing (the unsubscribe token is forged or broken; recorded)",
        "unsubscribed from uk",
        "unverified; probe wanted in uk",
    ]
    assert status(site, "raj.patel@example.org") == {"uk": "unsubscribed"}
    assert status(site, "fiona.macleod@example.net") == {"uk": "active"}
    ((event, _),) = events(site, "unsubscribe")
    assert (event.actor, event.source) == ("subscriber", "mail")
    assert len(events(site, "unsubscribe-refused")) == 3
    # Processing the mailbox again changes and records nothing more.
    process(site, path)
    assert len(events(site, "unsubscribe-refused")) == 3
    assert len(events(site, "unsubscribe")) == 1


def test_a_mailto_token_older_than_its_subscriber_unsubscribes_nobody(
    site: Cli, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """As on the web, a token made before its subscriber existed (an erased person's row id
    given to someone new) is refused and recorded, and the new member stays subscribed."""
    sent = send_edition(site, smtp_server)
    address, subject = mailto(sent["raj.patel@example.org"])
    with site.database() as session:
        raj = session.exec(select(Subscriber).where(Subscriber.email == "raj.patel@example.org")).one()
        raj.created_at = utcnow() + timedelta(days=1)
        session.add(raj)
        session.commit()
    path, _ = maildir(tmp_path, client_mail(address, subject, "raj.patel@example.org", 1))
    report = process(site, path)
    assert [o["action"] for o in report["outcomes"]] == [
        "nothing (the unsubscribe token names no subscription; recorded)"
    ]
    assert status(site, "raj.patel@example.org") == {"uk": "active"}
    assert len(events(site, "unsubscribe-refused")) == 1


def test_the_corpus_still_classifies_with_verp_configured(site: Cli, tmp_path: Path) -> None:
    """Every real corpus message is read and classified (none unreadable) when VERP is configured."""
    if not EXPECTED:
        pytest.skip(f"the bounce corpus is not at {CORPUS}")
    path, box = maildir(tmp_path)
    for entry in EXPECTED:
        box.add((CORPUS / entry["file"]).read_bytes())
    report = process(site, path)
    assert report["unreadable"] == []
    assert all(o["verdict"] != "unreadable" for o in report["outcomes"])
