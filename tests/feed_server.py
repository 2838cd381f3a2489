"""A real HTTP server on 127.0.0.1 for feed tests: files, programmable routes, a request log.

``FeedServer`` runs :class:`http.server.ThreadingHTTPServer` in a thread on a free port.
It serves files from a folder (``/files/<relative path>``) and routes set up by the
test: a body with an ETag and a Last-Modified date (answering conditional requests with
304), a fixed error status, or a response that sleeps before answering. Every request's
headers are logged per path, so a test can see what the client sent.

Hostile routes play the attacks a fetcher must survive: a gzip bomb (made on the fly
from one repeated deflate block, so neither the test nor the server holds it), a drip
that sends a byte at a time, in the body or in the headers, an endless body, and
redirects anywhere. A server may listen on another loopback address (127.0.0.2) to
stand for "a public host" in tests of the address policy.
"""

import email.utils
import gzip
import hashlib
import json
import ssl
import sys
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

RSS = "application/rss+xml"


@dataclass
class Route:
    """What one path answers."""

    body: bytes = b""
    status: int = 200
    content_type: str = RSS
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    # Writes the whole answer itself (status line included): the hostile routes.
    writer: Callable[[BaseHTTPRequestHandler], None] | None = None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (as a fetcher does at its limits) is not a server error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FeedServer:
    """Serve ``root``'s files and the routes a test sets; log each request's headers."""

    def __init__(
        self, root: Path | None = None, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
    ) -> None:
        self.root = root
        self.host = host
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.requests: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.file_types: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _QuietServer((host, 0), self._handler())
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="feed-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{path.lstrip('/')}"

    def file_url(self, relative: str, content_type: str | None = None) -> str:
        """The URL of a file under ``root``; ``content_type`` overrides the default."""
        if content_type:
            self.file_types[relative] = content_type
        return self.url(f"files/{relative}")

    # Routes -----------------------------------------------------------------------

    def feed(self, path: str, body: bytes | str, *, content_type: str = RSS, validators: bool = True) -> str:
        """Serve ``body`` at ``path`` (with ETag and Last-Modified unless told not to)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        route = Route(data, content_type=content_type)
        if validators:
            route.etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            route.last_modified = email.utils.formatdate(time.time(), usegmt=True)
        with self._lock:
            self.routes["/" + path.lstrip("/")] = route
        return self.url(path)

    def error(self, path: str, status: int) -> str:
        with self._lock:
            self.routes["/" + path.lstrip("/")] = Route(
                b"<html><body>error</body></html>", status, "text/html"
            )
        return self.url(path)

    def slow(self, path: str, seconds: float, body: bytes | str = b"") -> str:
        """Answer ``path`` only after ``seconds`` (the server stops waiting when closed)."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        with self._lock:
            self.routes["/" + path.lstrip("/")] = Route(data, delay=seconds)
        return self.url(path)

    def gzipped(self, path: str, body: bytes | str, *, encoding: str = "gzip") -> str:
        """Serve ``body`` compressed (gzip, or zlib-wrapped deflate) with its Content-Encoding."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        packed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
        return self._set(path, Route(packed, headers=(("Content-Encoding", encoding),)))

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        return self._set(path, Route(b"", status, "text/plain", headers=(("Location", location),)))

    def gzip_bomb(self, path: str, inflated: int) -> str:
        """A gzip body of ``inflated`` zero bytes (about 1/1000 of that on the wire), sent as it is made."""
        unit = 1024 * 1024
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        head = packer.compress(bytes(unit)) + packer.flush(zlib.Z_FULL_FLUSH)
        # After a full flush the compressor starts afresh: the next megabyte packs to the
        # same bytes, so one block repeated is a valid stream of any length.
        block = packer.compress(bytes(unit)) + packer.flush(zlib.Z_FULL_FLUSH)

        def write(handler: BaseHTTPRequestHandler) -> None:
            self._head(handler, [("Content-Encoding", "gzip"), ("Connection", "close")])
            handler.wfile.write(head)
            for _ in range(inflated // unit - 1):
                if self._closing.is_set():
                    return
                handler.wfile.write(block)

        return self._set(path, Route(writer=write))

    def drip(self, path: str, every: float, *, in_headers: bool = False) -> str:
        """Send one byte every ``every`` seconds, forever (in the body, or in a header that never ends)."""

        def write(handler: BaseHTTPRequestHandler) -> None:
            if in_headers:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                self._head(handler, [("Content-Length", "1000000")])
            while not self._closing.wait(every):
                handler.wfile.write(b"x" if in_headers else b" ")
                handler.wfile.flush()

        return self._set(path, Route(writer=write))

    def endless(self, path: str) -> str:
        """A body that never ends (no length, no end of chunks), as fast as the client reads."""
        chunk = b"<!-- " + b"x" * 65_000 + b" -->"

        def write(handler: BaseHTTPRequestHandler) -> None:
            self._head(handler, [("Connection", "close")])
            handler.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            while not self._closing.is_set():
                handler.wfile.write(chunk)

        return self._set(path, Route(writer=write))

    def _set(self, path: str, route: Route) -> str:
        with self._lock:
            self.routes["/" + path.lstrip("/")] = route
        return self.url(path)

    @staticmethod
    def _head(handler: BaseHTTPRequestHandler, headers: list[tuple[str, str]]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", RSS)
        for name, value in headers:
            handler.send_header(name, value)
        handler.end_headers()

    def seen(self, path: str) -> list[dict[str, str]]:
        """The headers (lower-cased names) of each request for ``path`` so far."""
        with self._lock:
            return list(self.requests["/" + path.lstrip("/")])

    # Lifecycle --------------------------------------------------------------------

    def start(self) -> "FeedServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                with server._lock:
                    server.requests[path].append({k.lower(): v for k, v in self.headers.items()})
                    route = server.routes.get(path)
                if route is None:
                    route = server._file_route(path)
                if route.writer is not None:
                    self.close_connection = True
                    with suppress(BrokenPipeError, ConnectionResetError):
                        route.writer(self)
                    return
                if route.delay:
                    server._closing.wait(route.delay)
                if route.status == 200 and server._not_modified(self, route):
                    self.send_response(304)
                    self._validators(route)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in route.headers:
                    self.send_header(name, value)
                self._validators(route)
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(route.body)

            def _validators(self, route: Route) -> None:
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)

        return Handler

    def _file_route(self, path: str) -> Route:
        if self.root is None or not path.startswith("/files/"):
            return Route(b"not found", 404, "text/plain")
        relative = path.removeprefix("/files/")
        target = (self.root / relative).resolve()
        if not target.is_file() or self.root.resolve() not in target.parents:
            return Route(b"not found", 404, "text/plain")
        data = target.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        modified = email.utils.formatdate(target.stat().st_mtime, usegmt=True)
        return Route(data, 200, self.file_types.get(relative, "application/xml"), etag, modified)

    @staticmethod
    def _not_modified(request: BaseHTTPRequestHandler, route: Route) -> bool:
        match = request.headers.get("If-None-Match")
        if match is not None and route.etag:
            return route.etag in [tag.strip() for tag in match.split(",")] or match.strip() == "*"
        since = request.headers.get("If-Modified-Since")
        if since and route.last_modified:
            try:
                return email.utils.parsedate_to_datetime(since) >= email.utils.parsedate_to_datetime(
                    route.last_modified
                )
            except (TypeError, ValueError):
                return False
        return False


def rss(items: list[dict[str, Any]], title: str = "Test feed") -> str:
    """An RSS 2.0 document; each item may have title, link, guid, published, description."""
    parts = []
    for item in items:
        fields = []
        if "title" in item:
            fields.append(f"<title>{escape(item['title'])}</title>")
        if "link" in item:
            fields.append(f"<link>{escape(item['link'])}</link>")
        if "guid" in item:
            fields.append(f'<guid isPermaLink="false">{escape(item["guid"])}</guid>')
        if "published" in item:
            fields.append(f"<pubDate>{format_datetime(item['published'])}</pubDate>")
        if "description" in item:
            fields.append(f"<description>{escape(item['description'])}</description>")
        parts.append("<item>" + "".join(fields) + "</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>test</description>{''.join(parts)}</channel></rss>"
    )


def use_sources(site_dir: Path, sources: list[dict[str, Any]], *, tables: str = "") -> None:
    """Replace the ``[[sources]]`` of a site's newsletter.toml with these (then ``tables``, TOML text)."""
    config = site_dir / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    head = text.split("[[sources]]", 1)[0].rstrip() + "\n"
    blocks = []
    for source in sources:
        lines = ["[[sources]]"] + [f"{key} = {_toml(value)}" for key, value in source.items()]
        blocks.append("\n".join(lines))
    config.write_text(head + "\n" + "\n\n".join(blocks) + "\n\n" + tables, encoding="utf-8")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


@contextmanager
def feed_server(
    root: Path | None = None, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[FeedServer]:
    server = FeedServer(root, host, tls).start()
    try:
        yield server
    finally:
        server.close()
