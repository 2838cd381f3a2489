"""DKIM signatures on edition messages, checked with dkimpy's own verifier (an independent implementation).

Keys are made here with ``cryptography``; the verifier looks the public key up through a
``dnsfunc`` that answers with this test's TXT record, so no real DNS is involved.
"""

import base64
import re
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given
from hypothesis import strategies as st

from newsletter.core.errors import ConfigError
from newsletter.core.settings import Settings, load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery import splice
from newsletter.delivery.dkim import DkimSigner, relaxed_body, relaxed_header, signer_for
from newsletter.delivery.message import MessageFactory, Recipient
from newsletter.editions.render import Marker, Rendered
from tests.conftest import REPO, Cli

SELECTOR, DOMAIN = "news2026", "example.org"
REQUIRED = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
}

# A 512-bit key (cryptography refuses to generate one), only to prove such keys are refused.
WEAK_KEY = b"""-----BEGIN PRIVATE KEY-----
MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAyUqVIJOQ/bBz4hde
063A9B170k606HUoFA677MGF4I6fhIZQBwNOBeJ4FlMyopPN/Xm+iTQmi11jMg0B
1ErFnwIDAQABAkBkfZWBk+oYnJTd1KkEqIPh2y5LyftK6eI+UTTEd8CsX+TBAXxk
BNb5k6RjfBd4GxBs3jNMoL357asNVXo7bmPhAiEA6muDGxZVcj4ekVEgzEgmWPmW
907Pdz+ORzAjm7TA/1kCIQDb0lce7RH85981gbMStVvpGV3q/rVJkruGZXc6ZKOF
twIgcxy0VrrS3rSuYgGKr4XGfu6hOXQT4KTvAvoaoj1SgJECICFbbN8DiJxBL2z2
Lo9jN/xKXicf2bC9dHlzgkE5LltHAiEAkdeZ5eQplNEdbFU17LI6f1z+b3yzTZRh
BN31QnkOsAY=
-----END PRIVATE KEY-----
"""


def make_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(
    key: rsa.RSAPrivateKey, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def dns_for(key: rsa.RSAPrivateKey) -> Callable[..., bytes | None]:
    """A dnsfunc that publishes the key at news2026._domainkey.example.org and nowhere else."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return make_key()


@pytest.fixture(scope="module")
def edition_message() -> bytes:
    """One recipient's message of an edition, as MessageFactory builds it for the example site."""
    settings = load_settings(REPO, env={"NEWSLETTER_SECRET_KEY": "dkim-test-key"})
    text = f"{Marker.GREETING.value}\nNews.\n\nUnsubscribe: {Marker.UNSUBSCRIBE_URL.value}\n"
    html = f"<html><body><p>{Marker.GREETING.value}</p><a href='{Marker.UNSUBSCRIBE_URL.value}'>x</a>"
    html += f"<a href='{Marker.PREFERENCES_URL.value}'>y</a></body></html>"
    factory = MessageFactory(
        settings,
        Signer("dkim-test-key"),
        edition_id=7,
        group_id=2,
        group_slug="uk",
        group_name="UK Patent Information Users (example)",
        parts={"en": Rendered("en", "UK: news from WIPO", html, text)},
    )
    return factory.build(Recipient(345, "jane.doe@example.org", "Jane Doe", "en")).data


def signed_fields(data: bytes) -> dict[str, str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)\r\n(?!\s)", header, re.S | re.M)
    assert value is not None, "no DKIM-Signature field"
    return dict(tag.split("=", 1) for tag in re.sub(r"\s+", "", value.group(1)).split(";") if tag)


def test_a_signed_edition_message_verifies(key: rsa.RSAPrivateKey, edition_message: bytes) -> None:
    """A real edition message signed with the operator's key verifies, and h= covers the RFC 8058 headers."""
    signed = DkimSigner(SELECTOR, DOMAIN, pem(key)).sign(edition_message)
    assert signed.endswith(edition_message)
    assert dkim.verify(signed, dnsfunc=dns_for(key))
    fields = signed_fields(signed)
    assert (fields["d"], fields["s"], fields["a"], fields["c"]) == (
        DOMAIN,
        SELECTOR,
        "rsa-sha256",
        "relaxed/relaxed",
    )
    signed_headers = fields["h"].split(":")
    assert set(signed_headers) >= REQUIRED
    for name in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed_headers.count(name) == 2, f"{name} is oversigned"


def test_the_wrong_key_does_not_verify(key: rsa.RSAPrivateKey, edition_message: bytes) -> None:
    """A signature made with another key fails against the published record."""
    signed = DkimSigner(SELECTOR, DOMAIN, pem(make_key())).sign(edition_message)
    assert not dkim.verify(signed, dnsfunc=dns_for(key))


def _replace_header(data: bytes, name: bytes, value: bytes) -> bytes:
    head, body = data.split(b"\r\n\r\n", 1)
    pattern = re.compile(rb"^" + re.escape(name) + rb":.*?\r\n(?![ \t])", re.M | re.S | re.I)
    assert pattern.search(head + b"\r\n"), name
    return pattern.sub(name + b": " + value + b"\r\n", head + b"\r\n", count=1) + b"\r\n" + body


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: _replace_header(d, b"Subject", b"You won a prize"),
        lambda d: _replace_header(d, b"From", b"CEPIUG News <news@evil.example>"),
        lambda d: _replace_header(d, b"To", b"someone.else@example.org"),
        lambda d: _replace_header(d, b"List-Unsubscribe", b"<https://evil.example/unsubscribe>"),
        lambda d: _replace_header(d, b"List-Unsubscribe-Post", b"List-Unsubscribe=Two-Clicks"),
        lambda d: _replace_header(d, b"List-Id", b"<other.example.org>"),
        lambda d: _replace_header(d, b"Message-ID", b"<forged@example.org>"),
        # Verifiers read the bottom-most copy of a field, so an attacker adds theirs on top.
        lambda d: b"List-Unsubscribe: <https://evil.example/u>\r\n" + d,
        lambda d: d.replace(b"News.", b"Nevs.", 1),
    ],
    ids=[
        "subject",
        "from",
        "to",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "message-id",
        "added list-unsubscribe",
        "body",
    ],
)
def test_a_tampered_message_fails(
    key: rsa.RSAPrivateKey, edition_message: bytes, tamper: Callable[[bytes], bytes]
) -> None:
    """Changing a signed header, adding a second List-Unsubscribe or editing the body breaks the signature."""
    signed = DkimSigner(SELECTOR, DOMAIN, pem(key)).sign(edition_message)
    tampered = tamper(signed)
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dns_for(key))


