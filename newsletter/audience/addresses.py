"""E-mail addresses: validated and normalised with email-validator, offline.

The policy, chosen for a mailing list (see docs/subscribers.md):

* internationalised addresses are accepted (they need an SMTPUTF8 relay to deliver);
* ``Name <address>`` is accepted and the name kept, as address books export it;
* quoted local parts, IP-address domains, empty local parts and special-use domains
  (``.test``, ``.local``, ``.invalid`` ...) are refused: relays and mail clients
  handle them badly, and no real subscriber has one;
* no DNS lookups: an import must not depend on the network.
"""

import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from newsletter.core.errors import InvalidAddress

POLICY = {
    "check_deliverability": False,
    "allow_smtputf8": True,
    "allow_quoted_local": False,
    "allow_domain_literal": False,
    "allow_display_name": True,
    "allow_empty_local": False,
    "test_environment": False,
}


@dataclass(frozen=True)
class Address:
    email: str
    display_name: str | None = None

    @property
    def key(self) -> str:
        """The mailbox identity: one subscriber per key, however the address was spelt."""
        return email_key(self.email)


def email_key(normalized: str) -> str:
    return normalized.casefold()


def limit_key(address: Address) -> str:
    """The address as rate limits count it: ``A+news@Example.org`` is ``a@example.org``.

    Mail servers commonly deliver ``local+anything`` to ``local``, so a limit per
    address would otherwise be one limit per tag. Only for counting, never stored.
    """
    local, _, domain = address.email.rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}".casefold()


def parse_address(text: str) -> Address:
    """Validate and normalise one address; raise :class:`InvalidAddress` with the reason."""
    if not text or not text.strip():
        raise InvalidAddress("the address is empty")
    try:
        valid = validate_email(text.strip(), **POLICY)  # type: ignore[arg-type]
    except EmailNotValidError as exc:
        # The validator's own explanation, in English: whoever shows it puts a translated frame around it.
        raise InvalidAddress(str(exc)) from None
    return Address(email=valid.normalized, display_name=valid.display_name or None)


def clean_name(text: str | None) -> str | None:
    """A name as it may go into a To: header: one line, no control characters.

    Address books and multi-line CSV cells bring line breaks, tabs and stray NULs;
    PostgreSQL refuses NUL, and a line break in a header is an injection. Runs of
    whitespace (line breaks included) become one space; other control characters go.
    """
    if text is None:
        return None
    kept = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch) != "Cc")
    return " ".join(kept.split()) or None
