"""Bounces and complaints: read what comes back to the bounce address and act on it.

Input: ``.eml`` files, mbox files (one or many messages after ``From `` lines),
Maildir folders, or one message on standard input (a mail server's pipe).

What a message is, in this order:

1. an ARF feedback report (RFC 5965, ``multipart/report; report-type=feedback-report``)
   of type abuse, fraud or virus: a **complaint**. The member is found through the VERP
   envelope sender of the reported message, else through its ``List-Id`` and recipient;
   the membership ends as ``complained`` and the complaint counts against the edition;
2. a failure notice: flufl.bounce (Mailman's detectors) finds the failed recipients and
   whether the MTA gave up (*permanent*) or will retry (*temporary*). The member is the
   one the VERP address names (``news-bounces+e12.s345.SIG@...``, HMAC-signed, so it
   cannot be forged), else the subscriber with the failed address;
3. anything else (success notices, auto-replies, ordinary mail): **not a bounce**, and
   nothing changes.

Hard or soft (the rule, documented in docs/operations.md): a failure is **hard** when
the MTA gave up *and* its RFC 3463 status says the mailbox or its domain is gone
(``GONE`` below: X.1.1 no such mailbox, X.1.2 no such domain, X.1.3 bad syntax, X.1.6
moved, X.1.10 null MX, X.2.1 disabled, X.4.4 no route). Everything else is **soft**:
delays, full mailboxes (X.2.2, which RFC 3463 calls a persistent transient failure,
and flufl's dsn_01 "disk quota" 5.0.0), policy refusals, unspecified 5.0.0, expiry,
and notices that give no status at all. The status comes from the DSN's ``Status``
field, or for a non-DSN notice from the first RFC 3463 code next to the address.
A hard bounce is proof the address is dead, so it ends every live membership of the
address at once (``[bounces] hard_is_final``); soft bounces score, Mailman-style.

Scoring (``[bounces]``): each day with a bounce adds that day's strongest weight once
(hard 1.0, soft 0.5); after ``window_days`` without a bounce the score starts from
zero; at ``threshold`` (5.0) the membership becomes ``bounced``. A bounce scores the
group of the edition it came from (VERP), else the group named by the returned
message's ``List-Id``, else every live membership of the address.

Every action writes one Event (``bounce`` or ``complaint``) per membership, with the
report's Message-ID and the verdict; never an address. A report already recorded for
a subscriber (same Message-ID) is skipped, so processing a mailbox twice is harmless.
"""

import enum
import json
import mailbox
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email import message_from_bytes, message_from_string
from email.message import Message
from email.utils import collapse_rfc2231_value, parseaddr
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from flufl.bounce import all_failures
from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter import audit, outbox, verp
from newsletter.addresses import InvalidAddress, email_key, parse_address
from newsletter.errors import InputError
from newsletter.models import Edition, Event, Group, Membership, MembershipStatus, Subscriber, utcnow
from newsletter.settings import Settings
from newsletter.verp import VerpAddress

LIVE = (MembershipStatus.ACTIVE, MembershipStatus.PENDING)
COMPLAINT_TYPES = {"abuse", "fraud", "virus"}
# An RFC 3463 status code, not a piece of an IP address or a version number.
STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
# RFC 3463 subject.detail codes that say the mailbox or its domain is gone.
GONE = {
    "1.1": "mailbox does not exist",
    "1.2": "domain does not exist",
    "1.3": "malformed address",
    "1.6": "mailbox has moved",
    "1.10": "domain accepts no mail",
    "2.1": "mailbox disabled",
    "4.4": "no route to the domain",
}
SOFT_REASONS = {"2.2": "mailbox full", "3.4": "message too big", "4.7": "delivery expired"}
# Where a notice stops and the copy of the returned message starts.
COPY_BREAK = re.compile(
    r"^\s*-*\s*(this is a copy of the message|below this line is a copy|original message)", re.I
)
# flufl.bounce's qmail detector knows a fixed list of intro lines; Yahoo's qmail-derived
# notices open with this one, which it lacks, so they yield nothing (sisimai's
# lhost-yahoo-01). The format is otherwise QSBMF: "<address>:" paragraphs.
YAHOO_INTRO = "Sorry, we were unable to deliver your message to the following address"
QSBMF_RECIPIENT = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:\s*$")


