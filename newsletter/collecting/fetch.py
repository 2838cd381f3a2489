"""Fetching a URL from the internet safely: bounded in size and time, refused for inner addresses.

Everything the product fetches (feeds today; pages and images later) goes through
:func:`fetch` or an :class:`HttpFetcher`, and every webhook it posts through
:meth:`HttpFetcher.post`; they defend the machine that runs them:

* **Address policy.** The host name is resolved here (``socket.getaddrinfo``), every
  address is checked (:func:`refusal`), and the connection goes to the checked address
  itself, while TLS (SNI, certificate) and the Host header still use the name. There is
  no second lookup, so no DNS-rebinding window. Loopback, private, link-local (cloud
  metadata), unspecified, multicast, reserved and other non-global addresses are refused,
  IPv4 and IPv6 alike, IPv4 embedded in IPv6 (mapped, 6to4, NAT64) included, unless the
  policy allows private addresses (``allow_private = true`` on a source). Each redirect
  is followed by hand and checked the same way; only http and https are fetched.
* **Size.** The body is streamed; past ``max_bytes`` of what the server sends, or of
  what it inflates to (gzip, deflate: zlib with ``max_length``), the fetch stops.
* **Time.** One wall-clock deadline covers the whole fetch, redirects included: every
  connect, TLS handshake, read and write gets only the time left, so a server that
  sends a byte every few seconds cannot stretch it.

The checked connection is made by a network backend handed to httpcore (the transport
under httpx, which offers no such hook itself): httpcore asks it to connect to the
name, and it connects to the address it checked instead. Proxies from the environment
are not used (a proxy would make the address check meaningless). The name lookup
counts against the deadline too (it runs in a thread the fetch stops waiting for).
"""

import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpcore
import httpx

from newsletter.core.errors import FetchError, FetchRefused, NewsletterError

