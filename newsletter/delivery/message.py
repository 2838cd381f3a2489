"""Per-recipient email messages: standards-compliant headers around the edition's parts.

The parts were rendered once per language (``render.py``); here each recipient's
values replace the markers, and the message gets its headers: From, To (with the
name), Subject, Date, Message-ID, List-Id (RFC 2919), List-Unsubscribe with a signed
https link and a mailto, List-Unsubscribe-Post (RFC 8058), and a VERP envelope sender.
Names and subjects become RFC 2047 encoded-words when they are not plain printable
text, and every kind of line break in them collapses to a space first, so nothing in a
title, name or subject can inject a header. The bodies are quoted-printable.
"""

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import quote, urlsplit

from newsletter.core import i18n, verp
from newsletter.core.models import utcnow
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.editions.render import Marker, Rendered, one_line

# Bodies are encoded under a 76-column policy: Python's quoted-printable encoder makes
# lines as long as the policy allows, and RFC 2045 allows 76. The headers that carry
# free text (From, To, Subject, List-Id) and the long List-Unsubscribe URLs are written
# by ``_text`` and ``_phrase`` below and stored with ``set_raw``; ``refold_source="none"``
# writes them out as they are. Python's own folder is not trusted with them: it drops or
# adds spaces between encoded-words, writes encoded-words longer than RFC 2047's 75
# characters, and would turn a long URL into encoded-words no mail client reads as a link.
BODY_POLICY = {
    False: policy.SMTP.clone(max_line_length=76),
    True: policy.SMTPUTF8.clone(max_line_length=76),
}
WIRE_POLICY = {
    False: policy.SMTP.clone(max_line_length=76, refold_source="none"),
    True: policy.SMTPUTF8.clone(max_line_length=76, refold_source="none"),
}


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None
    language: str
    delivery_id: int | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """What a transport needs: the envelope and the bytes."""

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool
    message_id: str
    edition_id: int
    delivery_id: int | None
    subscriber_id: int


def ascii_address(email: str) -> str:
    """The address with an IDNA domain; the local part is left alone (SMTPUTF8 if needed)."""
    local, _, domain = email.rpartition("@")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        import idna

        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local}@{domain}"


