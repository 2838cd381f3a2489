"""The outbox: each message becomes an .eml file, each edition gets an HTML preview.

``OUTBOX/edition-12/preview-de.html`` and ``OUTBOX/edition-12/000345.eml`` (named by
delivery id, so a resumed send overwrites rather than duplicates). Files are written
to a temporary name and renamed, so a crash never leaves half a message. Nobody receives
these files: the transport says so (``delivers=False``), and an edition sent through it
ends ``written``, not ``sent``.
"""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from newsletter.core.errors import TemporaryFailure, file_error
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Capabilities, Lane, SenderLane


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class DirectoryTransport:
    name = "outbox"
    capabilities = Capabilities(lanes=1, delivers=False)

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, edition_id: int) -> Path:
        return self.root / f"edition-{edition_id}"

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        folder = self.folder(edition_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for language, html in previews.items():
                _write_atomically(folder / f"preview-{language}.html", html.encode("utf-8"))
        except OSError as exc:
            raise file_error(exc, "cannot write to the outbox", folder) from None

    def send(self, message: OutgoingMessage) -> None:
        folder = self.folder(message.edition_id)
        name = (
            f"{message.delivery_id:06d}.eml" if message.delivery_id else f"test-{message.subscriber_id}.eml"
        )
        envelope = f"X-Envelope-From: <{message.sender}>\r\nX-Envelope-To: <{message.recipient}>\r\n"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(folder / name, envelope.encode("utf-8") + message.data)
        except OSError as exc:
            raise TemporaryFailure(
                f"cannot write to the outbox {folder}: {exc.strerror or exc}", connection=True
            ) from None

    def lanes(self, wanted: int) -> list[Lane]:
        return [SenderLane(self)]

    def close(self) -> None:
        pass
