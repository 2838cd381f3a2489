"""Bounces and complaints: the real-world corpus, VERP, scoring, inputs, and the next send.

The rule under test (newsletter/bounces/, docs/operations.md): a failure is *hard*
when the MTA gave up and its RFC 3463 status says the mailbox or its domain is gone
(X.1.1, X.1.2, X.1.3, X.1.6, X.1.10, X.2.1, X.4.4); every other failure is *soft*.
Hard ends every live membership of the address at once; soft ones score, Mailman-style.
"""

import json
import mailbox
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter import feedback as bounces
from newsletter.core.models import Event, Group, Membership, Subscriber
from newsletter.core.settings import Settings, load_settings
from newsletter.core.site import Site
from newsletter.feedback import Incoming, Verdict, classify, read_inputs
from tests.conftest import CORPORA, REPO, Cli

CORPUS = CORPORA / "bounces"
EXPECTED = json.loads((CORPUS / "expected.json").read_text()) if (CORPUS / "expected.json").is_file() else []
NO_CORPUS = pytest.mark.skip(reason=f"the bounce corpus is not at {CORPUS}")
LIST_ID = {"uk": '"UK Patent Information Users (example)" <uk.example.org>'}
DAY = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# Where our rule and sisimai's hardbounce part ways, by name (file, recipient) -> our hard.
SISIMAI_DISAGREEMENTS = {
    # sisimai's sendmail module calls "550 5.2.1 <filtered@example.com>... User Unknown"
    # `filtered` (soft), while its postfix module calls the identical line in
    # lhost-postfix-02 `userunknown` (hard). Our rule reads the status: 5.2.1, mailbox
    # disabled, with the MTA giving up: hard, in both files.
    ("sisimai/lhost-sendmail-02.eml", "filtered@example.com"): True,
}
# sisimai's own status where the message states none: lhost-exim-06 says only "retry
# timeout exceeded"; 4.0.947 is sisimai's internal code for `expired`.
SISIMAI_STATUS_NOT_IN_MESSAGE = {("sisimai/lhost-exim-06.eml", "kijitora@example.com")}
# flufl.bounce says permanent or temporary (did the MTA give up?); we agree with it on
# every file. Hard also needs a status saying the mailbox is gone, which only these give
# (exim_01 "553 5.1.1", postfix_01 "550 5.1.1"). The other permanent ones are soft:
# dsn_01 5.0.0 "recipient reached disk quota" (a full mailbox), dsn_04 and dsn_10 5.0.0
# (unspecified), smtp32_04 5.3.0 (mail system), microsoft_01 and qmail_01 (no status),
# yahoo_04 ("over quota", no status).
FLUFL_HARD = {"flufl-bounce/exim_01.eml", "flufl-bounce/postfix_01.eml"}

# The cases where the references (or the plain RFC 3464 rule: Action failed + 5.x.x is
# permanent, 4.x.x transient) disagree, with the verdict our rule gives and why.
NAMED_CASES = [
    ("flufl-bounce/dsn_01.eml", "JimmyMcEgypt@go.com", False, "5.0.0 disk quota: a full mailbox is soft"),
    ("sisimai/lhost-outlook-01.eml", "kijitora@example.jp", False, "5.2.2 mailbox full is soft"),
    ("sisimai/lhost-postfix-13.eml", "noraneko@example.jp", False, "5.2.2 mailbox full is soft"),
    ("sisimai/lhost-postfix-13.eml", "kijitora@example.jp", True, "5.2.1 mailbox disabled is hard"),
    ("sisimai/lhost-qmail-17.eml", "mailboxfull@libsisimai.net", False, "qmail notice 552 5.2.2: soft"),
    ("sisimai/lhost-postfix-05.eml", "kijitora@example.org", True, "failed + 4.1.1: gave up, no mailbox"),
    ("sisimai/rfc3464-03.eml", "kijitora@example.com", False, "5.0.0 says nothing about the mailbox"),
    ("sisimai/rfc3464-29.eml", "kijitora@example.com", False, "5.5.0 is a protocol error"),
    ("sisimai/lhost-exim-06.eml", "kijitora@example.com", False, "retry timeout, no status: soft"),
    ("sisimai/lhost-sendmail-02.eml", "filtered@example.com", True, "5.2.1, whatever sisimai's text says"),
]


@pytest.fixture(scope="module")
def example_settings() -> Settings:
    """The example site's settings (classification needs no database)."""
    return load_settings(REPO)