class Verdict(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    NONE = "not a bounce"


@dataclass(frozen=True)
class Failure:
    """One failed recipient as the report gives it."""

    address: str
    permanent: bool  # the MTA gave up (DSN Action: failed), rather than will retry
    status: str | None  # the RFC 3463 code, when the report gives one
    hard: bool
    reason: str


@dataclass(frozen=True)
class Report:
    """What one message says, before anything is looked up."""

    verdict: Verdict
    kind: str
    message_id: str | None
    failures: tuple[Failure, ...] = ()
    verp: VerpAddress | None = None
    group_slug: str | None = None  # from the returned message's List-Id
    edition_id: int | None = None  # from the returned message's Feedback-ID
    recipient: str | None = None  # a complaint's reported recipient
    feedback_type: str | None = None


@dataclass(frozen=True)
class Incoming:
    label: str
    data: bytes


@dataclass
class Outcome:
    source: str
    verdict: str
    recipients: list[str]
    action: str
    message_id: str | None = None


@dataclass
class ProcessReport:
    outcomes: list[Outcome] = field(default_factory=list)
    changed: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        counts = {v: sum(o.verdict == v for o in self.outcomes) for v in Verdict}
        return (
            f"{len(self.outcomes)} message(s): {counts[Verdict.HARD]} hard, {counts[Verdict.SOFT]} soft, "
            f"{counts[Verdict.COMPLAINT]} complaint(s), {counts[Verdict.NONE]} not a bounce; "
            f"{self.changed} membership(s) ended"
        )


# Reading -----------------------------------------------------------------------------


def read_inputs(paths: Iterable[str], stdin: BinaryIO | None = None) -> Iterator[Incoming]:
    """Every message in the paths ('-' is standard input); an unusable path is an InputError."""
    for name in paths:
        if name == "-":
            if stdin is None:
                raise InputError("'-' given but there is no standard input")
            yield _single("-", _strip_from_line(stdin.read()))
            continue
        path = Path(name)
        if path.is_dir():
            if not ((path / "cur").is_dir() and (path / "new").is_dir()):
                raise InputError(f"{path}: a folder, but not a Maildir (it has no cur/ and new/)")
            maildir = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(maildir.keys()):
                yield Incoming(f"{path}/{key}", maildir.get_bytes(key))
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(5)
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        if head == b"From ":
            mbox = mailbox.mbox(path, factory=None, create=False)
            keys = list(mbox.keys())
            for number, key in enumerate(keys, start=1):
                label = str(path) if len(keys) == 1 else f"{path}#{number}"
                yield Incoming(label, mbox.get_bytes(key))
            mbox.close()
        else:
            yield _single(str(path), path.read_bytes())


def _strip_from_line(data: bytes) -> bytes:
    # A pipe from the MTA may start with the mbox envelope line (Postfix pipe flags=F).
    return data.split(b"\n", 1)[1] if data.startswith(b"From ") and b"\n" in data else data


def _single(label: str, data: bytes) -> Incoming:
    if not data.strip():
        raise InputError(f"{label}: empty, not an email message")
    if not parse(data).keys():
        raise InputError(f"{label}: not an email message (no header fields)")
    return Incoming(label, data)


def parse(data: bytes) -> Message:
    # flufl.bounce works on the compat32 Message the default parser builds.
    return message_from_bytes(data)


# Classifying -------------------------------------------------------------------------


def classify(data: bytes, settings: Settings) -> Report:
    """What the message is: a complaint, a hard or soft bounce, or not a bounce."""
    message = parse(data)
    message_id = _header(message, "Message-ID")
    found = _find_verp(data, settings)
    original = _returned(message)
    slug, edition_id = _origin(original, settings)
    base = Report(Verdict.NONE, "", message_id, verp=found, group_slug=slug, edition_id=edition_id)
    if message.get_content_type() == "multipart/report" and _report_type(message) == "feedback-report":
        fields = _first(message, "message/feedback-report")
        feedback = (_header(fields, "Feedback-Type") or "").lower()
        if feedback not in COMPLAINT_TYPES:
            return replace(base, kind=f"feedback report ({feedback or 'no type'})")
        recipient = _header(fields, "Original-Rcpt-To") or _header(original, "To")
        return replace(
            base,
            verdict=Verdict.COMPLAINT,
            kind="feedback report",
            recipient=parseaddr(recipient)[1] if recipient else None,
            feedback_type=feedback,
        )
    failures = _failures(message)
    if failures:
        verdict = Verdict.HARD if any(f.hard for f in failures) else Verdict.SOFT
        return replace(base, verdict=verdict, kind="failure notice", failures=failures)
    return replace(base, kind=_not_a_bounce(message))


def _failures(message: Message) -> tuple[Failure, ...]:
    try:
        temporary, permanent = all_failures(message)
    except Exception:
        # Heuristic detectors on hostile input: a crash in one means "nothing found".
        temporary, permanent = frozenset(), frozenset()
    lines = _notice_lines(message)
    if not temporary and not permanent:
        permanent = _yahoo(lines)
    dsn = _dsn_fields(message)
    failures = []
    for raw, is_permanent in [(a, True) for a in sorted(permanent)] + [
        (a, False) for a in sorted(temporary - permanent)
    ]:
        address = raw.decode("ascii", "replace")
        action, status = dsn.get(address.casefold(), ("", None))
        if status is None and not action:
            status = _status_near(
                lines, address, {a.decode("ascii", "replace") for a in permanent | temporary}
            )
        failures.append(_failure(address, is_permanent, status))
    return tuple(failures)


def _failure(address: str, permanent: bool, status: str | None) -> Failure:
    detail = status.split(".", 1)[1] if status else None
    hard = permanent and detail in GONE
    if hard:
        reason = GONE[detail or ""]
    elif not permanent:
        reason = "delayed, still trying"
    elif detail in SOFT_REASONS:
        reason = SOFT_REASONS[detail or ""]
    else:
        reason = f"failed with status {status}" if status else "failed, no status given"
    return Failure(address, permanent, status, hard, reason)


def _dsn_fields(message: Message) -> dict[str, tuple[str, str | None]]:
    """Action and status per recipient address of the RFC 3464 report, if it is one."""
    fields: dict[str, tuple[str, str | None]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _subparts(part):
            action = (_header(block, "Action") or "").lower()
            if not action:
                continue
            code = STATUS.search(_header(block, "Status") or "")
            status = ".".join(code.groups()) if code else None
            for name in ("Original-Recipient", "Final-Recipient"):
                kind, _, address = (_header(block, name) or "").partition(";")
                if kind.strip().lower() == "rfc822" and address.strip():
                    fields.setdefault(address.strip().strip("<>").casefold(), (action, status))
    return fields


def _notice_lines(message: Message) -> list[str]:
    """The human-readable text of the notice, without the returned copy of the message."""
    texts: list[str] = []

    def visit(part: Message) -> None:
        if part.get_content_maintype() == "message":
            return
        if part.is_multipart():
            for sub in _subparts(part):
                visit(sub)
        elif part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))

    visit(message)
    lines = []
    for line in "\n".join(texts).splitlines():
        if COPY_BREAK.match(line):
            break
        lines.append(line)
    return lines


