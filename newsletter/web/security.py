"""Web safety: security headers, CSRF tokens bound to a cookie, and rate limits.

CSRF is written here rather than taken from asgi-csrf because that middleware lets
any POST without cookies through, and under SameSite cookies a forged cross-site
POST is exactly a POST without cookies. Here every form POST needs a cookie and a
matching signed field; only the RFC 8058 one-click endpoint is exempt (mail
providers POST to it without cookies, and its signed token is the authority).
"""

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from limits import RateLimitItemPerHour, storage, strategies

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"interest-cohort=()"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """Adds the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in SECURITY_HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class Csrf:
    """Issue and check form tokens: HMAC(secret, cookie nonce)."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("csrf:" + secret).encode()).digest()

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.token_for(nonce), token)


class RateLimits:
    """Moving-window limits kept in memory (one web process; see docs/operations.md)."""

    def __init__(self, per_client_per_hour: int = 10, per_address_per_hour: int = 3) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._client = RateLimitItemPerHour(per_client_per_hour)
        self._address = RateLimitItemPerHour(per_address_per_hour)

    def allow_client(self, client: str) -> bool:
        return self._limiter.hit(self._client, "client", client)

    def allow_address(self, key: str) -> bool:
        return self._limiter.hit(self._address, "address", key)