def _corpus_params() -> list[Any]:
    if not EXPECTED:
        return [pytest.param(None, marks=NO_CORPUS)]
    return [pytest.param(entry, id=entry["file"]) for entry in EXPECTED]


def reports(path: Path, settings: Settings) -> list[bounces.Report]:
    return [classify(incoming.data, settings) for incoming in read_inputs([str(path)])]


@pytest.mark.parametrize("entry", _corpus_params())
def test_corpus_verdicts(entry: dict[str, Any], example_settings: Settings) -> None:
    """Every corpus message gets the recipients and the verdict expected.json gives, under our rule."""
    found = reports(CORPUS / entry["file"], example_settings)
    if entry["file"] == "sisimai/rfc3464-28.eml":
        assert len(found) == 2, "the file holds two concatenated messages"
    else:
        assert len(found) == 1
    if not entry["is_bounce"]:
        feedback = [row.get("feedback_type") for row in entry["sisimai_expected"] if row.get("feedback_type")]
        expected = Verdict.COMPLAINT if feedback else Verdict.NONE
        assert [r.verdict for r in found] == [expected] * len(found)
        assert all(not r.failures for r in found)
        if feedback:
            assert found[0].feedback_type == feedback[0]
        return
    (report,) = found
    failures = {f.address: f for f in report.failures}
    if "flufl_expected" in entry:
        flufl = entry["flufl_expected"]
        assert set(failures) == set(flufl["addresses"])
        if not flufl["addresses"]:
            assert report.verdict == Verdict.NONE
            return
        assert {f.permanent for f in failures.values()} == {flufl["failure"] == "permanent"}
        assert {f.hard for f in failures.values()} == {entry["file"] in FLUFL_HARD}
    else:
        assert set(failures) == set(entry["recipients"])
        for address, row in zip(entry["recipients"], entry["sisimai_expected"], strict=True):
            hard = SISIMAI_DISAGREEMENTS.get((entry["file"], address), row["hardbounce"])
            assert failures[address].hard is hard, address
            if (entry["file"], address) not in SISIMAI_STATUS_NOT_IN_MESSAGE:
                assert failures[address].status == row["status"], address
    for dsn in entry.get("dsn_per_recipient", []):
        address = dsn["original_recipient"] or dsn["final_recipient"]
        assert failures[address].status == dsn["status"].split()[0]
        assert failures[address].permanent is (dsn["action"].lower() == "failed")
    assert report.verdict == (Verdict.HARD if any(f.hard for f in failures.values()) else Verdict.SOFT)


@pytest.mark.parametrize(("file", "address", "hard", "why"), NAMED_CASES, ids=[c[3] for c in NAMED_CASES])
def test_named_disagreements(
    file: str, address: str, hard: bool, why: str, example_settings: Settings
) -> None:
    """Where sisimai, flufl.bounce and the plain RFC 3464 rule disagree, the stated rule decides."""
    if not EXPECTED:
        pytest.skip(f"the bounce corpus is not at {CORPUS}")
    (report,) = reports(CORPUS / file, example_settings)
    failure = next(f for f in report.failures if f.address == address)
    assert failure.hard is hard, why


# Building messages ---------------------------------------------------------------------


def original(list_id: str | None = LIST_ID["uk"], to: str = "someone@example.org") -> str:
    lines = [
        "From: CEPIUG News <news@example.org>",
        f"To: {to}",
        "Subject: UK Patent Information Users (example): news",
        "Message-ID: <e1.s1.sent@example.org>",
    ]
    if list_id:
        lines.append(f"List-Id: {list_id}")
    return "\r\n".join(lines) + "\r\n\r\nThe news.\r\n"


def dsn(
    recipient: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    to: str = "news-bounces@example.org",
    message_id: str = "<dsn-1@mx.example.net>",
    returned: str | None = None,
) -> bytes:
    """An RFC 3464 report as Postfix writes it."""
    returned = original() if returned is None else returned
    return (
        f"Return-Path: <>\r\nDelivered-To: {to}\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Date: Tue, 1 Dec 2026 09:00:00 +0000\r\nMessage-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: rejected\r\n\r\n"
        "--B1\r\nContent-Type: message/rfc822\r\n\r\n"
        f"{returned}\r\n--B1--\r\n"
    ).encode()


