"""The header fields of every outgoing message, written in one place.

Three builders make messages: the edition message (``message.py``, the reference,
built with ``email.message``), the splicer (``splice.py``, which joins pre-encoded
slices for each recipient) and the double opt-in email (``confirmation.py``). All of
them take their header values from here, so an edition message, its spliced copy and
a confirmation carry the same From and Reply-To, the same List-Id (RFC 2919), the
same List-Unsubscribe shape (RFC 2369, a signed https link first for RFC 8058's
one-click POST, then a mailto), the same Message-ID form and a signed VERP envelope
sender (``core/verp.py``). Who a message is from is the group's sender identity
(``core/identity.py``: its own From, Reply-To, List-Id host, bounce address and DKIM
key, each falling back to the site's), so every message to a member of a group,
edition, confirmation or probe, says the same thing about its sender.

:class:`ListHeaders` holds one list's values for one edition (edition 0: the list's
confirmation emails). What is the same for every recipient is worked out once; each
per-recipient value (unsubscribe token and URL, preferences URL, List-Unsubscribe,
Message-ID, VERP sender) costs a microsecond or two, so the splicer, which builds a
message in tens of microseconds, calls the same methods as the reference.

The encoders below write names and subjects as RFC 5322 / RFC 2047 header text:
as they are when they are short printable text, quoted when a name has specials
(commas...), else as base64 encoded-words of whole characters, at most 64 characters
each (RFC 2047 allows 75) so a Subject line stays under 78. Every kind of line break
collapses to a space first (``one_line``), so nothing in a title, name or subject can
start a header of its own. The values are stored with ``set_raw`` and written out
under :data:`WIRE_POLICY` (``refold_source="none"``) exactly as they are: Python's
own folder drops or adds spaces between encoded-words, writes encoded-words longer
than 75 characters and would turn a long URL into encoded-words no client reads.
"""

import binascii
import itertools
import os
import re
import secrets
import time
from email import policy
from email.headerregistry import Address
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

from newsletter.core import verp
from newsletter.core.models import utcnow
from newsletter.core.settings import Settings
from newsletter.core.tokens import Signer
from newsletter.editions.render import one_line

# Bodies are encoded under a 76-column policy: Python's quoted-printable encoder makes
# lines as long as the policy allows, and RFC 2045 allows 76.
BODY_POLICY = {
    False: policy.SMTP.clone(max_line_length=76),
    True: policy.SMTPUTF8.clone(max_line_length=76),
}
WIRE_POLICY = {
    False: policy.SMTP.clone(max_line_length=76, refold_source="none"),
    True: policy.SMTPUTF8.clone(max_line_length=76, refold_source="none"),
}
# RFC 8058: the POST body a one-click unsubscribe sends to the https URL.
ONE_CLICK = "List-Unsubscribe=One-Click"
# RFC 3834: a confirmation is sent by the machine in answer to a sign-up.
AUTO_SUBMITTED = "auto-generated"

# RFC 5322 atext: a phrase made only of these (and single spaces) needs no quotes.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Room on a header line for text written as it is (RFC 5322: 998 octets at most).
_RAW_LIMIT = 900
# "=?utf-8?b?" + 52 base64 characters + "?=": 64 characters for 39 octets.
_WORD_OCTETS = 39


def encoded_words(value: str) -> str:
    """RFC 2047 base64 encoded-words of whole characters, one per folded line; decodes exactly."""
    whole = value.encode("utf-8")
    if len(whole) <= _WORD_OCTETS:
        # Most names fit one word.
        return f"=?utf-8?b?{binascii.b2a_base64(whole, newline=False).decode()}?="
    words: list[bytes] = []
    chunk = bytearray()
    for character in value:
        octets = character.encode("utf-8")
        if len(chunk) + len(octets) > _WORD_OCTETS:
            words.append(bytes(chunk))
            chunk.clear()
        chunk += octets
    words.append(bytes(chunk))
    return "\r\n ".join(f"=?utf-8?b?{binascii.b2a_base64(word, newline=False).decode()}?=" for word in words)


