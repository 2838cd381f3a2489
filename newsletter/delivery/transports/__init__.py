"""Transports hand finished messages to the world: an SMTP relay, a folder, or memory.

A transport is passed into delivery, never built inside it, so tests can hand in a
real SMTP server's transport or the memory one. The interface is small: ``begin``
once per edition (a folder writes its HTML previews there), ``send`` per message
(raising :class:`~newsletter.core.errors.TemporaryFailure` or
:class:`~newsletter.core.errors.PermanentFailure`), and ``close``.
"""

from collections.abc import Mapping
from typing import Protocol

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Settings
from newsletter.delivery.message import OutgoingMessage


class Transport(Protocol):
    name: str

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        """Called once before an edition's messages; ``previews`` maps language to HTML."""

    def send(self, message: OutgoingMessage) -> None:
        """Hand one message over, or raise a DeliveryError subclass."""

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""


def open_transport(settings: Settings) -> Transport:
    """The transport the settings ask for."""
    if settings.transport == "smtp":
        from newsletter.delivery.transports.smtp import SmtpTransport

        if settings.smtp_url is None:
            raise ConfigError(
                "transport is smtp but NEWSLETTER_SMTP_URL is not set "
                "(e.g. smtp+starttls://user:password@relay.example.org:587)"
            )
        if settings.secret_key is None:
            raise ConfigError(
                "set NEWSLETTER_SECRET_KEY before sending over SMTP: it signs the "
                "unsubscribe links (a long random string; keep it stable)"
            )
        from newsletter.delivery.transports.relays import Relay, RelayPool, TokenBucket

        delivery = settings.delivery
        relays = [
            Relay(
                "default",
                settings.smtp_url.get_secret_value(),
                delivery.connections,
                TokenBucket(delivery.rate),
            )
        ]
        for extra in settings.relays:
            url = settings.relay_urls.get(extra.name)
            if url is None:
                raise ConfigError(f"relay {extra.name!r}: set {extra.url_env} to its SMTP URL")
            SmtpTransport.check(url.get_secret_value())
            relays.append(
                Relay(extra.name, url.get_secret_value(), extra.connections, TokenBucket(extra.rate))
            )
        return RelayPool(relays, domain_rate=delivery.domain_rate)
    if settings.transport == "memory":
        from newsletter.delivery.transports.memory import MemoryTransport

        return MemoryTransport()
    from newsletter.delivery.transports.directory import DirectoryTransport

    return DirectoryTransport(settings.outbox_dir)


__all__ = ["Transport", "open_transport"]
