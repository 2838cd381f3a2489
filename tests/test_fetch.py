"""The safe fetcher against hostile servers: real HTTP servers on loopback addresses.

A server on 127.0.0.2 stands for "a public host" (the policy is told to trust that one
address); everything else on loopback is an inner address the fetcher must refuse,
whether named directly, through a host name, after a redirect or after DNS rebinding.
"""

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from newsletter.collecting.fetch import AddressPolicy, FetchLimits, HttpFetcher, refusal
from newsletter.core.errors import FetchError, FetchRefused
from tests.feed_server import FeedServer, feed_server, rss

LOCAL = AddressPolicy(allow_private=True)
# 127.0.0.2 plays a public host; 127.0.0.1 stays an inner address.
PUBLIC = AddressPolicy(allowed=(ipaddress.ip_network("127.0.0.2/32"),))
MEGABYTE = 1024 * 1024
FEED = rss([{"title": "Honest story", "link": "https://www.wipo.int/news/1.html", "guid": "1"}])


@pytest.fixture
def inner() -> Iterator[FeedServer]:
    """A server on 127.0.0.1: an inner address."""
    with feed_server() as running:
        yield running


@pytest.fixture
def public() -> Iterator[FeedServer]:
    """A server on 127.0.0.2, which the PUBLIC policy treats as a public host."""
    with feed_server(host="127.0.0.2") as running:
        yield running


@pytest.fixture
def fetcher() -> HttpFetcher:
    return HttpFetcher()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "not a public address"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("::127.0.0.1", "reserved"),
        ("2001:db8::1", "private"),
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
        ("::ffff:93.184.216.34", None),
    ],
)
def test_every_inner_address_is_refused(address: str, reason: str | None) -> None:
    """Loopback, private, link-local, metadata, multicast, reserved, IPv4 in IPv6: refused; public: not."""
    found = refusal(ipaddress.ip_address(address))
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433"])
def test_inner_addresses_are_refused_before_connecting(
    name: str, inner: FeedServer, fetcher: HttpFetcher
) -> None:
    """A URL naming loopback (directly, through localhost, IPv4-mapped or as a number) is refused unasked."""
    inner.feed("feed.xml", FEED)
    url = f"http://{name}:{inner.port}/feed.xml"
    with pytest.raises(FetchRefused, match="loopback") as raised:
        fetcher.fetch(url, policy=AddressPolicy(), limits=FetchLimits())
    assert str(raised.value).startswith(f"refused {url}: ")
    assert "loopback" in str(raised.value)
    assert inner.seen("feed.xml") == []


def test_allow_private_fetches_inner_addresses(inner: FeedServer, fetcher: HttpFetcher) -> None:
    """With allow_private the same loopback feed is fetched, through localhost too."""
    inner.feed("feed.xml", FEED)
    for url in (inner.url("feed.xml"), f"http://localhost:{inner.port}/feed.xml"):
        response = fetcher.fetch(url, policy=LOCAL, limits=FetchLimits())
        assert (response.status, response.body) == (200, FEED.encode())


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{inner}/feed.xml",
        "http://localhost:{inner}/feed.xml",
        "http://[::ffff:127.0.0.1]:{inner}/feed.xml",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{inner}/feed.xml",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{inner}/",
    ],
)
def test_redirects_to_inner_addresses_are_refused(
    target: str, public: FeedServer, inner: FeedServer, fetcher: HttpFetcher
) -> None:
    """A redirect to loopback, metadata or another scheme is refused; the inner server is never asked."""
    inner.feed("feed.xml", FEED)
    location = target.format(inner=inner.port)
    url = public.redirect("moved.xml", location)
    with pytest.raises(FetchRefused) as raised:
        fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits())
    assert "refused" in str(raised.value)
    assert len(public.seen("moved.xml")) == 1
    assert inner.seen("feed.xml") == []


def test_redirects_are_followed_and_limited(public: FeedServer, fetcher: HttpFetcher) -> None:
    """Redirects between public URLs are followed (the final URL is reported); a loop stops at the limit."""
    public.feed("feed.xml", FEED)
    public.redirect("hop2.xml", "/feed.xml", status=301)
    url = public.redirect("hop1.xml", public.url("hop2.xml"))
    response = fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits())
    assert (response.url, response.body) == (public.url("feed.xml"), FEED.encode())
    broken = public.redirect("broken.xml", "http://[::1/")
    with pytest.raises(FetchError, match="is not a valid URL"):
        fetcher.fetch(broken, policy=PUBLIC, limits=FetchLimits())
    wrapped = public.redirect("wrapped.xml", "http://127.0.0.2:65558/")
    with pytest.raises(FetchRefused, match="port 65558 does not exist"):
        fetcher.fetch(wrapped, policy=PUBLIC, limits=FetchLimits())
    loop = public.redirect("loop.xml", "/loop.xml")
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        fetcher.fetch(loop, policy=PUBLIC, limits=FetchLimits(max_redirects=3))
    assert len(public.seen("loop.xml")) == 4


