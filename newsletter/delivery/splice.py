"""Personalising by splicing: each recipient's message joined from pre-encoded byte slices.

``MessageFactory.build`` (``message.py``) is the reference: it builds every message with
``email.message``, which costs milliseconds. A :class:`Splicer` asks the factory once per
language (and once more for SMTPUTF8 recipients) for a template message, keeps its
header lines and MIME structure as bytes, and re-encodes the two bodies as slices:

* each constant stretch of a body is quoted-printable encoded on its own and ends in a
  soft line break (``=\\r\\n``), so every per-recipient value starts at column 0, no
  marker is ever cut by a soft break, and no encoded line exceeds RFC 2045's 76 octets;
* each value (greeting, unsubscribe and preferences URLs) is encoded the same way per
  recipient; URL characters need no escaping, so that is mostly slicing;
* the header lines that differ per recipient (To, Date, Message-ID, List-Unsubscribe)
  are filled in with the values of the factory's own ``headers.ListHeaders`` and
  ``headers.mailbox``, the very functions the factory writes them with; so are the
  VERP envelope sender and the links in the bodies.

Decoded, the result is what the factory builds for the same recipient, apart from the
Message-ID and Date (``tests/test_splice.py`` proves it over generated names and
addresses). A recipient whose name holds a line break (the greeting would carry it into
the bodies, where line ends are normalised) goes through the factory instead.
"""

import binascii
import dataclasses
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.core import i18n
from newsletter.core.errors import SpliceError
from newsletter.delivery import dkim, headers
from newsletter.delivery.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.editions.render import Marker

CRLF = b"\r\n"
SOFT = b"=\r\n"
# Quoted-printable lines are at most 76 octets, the soft-break "=" included.
QP_WIDTH = 76
# Octets that stand for themselves in quoted-printable (RFC 2045 6.7), space and tab aside.
_LITERAL = frozenset(range(33, 127)) - {ord("=")}
_QP = [bytes([b]) if b in _LITERAL or b in (9, 32) else b"=%02X" % b for b in range(256)]
_SAFE_TEXT = re.compile(r"[ -<>-~]*")  # printable ASCII without "="


def qp_encode(data: bytes) -> bytes:
    """Quoted-printable lines for ``data`` (LF = hard line break), ending in a soft break.

    Whitespace before a hard break is encoded, so no decoder strips it; the final soft
    break lets the next slice start at column 0.
    """
    out: list[bytes] = []
    for number, line in enumerate(data.split(b"\n")):
        if number:
            out.append(CRLF)
        width = 0
        last = len(line) - 1
        for index, octet in enumerate(line):
            piece = _QP[octet]
            if octet in (9, 32) and index == last:
                piece = b"=%02X" % octet
            if width + len(piece) > QP_WIDTH - 1:
                out.append(SOFT)
                width = 0
            out.append(piece)
            width += len(piece)
    if not data.endswith(b"\n"):
        out.append(SOFT)
    return b"".join(out)


def qp_safe(value: str) -> bytes:
    """:func:`qp_value` of text known to be printable ASCII without "=": only cut into lines."""
    data = value.encode("ascii")
    width = QP_WIDTH - 1
    if len(data) <= width:
        return data + SOFT
    return SOFT.join([data[i : i + width] for i in range(0, len(data), width)]) + SOFT


def qp_value(value: str) -> bytes:
    """One per-recipient value, quoted-printable, starting at column 0 and ending in a soft break."""
    if _SAFE_TEXT.fullmatch(value):
        return qp_safe(value)
    data = value.encode("utf-8")
    if b"\n" in data or b"\r" in data:
        return qp_encode(data)
    # One line: the C encoder wraps it at 76 with soft breaks ("=\n"); its last line may
    # take all 76 octets, leaving no room for our closing soft break.
    encoded = binascii.b2a_qp(data, istext=False)
    if len(encoded) - encoded.rfind(b"\n") - 1 > QP_WIDTH - 1:
        return qp_encode(data)
    return encoded.replace(b"=\n", SOFT) + SOFT


