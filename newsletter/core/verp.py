"""VERP envelope senders: each message's bounce address names its edition and subscriber.

``news-bounces+e12.s345.3f9a1c2b@example.org``: a bounce that comes back to it says,
without parsing the report, whom it is about. The last part is a short HMAC, so
nobody can forge a bounce that removes someone else.
"""

import hashlib
import hmac
import re
from dataclasses import dataclass

PATTERN = re.compile(
    r"^(?P<local>[^+@]+)\+e(?P<edition>\d+)\.s(?P<subscriber>\d+)\.(?P<sig>[0-9a-f]{8})@(?P<domain>.+)$"
)


@dataclass(frozen=True)
class VerpAddress:
    edition_id: int
    subscriber_id: int


def _signature(key: str, edition_id: int, subscriber_id: int) -> str:
    message = f"{edition_id}.{subscriber_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()[:8]


def encode(bounce_address: str, key: str, edition_id: int, subscriber_id: int) -> str:
    local, _, domain = bounce_address.rpartition("@")
    signature = _signature(key, edition_id, subscriber_id)
    return f"{local}+e{edition_id}.s{subscriber_id}.{signature}@{domain}"


def decode(address: str, key: str) -> VerpAddress | None:
    """The edition and subscriber a VERP address names, or None if it is not ours or forged."""
    match = PATTERN.match(address.strip().strip("<>").lower())
    if match is None:
        return None
    edition_id, subscriber_id = int(match["edition"]), int(match["subscriber"])
    if not hmac.compare_digest(match["sig"], _signature(key, edition_id, subscriber_id)):
        return None
    return VerpAddress(edition_id, subscriber_id)