def _status_near(lines: list[str], address: str, others: set[str]) -> str | None:
    """The first RFC 3463 code on a line naming the address or within the three after it."""
    wanted = address.casefold()
    strangers = {o.casefold() for o in others} - {wanted}
    for index, line in enumerate(lines):
        if wanted not in line.casefold():
            continue
        for following in lines[index : index + 4]:
            lowered = following.casefold()
            if following is not line and any(s in lowered for s in strangers):
                break
            code = STATUS.search(following)
            if code:
                return ".".join(code.groups())
    return None


def _yahoo(lines: list[str]) -> frozenset[bytes]:
    if not any(line.strip().startswith(YAHOO_INTRO) for line in lines):
        return frozenset()
    found = (QSBMF_RECIPIENT.match(line.strip()) for line in lines)
    return frozenset(m.group(1).encode("ascii", "replace") for m in found if m)


def _not_a_bounce(message: Message) -> str:
    auto = (_header(message, "Auto-Submitted") or "").lower()
    if message.get_content_type() == "multipart/report":
        return "delivery report without failures"
    if auto.startswith("auto-replied") or message.get("X-Autoreply") or message.get("X-Autorespond"):
        return "auto-reply"
    return "no failed recipient found"


def _find_verp(data: bytes, settings: Settings) -> VerpAddress | None:
    """The first genuine VERP address anywhere in the message (envelope headers come first)."""
    local, _, domain = settings.bounce_address.rpartition("@")
    pattern = re.compile(
        re.escape(local) + r"\+e\d+\.s\d+\.[0-9a-f]{8}@" + re.escape(domain) + r"(?![\w.-])", re.I
    )
    for match in pattern.finditer(data.decode("latin-1")):
        found = verp.decode(match.group(0), settings.signing_key)
        if found is not None:
            return found
    return None


