"""VERP envelope senders: each message's bounce address names its edition and subscriber.

``news-bounces+e12.s345.3f9a1c2b@example.org``: a bounce that comes back to it says,
without parsing the report, whom it is about. The last part is a short HMAC, so
nobody can forge a bounce that removes someone else. Edition 0 is no edition: the
confirmation emails of a list (see ``headers.py``, which puts these on every message).

A probe (``delivery/probes.py``) has an address of its own, ``news-bounces+p7.s345.SIG@...``:
probe 7, signed over ``p7.345``, so a probe's signature is never an edition's.
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from newsletter.core.tokens import keyed_hmac

PATTERN = re.compile(
    r"^(?P<local>[^+@]+)\+(?:e(?P<edition>\d+)|p(?P<probe>\d+))\.s(?P<subscriber>\d+)"
    r"\.(?P<sig>[0-9a-f]{8})@(?P<domain>.+)$"
)


@dataclass(frozen=True)
class VerpAddress:
    edition_id: int
    subscriber_id: int
    # Set when the address is a probe's (then edition_id is 0).
    probe_id: int | None = None


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


def probe_address(bounce_address: str, key: str, probe_id: int, subscriber_id: int) -> str:
    """The envelope sender of one probe: a bounce to it names the probe and its subscriber."""
    local, _, domain = bounce_address.rpartition("@")
    signature = _signer(key)(f"p{probe_id}.{subscriber_id}".encode()).hex()[:8]
    return f"{local}+p{probe_id}.s{subscriber_id}.{signature}@{domain}"


def decode(address: str, key: str) -> VerpAddress | None:
    """The edition (or probe) and subscriber a VERP address names, or None if not ours or forged."""
    match = PATTERN.match(address.strip().strip("<>").lower())
    if match is None:
        return None
    subscriber_id = int(match["subscriber"])
    probe_id = int(match["probe"]) if match["probe"] is not None else None
    edition_id = int(match["edition"]) if probe_id is None else 0
    signed = f"p{probe_id}" if probe_id is not None else str(edition_id)
    expected = _signer(key)(f"{signed}.{subscriber_id}".encode()).hex()[:8]
    if not hmac.compare_digest(match["sig"], expected):
        return None
    return VerpAddress(edition_id, subscriber_id, probe_id)
