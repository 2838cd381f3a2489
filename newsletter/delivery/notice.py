"""Short plain-text messages to one person: the confirmation email, a probe, a sign-in link, a digest.

A list's notices (confirmation, probe) carry the group's List-Id, List-Unsubscribe and
Message-ID from ``headers.py`` (as edition 0) and go out from a VERP address the caller
chooses (:func:`notice_message`); the workspace's own mail (sign-in links, notification
digests) is personal (:func:`personal_message`), from the user's own VERP address, under
the site's identity. All are one text part, DKIM-signed with the key of the identity they
are sent under (:func:`text_message`).
"""

from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import parseaddr

from newsletter.core import verp
from newsletter.core.settings import SenderIdentity, Settings
from newsletter.delivery import dkim
from newsletter.delivery.headers import (
    AUTO_SUBMITTED,
    BODY_POLICY,
    WIRE_POLICY,
    ListHeaders,
    MessageIds,
    date,
    mailbox,
    recipient_address,
    unstructured,
)
from newsletter.delivery.message import OutgoingMessage


def notice_message(
    settings: Settings,
    headers: ListHeaders,
    *,
    subscriber_id: int,
    email: str,
    name: str | None,
    language: str,
    subject: str,
    body: str,
    unsubscribe_token: str,
    sender: str,
) -> OutgoingMessage:
    """``body`` as a quoted-printable text part to ``email``, from the envelope ``sender``."""
    smtputf8, recipient, address = recipient_address(email)
    message_id = headers.message_id(subscriber_id)
    fields = headers.fields(
        name=name,
        address=address,
        subject=subject,
        message_id=message_id,
        token=unsubscribe_token,
        utf8=smtputf8,
    )
    return text_message(
        settings,
        fields,
        body,
        language=language,
        recipient=recipient,
        smtputf8=smtputf8,
        message_id=message_id,
        sender=sender,
        subscriber_id=subscriber_id,
        identity=headers.identity,
    )


def personal_message(
    settings: Settings,
    *,
    user_id: int,
    email: str,
    name: str,
    subject: str,
    body: str,
    language: str,
    campaign: str,
    extra: Iterable[tuple[str, str]] = (),
) -> OutgoingMessage:
    """A message to one person of the workspace (a sign-in link, a digest), not a list's.

    From the site's sender, ``Auto-Submitted: auto-generated`` (RFC 3834) so that
    auto-responders stay quiet, the user's signed VERP address as the envelope sender
    (``verp.envelope_senders``: its bounce is recognised as ours, and names no
    subscriber); ``extra`` header fields go before Auto-Submitted.
    """
    smtputf8, recipient, address = recipient_address(email)
    sender_name, sender_address = parseaddr(settings.site.sender)
    message_id = MessageIds(campaign, sender_address.rpartition("@")[2]).make(0)
    fields = [
        ("From", mailbox(sender_name, sender_address, utf8=smtputf8)),
        ("To", mailbox(name, address, utf8=smtputf8)),
        ("Subject", unstructured(subject, utf8=smtputf8)),
        ("Date", date()),
        ("Message-ID", message_id),
        *extra,
        ("Auto-Submitted", AUTO_SUBMITTED),
    ]
    return text_message(
        settings,
        fields,
        body,
        language=language,
        recipient=recipient,
        smtputf8=smtputf8,
        message_id=message_id,
        sender=verp.envelope_senders(settings, "user", user_id)(0),
    )


def text_message(
    settings: Settings,
    fields: Iterable[tuple[str, str]],
    body: str,
    *,
    language: str,
    recipient: str,
    smtputf8: bool,
    message_id: str,
    sender: str,
    subscriber_id: int = 0,
    identity: SenderIdentity | None = None,
) -> OutgoingMessage:
    """A one-part text message with the header ``fields`` as given, DKIM-signed when ``identity``
    (a list's, else the site's) has a key."""
    message = EmailMessage(policy=BODY_POLICY[smtputf8])
    for field, value in fields:
        message.set_raw(field, value)
    message.set_content(body + "\n", charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = language
    data = message.as_bytes(policy=WIRE_POLICY[smtputf8])
    sign = dkim.signer_for(settings, identity)
    return OutgoingMessage(
        sender=sender,
        recipient=recipient,
        data=sign(data) if sign is not None else data,
        smtputf8=smtputf8,
        message_id=message_id,
        edition_id=0,
        delivery_id=None,
        subscriber_id=subscriber_id,
    )
