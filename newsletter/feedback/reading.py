"""Reading what came back: .eml files, mbox files, Maildir folders, standard input."""

import mailbox
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import BinaryIO

from newsletter.core.errors import InputError


@dataclass(frozen=True)
class Incoming:
    label: str
    data: bytes


def read_inputs(paths: Iterable[str], stdin: BinaryIO | None = None) -> Iterator[Incoming]:
    """Every message in the paths ('-' is standard input); an unusable path is an InputError."""
    for name in paths:
        if name == "-":
            if stdin is None:
                raise InputError("'-' given but there is no standard input")
            yield _single("-", _strip_from_line(stdin.read()))
            continue
        path = Path(name)
        if path.is_dir():
            if not ((path / "cur").is_dir() and (path / "new").is_dir()):
                raise InputError(f"{path}: a folder, but not a Maildir (it has no cur/ and new/)")
            maildir = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(maildir.keys()):
                yield Incoming(f"{path}/{key}", maildir.get_bytes(key))
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(5)
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
        if head == b"From ":
            mbox = mailbox.mbox(path, factory=None, create=False)
            keys = list(mbox.keys())
            for number, key in enumerate(keys, start=1):
                label = str(path) if len(keys) == 1 else f"{path}#{number}"
                yield Incoming(label, mbox.get_bytes(key))
            mbox.close()
        else:
            yield _single(str(path), path.read_bytes())


def _strip_from_line(data: bytes) -> bytes:
    # A pipe from the MTA may start with the mbox envelope line (Postfix pipe flags=F).
    return data.split(b"\n", 1)[1] if data.startswith(b"From ") and b"\n" in data else data


def _single(label: str, data: bytes) -> Incoming:
    if not data.strip():
        raise InputError(f"{label}: empty, not an email message")
    if not parse(data).keys():
        raise InputError(f"{label}: not an email message (no header fields)")
    return Incoming(label, data)


def parse(data: bytes) -> Message:
    # flufl.bounce works on the compat32 Message the default parser builds.
    return message_from_bytes(data)
