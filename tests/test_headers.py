"""One set of list headers: the edition message, its spliced copy and the confirmation email agree.

The three builders (``MessageFactory.build``, the splicer, ``confirmation_message``)
take their header values from ``delivery/headers.py``; these tests read what each one
sent, parsed back by the standard library, and compare it with values written out
here for the example site (``https://news.example.org``, ``news@example.org``).
"""

import dataclasses
import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.audience.selfservice import Subscription
from newsletter.core import verp
from newsletter.core.settings import Settings, load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery import splice
from newsletter.delivery.confirmation import confirmation_message
from newsletter.delivery.dkim import signer_for
from newsletter.delivery.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.editions.render import Marker, Rendered
from tests.test_dkim import DOMAIN, SELECTOR, dns_for, make_key, pem, signed_fields

KEY = "headers-test-key-0123456789abcdef"
EDITION_ID, GROUP_ID, SUBSCRIBER_ID = 12, 3, 345
LIST_ID = '"Patentinformation DACH (Beispiel)" <dach.example.org>'
UNSUBSCRIBE = re.compile(
    r"<https://news\.example\.org/unsubscribe/(?P<token>[\w.-]+)>,\r\n"
    r" <mailto:news-unsubscribe@example\.org\?subject=unsubscribe%20(?P<mailto_token>[\w.-]+)>"
)
TEXT = f"{Marker.GREETING}\nNews.\n\n{Marker.UNSUBSCRIBE_URL}\n{Marker.PREFERENCES_URL}\n"
HTML = (
    f"<html><body><p>{Marker.GREETING}</p><a href='{Marker.UNSUBSCRIBE_URL}'>Abmelden</a>"
    f"<a href='{Marker.PREFERENCES_URL}'>Einstellungen</a></body></html>"
)


def factory_for(settings: Settings) -> MessageFactory:
    return MessageFactory(
        settings,
        Signer(settings.signing_key),
        edition_id=EDITION_ID,
        group_id=GROUP_ID,
        group_slug="dach",
        group_name="Patentinformation DACH (Beispiel)",
        parts={"de": Rendered("de", "Neuigkeiten für Dezember", HTML, TEXT)},
    )


