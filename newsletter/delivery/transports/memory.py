"""A transport that keeps messages in a list: for unit tests only."""

from collections.abc import Mapping

from newsletter.delivery.message import OutgoingMessage


class MemoryTransport:
    name = "memory"

    def __init__(self) -> None:
        self.messages: list[OutgoingMessage] = []
        self.previews: dict[int, dict[str, str]] = {}

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        self.previews[edition_id] = dict(previews)

    def send(self, message: OutgoingMessage) -> None:
        self.messages.append(message)

    def close(self) -> None:
        pass