def _as_is(value: str, *, utf8: bool) -> bool:
    """Whether text can go into a header unencoded: printable, short, no encoded-word look-alike."""
    return (
        (utf8 or value.isascii())
        and value.isprintable()
        and "=?" not in value
        and len(value.encode("utf-8")) < _RAW_LIMIT
    )


def unstructured(value: str, *, utf8: bool) -> str:
    """Unstructured text (a subject) on one line, or as encoded-words when it has to be."""
    value = one_line(value)
    return value if _as_is(value, utf8=utf8) else encoded_words(value)


def phrase(name: str, *, utf8: bool) -> str:
    """A display name already on one line: as it is, quoted when it has specials, or encoded-words."""
    # _as_is, written out: the splicer calls this for every named recipient.
    if not (
        (utf8 or name.isascii())
        and name.isprintable()
        and "=?" not in name
        and len(name.encode("utf-8")) < _RAW_LIMIT
    ):
        return encoded_words(name)
    if _ATEXT.fullmatch(name) or (utf8 and _ATEXT.fullmatch(_NON_ASCII.sub("a", name))):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox(name: str | None, address: str, *, utf8: bool) -> str:
    """``Name <address>``, or the bare address when there is no name."""
    if not name:
        return address
    # Most names are printable ASCII with single spaces, which one_line would leave as they
    # are; the test is a few string methods, the regular expression costs more per recipient.
    if not (name.isascii() and name.isprintable() and "  " not in name and name.strip(" ") == name):
        name = one_line(name)
    return f"{phrase(name, utf8=utf8)} <{address}>" if name else address


def ascii_domain(email: str) -> str:
    """The address with its domain as IDNA A-labels (``bücher.example`` -> ``xn--bcher-kva.example``).

    Relays route by the A-label, SMTPUTF8 or not (RFC 6531 lets a U-label through, but
    not every relay resolves one), so the envelope and the To header always carry it.
    """
    local, _, domain = email.rpartition("@")
    if domain.isascii():
        return email
    import idna

    return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"


def recipient_address(email: str) -> tuple[bool, str, str]:
    """Whether the mailbox needs SMTPUTF8, the envelope recipient, and the addr-spec for To.

    The domain is written as its A-label in both places; only a local part that is not
    ASCII needs SMTPUTF8 (``jürgen@bücher.example`` -> ``jürgen@xn--bcher-kva.example``
    with SMTPUTF8, ``anna@bücher.example`` -> ``anna@xn--bcher-kva.example`` without).
    """
    email = ascii_domain(email)
    local, _, domain = email.rpartition("@")
    utf8 = not local.isascii()
    address = email if _DOT_ATOM.fullmatch(local) else Address(username=local, domain=domain).addr_spec
    return utf8, email, address


def date() -> str:
    """The Date header's value for a message written now."""
    return format_datetime(utcnow())


class MessageIds:
    """Message-IDs ``<stamp.count.campaign.sSUBSCRIBER@domain>``: ``MessageIds(...).make(subscriber_id)``."""

    def __init__(self, campaign: str, domain: str) -> None:
        # The time, the process and 64 random bits keep two makers apart; the counter, one maker's ids.
        stamp = f"{int(time.time() * 100)}.{os.getpid()}.{secrets.randbits(64)}"
        self._prefix = f"<{stamp}."
        self._middle = f".{campaign}.s"
        self._suffix = f"@{domain}>"
        self._count = itertools.count(1)

    def make(self, subscriber_id: int) -> str:
        return f"{self._prefix}{next(self._count)}{self._middle}{subscriber_id}{self._suffix}"


