"""DKIM signatures (RFC 6376) on outgoing messages, made with dkimpy. Optional.

Configured in ``newsletter.toml``; without a ``[dkim]`` table nothing is signed
(many operators sign in their relay instead). A group with a mail domain of its own
has its own table, ``[groups.SLUG.dkim]`` with the same keys, and its mail is signed
with that key; a group without one is signed with the site's::

    [dkim]
    selector = "news2026"            # the key is published at news2026._domainkey.example.org
    domain = "example.org"           # d=; align it with the From domain for DMARC
    key_file = "dkim/news2026.pem"   # PEM RSA private key, relative to the site folder

``h=`` covers From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe and
List-Unsubscribe-Post (what Gmail and Yahoo check for one-click unsubscribe; dkimpy's
defaults leave the List-* fields out), plus Reply-To, MIME-Version, Content-Type and
Feedback-ID. From, Subject and the two List-Unsubscribe fields are signed once more
than they occur ("oversigned"), so a copy added on the way breaks the signature
instead of being believed. Canonicalisation is relaxed/relaxed, which survives relays
that refold headers or trim trailing whitespace.

Cost: dkimpy signs in pure Python; see docs/performance.md for the measured figure.
"""

from collections.abc import Callable
from pathlib import Path

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from newsletter.core.errors import ConfigError, NewsletterError
from newsletter.core.settings import DkimSection, SenderIdentity, Settings

HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Feedback-ID",
)
OVERSIGNED = ("From", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")
MIN_KEY_BITS = 1024  # what dkimpy's verifier, like most receivers, accepts at least


class DkimSigner:
    """Signs whole messages: ``signer.sign(data)`` returns the data with a DKIM-Signature."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        # dkimpy's PEM reader wants LF line ends; keys saved on Windows have CRLF.
        self.key = private_key.replace(b"\r\n", b"\n")
        try:
            parsed = parse_pem_private_key(self.key)
        except (UnparsableKeyError, ValueError, IndexError, TypeError) as exc:
            raise ConfigError(f"the DKIM key is not a PEM RSA private key ({exc})") from None
        bits = int(parsed["modulus"]).bit_length()
        if bits < MIN_KEY_BITS:
            raise ConfigError(f"the DKIM key has {bits} bits; receivers want at least {MIN_KEY_BITS}")
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        self.include = [h.lower().encode("ascii") for h in HEADERS + OVERSIGNED]

    @classmethod
    def from_settings(cls, settings: Settings, identity: SenderIdentity | None = None) -> "DkimSigner | None":
        """The signer of ``identity``'s mail (default: the site's), or None when it has no DKIM key.

        A group's ``[groups.SLUG.dkim]`` table signs its mail; without one the site's
        ``[dkim]`` does (``core/identity.py``).
        """
        config = (identity or settings.identity()).dkim
        if config is None:
            return None
        try:
            return read_signer(settings.site_dir, config)
        except ConfigError as exc:
            raise ConfigError(f"{settings.config_file}: dkim.key_file: {exc}") from None

    def signature(self, data: bytes) -> bytes:
        """The ``DKIM-Signature:`` field for the message, folded with its own line ends."""
        linesep = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
        try:
            return bytes(
                dkim.sign(
                    data,
                    self.selector,
                    self.domain,
                    self.key,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=self.include,
                    linesep=linesep,
                )
            )
        except dkim.DKIMException as exc:
            raise NewsletterError(f"DKIM signing failed: {exc}") from exc

    def sign(self, data: bytes) -> bytes:
        return self.signature(data) + data

    __call__ = sign


def read_signer(site_dir: Path, config: DkimSection) -> DkimSigner:
    """The signer a ``[dkim]`` table describes; ConfigError saying why its key cannot be used."""
    path = Path(config.key_file)
    if not path.is_absolute():
        path = site_dir / path
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc})") from None
    try:
        return DkimSigner(config.selector, config.domain, key)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def signer_for(settings: Settings, identity: SenderIdentity | None = None) -> Callable[[bytes], bytes] | None:
    """What is called on each message's bytes of ``identity`` (default: the site's), or None to
    leave them unsigned."""
    signer = DkimSigner.from_settings(settings, identity)
    return signer.sign if signer is not None else None
