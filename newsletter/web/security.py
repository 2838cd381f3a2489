"""Web safety: security headers, CSRF tokens bound to a cookie, rate limits, client addresses.

CSRF is written here rather than taken from asgi-csrf because that middleware lets
any POST without cookies through, and under SameSite cookies a forged cross-site
POST is exactly a POST without cookies. Here every form POST needs a cookie and a
matching signed field; only the RFC 8058 one-click endpoint is exempt (mail
providers POST to it without cookies, and its signed token is the authority).
"""

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, cast

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from newsletter.web.ratelimit import Counter, MemoryCounter

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: data:; "
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
# Sent only when [site] base_url is https: browsers then refuse plain http for a year.
HSTS = (b"strict-transport-security", b"max-age=31536000")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SecurityHeaders:
    """Adds the security headers to every HTTP response (with ``hsts``, Strict-Transport-Security too)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.headers = [*SECURITY_HEADERS, HSTS] if hsts else SECURITY_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in names]
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
    """A form's limits per client and per address, an hour's window, on a shared counter.

    ``name`` keeps one form's counts apart from another's on the same counter (the
    sign-up and the sign-in forms); ``counter`` is where the counts live
    (``web/ratelimit.py``: this process's memory by default).
    """

    def __init__(
        self,
        per_client_per_hour: int = 10,
        per_address_per_hour: int = 3,
        *,
        name: str = "form",
        counter: Counter | None = None,
    ) -> None:
        self.counter: Counter = MemoryCounter() if counter is None else counter
        self.name = name
        self.per_client = per_client_per_hour
        self.per_address = per_address_per_hour

    def allow_client(self, client: str) -> bool:
        return self.counter.hit(f"{self.name}:client", client_bucket(client), self.per_client)

    def allow_address(self, key: str) -> bool:
        return self.counter.hit(f"{self.name}:address", key, self.per_address)

    def allow(self, client: str, address_key: str) -> tuple[bool, bool]:
        """Whether the client, and the address, are within their limits: both counted at once.

        The address counts even when the client is past its limit (one round trip to
        a shared counter instead of two); the form then answers "too many" all the same.
        """
        client_ok, address_ok = self.counter.hits(
            [
                (f"{self.name}:client", client_bucket(client), self.per_client),
                (f"{self.name}:address", address_key, self.per_address),
            ]
        )
        return client_ok, address_ok


def client_bucket(client: str) -> str:
    """The rate-limit bucket of a client address: the address, or for IPv6 its /64 network.

    One IPv6 host usually holds a whole /64 and can change address at will within it.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def trusting_proxies(app: ASGIApp, trusted_proxies: Sequence[str]) -> ASGIApp:
    """``app`` believing X-Forwarded-For and X-Forwarded-Proto only from ``trusted_proxies``.

    uvicorn's middleware takes the right-most address in X-Forwarded-For that is not
    itself a trusted proxy, so a client cannot choose its address by sending the header
    itself. Without trusted proxies the app sees each connection's own address.
    """
    if not trusted_proxies:
        return app
    return cast(ASGIApp, ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=list(trusted_proxies)))
