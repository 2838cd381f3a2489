"""Signed, unguessable tokens for the links in every email (itsdangerous).

A token names a subscriber and a group and is signed with ``NEWSLETTER_SECRET_KEY``
under a purpose-specific salt, so an unsubscribe token cannot be replayed as a
preferences token, and nobody can forge one for someone else. Unsubscribe and
preference links do not expire (people unsubscribe from old emails); confirmation
links do (see ``max_age``).

Sign-up forms embedded in a group's website carry a form token of their own
(:func:`make_form_token`, :func:`read_form_token`): an HMAC over group, form and date.
"""

import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes

from newsletter.core.errors import BadToken, InputError

Purpose = Literal["unsubscribe", "preferences", "confirm", "bounce", "notifications"]
# Used only when no key is configured and nothing leaves the machine (outbox or memory
# transport): links still work in a demo, and `deliver` refuses SMTP without a real key.
DEVELOPMENT_KEY = "newsletter-development-key-not-secret"


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

    def minter(self, purpose: Purpose, group_id: int) -> Callable[[int], str]:
        """A fast maker of this purpose's tokens for one group, for sending to a whole list.

        The tokens are exactly what :meth:`make` gives (same payload, salt, key and
        signature; :meth:`read` accepts them), stamped with the time the minter was
        made. The key is derived and the HMAC's inner and outer states keyed once, so
        each token costs two hash-state copies, two digests and two short base64 encodings.
        """
        signer = self._serializer(purpose).make_signer()
        if not isinstance(signer, TimestampSigner):
            raise TypeError("the serializer's signer should be a TimestampSigner")
        sign = keyed_hmac(signer.derive_key(), signer.digest_method)
        timestamp = b"." + base64_encode(int_to_bytes(int(time.time())))
        separator = signer.sep.encode() if isinstance(signer.sep, str) else signer.sep
        head, tail = b'{"s":', b',"g":' + str(group_id).encode() + b"}"

        def mint(subscriber_id: int) -> str:
            value = urlsafe_b64(head + str(subscriber_id).encode() + tail) + timestamp
            return (value + separator + urlsafe_b64(sign(value))).decode("ascii")

        return mint


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def urlsafe_b64(data: bytes) -> bytes:
    """URL-safe base64 without padding, as itsdangerous writes it."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def keyed_hmac(key: bytes, digest: Any) -> Callable[[bytes], bytes]:
    """HMAC(key, message) with the key's inner and outer hash states computed once (RFC 2104)."""
    block = digest().block_size
    if len(key) > block:
        key = digest(key).digest()
    key = key.ljust(block, b"\0")
    inner = digest(key.translate(bytes(x ^ 0x36 for x in range(256))))
    outer = digest(key.translate(bytes(x ^ 0x5C for x in range(256))))

    def sign(message: bytes) -> bytes:
        state = inner.copy()
        state.update(message)
        result = outer.copy()
        result.update(state.digest())
        return bytes(result.digest())

    return sign


# -- sign-up form tokens ------------------------------------------------------------------------
#
# A group's sign-up form embedded in its own website posts across sites, so the CSRF
# cookie cannot protect it. Each form carries instead a token that says which group and
# which form it is and when it was made: ``f1.<form id>.<YYYYMMDD>.<HMAC>``, the HMAC
# (SHA-256, keyed from the site's secret) taken over the group, the form id and the date.
# Nobody can make one for a form or group without the key, nor move one to another group,
# and a token ends after ``FORM_TOKEN_DAYS`` (the workspace shows its date): a copy that
# leaked into a spam kit stops working without rotating the site's key.

FORM_TOKEN_DAYS = 366
FORM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,29}")


@dataclass(frozen=True)
class FormToken:
    group: str
    form_id: str
    issued: date

    @property
    def expires(self) -> date:
        return self.issued + timedelta(days=FORM_TOKEN_DAYS)


def _form_mac(secret_key: str, group: str, form_id: str, stamp: str) -> str:
    key = hashlib.sha256(("newsletter.form-token:" + secret_key).encode()).digest()
    message = "\0".join(("form", group, form_id, stamp)).encode()
    return urlsafe_b64(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def make_form_token(secret_key: str, group: str, form_id: str, issued: date) -> str:
    """The token of ``group``'s form ``form_id``, made on ``issued`` (an InputError for a bad form id)."""
    if not FORM_ID.fullmatch(form_id):
        raise InputError(
            "'{form}' cannot name a form: use up to 30 lower-case letters, digits and -", form=form_id
        )
    stamp = issued.strftime("%Y%m%d")
    return f"f1.{form_id}.{stamp}.{_form_mac(secret_key, group, form_id, stamp)}"


def read_form_token(secret_key: str, group: str, token: str, *, today: date) -> FormToken:
    """The form a token names, if made for ``group`` with this key and not expired; else BadToken."""
    parts = token.strip().split(".") if len(token) <= 200 else []
    if len(parts) != 4 or parts[0] != "f1" or not FORM_ID.fullmatch(parts[1]):
        raise BadToken("this sign-up form is not valid (it may be incomplete or altered)")
    _, form_id, stamp, mac = parts
    if not hmac.compare_digest(mac.encode(), _form_mac(secret_key, group, form_id, stamp).encode()):
        raise BadToken("this sign-up form is not valid (it may be incomplete or altered)")
    try:
        issued = datetime.strptime(stamp, "%Y%m%d").date()
    except ValueError:
        raise BadToken("this sign-up form is not valid") from None
    found = FormToken(group, form_id, issued)
    if issued > today + timedelta(days=1) or found.expires < today:
        raise BadToken("this sign-up form has expired; the site that shows it needs a new one")
    return found


def issued_at(token: str) -> datetime:
    """When a token that has been verified was signed (itsdangerous puts the time before the signature)."""
    stamp = token.rsplit(".", 2)[-2]
    return datetime.fromtimestamp(bytes_to_int(base64_decode(stamp)), UTC)