def _returned(message: Message) -> Message | None:
    """The returned original (or its headers) inside a bounce or a feedback report."""
    for part in message.walk():
        if part.get_content_type() == "message/rfc822" and _subparts(part):
            return _subparts(part)[0]
        if part.get_content_type() == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return message_from_string(text.decode("utf-8", "replace"))
    return None


def _origin(original: Message | None, settings: Settings) -> tuple[str | None, int | None]:
    """The group (our List-Id) and edition (our Feedback-ID) of a returned message."""
    if original is None:
        return None, None
    host = urlsplit(settings.site.base_url).hostname or ""
    slug = None
    list_id = re.search(r"<([^<>]+)>", _header(original, "List-Id") or "")
    if list_id and host and list_id.group(1).lower().endswith("." + host.lower()):
        slug = list_id.group(1)[: -len(host) - 1].lower()
    feedback = re.fullmatch(r"e(\d+):\d+:newsletter", _header(original, "Feedback-ID") or "")
    return slug, int(feedback.group(1)) if feedback else None


def _first(message: Message, content_type: str) -> Message | None:
    """The header block inside the first part of this type (message/feedback-report)."""
    for part in message.walk():
        if part.get_content_type() == content_type:
            return next(iter(_subparts(part)), None)
    return None


def _subparts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _report_type(message: Message) -> str:
    value = message.get_param("report-type")
    return str(collapse_rfc2231_value(value)).lower() if value else ""


def _header(message: Message | None, name: str) -> str | None:
    value = message.get(name) if message is not None else None
    if value is None:
        return None
    return " ".join(str(value).split()) or None


# Acting ------------------------------------------------------------------------------


class _Run:
    """One processing run: the session, the settings and the moment, plus lookups."""

    def __init__(self, session: Session, settings: Settings, actor: str, at: datetime) -> None:
        self.session, self.settings, self.actor, self.at = session, settings, actor, at
        self.slugs = {g.id: g.slug for g in session.exec(select(Group))}
        self.changed = 0

    def group_id(self, slug: str | None) -> int | None:
        return next((gid for gid, s in self.slugs.items() if s == slug), None) if slug else None

    def subscriber(self, address: str) -> Subscriber | None:
        try:
            key = parse_address(address).key
        except InvalidAddress:
            key = email_key(address.strip())
        return self.session.exec(select(Subscriber).where(Subscriber.email_key == key)).one_or_none()

    def memberships(self, subscriber_id: int) -> list[Membership]:
        query = select(Membership).where(Membership.subscriber_id == subscriber_id)
        return list(self.session.exec(query.order_by(col(Membership.group_id))))

    def edition(self, edition_id: int | None) -> Edition | None:
        return self.session.get(Edition, edition_id) if edition_id else None

    def seen(self, subscriber_id: int, message_id: str | None) -> bool:
        if not message_id:
            return False
        query = select(Event.detail).where(
            Event.subscriber_id == subscriber_id, col(Event.kind).in_(["bounce", "complaint"])
        )
        return any(json.loads(detail).get("message_id") == message_id for detail in self.session.exec(query))

    def record(self, kind: str, membership: Membership, edition_id: int | None, **detail: Any) -> None:
        event = audit.record(
            self.session,
            kind,
            actor=self.actor,
            source="mail",
            subscriber_id=membership.subscriber_id,
            group_id=membership.group_id,
            edition_id=edition_id,
            **detail,
        )
        event.at = self.at

    def end(self, membership: Membership, status: MembershipStatus) -> None:
        membership.status, membership.status_changed_at = status, self.at
        self.session.add(membership)
        self.changed += 1


