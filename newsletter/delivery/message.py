"""Per-recipient email messages: the edition's parts and the list's headers, built with ``email.message``.

The parts were rendered once per language (``render.py``); here each recipient's
values replace the markers, and the message gets its headers from ``headers.py``
(From, To with the name, Subject, Date, Message-ID, List-Id, List-Unsubscribe and
List-Unsubscribe-Post, a VERP envelope sender). The bodies are quoted-printable.
This is the reference the splicer (``splice.py``) is checked against.
"""

import dataclasses
import html
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage

from newsletter.core import i18n
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.delivery.dkim import Pending
from newsletter.delivery.headers import BODY_POLICY, WIRE_POLICY, ListHeaders, recipient_address
from newsletter.editions.render import Marker, Rendered


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None
    language: str
    delivery_id: int | None = None
    # The member's choice of topics as stored (audience/topics.py); None: every item.
    topics: str | None = None


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
    # DKIM signatures hashed but not made yet: the engine makes them on another core
    # (``sealed``); a transport only ever gets sealed messages.
    pending: Pending | None = None

    def sealed(self) -> "OutgoingMessage":
        """The message with its DKIM signature(s) on top (itself when none is pending)."""
        if self.pending is None:
            return self
        return dataclasses.replace(self, data=self.pending.seal() + self.data, pending=None)


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
        self.headers = ListHeaders(
            settings,
            signer,
            edition_id=edition_id,
            group_id=group_id,
            group_slug=group_slug,
            group_name=group_name,
        )

    def links(self, recipient: Recipient) -> tuple[str, str, str]:
        """The recipient's unsubscribe token, unsubscribe URL and preferences URL."""
        return self.headers.links(recipient.subscriber_id)

    def personalise(
        self, rendered: Rendered, recipient: Recipient, links: tuple[str, str, str] | None = None
    ) -> tuple[str, str]:
        """The HTML and text parts with the recipient's values in place of the markers."""
        _, unsubscribe, preferences = links or self.links(recipient)
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
        links = self.links(recipient)
        html_part, text_part = self.personalise(rendered, recipient, links)
        smtputf8, envelope_recipient, address = recipient_address(recipient.email)
        message = EmailMessage(policy=BODY_POLICY[smtputf8])
        message_id = self.headers.message_id(recipient.subscriber_id)
        for name, value in self.headers.fields(
            name=recipient.name,
            address=address,
            subject=self.subject_prefix + rendered.subject,
            message_id=message_id,
            token=links[0],
            utf8=smtputf8,
        ):
            message.set_raw(name, value)
        message.set_content(text_part, subtype="plain", charset="utf-8", cte="quoted-printable")
        message.add_alternative(html_part, subtype="html", charset="utf-8", cte="quoted-printable")
        # Set after the parts: add_alternative moves Content-* headers into the first part.
        message["Content-Language"] = rendered.language
        return OutgoingMessage(
            sender=self.headers.return_path(recipient.subscriber_id),
            recipient=envelope_recipient,
            data=message.as_bytes(policy=WIRE_POLICY[smtputf8]),
            smtputf8=smtputf8,
            message_id=message_id,
            edition_id=self.edition_id,
            delivery_id=recipient.delivery_id,
            subscriber_id=recipient.subscriber_id,
        )