class ListHeaders:
    """The header values of one list's messages: one edition's, or (edition 0) its confirmations.

    Probes (``probes.py``) are edition 0 too, as ``campaign="probe"``, and replace the
    VERP sender with their own (``verp.envelope_senders(settings, "probe", ...)``).
    ``identity`` is the group's sender identity; DKIM signers take their key from it.
    """

    def __init__(
        self,
        settings: Settings,
        signer: Signer,
        *,
        edition_id: int,
        group_id: int,
        group_slug: str,
        group_name: str,
        campaign: str | None = None,
    ) -> None:
        site = settings.site
        self.edition_id = edition_id
        # The group's sender identity, or the site's for whatever the group leaves out
        # (core/identity.py): every value below that says who sent the message comes from it.
        self.identity = identity = settings.identity(group_slug)
        self.sender_domain = identity.domain
        self.from_ = {utf8: mailbox(identity.name, identity.address, utf8=utf8) for utf8 in (False, True)}
        self.reply_to: dict[bool, str] = {}
        if identity.reply_to:
            reply_name, reply_address = parseaddr(identity.reply_to)
            self.reply_to = {utf8: mailbox(reply_name, reply_address, utf8=utf8) for utf8 in (False, True)}
        # RFC 2919: the group under the sender's domain (or list_id_domain), never the
        # website's host, so the identifier readers filter on survives a move of the site.
        name = one_line(group_name)
        list_id = identity.list_id(group_slug)
        self.list_id = f"{phrase(name, utf8=False)} <{list_id}>" if name else f"<{list_id}>"
        # What Feedback-ID and Message-IDs name: the edition, else the confirmation or probe emails.
        campaign = campaign or (f"e{edition_id}" if edition_id else "confirm")
        self.feedback_id = f"{campaign}:{group_id}:newsletter"
        # Bound methods, not objects with __call__: the splicer calls them for every recipient.
        self.message_id = MessageIds(campaign, self.sender_domain).make
        # The envelope sender: VERP on the group's bounce address (its domain is the group's).
        self.bounce_address = identity.bounce_address
        self.return_path = verp.envelope_senders(settings, "edition", edition_id, group_slug=group_slug)
        # Tokens are the ones Signer.make gives, stamped with the time this object was made.
        self.unsubscribe_token = signer.minter("unsubscribe", group_id)
        self._preferences_token = signer.minter("preferences", group_id)
        self.unsubscribe_base = f"{site.base_url}/unsubscribe/"
        self.preferences_base = f"{site.base_url}/preferences/"
        # Tokens are URL-safe base64 and dots, which quote() leaves as they are.
        self._mailto = f"<mailto:{identity.unsubscribe_address}?subject={quote('unsubscribe ')}"

    def links(self, subscriber_id: int) -> tuple[str, str, str]:
        """The subscriber's unsubscribe token, unsubscribe URL (one click) and preferences URL."""
        token = self.unsubscribe_token(subscriber_id)
        return (
            token,
            self.unsubscribe_base + token,
            self.preferences_base + self._preferences_token(subscriber_id),
        )

    def list_unsubscribe(self, token: str) -> str:
        """List-Unsubscribe's value: the https URL, then the mailto, one per line (both ASCII)."""
        return f"<{self.unsubscribe_base}{token}>,\r\n {self._mailto}{token}>"

    def fields(
        self,
        *,
        name: str | None,
        address: str,
        subject: str,
        message_id: str,
        token: str,
        utf8: bool,
    ) -> list[tuple[str, str]]:
        """Every header field of one recipient's message, in order, as raw values for ``set_raw``.

        The splicer cuts the edition's template at To, Date, Message-ID and
        List-Unsubscribe, so these four keep this order.
        """
        fields = [("From", self.from_[utf8]), ("To", mailbox(name, address, utf8=utf8))]
        if self.reply_to:
            fields.append(("Reply-To", self.reply_to[utf8]))
        fields += [
            ("Subject", unstructured(subject, utf8=utf8)),
            ("Date", date()),
            ("Message-ID", message_id),
            ("List-Id", self.list_id),
            ("List-Unsubscribe", self.list_unsubscribe(token)),
            ("List-Unsubscribe-Post", ONE_CLICK),
            ("Feedback-ID", self.feedback_id),
        ]
        if not self.edition_id:
            fields.append(("Auto-Submitted", AUTO_SUBMITTED))
        return fields