USER_AGENT = "newsletter-collector/0.1 (+https://github.com/cepiug/newsletter)"
MEGABYTE = 1024 * 1024
REDIRECTS = {301, 302, 303, 307, 308}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Addresses cloud platforms answer instance credentials on (AWS, GCP, Azure, Alibaba, Oracle):
# refused like every inner address, and named as such in the message.
METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("192.0.0.192"),
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be fetched from: public ones, and ``allowed`` networks or every private one."""

    allow_private: bool = False
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def permits(self, address: IPAddress) -> str | None:
        """None when ``address`` may be connected to, else why not (e.g. "a loopback address")."""
        if self.allow_private or any(address in network for network in self.allowed):
            return None
        return refusal(address)


@dataclass(frozen=True)
class FetchLimits:
    """How much one fetch may take: bytes (sent and inflated, each), seconds, redirects."""

    max_bytes: int = 20 * MEGABYTE
    timeout: float = 60.0
    max_redirects: int = 5
    connect_timeout: float = 10.0
    # A monotonic time the fetch must end by in any case (the end of a collect run).
    deadline: float | None = None


@dataclass(frozen=True)
class Response:
    """A final answer: its URL after redirects, status, headers, and body (only for 2xx)."""

    url: str
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes = b""


class Fetcher(Protocol):
    """What collecting needs from the network: one bounded, address-checked GET."""

    def fetch(
        self,
        url: str,
        *,
        policy: AddressPolicy,
        limits: FetchLimits,
        headers: Mapping[str, str] | None = None,
    ) -> Response: ...


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(embedded)
            return f"{reason} ({embedded} inside an IPv6 address)" if reason else None
    if address in METADATA:
        return "a cloud metadata address"
    for kind, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return f"a {kind} address"
    if not address.is_global:
        return "not a public address"
    return None


class _Deadline:
    """The time left before a fetch must end; every socket operation gets at most that."""

    def __init__(self, until: float, url: str, why: str) -> None:
        self.until, self.url, self.why = until, url, why

    def clamp(self, timeout: float | None, error: type[httpcore.TimeoutException]) -> float:
        left = self.until - time.monotonic()
        if left <= 0:
            raise error(f"the deadline passed ({self.why})")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream, self._deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CheckedBackend(httpcore.NetworkBackend):
    """Resolves each host once, refuses what the policy refuses, connects to the checked address."""

    def __init__(self, policy: AddressPolicy, deadline: _Deadline) -> None:
        self._policy, self._deadline = policy, deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, self._deadline)
        allowed = [a for a in addresses if self._policy.permits(a) is None]
        if not allowed:
            first = addresses[0]
            named = f"{host} is" if _literal(host) == first else f"{host} resolves to {first},"
            raise FetchRefused(f"refused {self._deadline.url}: {named} {self._policy.permits(first)}")
        error: httpcore.ConnectError | None = None
        for address in allowed:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    self._deadline.clamp(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise FetchRefused(f"refused {self._deadline.url}: Unix sockets are never fetched from")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolve(host: str, port: int, deadline: _Deadline) -> list[IPAddress]:
    """Every address ``host`` has, looked up within the deadline.

    getaddrinfo takes no timeout, and a slow name server (the attacker's own) could hold
    it for the resolver's retries; it runs in a thread the fetch stops waiting for.
    """
    answers: list[Any] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answers.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(deadline.clamp(None, httpcore.ConnectTimeout)):
        raise httpcore.ConnectTimeout(f"resolving {host} took too long")
    if failure:
        raise httpcore.ConnectError(f"cannot resolve {host} ({failure[0]})")
    found: list[IPAddress] = []
    for _, _, _, _, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise httpcore.ConnectError(f"cannot resolve {host} (no address)")
    return found


class _Inflater:
    """Undoes the Content-Encoding, never producing more than the limit allows."""

    def __init__(self, encoding: str, url: str, limit: int) -> None:
        encoding = encoding.strip().lower()
        if encoding in {"", "identity"}:
            self._wbits: int | None = None
        elif encoding in {"gzip", "x-gzip"}:
            self._wbits = 16 + zlib.MAX_WBITS
        elif encoding == "deflate":
            # Either zlib-wrapped (as the RFC says) or raw deflate (as some servers send): both read.
            self._wbits = 32 + zlib.MAX_WBITS
        else:
            raise FetchError(f"{url} answered in an unsupported Content-Encoding {encoding!r}")
        self._zlib = zlib.decompressobj(self._wbits) if self._wbits else None
        self._raw_tried = encoding != "deflate"
        self.url, self.limit, self.size = url, limit, 0
        self.parts: list[bytes] = []

    def feed(self, data: bytes) -> None:
        if self._zlib is None:
            self._keep(data)
            return
        while data:
            try:
                out = self._zlib.decompress(data, self.limit - self.size + 1)
            except zlib.error as exc:
                if not self._raw_tried:
                    self._raw_tried, self._zlib = True, zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise FetchError(f"{self.url} sent a body that cannot be inflated ({exc})") from None
            # Only the very first bytes tell a zlib header from raw deflate.
            self._raw_tried = True
            self._keep(out)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                # A second gzip member follows (concatenated files); anything else is ignored.
                rest = self._zlib.unused_data
                self._zlib = zlib.decompressobj(self._wbits or zlib.MAX_WBITS)
                data = rest if rest.startswith(b"\x1f\x8b") else b""

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise FetchError(f"{self.url} inflates to more than the {_size(self.limit)} limit; stopped there")
        self.parts.append(data)

    def body(self) -> bytes:
        return b"".join(self.parts)


def _size(limit: int) -> str:
    return f"{limit / MEGABYTE:g} MB" if limit >= MEGABYTE else f"{limit} bytes"


@dataclass
class HttpFetcher:
    """The real :class:`Fetcher`: one TLS context shared by every fetch (loading it is slow)."""

    user_agent: str = USER_AGENT
    ssl_context: ssl.SSLContext = field(default_factory=httpx.create_ssl_context)

    def fetch(
        self,
        url: str,
        *,
        policy: AddressPolicy,
        limits: FetchLimits,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """GET ``url`` within ``limits``; a :class:`FetchError` (or :class:`FetchRefused`) says why not."""
        return self._exchange(
            url,
            policy,
            limits,
            lambda pool, deadline: self._follow(pool, url, limits, deadline, headers or {}),
        )

    def post(
        self,
        url: str,
        body: bytes,
        *,
        policy: AddressPolicy,
        limits: FetchLimits,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST ``body`` to ``url`` once, under the same address policy and deadline as a fetch.

        For webhooks: no redirect is followed (the answer, a 3xx included, is the
        receiver's), and the answer's body is kept whatever its status, its first
        ``limits.max_bytes`` only (the rest is not read), not inflated.
        """

        def send(pool: httpcore.ConnectionPool, deadline: _Deadline) -> Response:
            current = _web_url(url, url)
            sent = {
                "Host": current.netloc.decode("ascii"),
                "User-Agent": self.user_agent,
                "Accept-Encoding": "identity",
                "Content-Length": str(len(body)),
                **(headers or {}),
            }
            target = httpcore.URL(
                scheme=current.raw_scheme, host=current.raw_host, port=current.port, target=current.raw_path
            )
            timeouts = {"connect": min(limits.connect_timeout, limits.timeout), "read": limits.timeout}
            timeouts |= {"write": limits.timeout, "pool": limits.timeout}
            with pool.stream(
                "POST", target, headers=list(sent.items()), content=body, extensions={"timeout": timeouts}
            ) as answer:
                reason = answer.extensions.get("reason_phrase", b"").decode("latin-1")
                kept = _first_bytes(answer.iter_stream(), limits.max_bytes)
                return Response(str(current), answer.status, reason, httpx.Headers(answer.headers), kept)

        return self._exchange(url, policy, limits, send)

    def _exchange(
        self,
        url: str,
        policy: AddressPolicy,
        limits: FetchLimits,
        run: Callable[[httpcore.ConnectionPool, _Deadline], Response],
    ) -> Response:
        """Run one exchange through a pool whose every connection the policy checked, within the deadline."""
        until, why = time.monotonic() + limits.timeout, f"a fetch may take {limits.timeout:g} s"
        if limits.deadline is not None and limits.deadline < until:
            until, why = limits.deadline, "the time left for this run ran out"
        deadline = _Deadline(until, url, why)
        pool = httpcore.ConnectionPool(
            ssl_context=self.ssl_context, network_backend=_CheckedBackend(policy, deadline), retries=0
        )
        try:
            with pool:
                return run(pool, deadline)
        except httpcore.TimeoutException:
            raise FetchError(f"timed out fetching {url}: {why}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise FetchError(f"cannot fetch {url}: {exc or type(exc).__name__}") from None

    def _follow(
        self,
        pool: httpcore.ConnectionPool,
        url: str,
        limits: FetchLimits,
        deadline: _Deadline,
        headers: Mapping[str, str],
    ) -> Response:
        current = _web_url(url, url)
        for _ in range(limits.max_redirects + 1):
            deadline.url = str(current)
            sent = {
                "Host": current.netloc.decode("ascii"),
                "User-Agent": self.user_agent,
                "Accept-Encoding": "gzip, deflate",
                **headers,
            }
            target = httpcore.URL(
                scheme=current.raw_scheme, host=current.raw_host, port=current.port, target=current.raw_path
            )
            timeouts = {"connect": min(limits.connect_timeout, limits.timeout), "read": limits.timeout}
            timeouts |= {"write": limits.timeout, "pool": limits.timeout}
            with pool.stream(
                "GET", target, headers=list(sent.items()), extensions={"timeout": timeouts}
            ) as answer:
                found = httpx.Headers(answer.headers)
                location = found.get("location")
                if answer.status in REDIRECTS and location:
                    current = _web_url(location, url, base=current)
                    continue
                reason = answer.extensions.get("reason_phrase", b"").decode("latin-1")
                body = (
                    _read(answer.iter_stream(), found, str(current), limits) if answer.status < 300 else b""
                )
                return Response(str(current), answer.status, reason, found, body)
        raise FetchRefused(f"refused {url}: more than {limits.max_redirects} redirects")


def _web_url(url: str, first: str, base: httpx.URL | None = None) -> httpx.URL:
    """``url`` (a redirect's Location, relative to ``base``) if it may be fetched at all."""
    try:
        parsed = base.join(url) if base is not None else httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchError(f"cannot fetch {first}: {url!r} is not a valid URL ({exc})") from None
    where = "" if base is None else f" (redirected to {parsed})"
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise FetchRefused(f"refused {first}{where}: only http and https URLs are fetched")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        # httpx lets 65558 through, and the socket layer would wrap it round to port 22.
        raise FetchRefused(f"refused {first}{where}: port {parsed.port} does not exist")
    return parsed


def _read(chunks: Iterator[bytes], headers: httpx.Headers, url: str, limits: FetchLimits) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise FetchError(f"{url} is larger than the {_size(limits.max_bytes)} limit ({declared} bytes)")
    inflater = _Inflater(headers.get("content-encoding", ""), url, limits.max_bytes)
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > limits.max_bytes:
            raise FetchError(f"{url} is larger than the {_size(limits.max_bytes)} limit; stopped there")
        inflater.feed(chunk)
    return inflater.body()


def _first_bytes(chunks: Iterator[bytes], limit: int) -> bytes:
    """The first ``limit`` bytes of a body; reading stops there (the rest is the sender's problem)."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk[: limit - size])
        size += len(parts[-1])
        if size >= limit:
            break
    return b"".join(parts)


def read_file(path: Path, limit: int, error: type[NewsletterError]) -> bytes:
    """A local file's bytes, refused (as ``error``) past ``limit`` without reading further."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path} is larger than the {_size(limit)} limit")
    return data


def fetch(
    url: str,
    *,
    policy: AddressPolicy | None = None,
    limits: FetchLimits | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """One GET with a fetcher of its own (use an :class:`HttpFetcher` for many)."""
    return HttpFetcher().fetch(
        url, policy=policy or AddressPolicy(), limits=limits or FetchLimits(), headers=headers
    )