def test_relaxed_canonicalisation_survives_refolding(key: rsa.RSAPrivateKey, edition_message: bytes) -> None:
    """A relay that refolds a header or changes its whitespace does not break the signature."""
    signed = DkimSigner(SELECTOR, DOMAIN, pem(key)).sign(edition_message)
    refolded = _replace_header(signed, b"Subject", b"UK: news\r\n   from    WIPO")
    assert refolded != signed
    assert dkim.verify(refolded, dnsfunc=dns_for(key))


def test_lf_messages_and_pkcs1_keys(key: rsa.RSAPrivateKey, edition_message: bytes) -> None:
    """A PKCS#1 key with CRLF line ends signs an LF-only message, and the signature keeps LF."""
    key_text = pem(key, serialization.PrivateFormat.TraditionalOpenSSL).replace(b"\n", b"\r\n")
    message = edition_message.replace(b"\r\n", b"\n")
    signed = DkimSigner(SELECTOR, DOMAIN, key_text).sign(message)
    assert b"\r" not in signed
    assert dkim.verify(signed, dnsfunc=dns_for(key))


def site_with_dkim(site_dir: Path, key_file: str) -> Settings:
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write(f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "{key_file}"\n')
    return load_settings(site_dir, env={})


def test_the_site_key_file_is_read_relative_to_the_site(
    site_dir: Path, key: rsa.RSAPrivateKey, edition_message: bytes
) -> None:
    """[dkim] key_file is found relative to the site folder and signer_for signs with it."""
    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    sign = signer_for(site_with_dkim(site_dir, "dkim/news.pem"))
    assert sign is not None
    assert dkim.verify(sign(edition_message), dnsfunc=dns_for(key))


def test_no_dkim_table_means_no_signing(site_dir: Path) -> None:
    """Without [dkim] in newsletter.toml nothing is signed."""
    assert signer_for(load_settings(site_dir, env={})) is None


def test_unusable_keys_are_config_errors(site_dir: Path) -> None:
    """A missing key file, a file that is no key, and a too-short key each give a clear ConfigError."""
    settings = site_with_dkim(site_dir, "missing.pem")
    with pytest.raises(ConfigError, match=r"dkim.key_file: cannot read .*missing.pem"):
        signer_for(settings)
    (site_dir / "missing.pem").write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a PEM RSA private key"):
        signer_for(settings)
    (site_dir / "missing.pem").write_bytes(WEAK_KEY)
    with pytest.raises(ConfigError, match="512 bits"):
        signer_for(settings)


def test_check_reports_an_unusable_key_with_its_line(site_dir: Path, key: rsa.RSAPrivateKey) -> None:
    """`newsletter check` finds a DKIM key that would stop a send, before the send."""
    from newsletter.core.settings import Problem, resolve
    from newsletter.operations.check import check_site

    def problems() -> list[Problem]:
        return check_site(resolve(site_dir, env={})).problems

    site_with_dkim(site_dir, "dkim/news.pem")
    config = site_dir / "newsletter.toml"
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("key_file"))

    (problem,) = problems()
    assert (problem.file, problem.line, problem.key) == (config, line, "dkim.key_file")
    assert problem.message.startswith("cannot read ")
    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(WEAK_KEY)
    (problem,) = problems()
    assert problem.message.endswith("the DKIM key has 512 bits; receivers want at least 1024")
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    assert problems() == []


