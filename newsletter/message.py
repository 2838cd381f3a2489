"""Per-recipient email messages: standards-compliant headers around the edition's parts.

The parts were rendered once per language (``render.py``); here each recipient's
values replace the markers, and the message gets its headers: From, To (with the
name), Subject, Date, Message-ID, List-Id (RFC 2919), List-Unsubscribe with a signed
https link and a mailto, List-Unsubscribe-Post (RFC 8058), and a VERP envelope sender.
The standard library's ``email`` package does the encoding (RFC 2047 words for
non-ASCII names and subjects, quoted-printable bodies), and refuses CR or LF in any
header value, so nothing in a title, name or subject can inject a header.
"""

import html
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import quote, urlsplit

from newsletter import i18n, verp
from newsletter.models import utcnow
from newsletter.render import Marker, Rendered
from newsletter.settings import Settings
from newsletter.tokens import Signer

# Bodies are built under the 78-column policy, so quoted-printable lines stay within
# RFC 2045's 76. Headers are written out under a 998-octet policy (RFC 5322's hard
# limit): folded at 78, Python would turn the long List-Unsubscribe URLs into RFC 2047
# encoded words, which no mail client reads as a link.
BODY_POLICY = {False: policy.SMTP, True: policy.SMTPUTF8}
WIRE_POLICY = {
    False: policy.SMTP.clone(max_line_length=998),
    True: policy.SMTPUTF8.clone(max_line_length=998),
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
        self.list_id = f"{_phrase(group_name)} <{group_slug}.{host}>"
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
        message["From"] = self.sender
        local, _, domain = recipient.email.rpartition("@")
        message["To"] = Address(
            display_name=_one_line(recipient.name or ""),
            username=local,
            domain=domain if smtputf8 else ascii_address(recipient.email).rpartition("@")[2],
        )
        if self.settings.site.reply_to:
            message["Reply-To"] = self.settings.site.reply_to
        message["Subject"] = _one_line(self.subject_prefix + rendered.subject)
        message["Date"] = format_datetime(utcnow())
        message_id = make_msgid(
            idstring=f"e{self.edition_id}.s{recipient.subscriber_id}", domain=self.sender_domain
        )
        message["Message-ID"] = message_id
        message["List-Id"] = self.list_id
        mailto = f"mailto:{self.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
        message["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["Feedback-ID"] = f"e{self.edition_id}:{self.group_id}:newsletter"
        message["Content-Language"] = rendered.language
        message.set_content(text_part, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html_part, subtype="html", charset="utf-8", cte="quoted-printable")
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


def _one_line(value: str) -> str:
    """Collapse every kind of line break and run of whitespace to one space."""
    return " ".join(value.split())


def _phrase(name: str) -> str:
    """A display phrase for List-Id: quoted so commas and the like stay inside it."""
    cleaned = _one_line(name).replace("\\", "").replace('"', "'")
    return f'"{cleaned}"'
