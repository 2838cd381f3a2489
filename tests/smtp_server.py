"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording what arrives over the wire.

The server runs in a thread of the test process (aiosmtpd's ``Controller``). Its
handler keeps every accepted envelope (sender, recipients, the exact bytes, whether
SMTPUTF8 was asked for), counts connections and logins, offers PIPELINING unless told
not to, and can be told to misbehave: answer every MAIL, or one recipient's RCPT or
DATA, with a given reply, drop the connection once some number of messages has been
accepted, refuse every connection (a relay that is down), or hold every message at
its final dot until the test opens the gate (a sender caught in the middle of a send).

    server = SmtpServer()            # or the ``smtp_server`` fixture
    server.start()
    server.handler.rcpt_replies["x@example.org"] = "450 4.2.1 Mailbox busy"
    ...
    server.messages                  # list[Received]
    server.stop()

aiosmtpd's ``Controller`` cannot take port 0, so a free port is picked first.
"""

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Received:
    """One message as the server accepted it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    smtputf8: bool
    mail_options: tuple[str, ...]
    connection: int
    # time.monotonic() when the server accepted it.
    at: float = 0.0

    def message(self) -> EmailMessage:
        """The content parsed with the modern policy (headers decoded, RFC 2047 words too).

        An SMTPUTF8 message has UTF-8 headers (RFC 6532), which the bytes parser would
        turn into surrogate escapes, so it is parsed as text.
        """
        if self.smtputf8:
            parsed = message_from_string(self.content.decode("utf-8"), policy=policy.SMTPUTF8)
        else:
            parsed = message_from_bytes(self.content, policy=policy.SMTPUTF8)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    tls: bool


class RecordingHandler:
    """Stores every accepted message; replies and faults are set by the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._logins: list[Login] = []
        self._connections = 0
        # The reply to every MAIL FROM instead of 250 (a relay refusing the sender).
        self.mail_reply: str | None = None
        # Recipient address (as given in RCPT TO) -> the reply to send instead of 250.
        self.rcpt_replies: dict[str, str] = {}
        # Recipient address -> the reply to the end of DATA instead of 250.
        self.data_replies: dict[str, str] = {}
        # Once this many messages have been accepted, the next MAIL drops the connection.
        self.drop_after: int | None = None
        # After that drop, keep refusing every new connection (the relay is down).
        self.down_after_drop = False
        # Every new connection is dropped at once while this is set.
        self.down = False
        self.credentials: tuple[str, str] | None = None
        # Recipient address -> a reply to its next RCPT only (a temporary fault that clears).
        self.rcpt_once: dict[str, str] = {}
        # Seconds to wait before answering the end of DATA (a slow relay).
        self.data_delay = 0.0
        # Keep each message's bytes (False for load tests: only the envelope is kept).
        self.keep_content = True
        # Offer PIPELINING (RFC 2920) in the EHLO reply; aiosmtpd reads commands in
        # order either way, so this only changes what the client may do.
        self.pipelining = True
        # While this is clear, the end of DATA is not answered: every sender waits at its
        # final dot. ``held`` counts the messages that waited there.
        self.gate = threading.Event()
        self.gate.set()
        self._held = 0

    # Counters and records, read from the test thread.

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def logins(self) -> list[Login]:
        with self._lock:
            return list(self._logins)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._logins.clear()
            self._connections = 0

    def connected(self) -> int:
        """Count a new connection (called by the server factory); returns its number."""
        with self._lock:
            self._connections += 1
            return self._connections

    # aiosmtpd hooks, run on the server's event loop thread.

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            drop = self.drop_after is not None and len(self._messages) >= self.drop_after
            if drop:
                self.drop_after = None
                self.down = self.down_after_drop
        if drop:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 4.4.2 connection dropped by the test"
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        with self._lock:
            reply = self.rcpt_once.pop(address, None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            reply = self.data_replies.get(address)
            if reply is not None:
                return reply
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if not self.gate.is_set():
            with self._lock:
                self._held += 1
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        if not self.keep_content:
            content = b""
        assert envelope.mail_from is not None
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=content,
            smtputf8=bool(envelope.smtp_utf8),
            mail_options=tuple(envelope.mail_options),
            connection=getattr(server, "connection_number", 0),
            at=time.monotonic(),
        )
        with self._lock:
            self._messages.append(received)
        return "250 2.0.0 OK queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        username, password = data.login.decode(), data.password.decode()
        assert server.transport is not None
        tls = server.transport.get_extra_info("ssl_object") is not None
        with self._lock:
            self._logins.append(Login(username, password, tls))
        return AuthResult(success=(username, password) == self.credentials, handled=False)


class _CountingSMTP(SMTP):
    """aiosmtpd's protocol, numbering its connection and dropping it while the relay is down."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.connection_number = handler.connected()
        self.refuse = handler.down

    def connection_made(self, transport: Any) -> None:
        if self.refuse:
            transport.abort()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self.refuse:
            super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        assert isinstance(self.handler, RecordingHandler)
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 and its recording handler.

    ``tls`` is ``None`` (plain), ``"starttls"`` (STARTTLS offered and required) or
    ``"smtps"`` (TLS from the first byte); both need ``ssl_context``, a server-side
    context. ``credentials`` switch AUTH on and make it required. ``smtputf8=False``
    makes a relay that does not offer SMTPUTF8 (RFC 6531), as many do not.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        tls: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        exclude_auth: tuple[str, ...] = (),
        smtputf8: bool = True,
    ) -> None:
        self.host = HOST
        self.port = port or free_port()
        self.tls = tls
        self.handler = RecordingHandler()
        self.handler.credentials = credentials
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if tls == "starttls":
            assert ssl_context is not None
            kwargs |= {"tls_context": ssl_context, "require_starttls": True}
        elif tls == "smtps":
            assert ssl_context is not None
        if credentials is not None:
            # With implicit TLS aiosmtpd does not know the session is encrypted; the
            # handler records whether each login came over TLS instead.
            kwargs |= {
                "authenticator": self.handler.authenticate,
                "auth_required": True,
                "auth_require_tls": tls == "starttls",
                "auth_exclude_mechanism": list(exclude_auth),
            }
        self.controller = _Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=ssl_context if tls == "smtps" else None,
            server_hostname="mx.test.example",
            **kwargs,
        )
        self.running = False

    def url(self, scheme: str = "smtp", *, userinfo: str = "", query: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.host}:{self.port}{'?' + query if query else ''}"

    def start(self) -> None:
        self.controller.start()
        # The controller's own readiness probe was a connection: forget it.
        self.handler.reset()
        self.running = True

    def stop(self) -> None:
        if self.running:
            # Messages held at the gate would keep the server's threads waiting for ever.
            self.handler.gate.set()
            self.controller.stop()
            self.running = False

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def to(self, address: str) -> list[Received]:
        """The messages whose envelope named this recipient."""
        return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until a condition on what arrived holds (the server runs in another thread)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("the SMTP server did not get what was expected in time")
            time.sleep(0.01)


@contextlib.contextmanager
def running_server(**kwargs: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
