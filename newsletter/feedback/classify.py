"""What a returned message is: a complaint, a hard or soft failure, an unsubscribe, or none.

An unsubscribe request is a mail to the ``mailto:`` of ``List-Unsubscribe``
(``delivery/headers.py``): addressed to the unsubscribe mailbox of the site or of a
group with a sender of its own (``core/identity.py``), with the subject
``unsubscribe TOKEN``, the signed token of the message it came from. VERP addresses
are looked for under every bounce address the site's groups send from, and a List-Id
is recognised under each group's List-Id host.

Whether a failure is hard or soft is the bounce policy's rule (``policy.judge``), the
same for a notice read here as for a refusal at send time.
"""

import enum
import re
from dataclasses import dataclass, replace
from email import message_from_string
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr
from urllib.parse import urlsplit

from flufl.bounce import all_failures

from newsletter.core import verp
from newsletter.core.settings import Settings
from newsletter.core.verp import VerpAddress
from newsletter.feedback.policy import judge
from newsletter.feedback.reading import parse

COMPLAINT_TYPES = {"abuse", "fraud", "virus"}
# An RFC 3463 status code, not a piece of an IP address or a version number.
STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
# Where a notice stops and the copy of the returned message starts.
COPY_BREAK = re.compile(
    r"^\s*-*\s*(this is a copy of the message|below this line is a copy|original message)", re.I
)
# flufl.bounce's qmail detector knows a fixed list of intro lines; Yahoo's qmail-derived
# notices open with this one, which it lacks, so they yield nothing (sisimai's
# lhost-yahoo-01). The format is otherwise QSBMF: "<address>:" paragraphs.
YAHOO_INTRO = "Sorry, we were unable to deliver your message to the following address"
QSBMF_RECIPIENT = re.compile(r"^<([^<>\s]+@[^<>\s]+)>:\s*$")
# Where the address a message was delivered to shows (mail clients write To, servers the rest).
DELIVERED_TO = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
# The subject a List-Unsubscribe mailto asks for; a client may put "Re:" or "Fwd:" before it.
UNSUBSCRIBE_SUBJECT = re.compile(r"^(?:\w{1,3}:\s*)*unsubscribe(?:\s+(\S+))?", re.I)


class Verdict(enum.StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    NONE = "not a bounce"
    UNREADABLE = "unreadable"


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
    # Whether the VERP address is in the message's own header (where the mail server writes
    # the address it delivered to), not only quoted inside the notice or the returned copy.
    verp_in_header: bool = False
    group_slug: str | None = None  # from the returned message's List-Id
    edition_id: int | None = None  # from the returned message's Feedback-ID
    recipient: str | None = None  # a complaint's reported recipient
    feedback_type: str | None = None
    token: str | None = None  # an unsubscribe request's token, as written (not yet verified)


def classify(data: bytes, settings: Settings) -> Report:
    """What the message is: a complaint, a hard or soft bounce, or not a bounce."""
    message = parse(data)
    message_id = _header(message, "Message-ID")
    in_header = _find_verp(_header_block(data), settings)
    found = in_header or _find_verp(data, settings)
    original = _returned(message)
    slug, edition_id = _origin(original, settings)
    base = Report(
        Verdict.NONE,
        "",
        message_id,
        verp=found,
        verp_in_header=in_header is not None,
        group_slug=slug,
        edition_id=edition_id,
    )
    if message.get_content_type() != "multipart/report" and _addressed_to(
        message, {identity.unsubscribe_address for identity in settings.identities().values()}
    ):
        wanted = UNSUBSCRIBE_SUBJECT.match(_header(message, "Subject") or "")
        token = wanted.group(1) if wanted else None
        return replace(base, verdict=Verdict.UNSUBSCRIBE, kind="unsubscribe request", token=token)
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
    hard, reason = judge(permanent, status)
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


def _addressed_to(message: Message, addresses: set[str]) -> bool:
    wanted = {address.casefold() for address in addresses}
    values = [str(v) for name in DELIVERED_TO for v in message.get_all(name) or []]
    return any(found.casefold() in wanted for _, found in getaddresses(values))


def _header_block(data: bytes) -> bytes:
    ends = [end for end in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if end >= 0]
    return data[: min(ends)] if ends else data


def _find_verp(data: bytes, settings: Settings) -> VerpAddress | None:
    """The first genuine VERP (edition, probe or user) address in the message (envelope headers first)."""
    # Every bounce address a message of the site may have gone out from (groups have their own).
    bounces = sorted({identity.bounce_address for identity in settings.identities().values()})
    alternatives = []
    for bounce in bounces:
        local, _, domain = bounce.rpartition("@")
        alternatives.append(re.escape(local) + r"\+[epu]\d+\.s\d+\.[0-9a-f]{8}@" + re.escape(domain))
    pattern = re.compile("(?:" + "|".join(alternatives) + r")(?![\w.-])", re.I)
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
    slug = None
    list_id = re.search(r"<([^<>]+)>", _header(original, "List-Id") or "")
    if list_id:
        found = list_id.group(1).lower()
        # Today's List-Ids (the group under its sender's domain), and those of messages sent
        # before the List-Id stopped following the website's host.
        website = urlsplit(settings.site.base_url).hostname or ""
        for candidate in settings.groups:
            if found in (settings.identity(candidate).list_id(candidate), f"{candidate}.{website.lower()}"):
                slug = candidate
                break
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
