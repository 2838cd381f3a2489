"""Signing a delivery the Standard Webhooks way (https://www.standardwebhooks.com/).

The receiver checks ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(key,
"<webhook-id>.<webhook-timestamp>.<body>")), the key being the endpoint's secret
(``whsec_...``) decoded; the timestamp lets it refuse an old message replayed.
"""

import base64
import hashlib
import hmac


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt."""
    signed = message_id.encode("ascii") + b"." + str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header a delivery carries besides the transport's own."""
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }
