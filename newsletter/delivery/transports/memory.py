"""A transport that keeps messages in a list: for unit tests only.

It stands in for a relay (``delivers=True``): an edition sent through it ends ``sent``.
"""

from collections.abc import Mapping

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Capabilities, Lane, SenderLane


class MemoryTransport:
    name = "memory"
    capabilities = Capabilities(lanes=1, delivers=True)

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []
        self.previews: dict[int, dict[str, str]] = {}

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        self.previews[edition_id] = dict(previews)

    def send(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def lanes(self, wanted: int) -> list[Lane]:
        return [SenderLane(self)]

    def close(self) -> None:
        pass