def arf(
    returned: str,
    *,
    mail_from: str = "news-bounces@example.org",
    rcpt_to: str | None = None,
    feedback_type: str = "abuse",
    message_id: str = "<arf-1@fbl.example.net>",
) -> bytes:
    """An RFC 5965 feedback report as a mailbox provider's feedback loop sends it."""
    rcpt = f"Original-Rcpt-To: {rcpt_to}\r\n" if rcpt_to else ""
    return (
        "From: feedback@fbl.example.net\r\nTo: fbl@example.org\r\nSubject: Complaint\r\n"
        f"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F1"\r\n\r\n'
        "--F1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n"
        "--F1\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{mail_from}>\r\n{rcpt}Arrival-Date: Tue, 1 Dec 2026 09:00:00 +0000\r\n\r\n"
        "--F1\r\nContent-Type: message/rfc822\r\n\r\n"
        f"{returned}\r\n--F1--\r\n"
    ).encode()


SUCCESS = dsn("raj.patel@example.org", action="delivered", status="2.0.0", message_id="<ok@mx>")
AUTO_REPLY = (
    b"From: Raj Patel <raj.patel@example.org>\r\nTo: news-bounces@example.org\r\n"
    b"Subject: Out of office: news\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <away@example.org>\r\n"
    b"\r\nI am away until 4 January; I will read your message (to raj.patel@example.org) then.\r\n"
)
ORDINARY = (
    b"From: Raj Patel <raj.patel@example.org>\r\nTo: news@example.org\r\nSubject: Re: news\r\n"
    b"Message-ID: <reply@example.org>\r\n\r\nThanks for the survey link!\r\n"
)


# Database helpers -------------------------------------------------------------------------


@pytest.fixture
def site(cli: Cli, site_dir: Path, db_url: str) -> Iterator[Site]:
    """The example site with its uk and cepiug members imported."""
    cli("subscribers", "import", "uk", str(site_dir / "subscribers" / "uk.csv"))
    cli("subscribers", "import", "cepiug", str(site_dir / "subscribers" / "cepiug.csv"))
    opened = Site.open(load_settings(site_dir, overrides={"database.url": db_url}))
    yield opened
    opened.close()


def apply(site: Site, *messages: bytes, at: datetime = DAY) -> bounces.ProcessReport:
    with site.transaction() as session:
        incoming = [Incoming(f"m{number}", data) for number, data in enumerate(messages)]
        return bounces.process(session, site.settings, incoming, actor="test", at=at)


def state(site: Site, email: str) -> dict[str, tuple[str, float]]:
    """The person's memberships: group -> (status, bounce score)."""
    with site.transaction() as session:
        rows = session.exec(
            select(Group.slug, Membership)
            .join(Membership, col(Membership.group_id) == Group.id)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .where(Subscriber.email == email)
        )
        return {slug: (str(m.status), m.bounce_score) for slug, m in rows}


def events(site: Site, kind: str) -> list[tuple[Event, dict[str, Any]]]:
    with site.transaction() as session:
        rows = session.exec(select(Event).where(Event.kind == kind).order_by(col(Event.id)))
        return [(event, json.loads(event.detail)) for event in rows]


# Scoring -----------------------------------------------------------------------------------


def test_soft_bounces_score_once_a_day_and_end_at_the_threshold(site: Site) -> None:
    """Soft bounces add 0.5 once per day in the List-Id's group only, and at 5.0 the member is bounced."""
    address = "jane.doe@example.org"  # a member of uk and cepiug
    full = dsn(address, status="5.2.2", message_id="<d0a@mx>")
    report = apply(site, full, dsn(address, status="4.2.2", action="delayed", message_id="<d0b@mx>"))
    assert [o.verdict for o in report.outcomes] == ["soft", "soft"]
    assert state(site, address) == {"uk": ("active", 0.5), "cepiug": ("active", 0.0)}
    for day in range(1, 9):
        apply(site, dsn(address, status="5.2.2", message_id=f"<d{day}@mx>"), at=DAY + timedelta(days=day))
    assert state(site, address)["uk"] == ("active", 4.5)
    report = apply(site, dsn(address, status="5.2.2", message_id="<d9@mx>"), at=DAY + timedelta(days=9))
    assert state(site, address) == {"uk": ("bounced", 5.0), "cepiug": ("active", 0.0)}
    assert report.outcomes[0].action == "bounced in uk"
    logged = events(site, "bounce")
    assert len(logged) == 11
    assert [d["added"] for _, d in logged[:2]] == [0.5, 0.0]
    last, detail = logged[-1]
    assert (detail["message_id"], detail["verdict"], detail["status"], detail["outcome"]) == (
        "<d9@mx>",
        "soft",
        "5.2.2",
        "bounced",
    )
    assert all(address not in event.detail.lower() for event, _ in logged)
    assert last.at == DAY + timedelta(days=9)


