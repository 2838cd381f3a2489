"""Transports hand finished messages to the world: an SMTP relay, a folder, or memory.

A transport is passed into delivery, never built inside it, so tests can hand in a
real SMTP server's transport or the memory one. The interface is small: ``begin``
once per edition (a folder writes its HTML previews there), ``send`` per message
(raising :class:`~newsletter.core.errors.TemporaryFailure` or
:class:`~newsletter.core.errors.PermanentFailure`), and ``close``.
"""

from collections.abc import Mapping
from typing import Protocol

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
        # NEWSLETTER_SMTP_URL, else [smtp] with its password; then any [[relays]].
        from newsletter.delivery.transports.relayconfig import relay_pool

        return relay_pool(settings)
    if settings.transport == "memory":
        from newsletter.delivery.transports.memory import MemoryTransport

        return MemoryTransport()
    from newsletter.delivery.transports.directory import DirectoryTransport

    return DirectoryTransport(settings.outbox_dir)


__all__ = ["Transport", "open_transport"]