@dataclass(frozen=True)
class _Body:
    """One MIME part's payload as constant slices and the values that go between them."""

    slices: tuple[bytes, ...]
    # The marker after each slice but the last (same length as slices minus one).
    markers: tuple[Marker, ...]

    @classmethod
    def of(cls, content: str) -> "_Body":
        # What set_content does: split the lines (bytes: CR, LF, CRLF), LF-join, end with LF.
        normal = b"\n".join(content.encode("utf-8").splitlines()) + b"\n"
        pattern = re.compile("|".join(re.escape(m.value) for m in Marker).encode())
        slices, markers, start = [], [], 0
        for match in pattern.finditer(normal):
            slices.append(qp_encode(normal[start : match.start()]))
            markers.append(Marker(match.group().decode()))
            start = match.end()
        slices.append(qp_encode(normal[start:]))
        return cls(tuple(slices), tuple(markers))

    def program(self, slots: dict[Marker, int]) -> list[bytes | int]:
        """The slices with slot numbers where the values go."""
        out: list[bytes | int] = [self.slices[0]]
        for marker, piece in zip(self.markers, self.slices[1:], strict=True):
            out += [slots[marker], piece]
        return out


# The per-recipient values, by slot number.
TO, DATE, MESSAGE_ID, LIST_UNSUBSCRIBE = range(4)
GREETING_TEXT, GREETING_HTML, UNSUBSCRIBE_QP, PREFERENCES_QP, UNSUBSCRIBE_HTML, PREFERENCES_HTML = range(
    4, 10
)
TEXT_SLOTS = {
    Marker.GREETING: GREETING_TEXT,
    Marker.UNSUBSCRIBE_URL: UNSUBSCRIBE_QP,
    Marker.PREFERENCES_URL: PREFERENCES_QP,
}
HTML_SLOTS = {
    Marker.GREETING: GREETING_HTML,
    Marker.UNSUBSCRIBE_URL: UNSUBSCRIBE_HTML,
    Marker.PREFERENCES_URL: PREFERENCES_HTML,
}


@dataclass(frozen=True)
class _Template:
    """One language's message (for SMTPUTF8 recipients or not) cut into slices."""

    head: bytes  # the header lines before To
    middle: bytes  # between To and Date
    after_date: bytes  # between Date and Message-ID
    after_id: bytes  # between Message-ID and List-Unsubscribe
    tail: bytes  # after List-Unsubscribe, to the first part's payload
    text: _Body
    between: bytes  # end of the text part to the HTML part's payload
    body: _Body
    end: bytes  # the closing boundary
    hello: str  # the greeting without a name
    dear: str  # the greeting with "%(name)s"

    def program(self) -> tuple[list[bytes], list[tuple[int, int]]]:
        """The whole message as constant slices, and (position, slot) pairs to fill in."""
        steps: list[bytes | int] = [
            self.head, b"To: ", TO, CRLF, self.middle, DATE, self.after_date,
            b"Message-ID: ", MESSAGE_ID, CRLF, self.after_id,
            b"List-Unsubscribe: ", LIST_UNSUBSCRIBE, CRLF, self.tail,
            *self.text.program(TEXT_SLOTS), self.between, *self.body.program(HTML_SLOTS), self.end,
        ]  # fmt: skip
        slices = [step if isinstance(step, bytes) else b"" for step in steps]
        return slices, [(at, step) for at, step in enumerate(steps) if isinstance(step, int)]


def _fields(block: bytes) -> list[tuple[str, bytes]]:
    """Header fields (lower-case name, the field's bytes with its CRLF) in order."""
    fields: list[tuple[str, bytes]] = []
    for line in block.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + CRLF)
        else:
            fields.append((line.split(b":", 1)[0].decode("ascii", "replace").lower(), line + CRLF))
    return fields


