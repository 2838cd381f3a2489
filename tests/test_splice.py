"""The spliced fast path against the reference: ``MessageFactory.build`` with ``email.message``."""

import re
import shutil
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.core.errors import SpliceError
from newsletter.core.settings import load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery import splice
from newsletter.delivery.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.delivery.splice import Splicer, qp_encode
from newsletter.editions.render import Marker, Rendered

REPO = Path(__file__).resolve().parent.parent
KEY = "splice-test-key-0123456789abcdef"
HTML = (
    f"<html><body><p>{Marker.GREETING}</p>"
    + "<p>Patentrecherche mit KI-Werkzeugen: Zürich, Genève, Wrocław &amp; 東京 = fine.</p>" * 6
    + f'<a href="{Marker.UNSUBSCRIBE_URL}">Abmelden</a> <a href="{Marker.PREFERENCES_URL}">Einstellungen</a>'
    + f"<p>{Marker.UNSUBSCRIBE_URL}{Marker.GREETING}</p></body></html>"
)
TEXT = (
    f"{Marker.GREETING}\n\n"
    + "A line with trailing spaces   \nUmlaute: äöü ß, =equals= and a tab\there.\r\n" * 4
    + "x" * 200
    + f"\nAbmelden: {Marker.UNSUBSCRIBE_URL}\nEinstellungen: {Marker.PREFERENCES_URL}"
)


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> MessageFactory:
    site = tmp_path_factory.mktemp("splice")
    shutil.copy(REPO / "newsletter.toml", site / "newsletter.toml")
    config = load_settings(site, env={"NEWSLETTER_SECRET_KEY": KEY})
    parts = {
        language: Rendered(language, "Neuigkeiten: Patente & Recherche – Ausgabe 12", HTML, TEXT)
        for language in ("de", "en", "fr")
    }
    return MessageFactory(
        config,
        Signer(KEY),
        edition_id=12,
        group_id=3,
        group_slug="dach",
        group_name='Patentinformation DACH, "Beispiel"',
        parts=parts,
    )


def parse(message: OutgoingMessage) -> EmailMessage:
    if message.smtputf8:
        parsed = message_from_string(message.data.decode("utf-8"), policy=policy.SMTPUTF8)
    else:
        parsed = message_from_bytes(message.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def meaning(message: OutgoingMessage) -> dict[str, Any]:
    """What a reader's mail client sees, apart from Message-ID, Date and the MIME boundary."""
    parsed = parse(message)
    headers = [
        (name, re.sub(r'boundary="[^"]*"', "boundary", str(value)))
        for name, value in parsed.items()
        if name not in {"Message-ID", "Date"}
    ]
    parts = [([(k, str(v)) for k, v in part.items()], part.get_content()) for part in parsed.iter_parts()]
    return {
        "headers": headers,
        "parts": parts,
        "envelope": (message.sender, message.recipient, message.smtputf8),
        "ids": (message.edition_id, message.delivery_id, message.subscriber_id),
    }


def wire_is_valid(message: OutgoingMessage) -> None:
    lines = message.data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\r" not in message.data.replace(b"\r\n", b"")
    assert b"\n" not in message.data.replace(b"\r\n", b"")
    body = message.data.split(b"\r\n\r\n", 1)[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))


names = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=120),
    st.text(st.sampled_from("aZ ,.\"\\'()<>@;:äöüßéł東京\t=?"), max_size=300),
)
locals_ = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,30}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s),
    st.from_regex(r"[a-zäöüéß]{1,20}(\.[a-zäöü]{1,10})?", fullmatch=True),
    st.sampled_from(['"john doe"', "o'brien", "a+b", "user=x"]),
)
domains = st.sampled_from(["example.org", "mail.example.net", "bücher.example.org", "xn--bcher-kva.example"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=names,
    local=locals_,
    domain=domains,
    subscriber_id=st.integers(1, 10**9),
    language=st.sampled_from(["de", "en", "fr"]),
)
def test_splicing_gives_what_the_reference_builds(
    factory: MessageFactory, name: str | None, local: str, domain: str, subscriber_id: int, language: str
) -> None:
    """For any name and address the spliced message decodes to the reference's headers and parts."""
    recipient = Recipient(subscriber_id, f"{local}@{domain}", name, language, subscriber_id + 7)
    # Both stamp their tokens with the time: the same second for both.
    with mock.patch("time.time", return_value=1_790_000_000.5):
        reference = factory.build(recipient)
        spliced = Splicer(factory).build(recipient)
    wire_is_valid(spliced)
    assert meaning(spliced) == meaning(reference)


def test_tokens_in_spliced_messages_verify(factory: MessageFactory) -> None:
    """The fast token minter makes links that Signer.read accepts for the right member and purpose."""
    spliced = Splicer(factory).build(Recipient(4242, "anna@example.org", "Anna", "de", 1))
    text = parse(spliced).get_body(("plain",))
    assert text is not None
    content = text.get_content()
    signer = Signer(KEY)
    unsubscribe = re.search(r"/unsubscribe/([\w.-]+)", content)
    preferences = re.search(r"/preferences/([\w.-]+)", content)
    assert unsubscribe is not None
    assert preferences is not None
    assert signer.read("unsubscribe", unsubscribe[1]).subscriber_id == 4242
    assert signer.read("preferences", preferences[1]).group_id == 3


@given(st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"")))
def test_quoted_printable_slices_decode_to_their_bytes(data: bytes) -> None:
    """Each encoded slice decodes to its bytes (LF as CRLF) in lines of at most 76 octets."""
    import quopri

    encoded = qp_encode(data)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")) == data


def test_a_template_that_cannot_be_cut_means_the_slow_path_for_every_message(
    factory: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SMTPUTF8 template is cut up front too: if it fails, no message is spliced, none is lost."""
    cut = splice._cut

    def refuse_utf8(data: bytes, text: str, body: str, language: str) -> Any:
        if "ü@placeholder.invalid".encode() in data:
            raise SpliceError("unexpected shape")
        return cut(data, text, body, language)

    monkeypatch.setattr(splice, "_cut", refuse_utf8)
    assert splice.builder(factory) == factory.build
    monkeypatch.setattr(splice, "_cut", cut)
    assert splice.builder(factory) != factory.build