def test_the_score_starts_again_after_the_window(site: Site) -> None:
    """A soft bounce after more than window_days (45) without one starts the score from zero."""
    address = "raj.patel@example.org"
    apply(site, dsn(address, status="5.7.1", message_id="<w1@mx>"))
    apply(site, dsn(address, status="5.7.1", message_id="<w2@mx>"), at=DAY + timedelta(days=30))
    assert state(site, address)["uk"] == ("active", 1.0)
    apply(site, dsn(address, status="5.7.1", message_id="<w3@mx>"), at=DAY + timedelta(days=76))
    assert state(site, address)["uk"] == ("active", 0.5)


def test_a_hard_bounce_ends_every_membership_at_once(site: Site) -> None:
    """A hard bounce (5.1.1, no such mailbox) marks the address bounced in all its groups at once."""
    address = "sofia.lindqvist@example.org"  # uk and cepiug
    report = apply(site, dsn(address, status="5.1.1"))
    assert report.outcomes[0].verdict == "hard"
    assert state(site, address) == {"uk": ("bounced", 0.0), "cepiug": ("bounced", 0.0)}
    assert report.changed == 2
    assert {(e.group_id is not None, d["outcome"], d["verdict"]) for e, d in events(site, "bounce")} == {
        (True, "bounced", "hard")
    }
    again = apply(site, dsn(address, status="5.1.1"))
    assert again.outcomes[0].action == "already processed"
    assert len(events(site, "bounce")) == 2


def test_hard_bounces_can_score_instead(cli: Cli, site_dir: Path, db_url: str) -> None:
    """With hard_is_final = false a hard bounce adds hard_weight, Mailman's way, until the threshold."""
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write("\n[bounces]\nhard_is_final = false\nhard_weight = 2.0\nthreshold = 4.0\n")
    cli("subscribers", "import", "uk", str(site_dir / "subscribers" / "uk.csv"))
    site = Site.open(load_settings(site_dir, overrides={"database.url": db_url}))
    try:
        address = "owen.jones@example.org"
        apply(site, dsn(address, message_id="<h1@mx>"))
        assert state(site, address) == {"uk": ("active", 2.0)}
        apply(site, dsn(address, message_id="<h2@mx>"), at=DAY + timedelta(days=1))
        assert state(site, address) == {"uk": ("bounced", 4.0)}
    finally:
        site.close()


def test_success_notices_auto_replies_and_ordinary_mail_change_nothing(site: Site) -> None:
    """A success DSN, an RFC 3834 auto-reply, ordinary mail and the corpus non-bounces change nothing."""
    before = state(site, "raj.patel@example.org")
    messages = [SUCCESS, AUTO_REPLY, ORDINARY]
    for entry in EXPECTED:
        if not entry["is_bounce"] and "arf" not in entry["file"]:
            messages.extend(i.data for i in read_inputs([str(CORPUS / entry["file"])]))
    report = apply(site, *messages)
    assert {o.verdict for o in report.outcomes} == {"not a bounce"}
    assert [o.action for o in report.outcomes[:3]] == [
        "nothing (delivery report without failures)",
        "nothing (auto-reply)",
        "nothing (no failed recipient found)",
    ]
    assert report.changed == 0
    assert state(site, "raj.patel@example.org") == before
    assert events(site, "bounce") == []


def test_a_bounce_for_someone_else_changes_nothing(site: Site) -> None:
    """A bounce naming an address that is no subscriber of ours is reported and changes nothing."""
    report = apply(site, dsn("stranger@example.com"))
    assert report.outcomes[0].action == "nothing (no subscriber with that address)"
    assert events(site, "bounce") == []


# Inputs and the command ----------------------------------------------------------------------


