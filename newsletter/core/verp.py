"""VERP envelope senders: each message's bounce address names its edition and subscriber.

``news-bounces+e12.s345.3f9a1c2b@example.org``: a bounce that comes back to it says,
without parsing the report, whom it is about. The last part is a short HMAC, so
nobody can forge a bounce that removes someone else. Edition 0 is no edition: the
confirmation emails of a list (see ``headers.py``, which puts these on every message).

A probe (``delivery/probes.py``) has an address of its own, ``news-bounces+p7.s345.SIG@...``:
probe 7, signed over ``p7.345``, so a probe's signature is never an edition's. The
workspace's own mail to user 3 (sign-in links, notification digests) goes from
``news-bounces+u3.s0.SIG@...``, signed over ``u3.0``: its bounce is ours and names no
subscriber. A test send of edition 12 is edition 12's, to subscriber 0 (nobody).

:func:`envelope_senders` is the one place that decides an envelope sender: every
message the product sends gets it from there (editions and test sends, confirmations,
probes, workspace mail). The rest of this module is the encoding underneath it.
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from newsletter.core.settings import Settings
from newsletter.core.tokens import keyed_hmac

PATTERN = re.compile(
    r"^(?P<local>[^+@]+)\+(?:e(?P<edition>\d+)|p(?P<probe>\d+)|u(?P<user>\d+))\.s(?P<subscriber>\d+)"
    r"\.(?P<sig>[0-9a-f]{8})@(?P<domain>.+)$"
)
# What an envelope sender names: an edition (0: a list's confirmations), a probe, or a
# workspace user.
Kind = Literal["edition", "probe", "user"]
_LETTER: dict[str, str] = {"edition": "e", "probe": "p", "user": "u"}


@dataclass(frozen=True)
class VerpAddress:
    edition_id: int
    subscriber_id: int
    # Set when the address is a probe's (then edition_id is 0).
    probe_id: int | None = None
    # Set when the address is a workspace user's (then edition_id and subscriber_id are 0).
    user_id: int | None = None


def _signer(key: str) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under the site's key; the first 8 hex digits of ``b"EDITION.SUBSCRIBER"`` sign."""
    return keyed_hmac(key.encode(), hashlib.sha256)


class ReturnPaths:
    """The VERP senders of one edition's (probe's, user's) messages: ``.address(subscriber_id)``.

    The HMAC's key schedule is worked out once, so each address costs about a
    microsecond: the splicer calls this for every recipient.
    """

    def __init__(self, bounce_address: str, key: str, number: int, kind: Kind = "edition") -> None:
        local, _, domain = bounce_address.rpartition("@")
        letter = _LETTER[kind]
        self._sign = _signer(key)
        # An edition signs "12.345" (as it always has); a probe "p7.345", a user "u3.0".
        self._signed = (f"{number}." if kind == "edition" else f"{letter}{number}.").encode()
        self._head = f"{local}+{letter}{number}.s"
        self._tail = f"@{domain}"

    def address(self, subscriber_id: int) -> str:
        number = str(subscriber_id)
        signature = self._sign(self._signed + number.encode()).hex()[:8]
        return f"{self._head}{number}.{signature}{self._tail}"


def encode(bounce_address: str, key: str, edition_id: int, subscriber_id: int) -> str:
    """One edition's VERP address on ``bounce_address`` (the encoding; messages: :func:`envelope_senders`)."""
    return ReturnPaths(bounce_address, key, edition_id).address(subscriber_id)


def probe_address(bounce_address: str, key: str, probe_id: int, subscriber_id: int) -> str:
    """One probe's VERP address on ``bounce_address`` (the encoding; probes use :func:`envelope_senders`)."""
    return ReturnPaths(bounce_address, key, probe_id, "probe").address(subscriber_id)


def envelope_senders(
    settings: Settings, kind: Kind, number: int, *, group_slug: str | None = None
) -> Callable[[int], str]:
    """The envelope senders (by subscriber id) of the messages of one edition, probe or user.

    The one function that decides a message's envelope sender: the bounce address of
    the group's sender identity (``core/identity.py``: the group's ``bounce_address``,
    else ``[delivery] bounce_address``, else ``LOCAL-bounces@`` the From domain) with the
    signed VERP tag. ``group_slug`` names the list the message belongs to (None for the
    workspace's own mail, sent under the site's identity).
    """
    return ReturnPaths(
        settings.identity(group_slug).bounce_address, settings.signing_key, number, kind
    ).address


def decode(address: str, key: str) -> VerpAddress | None:
    """The edition, probe or user and the subscriber a VERP address names; None if not ours or forged."""
    match = PATTERN.match(address.strip().strip("<>").lower())
    if match is None:
        return None
    subscriber_id = int(match["subscriber"])
    probe_id = int(match["probe"]) if match["probe"] is not None else None
    user_id = int(match["user"]) if match["user"] is not None else None
    edition_id = int(match["edition"]) if match["edition"] is not None else 0
    if probe_id is not None:
        signed = f"p{probe_id}"
    elif user_id is not None:
        signed = f"u{user_id}"
    else:
        signed = str(edition_id)
    expected = _signer(key)(f"{signed}.{subscriber_id}".encode()).hex()[:8]
    if not hmac.compare_digest(match["sig"], expected):
        return None
    return VerpAddress(edition_id, subscriber_id, probe_id, user_id)
