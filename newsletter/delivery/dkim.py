"""DKIM signatures (RFC 6376, RFC 8463) on outgoing messages, made by OpenSSL. Optional.

Configured in ``newsletter.toml``; without a ``[dkim]`` table nothing is signed
(many operators sign in their relay instead). A group with a mail domain of its own
has its own table, ``[groups.SLUG.dkim]`` with the same keys, and its mail is signed
with that key; a group without one is signed with the site's::

    [dkim]
    selector = "news2026"            # the key is published at news2026._domainkey.example.org
    domain = "example.org"           # d=; align it with the From domain for DMARC
    key_file = "dkim/news2026.pem"   # PEM RSA private key, relative to the site folder
    # Optional: a second signature with Ed25519 (RFC 8463), under a selector of its own.
    ed25519_selector = "news2026e"
    ed25519_key_file = "dkim/news2026-ed25519.pem"

``h=`` covers From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe and
List-Unsubscribe-Post (what Gmail and Yahoo check for one-click unsubscribe), plus
Reply-To, MIME-Version, Content-Type and Feedback-ID when the message has them. From,
Subject and the two List-Unsubscribe fields are signed once more than they occur
("oversigned"), so a copy added on the way breaks the signature instead of being
believed. Canonicalisation is relaxed/relaxed, which survives relays that refold
headers or trim trailing whitespace.

Why the canonicalisation and the DKIM-Signature field are written here, not taken from
dkimpy: dkimpy canonicalises and signs one whole message per call in pure Python (about
20 ms a message, docs/performance.md), while an edition's messages share all but a few
short values. :class:`Spliced` canonicalises an edition's constant slices once and, per
recipient, only the values between them; the RSA and Ed25519 operations are OpenSSL's
(``cryptography``), which release the GIL, so the engine makes them on the other core
(:class:`Pending`, ``engine.py``). dkimpy stays as the independent verifier in the tests.
"""

import base64
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from newsletter.core.errors import ConfigError, KeyFileError
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
# DKIM-Signature lines are folded before this many octets (RFC 5322 recommends 78).
FOLD_AT = 76

CRLF = b"\r\n"
_WSP = re.compile(rb"[ \t]+")
_LINE_END = re.compile(rb"\r?\n")
_FIELD_START = re.compile(rb"\r?\n(?![ \t])")
_SIGNED = tuple(name.lower().encode("ascii") for name in HEADERS)
_OVERSIGNED = frozenset(name.lower().encode("ascii") for name in OVERSIGNED)


def relaxed_lines(data: bytes) -> bytes:
    """RFC 6376 3.4.4 on whole CRLF lines: runs of WSP to one space, none at line ends.

    What is left to the end of the body (its empty lines) is :func:`relaxed_end`'s.
    """
    return _WSP.sub(b" ", data).replace(b" \r\n", CRLF)


def relaxed_end(body: bytes) -> bytes:
    """The end of a relaxed body: no empty lines at the end, and a CRLF (an empty body stays empty)."""
    end = len(body)
    while body.endswith(CRLF, 0, end):
        end -= 2
    if end == len(body):
        return body + CRLF if body else b""
    return body[: end + 2] if end else b""


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4, relaxed body canonicalisation of a CRLF body."""
    return relaxed_end(relaxed_lines(body))


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded value with single spaces, ending in CRLF."""
    name, _, value = field.partition(b":")
    value = _WSP.sub(b" ", _LINE_END.sub(b"", value)).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + CRLF


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """A header block's fields as (lower-case name, the field's bytes) in order."""
    fields = []
    for field in _FIELD_START.split(block.rstrip(b"\r\n")):
        if field:
            fields.append((field.split(b":", 1)[0].strip(b" \t").lower(), field))
    return fields


def _fold(parts: Sequence[bytes], linesep: bytes, width: int = 0) -> bytes:
    """Join ``parts``, folding (line end and a tab) before a part that would pass FOLD_AT."""
    out = []
    for part in parts:
        if width and width + len(part) > FOLD_AT:
            out.append(linesep + b"\t")
            width = 1
        out.append(part)
        width += len(part)
    return b"".join(out)


@dataclass(frozen=True)
class _Key:
    """One signing key: RSA (rsa-sha256) or Ed25519 (ed25519-sha256, RFC 8463)."""

    selector: bytes
    algorithm: bytes
    sign: Callable[[bytes], bytes]  # the SHA-256 of the signed header data -> signature


def _private_key(pem: bytes, what: str) -> object:
    try:
        # Keys saved on Windows have CRLF line ends.
        return serialization.load_pem_private_key(pem.replace(b"\r\n", b"\n"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"the DKIM {what} ({exc})") from None


def _rsa_key(selector: str, pem: bytes) -> _Key:
    key = _private_key(pem, "key is not a PEM RSA private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the DKIM key is not a PEM RSA private key (another kind of key)")
    if key.key_size < MIN_KEY_BITS:
        raise ConfigError(f"the DKIM key has {key.key_size} bits; receivers want at least {MIN_KEY_BITS}")
    pkcs1, prehashed = padding.PKCS1v15(), Prehashed(hashes.SHA256())

    def sign(digest: bytes) -> bytes:
        return key.sign(digest, pkcs1, prehashed)

    return _Key(selector.encode("ascii"), b"rsa-sha256", sign)


def _ed25519_key(selector: str, pem: bytes) -> _Key:
    key = _private_key(pem, "Ed25519 key is not a PEM private key")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("the DKIM Ed25519 key is not an Ed25519 private key")
    # RFC 8463 3: PureEdDSA over the SHA-256 hash of the signed header data.
    return _Key(selector.encode("ascii"), b"ed25519-sha256", key.sign)


@dataclass(frozen=True)
class Pending:
    """A message's signatures, hashed but not yet made: ``seal()`` makes them (OpenSSL, no GIL)."""

    # Per key: its sign function, its DKIM-Signature field up to "b=", the header hash.
    parts: tuple[tuple[Callable[[bytes], bytes], bytes, bytes], ...]
    linesep: bytes

    def seal(self) -> bytes:
        """The DKIM-Signature field(s) to put on top of the message."""
        out = []
        for sign, field, digest in self.parts:
            value = base64.b64encode(sign(digest))
            chunks = [value[i : i + 64] for i in range(0, len(value), 64)]
            last = len(field) - field.rfind(b"\n") - 1
            out.append(field + _fold(chunks, self.linesep, last) + self.linesep)
        return b"".join(out)


# Stand-ins for t= (10 digits until the year 2286) and bh= (a SHA-256 in base64).
_STAMP, _BODY_HASH = b"0" * 10, b"A" * 44


@dataclass(frozen=True)
class _SignatureForm:
    """A key's DKIM-Signature field for one ``h=`` list, folded once; t= and bh= are filled in."""

    field: bytes
    canonical: bytes  # its relaxed form without the final CRLF, as it is hashed
    at: tuple[int, int, int, int]  # where t= and bh= go in each

    @classmethod
    def of(cls, domain: bytes, key: _Key, names: tuple[bytes, ...], linesep: bytes) -> "_SignatureForm":
        h = [b"h=" + names[0]] + [b":" + name for name in names[1:]]
        tags = [
            b"DKIM-Signature: v=1; ",
            b"a=" + key.algorithm + b"; ",
            b"c=relaxed/relaxed; ",
            b"d=" + domain + b"; ",
            b"s=" + key.selector + b"; ",
            b"t=" + _STAMP + b"; ",
            *h[:-1],
            h[-1] + b"; ",
            b"bh=" + _BODY_HASH + b"; ",
            b"b=",
        ]
        field = _fold(tags, linesep)
        canonical = relaxed_header(field)[:-2]
        at = (
            field.index(b"t=" + _STAMP) + 2,
            field.index(b"bh=" + _BODY_HASH) + 3,
            canonical.index(b"t=" + _STAMP) + 2,
            canonical.index(b"bh=" + _BODY_HASH) + 3,
        )
        return cls(field, canonical, at)

    def fill(self, stamp: bytes, body_hash: bytes) -> tuple[bytes, bytes]:
        t, bh, canonical_t, canonical_bh = self.at
        field, canonical = self.field, self.canonical
        return (
            field[:t] + stamp + field[t + 10 : bh] + body_hash + field[bh + 44 :],
            canonical[:canonical_t]
            + stamp
            + canonical[canonical_t + 10 : canonical_bh]
            + body_hash
            + canonical[canonical_bh + 44 :],
        )


class DkimSigner:
    """Signs messages: ``signer.sign(data)`` returns the data with its DKIM-Signature field(s)."""

    def __init__(
        self, selector: str, domain: str, private_key: bytes, ed25519: tuple[str, bytes] | None = None
    ) -> None:
        """``ed25519``: (selector, PEM key) for a second signature (RFC 8463)."""
        self.keys = [_rsa_key(selector, private_key)]
        if ed25519 is not None:
            self.keys.append(_ed25519_key(*ed25519))
        self.domain = domain.encode("ascii")
        self._forms: dict[tuple[bytes, tuple[bytes, ...], bytes], _SignatureForm] = {}

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
        except KeyFileError as exc:
            raise ConfigError(f"{settings.config_file}: dkim.{exc.setting}: {exc}") from None

    def select(self, header: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[bytes, ...], list[bytes]]:
        """The ``h=`` names for these header fields (name, raw field), and the fields they sign in order.

        Each name in ``h=`` takes the next instance of its field from the bottom (RFC 6376
        5.4.2); an oversigned name finds none the last time, which signs its absence.
        """
        instances: dict[bytes, list[bytes]] = {}
        for name, raw in header:
            instances.setdefault(name, []).append(raw)
        names: list[bytes] = []
        chosen: list[bytes] = []
        for name in _SIGNED:
            found = instances.get(name, [])
            names += [name] * (len(found) + (name in _OVERSIGNED))
            chosen += reversed(found)
        return tuple(names), chosen

    def pending(
        self, header: Sequence[tuple[bytes, bytes]], body_hash: bytes, linesep: bytes = CRLF
    ) -> Pending:
        """Hash the header fields (name, raw field) for each key; the body is given by its hash."""
        names, chosen = self.select(header)
        return self.pending_signed(names, b"".join(map(relaxed_header, chosen)), body_hash, linesep)

    def pending_signed(
        self, names: tuple[bytes, ...], signed: bytes, body_hash: bytes, linesep: bytes = CRLF
    ) -> Pending:
        """Hash the canonical signed fields ``signed`` (in the order of ``names``) for each key."""
        stamp = b"%010d" % int(time.time())
        bh = base64.b64encode(body_hash)
        parts = []
        for key in self.keys:
            form = self._forms.get((key.algorithm, names, linesep))
            if form is None:
                form = self._forms[(key.algorithm, names, linesep)] = _SignatureForm.of(
                    self.domain, key, names, linesep
                )
            field, canonical = form.fill(stamp, bh)
            parts.append((key.sign, field, hashlib.sha256(signed + canonical).digest()))
        return Pending(tuple(parts), linesep)

    def pending_for(self, data: bytes) -> Pending:
        """The signatures of one whole message (its own line ends, CRLF or LF)."""
        linesep = CRLF if CRLF in data[:2000] else b"\n"
        block, separator, body = data.partition(linesep + linesep)
        if not separator:
            block, body = data, b""
        if linesep != CRLF:
            body = body.replace(b"\n", CRLF)
        body_hash = hashlib.sha256(relaxed_body(body)).digest()
        return self.pending(header_fields(block), body_hash, linesep)

    def signature(self, data: bytes) -> bytes:
        """The ``DKIM-Signature:`` field(s) for the message, folded with its own line ends."""
        return self.pending_for(data).seal()

    def sign(self, data: bytes) -> bytes:
        return self.signature(data) + data

    __call__ = sign


class Spliced:
    """Signing messages made of the same constant slices with values between them (``splice.py``).

    The slices are canonicalised once, and so are the header fields that hold no value;
    per message only the values are, and the body is hashed. That needs every piece of
    the body to start a line: each constant slice before a value ends with a line end,
    and so does each value (quoted-printable values end in a soft line break). A message
    that breaks the rule is signed whole.
    """

    def __init__(self, signer: DkimSigner, slices: Sequence[bytes], slots: Sequence[int]) -> None:
        self.signer = signer
        values = set(slots)
        self.header_end = (-1, -1)
        for index, piece in enumerate(slices):
            at = piece.find(CRLF + CRLF) if index not in values else -1
            if at >= 0:
                self.header_end = (index, at)
                break
        index, at = self.header_end
        # The body's canonical constant slices, None where a value goes.
        self.body: list[bytes | None] = []
        self.whole = index < 0
        if not self.whole:
            rest = [slices[index][at + 4 :], *slices[index + 1 :]]
            positions = range(index, len(slices))
            pairs = list(zip(positions, rest, strict=True))
            self.body = [None if at_ in values else relaxed_lines(piece) for at_, piece in pairs]
            constant = [piece for at_, piece in pairs if at_ not in values]
            self.whole = any(piece and not piece.endswith(b"\n") for piece in constant[:-1])
        self.header_slots = [slot for slot in slots if slot < index]
        # The h= names, and per signed field its canonical bytes or how to make them
        # from the values: planned on the first message (a value may be a whole field,
        # as the Date is, whose name only a real value shows).
        self.names: tuple[bytes, ...] = ()
        self.header: list[bytes | tuple[bytes, tuple[int, ...]] | int] | None = None

    def pending(self, pieces: Sequence[bytes]) -> Pending:
        """The signatures of the message ``b"".join(pieces)``."""
        index = self.header_end[0]
        if self.whole:
            return self.signer.pending_for(b"".join(pieces))
        canonical = []
        last = len(self.body) - 1
        for number, (constant, piece) in enumerate(zip(self.body, pieces[index:], strict=True)):
            if constant is None:
                if piece and number < last and not piece.endswith(b"\n"):
                    return self.signer.pending_for(b"".join(pieces))
                constant = relaxed_lines(piece)
            canonical.append(constant)
        body_hash = hashlib.sha256(relaxed_end(b"".join(canonical))).digest()
        if self.header is None:
            self._plan(pieces)
            assert self.header is not None
        signed = []
        for field in self.header:
            if isinstance(field, bytes):
                signed.append(field)
            elif isinstance(field, int):
                signed.append(relaxed_header(pieces[field]))
            else:
                raw, inside = field
                for slot in inside:
                    raw = raw.replace(_mark(slot), pieces[slot])
                signed.append(relaxed_header(raw))
        return self.signer.pending_signed(self.names, b"".join(signed), body_hash)

    def _plan(self, pieces: Sequence[bytes]) -> None:
        index, at = self.header_end
        sample = list(pieces[:index])
        whole = set()
        for slot in self.header_slots:
            value = pieces[slot]
            starts_line = slot == 0 or pieces[slot - 1].endswith(b"\n")
            if starts_line and value.endswith(b"\n") and value.count(b"\n") == 1 and b":" in value:
                # A whole field (Date): its name, and a mark for the rest.
                sample[slot] = value.split(b":", 1)[0] + b": " + _mark(slot) + CRLF
                whole.add(slot)
            else:
                sample[slot] = _mark(slot)
        self.names, chosen = self.signer.select(header_fields(b"".join(sample) + pieces[index][:at]))
        self.header = []
        for raw in chosen:
            inside = tuple(slot for slot in self.header_slots if _mark(slot) in raw)
            if not inside:
                self.header.append(relaxed_header(raw))
            elif len(inside) == 1 and inside[0] in whole:
                self.header.append(inside[0])
            else:
                self.header.append((raw, inside))


def _mark(slot: int) -> bytes:
    """What stands for a value in a header field while the fields are planned (no field holds NUL)."""
    return b"\x00%d\x00" % slot


def read_signer(site_dir: Path, config: DkimSection) -> DkimSigner:
    """The signer a ``[dkim]`` table describes; KeyFileError saying which key cannot be used and why."""

    def read(setting: str, name: str, check: Callable[[bytes], object]) -> bytes:
        path = Path(name)
        if not path.is_absolute():
            path = site_dir / path
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(setting, f"cannot read {path} ({exc.strerror or exc})") from None
        try:
            check(pem)
        except ConfigError as exc:
            raise KeyFileError(setting, f"{path}: {exc}") from None
        return pem

    key = read("key_file", config.key_file, partial(_rsa_key, config.selector))
    ed25519_key = None
    if config.ed25519_key_file and config.ed25519_selector:
        check = partial(_ed25519_key, config.ed25519_selector)
        ed25519_key = (config.ed25519_selector, read("ed25519_key_file", config.ed25519_key_file, check))
    return DkimSigner(config.selector, config.domain, key, ed25519_key)


def signer_for(settings: Settings, identity: SenderIdentity | None = None) -> Callable[[bytes], bytes] | None:
    """What is called on each message's bytes of ``identity`` (default: the site's), or None to
    leave them unsigned."""
    signer = DkimSigner.from_settings(settings, identity)
    return signer.sign if signer is not None else None