def process(
    session: Session,
    settings: Settings,
    messages: Iterable[Incoming],
    *,
    actor: str,
    at: datetime | None = None,
) -> ProcessReport:
    """Classify every message and apply it; the caller's transaction makes it all-or-nothing."""
    run = _Run(session, settings, actor, at or utcnow())
    report = ProcessReport()
    for incoming in messages:
        found = classify(incoming.data, settings)
        if found.verdict == Verdict.COMPLAINT:
            recipients, action = _complaint(run, found)
        elif found.verdict == Verdict.NONE:
            recipients, action = [], f"nothing ({found.kind})"
        else:
            recipients, action = _bounce(run, found)
        report.outcomes.append(
            Outcome(incoming.label, str(found.verdict), recipients, action, found.message_id)
        )
    report.changed = run.changed
    return report


def _bounce(run: _Run, report: Report) -> tuple[list[str], str]:
    targets: list[tuple[Subscriber, Failure, int | None, int | None]] = []
    if report.verp is not None:
        subscriber = run.session.get(Subscriber, report.verp.subscriber_id)
        edition = run.edition(report.verp.edition_id)
        if subscriber is None:
            return [f.address for f in report.failures], "nothing (the VERP address names no subscriber)"
        failure = _for_subscriber(report.failures, subscriber.email)
        group_id = edition.group_id if edition else None
        targets.append((subscriber, failure, group_id, edition.id if edition else None))
    else:
        edition = run.edition(report.edition_id)
        for failure in report.failures:
            subscriber = run.subscriber(failure.address)
            if subscriber is not None:
                group_id = run.group_id(report.group_slug)
                edition_id = edition.id if edition and edition.group_id == group_id else None
                targets.append((subscriber, failure, group_id, edition_id))
    if not targets:
        return [f.address for f in report.failures], "nothing (no subscriber with that address)"
    actions = [_score(run, report, *target) for target in targets]
    return [t[0].email for t in targets], "; ".join(actions)


def _for_subscriber(failures: tuple[Failure, ...], email: str) -> Failure:
    """The failure about this subscriber: theirs by address, else the only one, else the mildest."""
    mine = [f for f in failures if f.address.casefold() == email.casefold()]
    if mine or len(failures) == 1:
        return (mine or list(failures))[0]
    return next((f for f in failures if not f.hard), failures[0])


def _score(
    run: _Run,
    report: Report,
    subscriber: Subscriber,
    failure: Failure,
    group_id: int | None,
    edition_id: int | None,
) -> str:
    assert subscriber.id is not None
    if run.seen(subscriber.id, report.message_id):
        return "already processed"
    live = [m for m in run.memberships(subscriber.id) if m.status in LIVE]
    config = run.settings.bounces
    detail = {
        "message_id": report.message_id,
        "verdict": "hard" if failure.hard else "soft",
        "status": failure.status,
        "reason": failure.reason,
        "permanent": failure.permanent,
        "via": "verp" if report.verp else ("list-id" if group_id else "address"),
    }
    if failure.hard and config.hard_is_final:
        for membership in live:
            run.end(membership, MembershipStatus.BOUNCED)
            scoped_edition = edition_id if membership.group_id == group_id else None
            run.record("bounce", membership, scoped_edition, outcome="bounced", added=0.0, **detail)
        return f"bounced in {_slugs(run, live)}" if live else "nothing (no active membership)"
    scoped = [m for m in live if group_id is None or m.group_id == group_id]
    weight = config.hard_weight if failure.hard else config.soft_weight
    results = []
    for membership in scoped:
        added = _add(run, membership, weight)
        outcome = "scored"
        if membership.bounce_score >= config.threshold:
            run.end(membership, MembershipStatus.BOUNCED)
            outcome = "bounced"
        run.session.add(membership)
        run.record(
            "bounce",
            membership,
            edition_id,
            outcome=outcome,
            added=added,
            score=membership.bounce_score,
            **detail,
        )
        slug = run.slugs.get(membership.group_id, "?")
        results.append(
            f"bounced in {slug}"
            if outcome == "bounced"
            else f"score {membership.bounce_score:g}/{config.threshold:g} in {slug}"
        )
    return ", ".join(results) or "nothing (no active membership)"


