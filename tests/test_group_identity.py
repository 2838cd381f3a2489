"""Per-group sender identity: each group's mail comes from the group's From, domain and DKIM key.

The example site is copied and the UK group given an identity of its own (sender, Reply-To,
postal address, bounce address and a DKIM key for patent-news.example.net); the site signs
its own mail with a key for example.org. Editions go over real SMTP to an aiosmtpd server
on 127.0.0.1, and each signature is checked with dkimpy's verifier through a stub DNS
lookup that publishes the two test keys and nothing else.
"""

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.audience.selfservice import Subscription
from newsletter.core import verp
from newsletter.core.models import Group, Probe, Subscriber
from newsletter.core.settings import Settings, load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery.confirmation import confirmation_message
from newsletter.delivery.probes import probe_message
from newsletter.feedback.classify import Verdict, classify
from tests.conftest import Cli
from tests.smtp_server import Received, SmtpServer

KEY = "identity-test-signing-key-5b0c1d9e"
UK_SENDER = "UK Patent News <news@patent-news.example.net>"
UK_REPLY_TO = "uk-editors@patent-news.example.net"
UK_POSTAL = "UK Patent Information Users (example), 1 Example Street, London"
UK_BOUNCES = "bounces@patent-news.example.net"
SITE_POSTAL = "CEPIUG (example), Rue de l'Exemple 1, 1000 Brussels, Belgium"
# (selector, domain) of each test key.
SITE_KEY = ("news2026", "example.org")
UK_KEY = ("uk2026", "patent-news.example.net")


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def dns_for(published: dict[tuple[str, str], rsa.RSAPrivateKey]) -> Callable[..., bytes | None]:
    """A dnsfunc answering for each (selector, domain)'s TXT record, and nothing else."""
    records = {}
    for (selector, domain), key in published.items():
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        records[f"{selector}._domainkey.{domain}.".encode()] = b"v=DKIM1; k=rsa; p=" + base64.b64encode(
            public
        )

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def signature_tags(data: bytes) -> dict[str, str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)\r\n(?!\s)", header, re.S | re.M)
    assert value is not None, "no DKIM-Signature field"
    return dict(tag.split("=", 1) for tag in re.sub(r"\s+", "", value.group(1)).split(";") if tag)


@pytest.fixture(scope="module")
def keys() -> dict[tuple[str, str], rsa.RSAPrivateKey]:
    return {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in (SITE_KEY, UK_KEY)
    }


def give_identities(
    site: Path, keys: dict[tuple[str, str], rsa.RSAPrivateKey], *, uk_dkim: bool = True
) -> None:
    """The site signs for example.org; the UK group sends as patent-news.example.net."""
    (site / "dkim").mkdir()
    (site / "dkim" / "site.pem").write_bytes(pem(keys[SITE_KEY]))
    (site / "dkim" / "uk.pem").write_bytes(pem(keys[UK_KEY]))
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    uk = (
        f'sender = "{UK_SENDER}"\nreply_to = "{UK_REPLY_TO}"\npostal_address = "{UK_POSTAL}"\n'
        f'bounce_address = "{UK_BOUNCES}"\n'
    )
    if uk_dkim:
        uk += (
            f'\n[groups.uk.dkim]\nselector = "{UK_KEY[0]}"\ndomain = "{UK_KEY[1]}"\n'
            'key_file = "dkim/uk.pem"\n'
        )
    text = text.replace("[groups.dach]\n", uk + "\n[groups.dach]\n", 1)
    text += f'\n[dkim]\nselector = "{SITE_KEY[0]}"\ndomain = "{SITE_KEY[1]}"\nkey_file = "dkim/site.pem"\n'
    config.write_text(text, encoding="utf-8")