def resolver(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[tuple[str, int]]) -> list[str]:
    """Make ``name`` resolve to each of ``answers`` in turn (then the last); returns the lookups."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", answers[min(len(asked), len(answers)) - 1])]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


def test_dns_rebinding_cannot_reach_an_inner_address(
    public: FeedServer, inner: FeedServer, fetcher: HttpFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name resolving to a public address, then to loopback, is fetched from the address checked."""
    public.feed("feed.xml", FEED)
    inner.feed("feed.xml", "inner secrets")
    # The first answer is the public server; every later one the inner server (whose
    # port a resolver's answer carries too, as getaddrinfo's do).
    asked = resolver(monkeypatch, "rebind.test", [("127.0.0.2", public.port), ("127.0.0.1", inner.port)])
    response = fetcher.fetch(
        f"http://rebind.test:{public.port}/feed.xml", policy=PUBLIC, limits=FetchLimits()
    )
    assert response.body == FEED.encode()
    assert asked == ["rebind.test"]
    assert public.seen("feed.xml")[0]["host"] == f"rebind.test:{public.port}"
    assert inner.seen("feed.xml") == []


def test_gzip_bomb_stops_at_the_inflated_limit(public: FeedServer, fetcher: HttpFetcher) -> None:
    """A gzip body inflating to 4 GB stops at the limit with a clear error, inflating no more."""
    url = public.gzip_bomb("bomb.xml", inflated=4096 * MEGABYTE)
    with pytest.raises(FetchError, match="inflates to more than the 2 MB limit") as raised:
        fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits(max_bytes=2 * MEGABYTE))
    assert str(raised.value).startswith(url)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_feeds_are_inflated(encoding: str, public: FeedServer, fetcher: HttpFetcher) -> None:
    """An honest gzip or deflate feed within the limits is inflated."""
    url = public.gzipped("packed.xml", FEED, encoding=encoding)
    response = fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits())
    assert response.body == FEED.encode()
    assert public.seen("packed.xml")[0]["accept-encoding"] == "gzip, deflate"


def test_endless_body_stops_at_the_size_limit(public: FeedServer, fetcher: HttpFetcher) -> None:
    """A body that never ends stops at the size limit, not at the end of memory."""
    url = public.endless("endless.xml")
    with pytest.raises(FetchError, match="larger than the 1 MB limit; stopped there"):
        fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits(max_bytes=MEGABYTE))


def test_declared_length_over_the_limit_is_refused_unread(public: FeedServer, fetcher: HttpFetcher) -> None:
    """A Content-Length over the limit is refused before the body is read."""
    url = public.feed("big.xml", b"x" * (MEGABYTE + 1))
    with pytest.raises(FetchError, match=f"larger than the 1 MB limit \\({MEGABYTE + 1} bytes\\)"):
        fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits(max_bytes=MEGABYTE))


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_drip_hits_the_whole_fetch_deadline(
    in_headers: bool, public: FeedServer, fetcher: HttpFetcher
) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the deadline of the whole fetch stops it."""
    url = public.drip("drip.xml", 0.1, in_headers=in_headers)
    with pytest.raises(FetchError, match="timed out") as raised:
        fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits(timeout=1.0))
    assert str(raised.value) == f"timed out fetching {url}: a fetch may take 1 s"


def test_the_run_deadline_bounds_a_fetch(public: FeedServer, fetcher: HttpFetcher) -> None:
    """A fetch ends by the deadline it is given (the end of a collect run), before its own timeout."""
    url = public.drip("drip.xml", 0.1)
    limits = FetchLimits(timeout=600.0, deadline=time.monotonic() + 1.0)
    with pytest.raises(FetchError, match="the time left for this run ran out"):
        fetcher.fetch(url, policy=PUBLIC, limits=limits)


def test_https_connects_to_the_checked_address_with_the_name_for_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over https the checked address is connected to; SNI, the certificate and Host use the name."""
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("feeds.test").configure_cert(server_side)
    client_side = ssl.create_default_context()
    authority.configure_trust(client_side)
    with feed_server(host="127.0.0.2", tls=server_side) as server:
        server.feed("feed.xml", FEED)
        resolver(monkeypatch, "feeds.test", [("127.0.0.2", server.port)])
        fetcher = HttpFetcher(ssl_context=client_side)
        url = f"https://feeds.test:{server.port}/feed.xml"
        response = fetcher.fetch(url, policy=PUBLIC, limits=FetchLimits())
        assert (response.url, response.body) == (url, FEED.encode())
        assert server.seen("feed.xml")[0]["host"] == f"feeds.test:{server.port}"
        # The same server under another name: the certificate does not match, so no fetch.
        resolver(monkeypatch, "other.test", [("127.0.0.2", server.port)])
        with pytest.raises(FetchError, match="certificate"):
            fetcher.fetch(f"https://other.test:{server.port}/feed.xml", policy=PUBLIC, limits=FetchLimits())


def test_a_slow_name_lookup_counts_against_the_deadline(
    fetcher: HttpFetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name server that never answers (getaddrinfo has no timeout) ends in the fetch's deadline."""
    release = threading.Event()
    real = socket.getaddrinfo

    def stuck(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":
            release.wait(60)
            raise socket.gaierror("released")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    try:
        with pytest.raises(FetchError) as raised:
            fetcher.fetch("http://slow.test/feed.xml", policy=PUBLIC, limits=FetchLimits(timeout=0.5))
        assert str(raised.value) == "timed out fetching http://slow.test/feed.xml: a fetch may take 0.5 s"
    finally:
        release.set()