def _add(run: _Run, membership: Membership, weight: float) -> float:
    """Add the day's weight once: a second bounce the same day adds only what it exceeds."""
    since = run.at - timedelta(days=run.settings.bounces.window_days)
    query = select(Event).where(
        Event.kind == "bounce",
        Event.subscriber_id == membership.subscriber_id,
        Event.group_id == membership.group_id,
        col(Event.at) > since,
        col(Event.at) <= run.at,
    )
    recent = list(run.session.exec(query))
    if not recent:
        membership.bounce_score = 0.0
    today = sum(
        float(json.loads(e.detail).get("added") or 0.0) for e in recent if e.at.date() == run.at.date()
    )
    added = max(0.0, weight - today)
    membership.bounce_score += added
    return added


def _complaint(run: _Run, report: Report) -> tuple[list[str], str]:
    subscriber: Subscriber | None = None
    group_id: int | None = None
    edition: Edition | None = None
    if report.verp is not None:
        subscriber = run.session.get(Subscriber, report.verp.subscriber_id)
        edition = run.edition(report.verp.edition_id)
        group_id = edition.group_id if edition else None
    elif report.recipient and report.group_slug:
        subscriber = run.subscriber(report.recipient)
        group_id = run.group_id(report.group_slug)
        edition = run.edition(report.edition_id)
        if edition is not None and edition.group_id != group_id:
            edition = None
    shown = [report.recipient] if report.recipient else []
    if subscriber is None or group_id is None:
        return shown, "nothing (the report names no member of ours)"
    assert subscriber.id is not None
    membership = next((m for m in run.memberships(subscriber.id) if m.group_id == group_id), None)
    slug = run.slugs.get(group_id, "?")
    if membership is None:
        return [subscriber.email], f"nothing (not a member of {slug})"
    if run.seen(subscriber.id, report.message_id):
        return [subscriber.email], "already processed"
    before = membership.status
    if before in LIVE:
        run.end(membership, MembershipStatus.COMPLAINED)
    run.record(
        "complaint",
        membership,
        edition.id if edition else None,
        message_id=report.message_id,
        verdict="complaint",
        feedback_type=report.feedback_type,
        outcome="complained" if before in LIVE else f"already {before}",
        via="verp" if report.verp else "list-id",
    )
    action = f"complained in {slug}" if before in LIVE else f"complaint counted ({before} in {slug})"
    return [subscriber.email], action


def _slugs(run: _Run, memberships: list[Membership]) -> str:
    return ", ".join(run.slugs.get(m.group_id, "?") for m in memberships)


# Reporting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EditionFeedback:
    edition_id: int
    group: str
    subject: str
    sent: int
    bounces: int
    complaints: int

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.sent if self.sent else None


def per_edition(session: Session) -> list[EditionFeedback]:
    """Bounce and complaint events counted per edition, newest edition first."""
    query = (
        select(Event.edition_id, Event.kind, func.count())
        .where(col(Event.kind).in_(["bounce", "complaint"]), col(Event.edition_id).is_not(None))
        .group_by(col(Event.edition_id), col(Event.kind))
    )
    counts: dict[int, dict[str, int]] = {}
    for edition_id, kind, count in session.exec(query):
        counts.setdefault(int(edition_id or 0), {})[kind] = int(count)
    rows = []
    for edition_id in sorted(counts, reverse=True):
        edition = session.get(Edition, edition_id)
        group = session.get(Group, edition.group_id) if edition else None
        rows.append(
            EditionFeedback(
                edition_id,
                group.slug if group else "?",
                edition.subject if edition else "",
                outbox.counts(session, edition_id).get("sent", 0),
                counts[edition_id].get("bounce", 0),
                counts[edition_id].get("complaint", 0),
            )
        )
    return rows
