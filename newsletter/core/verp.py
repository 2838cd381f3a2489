"""VERP envelope senders: each message's bounce address names its edition and subscriber.

``news-bounces+e12.s345.3f9a1c2b@example.org``: a bounce that comes back to it says,
without parsing the report, whom it is about. The last part is a short HMAC, so
nobody can forge a bounce that removes someone else. Edition 0 is no edition: the
confirmation emails of a list (see ``headers.py``, which puts these on every message).
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.core.tokens import keyed_hmac

PATTERN = re.compile(
    r"^(?P<local>[^+@]+)\+e(?P<edition>\d+)\.s(?P<subscriber>\d+)\.(?P<sig>[0-9a-f]{8})@(?P<domain>.+)$"
)


@dataclass(frozen=True)
class VerpAddress:
    edition_id: int
    subscriber_id: int


def _signer(key: str) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 under the site's key; the first 8 hex digits of ``b"EDITION.SUBSCRIBER"`` sign."""
    return keyed_hmac(key.encode(), hashlib.sha256)


class ReturnPaths:
    """The VERP senders of one edition's messages: ``ReturnPaths(...).address(subscriber_id)``.

    The HMAC's key schedule is worked out once, so each address costs about a
    microsecond: the splicer calls this for every recipient.
    """

    def __init__(self, bounce_address: str, key: str, edition_id: int) -> None:
        local, _, domain = bounce_address.rpartition("@")
        self._sign = _signer(key)
        self._signed = f"{edition_id}.".encode()
        self._head = f"{local}+e{edition_id}.s"
        self._tail = f"@{domain}"

    def address(self, subscriber_id: int) -> str:
        number = str(subscriber_id)
        signature = self._sign(self._signed + number.encode()).hex()[:8]
        return f"{self._head}{number}.{signature}{self._tail}"


def encode(bounce_address: str, key: str, edition_id: int, subscriber_id: int) -> str:
    """One VERP address (to make many of one edition, keep a :class:`ReturnPaths`)."""
    return ReturnPaths(bounce_address, key, edition_id).address(subscriber_id)


def decode(address: str, key: str) -> VerpAddress | None:
    """The edition and subscriber a VERP address names, or None if it is not ours or forged."""
    match = PATTERN.match(address.strip().strip("<>").lower())
    if match is None:
        return None
    edition_id, subscriber_id = int(match["edition"]), int(match["subscriber"])
    expected = _signer(key)(f"{edition_id}.{subscriber_id}".encode()).hex()[:8]
    if not hmac.compare_digest(match["sig"], expected):
        return None
    return VerpAddress(edition_id, subscriber_id)
