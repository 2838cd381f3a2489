"""The transport seam: what delivery asks of a transport, and what a transport declares.

A transport hands finished messages to the world. The delivery engine drives it through
*lanes*, one per connection it may open (:class:`Lane`); ``send`` hands over a single
message (a test copy, a confirmation email). What a transport can do is declared in
its :class:`Capabilities`, never guessed from the attributes it happens to have.

A transport that sends each message in one step (a folder, memory) gets its lane from
:class:`SenderLane`; the SMTP relays' lanes (``relays.RelayLane``) split each message
into stage and commit, so that its final dot goes only once the previous message is on
record (``delivery/engine.py`` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # For annotations only: the message module (its builders and the renderer) loads
    # with whatever builds a message, not with every caller that holds a transport.
    from newsletter.delivery.message import OutgoingMessage


@dataclass(frozen=True)
class Capabilities:
    """What a transport can do, declared by the transport itself."""

    # The most lanes (connections) it can drive at once.
    lanes: int = 1
    # False when the messages only become files (the outbox folder): nobody receives
    # them, so the edition is marked ``written``, not ``sent``, and can be sent for real.
    delivers: bool = True


class Lane(Protocol):
    """One connection: a message is staged (all but its final dot), then committed.

    ``commit`` is told which message will be staged next, if the engine has it ready:
    an SMTP connection starts that one's envelope in the same write as the dot.
    """

    async def stage(self, message: OutgoingMessage) -> None: ...
    async def commit(self, following: OutgoingMessage | None = None) -> None: ...
    async def close(self) -> None: ...


class Transport(Protocol):
    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What it can do: how many lanes, whether anyone receives what it sends."""

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        """Called once before an edition's messages; ``previews`` maps language to HTML."""

    def send(self, message: OutgoingMessage) -> None:
        """Hand one message over, or raise a DeliveryError subclass."""

    def lanes(self, wanted: int) -> Sequence[Lane]:
        """Up to ``wanted`` lanes (at least one, at most ``capabilities.lanes``) for the engine."""

    def close(self) -> None:
        """Release connections; the transport may be used again afterwards."""


class Sender(Protocol):
    def send(self, message: OutgoingMessage) -> None: ...


class SenderLane:
    """A transport that sends in one step (a folder, memory), used as the engine's lane.

    It has no final dot to hold back: the message is handed over at commit.
    """

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self._staged: OutgoingMessage | None = None

    async def stage(self, message: OutgoingMessage) -> None:
        self._staged = message

    async def commit(self, following: OutgoingMessage | None = None) -> None:
        message, self._staged = self._staged, None
        if message is not None:
            self.sender.send(message)

    async def close(self) -> None:
        # The transport's own close() releases what it holds; its caller calls it.
        self._staged = None


__all__ = ["Capabilities", "Lane", "SenderLane", "Transport"]