def _cut(data: bytes, text: str, body: str, language: str) -> _Template:
    head_block, _, payload = data.partition(CRLF + CRLF)
    fields = _fields(head_block)
    names = [name for name, _ in fields]
    slots = ["to", "date", "message-id", "list-unsubscribe"]
    if any(names.count(slot) != 1 for slot in slots):
        raise SpliceError(f"unexpected header fields {names}")
    positions = [names.index(slot) for slot in slots]
    if positions != sorted(positions):
        raise SpliceError(f"unexpected header order {names}")
    pieces, start = [], 0
    for position in positions:
        pieces.append(b"".join(raw for _, raw in fields[start:position]))
        start = position + 1
    content_type = dict(fields).get("content-type", b"")
    match = re.search(rb'boundary="([^"]+)"', content_type)
    if match is None:
        raise SpliceError("the reference message is not multipart")
    delimiter = b"--" + match.group(1)
    parts = payload.split(delimiter)
    # preamble, text part, HTML part, "--" epilogue
    if len(parts) != 4 or not parts[3].startswith(b"--"):
        raise SpliceError("the reference message does not have two parts")
    part_heads = []
    for part in parts[1:3]:
        part_head, separator, _ = part.partition(CRLF + CRLF)
        if not separator or b"quoted-printable" not in part_head.lower():
            raise SpliceError("the reference parts are not quoted-printable")
        part_heads.append(part_head + CRLF + CRLF)
    if b"text/plain" not in part_heads[0] or b"text/html" not in part_heads[1]:
        raise SpliceError("the reference parts are not text/plain then text/html")
    translations = i18n.translations(language)
    return _Template(
        head=pieces[0],
        middle=pieces[1],
        after_date=pieces[2],
        after_id=pieces[3],
        tail=b"".join(raw for _, raw in fields[start:]) + CRLF + parts[0] + delimiter + part_heads[0],
        text=_Body.of(text),
        between=CRLF + delimiter + part_heads[1],
        body=_Body.of(body),
        end=CRLF + delimiter + b"--" + parts[3][2:],
        hello=translations.gettext("Hello,"),
        dear=translations.gettext("Dear %(name)s,"),
    )


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = b"Date: " + headers.date().encode("ascii") + CRLF
        return self.value


