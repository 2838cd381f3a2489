"""Signed, unguessable tokens for the links in every email (itsdangerous).

A token names a subscriber and a group and is signed with ``NEWSLETTER_SECRET_KEY``
under a purpose-specific salt, so an unsubscribe token cannot be replayed as a
preferences token, and nobody can forge one for someone else. Unsubscribe and
preference links do not expire (people unsubscribe from old emails); confirmation
links do (see ``max_age``).
"""

from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.errors import InputError

Purpose = Literal["unsubscribe", "preferences", "confirm", "bounce"]
# Used only when no key is configured and nothing leaves the machine (outbox or memory
# transport): links still work in a demo, and `deliver` refuses SMTP without a real key.
DEVELOPMENT_KEY = "newsletter-development-key-not-secret"


class BadToken(InputError):
    """The token was altered, forged, made for another purpose, or has expired."""


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    group_id: int
    extra: dict[str, Any]


class Signer:
    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret_key, salt=f"newsletter.{purpose}")

    def make(self, purpose: Purpose, subscriber_id: int, group_id: int, **extra: Any) -> str:
        return self._serializer(purpose).dumps({"s": subscriber_id, "g": group_id, **extra})

    def read(self, purpose: Purpose, token: str, *, max_age: int | None = None) -> TokenData:
        try:
            data = self._serializer(purpose).loads(token, max_age=max_age)
        except SignatureExpired:
            raise BadToken("this link has expired; ask for a new one") from None
        except BadSignature:
            raise BadToken("this link is not valid (it may be incomplete or altered)") from None
        if not isinstance(data, dict) or not isinstance(data.get("s"), int):
            raise BadToken("this link is not valid")
        extra = {k: v for k, v in data.items() if k not in {"s", "g"}}
        return TokenData(int(data["s"]), int(data.get("g", 0)), extra)