def test_maildir_mbox_and_stdin(cli: Cli, site: Site, tmp_path: Path) -> None:
    """Messages are read from a Maildir, an mbox file (one line each) and standard input."""
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(dsn("fiona.macleod@example.net", status="5.2.2", message_id="<md1@mx>"))
    maildir.add(ORDINARY)
    box = mailbox.mbox(tmp_path / "bounces.mbox", create=True)
    box.add(dsn("owen.jones@example.org", status="5.1.1", message_id="<mb1@mx>"))
    box.add(AUTO_REPLY)
    box.flush()
    box.close()
    result = cli("bounces", "process", str(tmp_path / "Maildir"), str(tmp_path / "bounces.mbox"), "--json")
    outcomes = json.loads(result.stdout)["outcomes"]
    assert [(o["verdict"], o["recipients"]) for o in outcomes] == [
        ("soft", ["fiona.macleod@example.net"]),
        ("not a bounce", []),
        ("hard", ["owen.jones@example.org"]),
        ("not a bounce", []),
    ]
    assert [o["source"].rsplit("#", 1)[-1] for o in outcomes[2:]] == ["1", "2"]
    assert state(site, "owen.jones@example.org")["uk"][0] == "bounced"
    assert len(list(maildir.keys())) == 2, "mail is read, never moved or deleted"
    piped = dsn("library@example.net", status="5.4.4", message_id="<pipe@mx>").decode()
    result = cli("bounces", "process", "-", input="From MAILER-DAEMON Tue Dec  1 09:00:00 2026\n" + piped)
    assert "library@example.net" in result.stdout
    assert "bounced in uk" in result.stdout
    assert "1 message(s): 1 hard, 0 soft" in result.stdout


def test_the_command_prints_one_line_per_message_and_a_dry_run_changes_nothing(cli: Cli, site: Site) -> None:
    """The table names file, verdict, recipients and action; --dry-run says so and changes nothing."""
    if not EXPECTED:
        pytest.skip(f"the bounce corpus is not at {CORPUS}")
    path = CORPUS / "sisimai" / "lhost-postfix-13.eml"
    bounce = site.settings.site_dir / "jane.eml"
    bounce.write_bytes(dsn("jane.doe@example.org"))
    result = cli("bounces", "process", str(path), str(bounce), "--dry-run")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "verdict", "recipients", "action"]
    assert "kijitora@example.jp, noraneko@example.jp" in lines[1]
    assert "hard" in lines[2]
    assert "bounced in cepiug, uk" in lines[2]
    assert lines[-1] == (
        "dry run, nothing changed: 2 message(s): 2 hard, 0 soft, 0 complaint(s), 0 not a bounce; "
        "2 membership(s) ended"
    )
    assert state(site, "jane.doe@example.org") == {"uk": ("active", 0.0), "cepiug": ("active", 0.0)}
    assert events(site, "bounce") == []


def _missing(tmp: Path) -> Path:
    return tmp / "missing.eml"


def _plain_folder(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    return tmp / "folder"


def _binary(tmp: Path) -> Path:
    (tmp / "logo.eml").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    return tmp / "logo.eml"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.eml").write_bytes(b"")
    return tmp / "empty.eml"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, "No such file or directory"),
        (_plain_folder, "not a Maildir"),
        (_binary, "not an email"),
        (_empty, "empty"),
    ],
    ids=["missing", "plain folder", "binary", "empty"],
)
def test_bad_input_is_one_line_and_changes_nothing(
    cli: Cli, site: Site, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    """An unusable path fails the whole run with one line on stderr, before any change."""
    good = tmp_path / "good.eml"
    good.write_bytes(dsn("jane.doe@example.org"))
    result = cli("bounces", "process", str(good), str(make(tmp_path)), ok=False)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert state(site, "jane.doe@example.org")["uk"] == ("active", 0.0)


# Complaints, VERP and the next send ------------------------------------------------------------


def send(cli: Cli, site_dir: Path, item: str) -> tuple[int, list[Path]]:
    """Add an approved item, build, approve and send uk's edition to the outbox folder."""
    cli("items", "add", "--file", str(site_dir / "samples" / "items" / item), "--approve")
    edition = json.loads(cli("editions", "build", "uk", "--json").stdout)["id"]
    cli("editions", "approve", str(edition))
    cli("editions", "send", str(edition))
    return edition, sorted((site_dir / "outbox" / f"edition-{edition}").glob("*.eml"))


def envelope(path: Path) -> tuple[str, str, str]:
    """The outbox file's envelope sender (VERP), envelope recipient, and the message as sent."""
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0].startswith("X-Envelope-From: <")
    assert lines[1].startswith("X-Envelope-To: <")
    return lines[0][18:-1], lines[1][16:-1], "\r\n".join(lines[2:])


