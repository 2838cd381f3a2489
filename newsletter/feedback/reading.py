"""Reading what came back: .eml files, mbox files, Maildir folders, standard input.

What is read is bounded before it is parsed. Python's email parser recurses once per
MIME nesting level, so a message nested 3,000 deep raises RecursionError, and a
gigabyte attachment would be held in memory whole. A message past the limits below
is *unreadable*: it is reported, the rest are processed, and one in a Maildir is moved
to the Maildir's ``.quarantine`` folder (:func:`quarantine`), so it is not read again.
"""

import mailbox
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import BinaryIO

from newsletter.core.errors import InputError

# A failure notice or a feedback report is a few kilobytes, its returned copy of our
# message at most a few hundred; 10 MB leaves room for a returned attachment.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# A real notice has three to six multipart or message/* parts (the report, its
# delivery-status, the returned message and its alternatives). Counting their
# Content-Type lines in the raw text bounds the nesting depth before anything is
# parsed; 100 stays far below the depth at which the parser runs out of stack.
MAX_CONTAINERS = 100
_CONTAINER = re.compile(rb"^content-type:\s*(multipart|message)/", re.I | re.M)
QUARANTINE = ".quarantine"


@dataclass(frozen=True)
class Incoming:
    label: str
    data: bytes
    # For a message in a Maildir: the folder and the message's key, so it can be quarantined.
    maildir: str | None = None
    key: str | None = None


def unreadable(data: bytes) -> str | None:
    """Why the message is past the limits this module reads, or None if it is within them."""
    if len(data) > MAX_MESSAGE_BYTES:
        return f"larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MB"
    if len(_CONTAINER.findall(data, 0, len(data))) > MAX_CONTAINERS:
        return f"more than {MAX_CONTAINERS} nested MIME parts"
    return None


def quarantine(maildir: str, key: str) -> str:
    """Move one message of a Maildir into its ``.quarantine`` folder; the path it now has.

    The folder is a Maildir++ subfolder (mail clients show it as "quarantine"), and the
    file keeps its name, so its flags and its key stay as they were.
    """
    root = Path(maildir)
    target = root / QUARANTINE
    for sub in ("tmp", "new", "cur"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    (target / "maildirfolder").touch()
    for sub in ("new", "cur"):
        for entry in (root / sub).iterdir():
            if entry.name == key or entry.name.startswith(key + ":") or entry.name.startswith(key + "!"):
                os.replace(entry, target / sub / entry.name)
                return str(target / sub / entry.name)
    raise InputError(f"{root}: message {key} is no longer there")


def read_inputs(paths: Iterable[str], stdin: BinaryIO | None = None) -> Iterator[Incoming]:
    """Every message in the paths ('-' is standard input); an unusable path is an InputError."""
    for name in paths:
        if name == "-":
            if stdin is None:
                raise InputError("'-' given but there is no standard input")
            yield _single("-", _strip_from_line(stdin.read(MAX_MESSAGE_BYTES + 1)))
            continue
        path = Path(name)
        if path.is_dir():
            if not ((path / "cur").is_dir() and (path / "new").is_dir()):
                raise InputError(f"{path}: a folder, but not a Maildir (it has no cur/ and new/)")
            maildir = mailbox.Maildir(path, factory=None, create=False)
            files = _maildir_files(path)
            for key in sorted(maildir.keys()):
                with maildir.get_file(key) as message:
                    # One byte past the limit is enough to know it is past it.
                    data = message.read(MAX_MESSAGE_BYTES + 1)
                yield Incoming(str(path / files.get(key, key)), data, maildir=str(path), key=key)
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
                with mbox.get_file(key) as message:
                    yield Incoming(label, message.read(MAX_MESSAGE_BYTES + 1))
            mbox.close()
        else:
            with path.open("rb") as handle:
                yield _single(str(path), handle.read(MAX_MESSAGE_BYTES + 1))


def _maildir_files(root: Path) -> dict[str, str]:
    """Each message's key -> its file under the Maildir (``new/KEY``, ``cur/KEY:2,S``).

    The key is the file's name up to the info part (after ``:``, or ``!`` where a colon
    cannot be in a file name); reports name the file as it is, so an operator can open it.
    """
    files: dict[str, str] = {}
    for sub in ("new", "cur"):
        for entry in (root / sub).iterdir():
            if entry.is_file() and not entry.name.startswith("."):
                key = re.split(r"[:!]", entry.name, maxsplit=1)[0]
                files.setdefault(key, f"{sub}/{entry.name}")
    return files


def _strip_from_line(data: bytes) -> bytes:
    # A pipe from the MTA may start with the mbox envelope line (Postfix pipe flags=F).
    return data.split(b"\n", 1)[1] if data.startswith(b"From ") and b"\n" in data else data


def _single(label: str, data: bytes) -> Incoming:
    if not data.strip():
        raise InputError(f"{label}: empty, not an email message")
    # Only the header: a body nested too deep is for the caller to find unreadable.
    if not BytesHeaderParser().parsebytes(data).keys():
        raise InputError(f"{label}: not an email message (no header fields)")
    return Incoming(label, data)


def parse(data: bytes) -> Message:
    # flufl.bounce works on the compat32 Message the default parser builds.
    return message_from_bytes(data)
