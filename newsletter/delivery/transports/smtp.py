"""Sending through an SMTP relay, reusing one connection for many messages.

URL forms (from ``NEWSLETTER_SMTP_URL``, or built from ``[smtp]``): ``smtp://host:25`` (plain),
``smtp+starttls://user:password@host:587`` and ``smtps://user:password@host:465``.
Add ``?verify=false`` for a relay with a self-signed certificate (testing only).
Replies are sorted the way RFC 5321 means them: 4xx and dropped connections are
temporary, 5xx permanent. A 421 means the relay is closing the session, and a refused
envelope sender is the relay's or our problem, not the member's: both count as
connection failures (enough in a row pause the edition); after a 421 the next message
opens a new session.
"""

import base64
import contextlib
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.core.errors import ConfigError, PermanentFailure, TemporaryFailure
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Capabilities, Lane, SenderLane

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclass(frozen=True)
class SmtpUrl:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    verify: bool

    @classmethod
    def parse(cls, url: str) -> "SmtpUrl":
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(
                "NEWSLETTER_SMTP_URL must look like smtp://host:25, smtp+starttls://user:password@host:587 "
                "or smtps://user:password@host:465"
            )
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ConfigError("NEWSLETTER_SMTP_URL has an invalid port") from None
        verify = parse_qs(parts.query).get("verify", ["true"])[0].lower() not in {"false", "0", "no"}
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            verify=verify,
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def untrusted(self, exc: ssl.SSLCertVerificationError) -> ConfigError:
        return ConfigError(
            f"the certificate of the SMTP relay {self.host}:{self.port} cannot be verified "
            f"({exc.verify_message}); fix it, or for a test relay set [smtp] verify_certificate = false "
            "(or add ?verify=false to NEWSLETTER_SMTP_URL)"
        )

    def login_refused(self, code: int, reply: bytes | str) -> ConfigError:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
        return ConfigError(f"the SMTP relay {self.host} refused the login: {code} {text}")


# "Service not available, closing transmission channel": smtplib closes its side too.
CLOSING = 421


def failure(code: int, text: bytes | str, what: str) -> TemporaryFailure | PermanentFailure:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    message = f"{what}: {code} {reply}".strip()
    if 500 <= code < 600:
        return PermanentFailure(message, code=code)
    return TemporaryFailure(message, code=code, connection=code == CLOSING)


def needs_smtputf8(message: OutgoingMessage) -> PermanentFailure:
    """The refusal of a mailbox whose local part is not ASCII, through a relay without SMTPUTF8.

    The relay gave no reply for it: the address is fine, this relay cannot carry it.
    It fails this one delivery (no reply code, so no bounce is held against the member).
    """
    return PermanentFailure(
        f"{message.recipient}: the part before the @ is not ASCII and the relay does not offer "
        "SMTPUTF8 (RFC 6531), so it cannot take this address; not sent"
    )


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH; smtplib sends credentials as ASCII only, so others go as UTF-8 PLAIN (RFC 4616)."""
    if username.isascii() and password.isascii():
        client.login(username, password)
        return
    if "plain" not in client.esmtp_features.get("auth", "").lower().split():
        raise ConfigError(
            "the SMTP user name or password is not ASCII and the relay does not offer AUTH PLAIN"
        )
    secret = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode("ascii")
    code, reply = client.docmd("AUTH", f"PLAIN {secret}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


class SmtpTransport:
    """One blocking smtplib session (test copies; the engine uses ``relays.RelayPool``)."""

    name = "smtp"
    capabilities = Capabilities(lanes=1, delivers=True)

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = SmtpUrl.parse(url)
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None

    @staticmethod
    def check(url: str) -> None:
        """Raise ConfigError if the URL is not a usable SMTP URL."""
        SmtpUrl.parse(url)

    def _connect(self) -> smtplib.SMTP:
        url = self.url
        try:
            if url.scheme == "smtps":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    url.host, url.port, timeout=self.timeout, context=self.url.ssl_context()
                )
            else:
                client = smtplib.SMTP(url.host, url.port, timeout=self.timeout)
            # Unlike ehlo(), this raises when the relay refuses the greeting.
            client.ehlo_or_helo_if_needed()
            if url.scheme == "smtp+starttls":
                client.starttls(context=self.url.ssl_context())
                client.ehlo_or_helo_if_needed()
            if url.username:
                _login(client, url.username, url.password or "")
        except ssl.SSLCertVerificationError as exc:
            raise url.untrusted(exc) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise url.login_refused(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot connect to {url.host}:{url.port}: {exc}", connection=True
            ) from None
        return client

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        pass

    def lanes(self, wanted: int) -> list[Lane]:
        return [SenderLane(self)]

    def send(self, message: OutgoingMessage) -> None:
        if self._client is None:
            self._client = self._connect()
        options = ["SMTPUTF8"] if message.smtputf8 else []
        if options and not self._client.has_extn("smtputf8"):
            raise needs_smtputf8(message)
        try:
            refused = self._client.sendmail(
                message.sender, [message.recipient], message.data, mail_options=options
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(message.recipient, (450, b"recipient refused"))
            raise self._refused(code, text, f"{message.recipient} refused") from None
        except smtplib.SMTPSenderRefused as exc:
            # Refusing our envelope sender (530 authentication required, 550 sender not
            # allowed) says nothing about the member: count it against the relay, so a
            # misconfigured relay pauses the edition instead of failing the whole list.
            refusal = failure(exc.smtp_code, exc.smtp_error, "relay refused the sender")
            if exc.smtp_code == CLOSING:
                self._drop()
            raise TemporaryFailure(str(refusal), code=exc.smtp_code, connection=True) from None
        except smtplib.SMTPDataError as exc:
            raise self._refused(exc.smtp_code, exc.smtp_error, "relay refused the message") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(f"{message.recipient}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise failure(exc.smtp_code, exc.smtp_error, "relay error") from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection to {self.url.host} lost: {exc}", connection=True) from None
        if refused:
            code, text = refused[message.recipient]
            raise failure(code, text, f"{message.recipient} refused")

    def _refused(self, code: int, text: bytes | str, what: str) -> TemporaryFailure | PermanentFailure:
        refusal = failure(code, text, what)
        if refusal.connection:
            # smtplib has closed the socket after the 421: start afresh with the next message.
            self._drop()
        return refusal

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