@pytest.fixture
def site(
    cli: Cli,
    smtp_server: SmtpServer,
    keys: dict[tuple[str, str], rsa.RSAPrivateKey],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    give_identities(cli.site, keys)
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    return cli


def settings_of(cli: Cli) -> Settings:
    return load_settings(cli.site, env={"NEWSLETTER_SECRET_KEY": KEY})


def send_edition(cli: Cli, group: str) -> int:
    """Import the group's members, approve every sample item, build, approve and send its edition."""
    cli("subscribers", "import", group, str(cli.site / "subscribers" / f"{group}.csv"))
    files = sorted((cli.site / "samples" / "items").glob("*.md"))
    cli("items", "add", "--approve", *(arg for path in files for arg in ("--file", str(path))))
    edition_id = int(json.loads(cli("editions", "build", group, "--json").stdout)["id"])
    cli("editions", "approve", str(edition_id))
    cli("--transport", "smtp", "editions", "send", str(edition_id))
    return edition_id


def of_edition(server: SmtpServer, edition_id: int) -> list[Received]:
    found = [
        m for m in server.messages if (v := verp.decode(m.mail_from, KEY)) and v.edition_id == edition_id
    ]
    assert found
    return found


def test_each_group_sends_under_its_own_identity(
    site: Cli, smtp_server: SmtpServer, keys: dict[tuple[str, str], rsa.RSAPrivateKey]
) -> None:
    """The UK edition carries the group's From, Reply-To, List-Id, VERP domain, postal address and
    DKIM key; CEPIUG's, which declares none of its own, carries the site's."""
    lookup = dns_for(keys)
    uk = send_edition(site, "uk")
    cepiug = send_edition(site, "cepiug")

    for received in of_edition(smtp_server, uk):
        message = received.message()
        assert message["From"] == UK_SENDER
        assert message["Reply-To"] == UK_REPLY_TO
        assert message["List-Id"] == '"UK Patent Information Users (example)" <uk.patent-news.example.net>'
        assert "mailto:news-unsubscribe@patent-news.example.net?" in message["List-Unsubscribe"]
        assert message["Message-ID"].endswith("@patent-news.example.net>")
        assert received.mail_from.startswith("bounces+e")
        assert received.mail_from.endswith("@patent-news.example.net")
        text = message.get_body(("plain",))
        assert text is not None
        assert UK_POSTAL in text.get_content()
        assert SITE_POSTAL not in text.get_content()
        tags = signature_tags(received.content)
        assert (tags["s"], tags["d"]) == UK_KEY
        assert dkim.verify(received.content, dnsfunc=lookup)

    for received in of_edition(smtp_server, cepiug):
        message = received.message()
        assert message["From"] == "CEPIUG News <news@example.org>"
        assert message["Reply-To"] == "editors@example.org"
        assert message["List-Id"] == "CEPIUG <cepiug.example.org>"
        assert received.mail_from.startswith("news-bounces+e")
        assert received.mail_from.endswith("@example.org")
        text = message.get_body(("plain",))
        assert text is not None
        assert SITE_POSTAL in text.get_content()
        tags = signature_tags(received.content)
        assert (tags["s"], tags["d"]) == SITE_KEY
        assert dkim.verify(received.content, dnsfunc=lookup)


def test_a_group_without_a_key_of_its_own_is_signed_with_the_sites(
    cli: Cli,
    smtp_server: SmtpServer,
    keys: dict[tuple[str, str], rsa.RSAPrivateKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group with its own sender but no [groups.SLUG.dkim] falls back to the site's key, and check warns."""
    give_identities(cli.site, keys, uk_dkim=False)
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    report = json.loads(cli("check", "--json").stdout)
    assert report["ok"]
    (warning,) = report["warnings"]
    assert warning["key"] == "groups.uk.sender"
    assert "patent-news.example.net" in warning["message"]
    assert "[groups.uk.dkim]" in warning["message"]

    uk = send_edition(cli, "uk")
    for received in of_edition(smtp_server, uk):
        assert received.message()["From"] == UK_SENDER
        assert (signature_tags(received.content)["d"]) == SITE_KEY[1]
        assert dkim.verify(received.content, dnsfunc=dns_for(keys))


def test_check_is_quiet_when_every_from_domain_has_its_key(site: Cli) -> None:
    """With the UK key in place nothing is left to warn about."""
    output = site("check")
    assert "warning" not in output.output
    assert json.loads(site("check", "--json").stdout)["warnings"] == []


def test_a_confirmation_comes_from_the_groups_identity(
    site: Cli, keys: dict[tuple[str, str], rsa.RSAPrivateKey]
) -> None:
    """The double opt-in email to a UK sign-up has the UK From, List-Id, bounce domain, footer and key."""
    settings = settings_of(site)
    message = confirmation_message(
        settings, Signer(KEY), Subscription(41, 2, "new@example.net", None, "en", True), "uk"
    )
    assert message.sender.startswith("bounces+e0.s41.")
    assert message.sender.endswith("@patent-news.example.net")
    header = message.data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"From: {UK_SENDER}\r\n" in header
    assert 'List-Id: "UK Patent Information Users (example)" <uk.patent-news.example.net>\r\n' in header
    assert UK_POSTAL.encode() in message.data.replace(b"=\r\n", b"")
    assert signature_tags(message.data)["d"] == UK_KEY[1]
    assert dkim.verify(message.data, dnsfunc=dns_for(keys))


def test_returned_mail_is_recognised_under_every_groups_domain(site: Cli) -> None:
    """A bounce to the UK VERP address, an unsubscribe request to the UK mailbox and the UK List-Id
    (new and old form) are all read as the UK group's."""
    settings = settings_of(site)
    address = verp.encode(UK_BOUNCES, KEY, 12, 345)
    returned = (
        'List-Id: "UK" <uk.patent-news.example.net>\r\nFeedback-ID: e12:2:newsletter\r\n'
        "To: jane@example.net\r\nSubject: news\r\n\r\nbody\r\n"
    )
    bounce = (
        f"Return-Path: <>\r\nTo: {address}\r\nFrom: MAILER-DAEMON@mx.example.net\r\n"
        "Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; jane@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B1\r\nContent-Type: message/rfc822\r\n\r\n{returned}\r\n--B1--\r\n"
    ).encode()
    report = classify(bounce, settings)
    assert report.verp is not None
    assert (report.verp.edition_id, report.verp.subscriber_id) == (12, 345)
    assert report.group_slug == "uk"
    old = classify(bounce.replace(b"uk.patent-news.example.net", b"uk.news.example.org"), settings)
    assert old.group_slug == "uk"

    request = (
        b"From: jane@example.net\r\nTo: news-unsubscribe@patent-news.example.net\r\n"
        b"Subject: unsubscribe abc.def.ghi\r\n\r\n\r\n"
    )
    assert classify(request, settings).verdict == Verdict.UNSUBSCRIBE


def test_identity_falls_back_to_the_site(site: Cli) -> None:
    """Whatever a group leaves out is the site's; the List-Id host is never the website's."""
    settings = settings_of(site)
    uk, dach, site_own = settings.identity("uk"), settings.identity("dach"), settings.identity()
    assert (uk.address, uk.bounce_address, uk.list_id("uk")) == (
        "news@patent-news.example.net",
        UK_BOUNCES,
        "uk.patent-news.example.net",
    )
    assert uk.dkim is not None
    assert uk.dkim.selector == UK_KEY[0]
    assert (dach.address, dach.reply_to, dach.postal_address) == (
        "news@example.org",
        "editors@example.org",
        SITE_POSTAL,
    )
    assert dach.bounce_address == site_own.bounce_address == "news-bounces@example.org"
    assert dach.list_id("dach") == "dach.example.org"
    assert dach.dkim == settings.dkim
    # A group the file no longer declares sends as the site.
    assert settings.identity("gone") == site_own


def test_check_names_a_groups_missing_key(cli: Cli, keys: dict[tuple[str, str], rsa.RSAPrivateKey]) -> None:
    """A group's DKIM key that cannot be read is a problem of that group's table, with its line."""
    give_identities(cli.site, keys)
    (cli.site / "dkim" / "uk.pem").unlink()
    report = json.loads(cli("check", "--json", ok=False).stdout)
    (problem,) = report["problems"]
    assert problem["key"] == "groups.uk.dkim.key_file"
    assert problem["line"] is not None
    assert "uk.pem" in problem["message"]


def test_a_probe_comes_from_the_groups_identity(
    site: Cli, keys: dict[tuple[str, str], rsa.RSAPrivateKey]
) -> None:
    """A probe to a UK member goes out from the UK bounce domain (its +p address), under the UK key."""
    settings = settings_of(site)
    probe = Probe(id=7, subscriber_id=345, group_id=2)
    member = Subscriber(id=345, email="jane@example.net", email_key="jane@example.net")
    group = Group(
        id=2, slug="uk", name="UK Patent Information Users (example)", language="en", timezone="UTC"
    )
    message = probe_message(settings, Signer(KEY), probe, member, group)
    assert message.sender.startswith("bounces+p7.s345.")
    assert message.sender.endswith("@patent-news.example.net")
    decoded = verp.decode(message.sender, KEY)
    assert decoded is not None
    assert decoded.probe_id == 7
    assert f"From: {UK_SENDER}\r\n".encode() in message.data
    assert UK_POSTAL.encode() in message.data.replace(b"=\r\n", b"")
    assert signature_tags(message.data)["d"] == UK_KEY[1]
    assert dkim.verify(message.data, dnsfunc=dns_for(keys))
