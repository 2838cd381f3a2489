"""Transports hand finished messages to the world: an SMTP relay or a folder.

The settings choose between those two (``open_transport``). The memory transport is for
tests only and is handed in directly: it "delivers" to a list, so offering it to
operators would mark editions sent that nobody received.

A transport is passed into delivery, never built inside it, so tests can hand in a
real SMTP server's transport or the memory one. The interface (``base.py``) is small:
declared ``capabilities`` (how many lanes, whether it delivers at all), ``begin`` once
per edition (a folder writes its HTML previews there), ``lanes`` for the delivery
engine, ``send`` for a single message (raising
:class:`~newsletter.core.errors.TemporaryFailure` or
:class:`~newsletter.core.errors.PermanentFailure`), and ``close``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from newsletter.core.settings import Settings
from newsletter.delivery.transports.base import Capabilities, Lane, SenderLane, Transport

if TYPE_CHECKING:
    from newsletter.delivery.message import OutgoingMessage


def open_transport(settings: Settings) -> Transport:
    """The transport the settings ask for."""
    if settings.transport == "smtp":
        # NEWSLETTER_SMTP_URL, else [smtp] with its password; then any [[relays]].
        from newsletter.delivery.transports.relayconfig import relay_pool

        return relay_pool(settings)
    from newsletter.delivery.transports.directory import DirectoryTransport

    return DirectoryTransport(settings.outbox_dir)


def send_one(transport_factory: Callable[[], Transport], message: OutgoingMessage) -> None:
    """Open a transport, hand it one message, close it: a sign-in link, an invitation."""
    transport = transport_factory()
    try:
        transport.send(message)
    finally:
        transport.close()


__all__ = ["Capabilities", "Lane", "SenderLane", "Transport", "open_transport", "send_one"]
