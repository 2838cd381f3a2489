"""The exceptions the library raises, all under one base class.

Every message is written for the person at the terminal: it says what went wrong,
where (file, line, key or record), and what to do about it. The CLI prints the
message as one line on stderr and exits non-zero; a traceback is always a bug.

    NewsletterError                 base of everything below
    ├── ConfigError                 newsletter.toml, environment or a schedule file is wrong
    ├── SiteError                   the site folder is missing or incomplete
    ├── InputError                  a file or argument given on the command line is unusable
    │   └── ImportFileError         a subscriber CSV cannot be read at all
    ├── NotFoundError               a group, subscriber, item or edition does not exist
    ├── StateError                  the action is not allowed in the record's current state
    │   ├── TransitionError         a status change the transition tables (states.py) do not list
    │   ├── LeaseHeld               another live process owns the edition's send (runner.py)
    │   └── LeaseLost               this process's send lease was taken over; it stopped sending
    ├── DatabaseError               the database cannot be reached or migrated
    ├── RenderError                 a template or MJML failed (render.py)
    └── DeliveryError               a message could not be handed to the relay
        ├── TemporaryFailure        4xx, dropped connection, timeout: retried later
        └── PermanentFailure        5xx: recorded against the member, never retried
"""

from datetime import datetime


class NewsletterError(Exception):
    """Base class: ``str(error)`` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(NewsletterError):
    """A setting is missing or invalid; the message names the file and the key."""


class SiteError(NewsletterError):
    """The site folder is missing or lacks something it needs."""


class InputError(NewsletterError):
    """A file or value given by the user cannot be used."""

    exit_code = 2


class ImportFileError(InputError):
    """A subscriber import file cannot be read (encoding, header, delimiter)."""


class NotFoundError(NewsletterError):
    """The named record does not exist."""


class StateError(NewsletterError):
    """The record is in a state that does not allow the action."""


class TransitionError(StateError):
    """A status change that ``states.py`` does not allow; the record is left as it was."""


class LeaseHeld(StateError):
    """Another live process holds the edition's send lease; ``holder`` says who and since when."""

    def __init__(self, message: str, *, owner: str, since: datetime) -> None:
        super().__init__(message)
        self.owner = owner
        self.since = since


class LeaseLost(StateError):
    """The send lease lapsed while this process worked (it stalled) and another took it over."""


class DatabaseError(NewsletterError):
    """The database cannot be reached, created or migrated."""


class DeliveryError(NewsletterError):
    """A message could not be delivered; ``permanent`` says whether a retry can help."""

    permanent = False

    def __init__(self, message: str, *, code: int | None = None, connection: bool = False) -> None:
        super().__init__(message)
        self.code = code
        # True when the relay itself failed (refused connection, dropped session, timeout).
        self.connection = connection


class TemporaryFailure(DeliveryError):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class PermanentFailure(DeliveryError):
    """Not worth retrying: 5xx replies for this recipient."""

    permanent = True