def send_sample_edition(site_dir: Path, tmp_path: Path) -> Cli:
    """The UK group's seven members sent edition 1 (one sample item) to the outbox folder."""
    cli = Cli(site_dir, f"sqlite:///{tmp_path / 'dkim.db'}")
    cli("subscribers", "import", "uk", str(site_dir / "subscribers" / "uk.csv"))
    item = site_dir / "samples" / "items" / "2026-11-wipo-user-survey.md"
    cli("items", "add", "--approve", "--file", str(item))
    cli("editions", "build", "uk")
    cli("editions", "approve", "1")
    cli("editions", "send", "1")
    return cli


def test_sent_editions_are_signed_when_the_site_says_so(
    site_dir: Path, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """With [dkim] set, every message `editions send` delivers, and a send-test copy, verifies."""

    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    site_with_dkim(site_dir, "dkim/news.pem")
    cli = send_sample_edition(site_dir, tmp_path)
    cli("send-test", "1", "--to", "editor@example.org")
    files = sorted((site_dir / "outbox" / "edition-1").glob("*.eml"))
    assert len(files) == 7 + 1
    for path in files:
        data = path.read_bytes()
        assert data.count(b"DKIM-Signature:") == 1, path.name
        assert dkim.verify(data, dnsfunc=dns_for(key)), path.name


def test_confirmation_emails_are_signed_too(site_dir: Path, key: rsa.RSAPrivateKey) -> None:
    """The double opt-in email from the web pages carries a signature that verifies."""
    from newsletter.audience.selfservice import Subscription
    from newsletter.delivery.confirmation import confirmation_message

    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    settings = site_with_dkim(site_dir, "dkim/news.pem")
    subscription = Subscription(7, 1, "reader@example.org", "Anna Keller", "de", needs_confirmation=True)
    message = confirmation_message(settings, Signer("test-key-for-dkim-0123456789"), subscription, "dach")
    assert message.data.count(b"DKIM-Signature:") == 1
    assert dkim.verify(message.data, dnsfunc=dns_for(key))


# CRLF lines of printable text, spaces and tabs (runs, leading and trailing), some empty.
_LINES = st.lists(st.text(alphabet=st.sampled_from("ab= \t\xe9"), max_size=12), max_size=8)


@given(lines=_LINES, ending=st.sampled_from(["", "\r\n", "\r\n\r\n", " \r\n \t\r\n"]))
def test_relaxed_body_matches_dkimpy(lines: list[str], ending: str) -> None:
    """The body canonicalisation written here gives dkimpy's bytes, whatever the whitespace."""
    body = ("\r\n".join(lines) + ending).encode("utf-8")
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


@given(name=st.sampled_from(["Subject", "TO", "list-unsubscribe "]), lines=_LINES)
def test_relaxed_header_matches_dkimpy(name: str, lines: list[str]) -> None:
    """So does the header canonicalisation, folded values included."""
    value = "\r\n ".join(lines).encode("utf-8")
    ((expected_name, expected_value),) = Relaxed.canonicalize_headers([(name.encode(), value)])
    assert relaxed_header(name.encode() + b":" + value) == expected_name + b":" + expected_value


def site_factory(settings: Settings, *, edition_id: int = 7) -> MessageFactory:
    """An edition whose text has runs of spaces and trailing whitespace for relaxed canonicalisation."""
    text = (
        f"{Marker.GREETING.value}\nNews   from\tWIPO.  \n\n\nIP5 heads of office met in Seoul.\n"
        f"Unsubscribe: {Marker.UNSUBSCRIBE_URL.value}\nPreferences: {Marker.PREFERENCES_URL.value}\n\n\n"
    )
    html = f"<html><body><p>{Marker.GREETING.value}</p>  <p>News</p>\t\n"
    html += f"<a href='{Marker.UNSUBSCRIBE_URL.value}'>x</a> <a href='{Marker.PREFERENCES_URL.value}'>y</a>"
    parts = {
        language: Rendered(language, "UK: news from WIPO", html, text) for language in ("en", "de", "fr")
    }
    return MessageFactory(
        settings,
        Signer("dkim-test-key"),
        edition_id=edition_id,
        group_id=2,
        group_slug="uk",
        group_name="UK Patent Information Users (example)",
        parts=parts,
    )


RECIPIENTS = [
    Recipient(1, "jane.doe@example.org", "Jane Doe", "en"),
    Recipient(2, "juergen@example.de", "Jürgen   Müller", "de"),
    Recipient(3, "anne@example.fr", None, "fr"),
    Recipient(4, "ünïcode@exämple.org", 'Łukasz "Ł" Wróbel, 7', "en"),
    Recipient(5, "tab@example.org", "Tab\tName ", "en"),
    # A line break in the name takes the slow path (splice.py); it is signed whole.
    Recipient(6, "fold@example.org", "Two\nLines", "en"),
]


def test_spliced_messages_are_signed_as_whole_messages_would_be(
    site_dir: Path, key: rsa.RSAPrivateKey
) -> None:
    """Spliced messages' signatures (slices canonicalised once) verify and hash as whole messages'."""
    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    settings = site_with_dkim(site_dir, "dkim/news.pem")
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    build = splice.builder(site_factory(settings), defer_signature=True)
    for recipient in RECIPIENTS:
        message = build(recipient)
        assert message.pending is not None
        assert b"DKIM-Signature" not in message.data
        whole = signer.pending_for(message.data)
        (_, spliced_field, _), (_, whole_field, _) = message.pending.parts[0], whole.parts[0]
        assert _tag(spliced_field, "bh") == _tag(whole_field, "bh"), recipient
        assert _tag(spliced_field, "h") == _tag(whole_field, "h"), recipient
        sealed = message.sealed()
        assert sealed.pending is None
        assert sealed.data.endswith(message.data)
        assert dkim.verify(sealed.data, dnsfunc=dns_for(key)), recipient
    # Without deferring, the builder hands out sealed messages.
    assert dkim.verify(splice.builder(site_factory(settings))(RECIPIENTS[0]).data, dnsfunc=dns_for(key))


def _tag(field: bytes, name: str) -> str:
    return signed_fields(field + b"\r\nX: 1\r\n\r\n")[name]


def test_a_second_ed25519_signature_verifies(site_dir: Path, key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """With an Ed25519 selector and key, sent mail carries an RSA and an Ed25519 signature (RFC 8463)."""

    ed_key = ed25519.Ed25519PrivateKey.generate()
    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    (site_dir / "dkim" / "news-ed.pem").write_bytes(pem(ed_key))  # type: ignore[arg-type]
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write(
            f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "dkim/news.pem"\n'
            'ed25519_selector = "news2026e"\ned25519_key_file = "dkim/news-ed.pem"\n'
        )
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    records = {b"news2026e._domainkey.example.org.": b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)}
    rsa_lookup = dns_for(key)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name) or rsa_lookup(name)

    send_sample_edition(site_dir, tmp_path)
    files = sorted((site_dir / "outbox" / "edition-1").glob("*.eml"))
    assert len(files) == 7
    for path in files:
        data = path.read_bytes()
        assert data.count(b"DKIM-Signature:") == 2, path.name
        checker = dkim.DKIM(data)
        algorithms = set()
        for index in (0, 1):
            assert checker.verify(idx=index, dnsfunc=lookup), (path.name, index)
            algorithms.add(checker.signature_fields[b"a"])
        assert algorithms == {b"rsa-sha256", b"ed25519-sha256"}