class MessageFactory:
    """Builds every recipient's message of one edition."""

    def __init__(
        self,
        settings: Settings,
        signer: Signer,
        *,
        edition_id: int,
        group_id: int,
        group_slug: str,
        group_name: str,
        parts: Mapping[str, Rendered],
        subject_prefix: str = "",
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.edition_id = edition_id
        self.group_id = group_id
        self.parts = parts
        self.subject_prefix = subject_prefix
        base = settings.site.base_url
        self.base_url = base
        self.sender = settings.site.sender
        sender_address = parseaddr(self.sender)[1]
        self.sender_domain = sender_address.rpartition("@")[2]
        self.bounce_address = settings.bounce_address
        host = urlsplit(base).hostname or self.sender_domain
        self.list_id = f"{_phrase(group_name, 'List-Id', utf8=False)} <{group_slug}.{host}>"
        self.unsubscribe_mailto = settings.unsubscribe_address
        self.secret = settings.signing_key

    def links(self, recipient: Recipient) -> tuple[str, str, str]:
        """The recipient's unsubscribe URL, preferences URL and unsubscribe token."""
        token = self.signer.make("unsubscribe", recipient.subscriber_id, self.group_id)
        preferences = self.signer.make("preferences", recipient.subscriber_id, self.group_id)
        return f"{self.base_url}/unsubscribe/{token}", f"{self.base_url}/preferences/{preferences}", token

    def personalise(self, rendered: Rendered, recipient: Recipient) -> tuple[str, str]:
        """The HTML and text parts with the recipient's values in place of the markers."""
        unsubscribe, preferences, _ = self.links(recipient)
        gettext = i18n.translations(rendered.language).gettext
        greeting = (
            gettext("Dear %(name)s,") % {"name": recipient.name} if recipient.name else gettext("Hello,")
        )
        values_html = {
            Marker.GREETING: html.escape(greeting),
            Marker.UNSUBSCRIBE_URL: html.escape(unsubscribe),
            Marker.PREFERENCES_URL: html.escape(preferences),
        }
        values_text = {
            Marker.GREETING: greeting,
            Marker.UNSUBSCRIBE_URL: unsubscribe,
            Marker.PREFERENCES_URL: preferences,
        }
        html_part, text_part = rendered.html, rendered.text
        for marker in Marker:
            html_part = html_part.replace(marker.value, values_html[marker])
            text_part = text_part.replace(marker.value, values_text[marker])
        return html_part, text_part

    def build(self, recipient: Recipient) -> OutgoingMessage:
        rendered = self.parts[recipient.language]
        html_part, text_part = self.personalise(rendered, recipient)
        unsubscribe, _, token = self.links(recipient)
        smtputf8 = not recipient.email.rpartition("@")[0].isascii()
        message = EmailMessage(policy=BODY_POLICY[smtputf8])
        sender_name, sender_address = parseaddr(self.sender)
        message.set_raw("From", _mailbox(sender_name, sender_address, "From", utf8=smtputf8))
        local, _, domain = recipient.email.rpartition("@")
        address = Address(
            username=local, domain=domain if smtputf8 else ascii_address(recipient.email).rpartition("@")[2]
        ).addr_spec
        message.set_raw("To", _mailbox(recipient.name or "", address, "To", utf8=smtputf8))
        if self.settings.site.reply_to:
            message["Reply-To"] = self.settings.site.reply_to
        message.set_raw("Subject", _text(self.subject_prefix + rendered.subject, "Subject", utf8=smtputf8))
        message["Date"] = format_datetime(utcnow())
        message_id = make_msgid(
            idstring=f"e{self.edition_id}.s{recipient.subscriber_id}", domain=self.sender_domain
        )
        message["Message-ID"] = message_id
        message.set_raw("List-Id", self.list_id)
        mailto = f"mailto:{self.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
        # Both URLs are ASCII (a URL-safe token, a percent-quoted subject); one per line.
        message.set_raw("List-Unsubscribe", f"<{unsubscribe}>,\n <{mailto}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Feedback-ID"] = f"e{self.edition_id}:{self.group_id}:newsletter"
        message.set_content(text_part, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html_part, subtype="html", charset="utf-8", cte="quoted-printable")
        # Set after the parts: add_alternative moves Content-* headers into the first part.
        message["Content-Language"] = rendered.language
        sender = verp.encode(self.bounce_address, self.secret, self.edition_id, recipient.subscriber_id)
        return OutgoingMessage(
            sender=sender,
            recipient=recipient.email if smtputf8 else ascii_address(recipient.email),
            data=message.as_bytes(policy=WIRE_POLICY[smtputf8]),
            smtputf8=smtputf8,
            message_id=message_id,
            edition_id=self.edition_id,
            delivery_id=recipient.delivery_id,
            subscriber_id=recipient.subscriber_id,
        )


# RFC 5322 atext: a phrase made only of these (and spaces) needs no quotes.
ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
# Room on a header line for text written as it is (RFC 5322: 998 octets at most).
RAW_LIMIT = 900


def _as_is(value: str, *, utf8: bool) -> bool:
    """Whether text can go into a header unencoded: printable, short, no encoded-word look-alike."""
    return (
        (utf8 or value.isascii())
        and value.isprintable()
        and "=?" not in value
        and len(value.encode("utf-8")) < RAW_LIMIT
    )


def _encoded(value: str, header: str) -> str:
    """RFC 2047 encoded-words of at most 75 characters, one per folded line; decodes exactly."""
    return Header(value, "utf-8", maxlinelen=76, header_name=header).encode(linesep="\n")


def _text(value: str, header: str, *, utf8: bool) -> str:
    """Unstructured text (a subject) on one line, or as encoded-words when it has to be."""
    value = one_line(value)
    return value if _as_is(value, utf8=utf8) else _encoded(value, header)


def _phrase(name: str, header: str, *, utf8: bool) -> str:
    """A display name: as it is, quoted when it has specials (commas...), or encoded-words."""
    name = one_line(name)
    if not _as_is(name, utf8=utf8):
        return _encoded(name, header)
    if ATEXT.fullmatch(name) or (utf8 and ATEXT.fullmatch(re.sub(r"[^\x00-\x7f]", "a", name))):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mailbox(name: str, address: str, header: str, *, utf8: bool) -> str:
    """``Name <address>``, or the bare address when there is no name."""
    name = one_line(name)
    return f"{_phrase(name, header, utf8=utf8)} <{address}>" if name else address
