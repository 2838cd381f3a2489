"""Sending through an SMTP relay, reusing one connection for many messages.

URL forms (from ``NEWSLETTER_SMTP_URL``): ``smtp://host:25`` (plain),
``smtp+starttls://user:password@host:587`` and ``smtps://user:password@host:465``.
Add ``?verify=false`` for a relay with a self-signed certificate (testing only).
Replies are sorted the way RFC 5321 means them: 4xx and dropped connections are
temporary, 5xx permanent.
"""

import contextlib
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.errors import ConfigError, PermanentFailure, TemporaryFailure
from newsletter.message import OutgoingMessage

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


def _failure(code: int, text: bytes | str, what: str) -> TemporaryFailure | PermanentFailure:
    reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    message = f"{what}: {code} {reply}".strip()
    return PermanentFailure(message, code=code) if 500 <= code < 600 else TemporaryFailure(message, code=code)


class SmtpTransport:
    name = "smtp"

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = SmtpUrl.parse(url)
        self.timeout = timeout
        self._client: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.url.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        url = self.url
        try:
            if url.scheme == "smtps":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    url.host, url.port, timeout=self.timeout, context=self._context()
                )
            else:
                client = smtplib.SMTP(url.host, url.port, timeout=self.timeout)
            client.ehlo()
            if url.scheme == "smtp+starttls":
                client.starttls(context=self._context())
                client.ehlo()
            if url.username:
                client.login(url.username, url.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            reply = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            raise ConfigError(
                f"the SMTP relay {url.host} refused the login: {exc.smtp_code} {reply}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot connect to {url.host}:{url.port}: {exc}", connection=True
            ) from None
        return client

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        pass

    def send(self, message: OutgoingMessage) -> None:
        if self._client is None:
            self._client = self._connect()
        options = ["SMTPUTF8"] if message.smtputf8 else []
        try:
            refused = self._client.sendmail(
                message.sender, [message.recipient], message.data, mail_options=options
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients.get(message.recipient, (450, b"recipient refused"))
            raise _failure(code, text, f"{message.recipient} refused") from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise _failure(exc.smtp_code, exc.smtp_error, "relay refused the message") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(f"{message.recipient}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            raise _failure(exc.smtp_code, exc.smtp_error, "relay error") from None
        except (smtplib.SMTPServerDisconnected, TimeoutError, OSError) as exc:
            self._drop()
            raise TemporaryFailure(f"connection to {self.url.host} lost: {exc}", connection=True) from None
        if refused:
            code, text = refused[message.recipient]
            raise _failure(code, text, f"{message.recipient} refused")

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