def test_an_ed25519_selector_needs_its_key(site_dir: Path) -> None:
    """ed25519_selector without ed25519_key_file is a configuration error that names both."""
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write(f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "k.pem"\n')
        handle.write('ed25519_selector = "news2026e"\n')
    with pytest.raises(ConfigError, match="ed25519_selector and ed25519_key_file go together"):
        load_settings(site_dir, env={})


def test_check_names_the_ed25519_key_file_when_that_key_is_unusable(
    site_dir: Path, key: rsa.RSAPrivateKey
) -> None:
    """An RSA key where the Ed25519 one should be is reported at ed25519_key_file, and sending refuses it."""
    from newsletter.core.settings import resolve
    from newsletter.operations.check import check_site

    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    (site_dir / "dkim" / "news-ed.pem").write_bytes(pem(key))
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write(
            f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "dkim/news.pem"\n'
            'ed25519_selector = "news2026e"\ned25519_key_file = "dkim/news-ed.pem"\n'
        )
    config = site_dir / "newsletter.toml"
    line = next(
        n for n, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("ed25519_key_file")
    )
    (problem,) = check_site(resolve(site_dir, env={})).problems
    assert (problem.line, problem.key) == (line, "dkim.ed25519_key_file")
    assert problem.message.endswith("the DKIM Ed25519 key is not an Ed25519 private key")
    with pytest.raises(ConfigError, match=r"dkim\.ed25519_key_file: .*news-ed\.pem: the DKIM Ed25519 key"):
        signer_for(load_settings(site_dir, env={}))