def three_messages(settings: Settings) -> dict[str, OutgoingMessage]:
    """One member's edition message, its spliced copy (signed if the site signs) and a confirmation."""
    factory = factory_for(settings)
    recipient = Recipient(SUBSCRIBER_ID, "anna.keller@example.org", "Anna Keller", "de", 1)
    build = splice.builder(factory)
    assert build != factory.build, "the example edition should take the spliced path"
    subscription = Subscription(SUBSCRIBER_ID, GROUP_ID, "anna.keller@example.org", "Anna Keller", "de", True)
    edition = factory.build(recipient)
    sign = signer_for(settings)
    if sign is not None:
        edition = dataclasses.replace(edition, data=sign(edition.data))
    return {
        "edition": edition,
        "spliced": build(recipient),
        "confirmation": confirmation_message(settings, Signer(settings.signing_key), subscription, "dach"),
    }


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def raw_field(data: bytes, name: str) -> str:
    """A field's value as sent, folding kept (CRLF and the leading space of a continuation)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    match = re.search(rf"^{re.escape(name)}: (.*?)\r\n(?![ \t])", head + "\r\n", re.M | re.S)
    assert match is not None, f"no {name} field"
    return match.group(1)


@pytest.fixture(scope="module")
def messages() -> dict[str, OutgoingMessage]:
    return three_messages(load_settings(Path(__file__).parent.parent, env={"NEWSLETTER_SECRET_KEY": KEY}))


def test_the_three_builders_write_the_same_list_headers(messages: dict[str, OutgoingMessage]) -> None:
    """From, Reply-To, List-Id and List-Unsubscribe-Post are the same; List-Unsubscribe has one shape."""
    for kind, message in messages.items():
        parsed = parse(message.data)
        assert parsed["From"] == "CEPIUG News <news@example.org>", kind
        assert parsed["Reply-To"] == "editors@example.org", kind
        assert parsed["List-Id"] == LIST_ID, kind
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", kind
        assert parsed["To"].addresses[0].display_name == "Anna Keller", kind
        found = UNSUBSCRIBE.fullmatch(raw_field(message.data, "List-Unsubscribe"))
        assert found is not None, (kind, raw_field(message.data, "List-Unsubscribe"))
        assert found["token"] == found["mailto_token"], kind
        token = Signer(KEY).read("unsubscribe", found["token"])
        assert (token.subscriber_id, token.group_id) == (SUBSCRIBER_ID, GROUP_ID), kind


def test_every_envelope_sender_is_a_verp_address_that_verifies(messages: dict[str, OutgoingMessage]) -> None:
    """The edition and its spliced copy name edition 12, the confirmation edition 0; all signed."""
    assert messages["edition"].sender == messages["spliced"].sender
    assert verp.decode(messages["spliced"].sender, KEY) == verp.VerpAddress(EDITION_ID, SUBSCRIBER_ID)
    assert verp.decode(messages["confirmation"].sender, KEY) == verp.VerpAddress(0, SUBSCRIBER_ID)
    for message in messages.values():
        assert re.fullmatch(r"news-bounces\+e\d+\.s345\.[0-9a-f]{8}@example\.org", message.sender)
        assert verp.decode(message.sender, "another-key") is None


def test_message_ids_have_one_form(messages: dict[str, OutgoingMessage]) -> None:
    """Every Message-ID is <stamp.count.campaign.sSUBSCRIBER@sender's domain>, and no two are the same."""
    ids = {kind: parse(message.data)["Message-ID"] for kind, message in messages.items()}
    assert re.fullmatch(r"<\d+\.\d+\.\d+\.\d+\.e12\.s345@example\.org>", ids["edition"])
    assert re.fullmatch(r"<\d+\.\d+\.\d+\.\d+\.e12\.s345@example\.org>", ids["spliced"])
    assert re.fullmatch(r"<\d+\.\d+\.\d+\.\d+\.confirm\.s345@example\.org>", ids["confirmation"])
    assert len(set(ids.values())) == 3
    assert {message.message_id for message in messages.values()} == set(ids.values())


def test_only_the_confirmation_is_auto_submitted(messages: dict[str, OutgoingMessage]) -> None:
    """RFC 3834: the confirmation answers a sign-up; editions are not automatic replies."""
    assert parse(messages["confirmation"].data)["Auto-Submitted"] == "auto-generated"
    assert parse(messages["edition"].data)["Auto-Submitted"] is None
    assert parse(messages["spliced"].data)["Auto-Submitted"] is None


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return make_key()


def test_dkim_covers_both_list_unsubscribe_fields_in_all_three(
    site_dir: Path, key: rsa.RSAPrivateKey
) -> None:
    """Signed by the site's [dkim] key, each of the three verifies and h= oversigns both RFC 8058 fields."""
    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "news.pem").write_bytes(pem(key))
    with (site_dir / "newsletter.toml").open("a") as handle:
        handle.write(f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\nkey_file = "dkim/news.pem"\n')
    messages = three_messages(load_settings(site_dir, env={"NEWSLETTER_SECRET_KEY": KEY}))
    for kind, message in messages.items():
        assert message.data.count(b"DKIM-Signature:") == 1, kind
        assert dkim.verify(message.data, dnsfunc=dns_for(key)), kind
        signed = signed_fields(message.data)["h"].split(":")
        assert signed.count("list-unsubscribe") == 2, (kind, signed)
        assert signed.count("list-unsubscribe-post") == 2, (kind, signed)
        assert {"from", "to", "subject", "date", "message-id", "list-id"} <= set(signed), kind