class Splicer:
    """Builds every recipient's message of one edition from slices; same API as the factory."""

    def __init__(
        self, factory: MessageFactory, signer: dkim.DkimSigner | None = None, *, defer_signature: bool = False
    ) -> None:
        """``signer``: DKIM-sign each message; ``defer_signature``: leave the signature
        hashed but not made (``OutgoingMessage.pending``), for the engine to make on another core."""
        self.factory = factory
        self.headers = factory.headers
        self.edition_id = factory.edition_id
        self.signer = signer
        self.defer_signature = defer_signature
        self._slow = _whole(factory.build, signer, defer_signature)
        self._templates: dict[tuple[str, bool], _Cut] = {}
        self._clock = _Clock()
        # Tokens are URL-safe base64 and dots: the URLs need HTML escaping only if the base does.
        base = self.headers.unsubscribe_base + self.headers.preferences_base
        self._urls_need_escaping = html.escape(base) != base
        # The same characters need no quoted-printable escaping either when the base has none.
        self._qp_url = qp_safe if _SAFE_TEXT.fullmatch(base) else qp_value

    def template(self, language: str, utf8: bool) -> "_Cut":
        key = (language, utf8)
        found = self._templates.get(key)
        if found is None:
            rendered = self.factory.parts[language]
            # Placeholder values: only the header block and MIME structure are kept.
            placeholder = Recipient(0, ("ü" if utf8 else "x") + "@placeholder.invalid", None, language)
            reference = self.factory.build(placeholder)
            template = _cut(reference.data, rendered.text, rendered.html, language)
            slices, slots = template.program()
            signing = dkim.Spliced(self.signer, slices, [at for at, _ in slots]) if self.signer else None
            found = self._templates[key] = (template, slices, slots, signing)
        return found

    def build(self, recipient: Recipient) -> OutgoingMessage:
        name = recipient.name
        if name and ("\r" in name or "\n" in name):
            return self._slow(recipient)
        utf8, envelope_recipient, address = headers.recipient_address(recipient.email)
        template, slices, slots, signing = self.template(recipient.language, utf8)
        list_headers = self.headers
        subscriber_id = recipient.subscriber_id
        token, unsubscribe, preferences = list_headers.links(subscriber_id)
        unsubscribe_qp, preferences_qp = self._qp_url(unsubscribe), self._qp_url(preferences)
        if self._urls_need_escaping:
            unsubscribe_html, preferences_html = (
                qp_value(html.escape(unsubscribe)),
                qp_value(html.escape(preferences)),
            )
        else:
            unsubscribe_html, preferences_html = unsubscribe_qp, preferences_qp
        if name:
            greeting = template.dear % {"name": name}
            mailbox = headers.mailbox(name, address, utf8=utf8)
        else:
            greeting, mailbox = template.hello, address
        greeting_text = qp_value(greeting)
        escaped = html.escape(greeting)
        greeting_html = greeting_text if escaped == greeting else qp_value(escaped)
        message_id = list_headers.message_id(subscriber_id)
        values = (
            mailbox.encode("utf-8"), self._clock.date(), message_id.encode("ascii"),
            list_headers.list_unsubscribe(token).encode("ascii"),
            greeting_text, greeting_html, unsubscribe_qp, preferences_qp, unsubscribe_html, preferences_html,
        )  # fmt: skip
        pieces = slices.copy()
        for at, slot in slots:
            pieces[at] = values[slot]
        message = OutgoingMessage(
            sender=list_headers.return_path(subscriber_id),
            recipient=envelope_recipient,
            data=b"".join(pieces),
            smtputf8=utf8,
            message_id=message_id,
            edition_id=self.edition_id,
            delivery_id=recipient.delivery_id,
            subscriber_id=subscriber_id,
            pending=signing.pending(pieces) if signing else None,
        )
        return message if self.defer_signature else message.sealed()


Builder = Callable[[Recipient], OutgoingMessage]
# A template's slices, the (position, slot) pairs of its values, and its DKIM signing.
_Cut = tuple[_Template, list[bytes], list[tuple[int, int]], dkim.Spliced | None]


def builder(factory: MessageFactory, *, defer_signature: bool = False) -> Builder:
    """How each recipient's message is built: spliced (or the slow path), DKIM-signed if configured.

    The group's key signs when it has one of its own, else the site's (core/identity.py).
    ``defer_signature``: see :class:`Splicer`.
    """
    signer = dkim.DkimSigner.from_settings(factory.settings, factory.headers.identity)
    if factory.subject_prefix:
        # Test copies: one message, built the slow way.
        return _whole(factory.build, signer, defer_signature)
    splicer = Splicer(factory, signer, defer_signature=defer_signature)
    try:
        # Every template is cut before the first message, so a message shape the
        # splicer does not expect means the slow path for all, never a send cut short.
        for language in factory.parts:
            for utf8 in (False, True):
                splicer.template(language, utf8)
    except SpliceError:
        return _whole(factory.build, signer, defer_signature)
    return splicer.build


def _whole(build: Builder, signer: dkim.DkimSigner | None, defer_signature: bool) -> Builder:
    """``build``, with each whole message DKIM-signed when there is a signer."""
    if signer is None:
        return build

    def signed(recipient: Recipient) -> OutgoingMessage:
        message = build(recipient)
        message = dataclasses.replace(message, pending=signer.pending_for(message.data))
        return message if defer_signature else message.sealed()

    return signed
