"""The exceptions the library raises, all under one base class, all defined here.

Every message is written for the person at the terminal: it says what went wrong,
where (file, line, key or record), and what to do about it. The CLI prints the
message as one line on stderr and exits non-zero (``exit_code``); a traceback is
always a bug. An ``OSError`` or a SQLAlchemy error is turned into one of these where
it happens (a file read or written, a transaction), never left for the CLI to show.
``tests/test_errors.py`` checks that no module of the package defines an exception
of its own.

An error also keeps its message as a :class:`~newsletter.core.messages.Message`
(``exc.msg``): the English sentence with ``{name}`` placeholders, and their values, so
that a page shows it in the reader's language (``web/pages.py`` translates every error
it is given) while ``str(exc)`` stays English for the terminal and the logs::

    raise InputError("the intro is {length} characters long; keep it under {limit}", length=n, limit=m)

    NewsletterError                 base of everything below
    ├── ConfigError                 newsletter.toml, environment or a schedule file is wrong
    │   └── KeyFileError            a DKIM key file is unusable; names its setting (delivery/dkim.py)
    ├── SiteError                   the site folder is missing or incomplete
    ├── InputError                  a file or argument given by the user is unusable (exit 2)
    │   ├── ImportFileError         a subscriber CSV cannot be read at all
    │   ├── InvalidAddress          not an address the list accepts (audience/addresses.py)
    │   └── BadToken                a link's token is altered, forged or expired (core/tokens.py)
    ├── FileAccessError             a file or folder cannot be read or written (OSError)
    ├── NotFoundError               a group, subscriber, item, edition or user does not exist
    │                               (also: a group the signed-in person has no permission on)
    ├── Forbidden                   the person may see the group but not do this (accounts/permissions.py)
    ├── StateError                  the action is not allowed in the record's current state
    │   ├── TransitionError         a status change the transition tables (states.py) do not list
    │   ├── StaleRecord             the item or edition changed since the form was read
    │   ├── LeaseHeld               another live process owns the edition's send (delivery/runner.py)
    │   ├── SecondPersonRequired    the four-eyes rule: the last editor may not approve (editions/build.py)
    │   └── LeaseLost               this process's send lease was taken over; it stopped sending
    ├── NothingToBuild              no approved item waits for the group (exit 0; editions/build.py)
    ├── DatabaseError               the database cannot be reached, migrated or written
    │   └── ConflictError           another process wrote the same record first; run it again
    ├── RenderError                 a template or MJML failed (editions/render.py)
    ├── SpliceError                 the splicer cannot cut a message; the factory builds it (splice.py)
    ├── FetchError                  a URL could not be fetched: network, size or time (collecting/fetch.py)
    │   └── FetchRefused            the address policy refused the URL (private address, scheme, redirects)
    ├── FeedError                   a source cannot be fetched or read (collecting/feeds.py)
    ├── ApiRefusal                  the JSON API's answer: an HTTP status and a stable code (web/api/)
    └── DeliveryError               a message could not be handed to the relay
        ├── TemporaryFailure        4xx, dropped connection, timeout: retried later
        └── PermanentFailure        5xx: recorded against the member, never retried
"""

import errno
from collections.abc import Mapping
from datetime import datetime

from newsletter.core.messages import Message, Param


class NewsletterError(Exception):
    """Base class: ``str(error)`` is a complete, user-facing sentence (in English).

    ``message`` is a msgid whose ``{name}`` placeholders ``params`` fill, or a
    :class:`Message` already made (another error's ``msg``, passed on).
    """

    exit_code = 1

    def __init__(self, message: "str | Message" = "", /, **params: Param) -> None:
        self.msg = message if isinstance(message, Message) else Message(message, params)
        super().__init__(str(self.msg))


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the file and the key."""


class KeyFileError(ConfigError):
    """A DKIM key file that cannot be used; ``setting`` names its key in the table."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class SiteError(NewsletterError):
    """The site folder is missing or lacks something it needs."""


class InputError(NewsletterError):
    """A file or value given by the user cannot be used."""

    exit_code = 2


class ImportFileError(InputError):
    """A subscriber import file cannot be read (encoding, header, delimiter)."""


class InvalidAddress(InputError):
    """The text is not an address this list accepts; ``str()`` says why."""


class BadToken(InputError):
    """The token was altered, forged, made for another purpose, or has expired."""


class FileAccessError(NewsletterError):
    """A file or folder cannot be read or written; the message names it and says what to check."""


def file_error(exc: OSError, doing: str, path: object) -> FileAccessError:
    """A :class:`FileAccessError` for an ``OSError``, e.g. ``file_error(exc, "cannot write", path)``."""
    return FileAccessError(f"{doing} {path}: {exc.strerror or exc}; {file_hint(exc)}")


def file_hint(exc: OSError) -> str:
    """What to do about an ``OSError``, in a few words."""
    return {
        "EACCES": "check its permissions",
        "EPERM": "check its permissions",
        "ENOENT": "check that the path exists",
        "ENOTDIR": "a file stands where a folder should be",
        "EISDIR": "a folder stands where a file should be",
        "ENOSPC": "free some disk space",
        "EROFS": "the file system is read-only",
    }.get(errno.errorcode.get(exc.errno or 0, ""), "check the path and try again")


class NotFoundError(NewsletterError):
    """The named record does not exist."""


class Forbidden(NewsletterError):
    """The person may see the group (or the site's things) but lacks the permission for this act.

    A group they have no permission on at all is a :class:`NotFoundError` instead, so that
    nobody learns of a group's existence from a refusal (pages answer 404, not 403).
    """


class StateError(NewsletterError):
    """The record is in a state that does not allow the action."""


class TransitionError(StateError):
    """A status change that ``states.py`` does not allow; the record is left as it was."""


class StaleRecord(StateError):
    """Someone changed the record after the form was read; this change was refused, nothing changed."""


class LeaseHeld(StateError):
    """Another live process holds the edition's send lease; ``holder`` says who and since when."""

    def __init__(self, message: str, *, owner: str, since: datetime) -> None:
        super().__init__(message)
        self.owner = owner
        self.since = since


class SecondPersonRequired(StateError):
    """The group asks for a second person: whoever last changed an edition may not approve it."""


class LeaseLost(StateError):
    """The send lease lapsed while this process worked (it stalled) and another took it over."""


class NothingToBuild(NewsletterError):
    """No approved item is waiting for the group: no edition is made."""

    exit_code = 0


class DatabaseError(NewsletterError):
    """The database cannot be reached, created, migrated or written; nothing was changed."""


class ConflictError(DatabaseError):
    """Another process wrote the same record at the same moment (a unique key held)."""


class RenderError(NewsletterError):
    """A template or the MJML compiler failed; the message names the file and line."""

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.message = message
        # "file:line" of the template that failed, when known.
        self.location = location


class SpliceError(NewsletterError):
    """The reference message does not have the shape the splicer expects (it falls back)."""


class FetchError(NewsletterError):
    """A URL could not be fetched: the network failed, or the answer broke a size or time limit."""


class FetchRefused(FetchError):
    """The URL was not fetched at all: its address, scheme or redirects are not allowed."""


class FeedError(NewsletterError):
    """This source could not be fetched or read; the message says why."""


class DeliveryError(NewsletterError):
    """A message could not be delivered; ``permanent`` says whether a retry can help."""

    permanent = False

    def __init__(self, message: str | Message, *, code: int | None = None, connection: bool = False) -> None:
        super().__init__(message)
        self.code = code
        # True when the relay itself failed (refused connection, dropped session, timeout).
        self.connection = connection


class TemporaryFailure(DeliveryError):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class PermanentFailure(DeliveryError):
    """Not worth retrying: 5xx replies for this recipient."""

    permanent = True


class ApiRefusal(NewsletterError):
    """The JSON API's refusal of a request: its HTTP ``status``, a stable ``code`` scripts test,
    and the message for a person (``web/api/framework.py`` turns the other errors into one)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