def test_verp_bounces_and_complaints_reach_the_right_member_and_the_next_send(
    cli: Cli, site: Site, site_dir: Path
) -> None:
    """VERP bounces and ARF complaints end the right memberships, count per edition, skip the next send."""
    edition, sent = send(cli, site_dir, "2026-11-wipo-user-survey.md")
    assert len(sent) == 7
    people = {envelope(p)[1]: envelope(p) for p in sent}

    # A hard bounce to Jane's VERP address, reporting the address her mail was forwarded to.
    jane_verp, _, _ = people["jane.doe@example.org"]
    forwarded = dsn("jane.d@forwarded.example.net", to=jane_verp, returned=original(list_id=None))
    # Raj complains through a feedback loop that keeps the envelope sender (VERP).
    raj_verp, _, raj_message = people["raj.patel@example.org"]
    by_verp = arf(f"Return-Path: <{raj_verp}>\r\n{raj_message}", mail_from=raj_verp)
    # Fiona's provider strips the envelope sender: List-Id and recipient identify her.
    _, fiona, fiona_message = people["fiona.macleod@example.net"]
    assert "news-bounces+" not in fiona_message
    by_list_id = arf(fiona_message, rcpt_to=fiona, message_id="<arf-2@fbl.example.net>")
    not_spam = arf(fiona_message, rcpt_to=fiona, feedback_type="not-spam", message_id="<arf-3@fbl>")
    for name, data in [("jane", forwarded), ("raj", by_verp), ("fiona", by_list_id), ("ns", not_spam)]:
        (site_dir / f"{name}.eml").write_bytes(data)
    paths = [str(site_dir / f"{n}.eml") for n in ("jane", "raj", "fiona", "ns")]
    outcomes = json.loads(cli("bounces", "process", *paths, "--json").stdout)["outcomes"]
    assert [(o["verdict"], o["recipients"], o["action"]) for o in outcomes] == [
        ("hard", ["jane.doe@example.org"], "bounced in cepiug, uk"),
        ("complaint", ["raj.patel@example.org"], "complained in uk"),
        ("complaint", ["fiona.macleod@example.net"], "complained in uk"),
        ("not a bounce", [], "nothing (feedback report (not-spam))"),
    ]
    assert state(site, "jane.doe@example.org") == {"uk": ("bounced", 0.0), "cepiug": ("bounced", 0.0)}
    assert state(site, "raj.patel@example.org") == {"uk": ("complained", 0.0)}
    assert state(site, "fiona.macleod@example.net") == {"uk": ("complained", 0.0)}

    complaints = events(site, "complaint")
    assert [(e.edition_id, d["via"], d["feedback_type"]) for e, d in complaints] == [
        (edition, "verp", "abuse"),
        (edition, "list-id", "abuse"),
    ]
    assert [e.edition_id for e, _ in events(site, "bounce")] == [None, edition]  # cepiug, then uk
    report = json.loads(cli("bounces", "report", "--json").stdout)
    assert [(r["edition_id"], r["sent"], r["bounces"], r["complaints"]) for r in report] == [
        (edition, 7, 1, 2)
    ]

    _, second = send(cli, site_dir, "2026-11-wipo-inspire-report.md")
    recipients = {envelope(p)[1] for p in second}
    assert len(second) == 4
    assert recipients.isdisjoint(
        {"jane.doe@example.org", "raj.patel@example.org", "fiona.macleod@example.net"}
    )


def test_the_corpus_complaint_names_nobody_and_changes_nothing(cli: Cli, site: Site) -> None:
    """sisimai's ARF sample (redacted recipient, no VERP, no List-Id) is a complaint about nobody of ours."""
    if not EXPECTED:
        pytest.skip(f"the bounce corpus is not at {CORPUS}")
    result = cli("bounces", "process", str(CORPUS / "sisimai" / "arf-01.eml"), "--json")
    (outcome,) = json.loads(result.stdout)["outcomes"]
    assert (outcome["verdict"], outcome["action"]) == (
        "complaint",
        "nothing (the report names no member of ours)",
    )
    assert events(site, "complaint") == []


def test_a_forged_verp_address_is_not_believed(site: Site) -> None:
    """A bounce to a VERP address with a wrong signature falls back to the reported address."""
    forged = "news-bounces+e1.s1.00000000@example.org"
    report = apply(site, dsn("nobody@example.com", to=forged))
    assert report.outcomes[0].action == "nothing (no subscriber with that address)"
    assert report.changed == 0
