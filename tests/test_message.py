"""The MIME messages an edition becomes: headers, encodings, signed links and VERP senders.

Every message is parsed back with the standard library (``policy.default``) and checked
against values written out here, not recomputed with the code under test.
"""

import base64
import binascii
import email
import re
from email import errors, policy
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.core import verp
from newsletter.core.errors import BadToken
from newsletter.core.settings import Settings, load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery.message import MessageFactory, OutgoingMessage, Recipient
from newsletter.editions.render import Marker, Rendered
from tests.conftest import REPO

KEY = "test-signing-key-0123456789"
EDITION_ID = 12
GROUP_ID = 3
HTML = (
    "<!doctype html><html lang='{lang}'><body><p>{greeting}</p><p>News</p>"
    "<a href='https://www.wipo.int/news?a=1&amp;b=2'>Read more</a>"
    "<a href='{unsubscribe}'>Unsubscribe</a> <a href='{preferences}'>Preferences</a></body></html>"
)
TEXT = "{greeting}\nNews\n\nUnsubscribe:\n{unsubscribe}\n\nPreferences:\n{preferences}\n"


def parse(data: bytes) -> EmailMessage:
    """The message as a mail client reads it (an SMTPUTF8 message carries raw UTF-8 headers)."""
    if data.isascii():
        parsed = email.message_from_bytes(data, policy=policy.default)
    else:
        parsed = email.message_from_string(data.decode("utf-8"), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def rendered(language: str = "en", subject: str = "CEPIUG: 3 December 2026") -> Rendered:
    markers = {
        "greeting": Marker.GREETING.value,
        "unsubscribe": Marker.UNSUBSCRIBE_URL.value,
        "preferences": Marker.PREFERENCES_URL.value,
    }
    return Rendered(language, subject, HTML.format(lang=language, **markers), TEXT.format(**markers))


@pytest.fixture(scope="module")
def site_settings() -> Settings:
    """The example site's settings, read (never written) from the repository, with a known key."""
    return load_settings(REPO, env={"NEWSLETTER_SECRET_KEY": KEY})


def make_factory(settings: Settings, *parts: Rendered, group_name: str = "CEPIUG") -> MessageFactory:
    return MessageFactory(
        settings,
        Signer(KEY),
        edition_id=EDITION_ID,
        group_id=GROUP_ID,
        group_slug="cepiug",
        group_name=group_name,
        parts={part.language: part for part in parts or (rendered(),)},
    )


def build(settings: Settings, recipient: Recipient, *parts: Rendered, group_name: str = "CEPIUG") -> bytes:
    return make_factory(settings, *parts, group_name=group_name).build(recipient).data


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def part_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def assert_well_formed(data: bytes) -> None:
    """CRLF line ends, no line over RFC 5322's 998 octets, and nothing the parser had to repair.

    A non-ASCII local part is allowed (RFC 6532, sent with SMTPUTF8), though Python flags it.
    """
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    longest = max(len(line) for line in data.split(b"\r\n"))
    assert longest <= 998, longest
    message = parse(data)
    assert not message.defects
    for name, value in message.items():
        defects = [
            d for d in getattr(value, "defects", ()) if not isinstance(d, errors.NonASCIILocalPartDefect)
        ]
        assert not defects, (name, defects)
    # RFC 2045, section 6.7: quoted-printable lines are at most 76 characters long.
    for part in message.iter_parts():
        if part["Content-Transfer-Encoding"] == "quoted-printable":
            encoded = part.get_payload()
            assert isinstance(encoded, str)
            assert max(len(line) for line in encoded.splitlines()) <= 76
    # RFC 2047, section 2: an encoded-word is at most 75 characters long.
    for word in re.findall(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", header_block(data)):
        assert len(word) <= 75, word


# --- headers ------------------------------------------------------------------------------


def test_long_body_lines_stay_within_rfc_2045(site_settings: Settings) -> None:
    """Long lines of non-ASCII text are quoted-printable encoded in lines of at most 76 characters."""
    long = "Hier sind die neuesten Nachrichten für Patentinformation DACH (Beispiel). " * 3
    part = Rendered("de", "Neuigkeiten", f"<p>{long}</p>{Marker.GREETING.value}", f"{long}\n")
    data = build(site_settings, Recipient(1, "a@example.org", None, "de"), part)
    assert_well_formed(data)
    assert long in part_text(parse(data), "plain")


def test_headers_of_a_message(site_settings: Settings) -> None:
    """A message carries From, To with the name, Subject, Date, Message-ID, List-Id and RFC 8058 headers."""
    data = build(site_settings, Recipient(345, "jane.doe@example.org", "Jane Doe", "en"))
    assert_well_formed(data)
    message = parse(data)
    assert message["From"] == "CEPIUG News <news@example.org>"
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Jane Doe", "jane.doe@example.org")
    assert message["Subject"] == "CEPIUG: 3 December 2026"
    assert message["Reply-To"] == "editors@example.org"
    assert message["Date"].datetime.tzinfo is not None
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())


def test_message_ids_are_unique(site_settings: Settings) -> None:
    """Two recipients, or the same recipient twice, never share a Message-ID."""
    factory = make_factory(site_settings)
    ids = {
        parse(factory.build(Recipient(n % 3, f"r{n % 3}@example.org", None, "en")).data)["Message-ID"]
        for n in range(9)
    }
    assert len(ids) == 9


def test_list_id_follows_rfc_2919(site_settings: Settings) -> None:
    """List-Id is a quoted phrase and <group.host>; commas and quotes in the name stay in the phrase."""
    data = build(
        site_settings,
        Recipient(1, "a@example.org", None, "en"),
        group_name='Information "brevets", francophone',
    )
    list_id = parse(data)["List-Id"]
    # list-id-namespace is a dot-atom: label "." host; the phrase before it is optional.
    dot_atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
    match = re.fullmatch(rf'(?P<phrase>"(?:[^"\\]|\\.)*") <(?P<id>{dot_atom})>', list_id)
    assert match, list_id
    assert match["id"] == "cepiug.example.org"
    assert display_name(match["phrase"]) == 'Information "brevets", francophone'


def test_list_unsubscribe_carries_https_and_mailto(site_settings: Settings) -> None:
    """List-Unsubscribe has the signed https URL and a mailto; List-Unsubscribe-Post is RFC 8058's."""
    data = build(site_settings, Recipient(345, "jane.doe@example.org", "Jane Doe", "en"))
    message = parse(data)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = " ".join(message["List-Unsubscribe"].split())
    links = re.findall(r"<([^<>]+)>", raw)
    assert len(links) == 2, raw
    https, mailto = links
    assert https.startswith("https://news.example.org/unsubscribe/")
    token = https.rsplit("/", 1)[1]
    data_read = Signer(KEY).read("unsubscribe", token)
    assert (data_read.subscriber_id, data_read.group_id) == (345, GROUP_ID)
    mail = urlsplit(mailto)
    assert (mail.scheme, mail.path) == ("mailto", "news-unsubscribe@example.org")
    assert token in unquote(parse_qs(mail.query)["subject"][0])
    # The same link is in both parts of the body, visible to the reader.
    assert https in part_text(message, "plain")
    assert https in part_text(message, "html")


def test_markers_are_replaced_in_both_parts(site_settings: Settings) -> None:
    """The greeting and personal links replace every marker; HTML special characters in a name are escaped."""
    data = build(site_settings, Recipient(7, "bob@example.org", "<b>Bob</b> & Co", "en"))
    message = parse(data)
    html, text = part_text(message, "html"), part_text(message, "plain")
    for marker in Marker:
        assert marker.value not in html
        assert marker.value not in text
    assert "Dear &lt;b&gt;Bob&lt;/b&gt; &amp; Co," in html
    assert "Dear <b>Bob</b> & Co," in text
    assert "https://news.example.org/preferences/" in text
    assert "https://www.wipo.int/news?a=1&amp;b=2" in html


def test_greeting_in_the_readers_language(site_settings: Settings) -> None:
    """A German reader gets the German greeting; one without a name gets the plain salutation."""
    parts = (rendered("en"), rendered("de"), rendered("fr"))
    de = parse(build(site_settings, Recipient(1, "a@example.org", "Anna Keller", "de"), *parts))
    fr = parse(build(site_settings, Recipient(2, "b@example.org", None, "fr"), *parts))
    assert part_text(de, "plain").startswith("Guten Tag Anna Keller,\n")
    assert part_text(fr, "plain").startswith("Bonjour,\n")
    assert de["Content-Language"] == "de"


# --- encodings and injection ---------------------------------------------------------------


def test_non_ascii_name_and_subject_use_rfc_2047(site_settings: Settings) -> None:
    """Non-ASCII names and subjects go out as RFC 2047 encoded-words that decode to the exact text."""
    subject = "Patentinformation DACH: Neuigkeiten für Dezember – Überblick « Ça va » 日本語"
    name = "Müller, Jürgen"
    data = build(
        site_settings, Recipient(9, "juergen.mueller@example.org", name, "de"), rendered("de", subject)
    )
    assert_well_formed(data)
    headers = header_block(data)
    assert headers.isascii()
    assert b"=?utf-8?" in headers.lower()
    message = parse(data)
    assert message["Subject"] == subject
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == (name, "juergen.mueller@example.org")


def test_long_subject_is_folded_within_limits(site_settings: Settings) -> None:
    """A 250-character non-ASCII subject folds into short lines and still decodes exactly."""
    subject = ("Größere Übersicht über Änderungen " * 10)[:250].strip()
    data = build(site_settings, Recipient(1, "a@example.org", "Ä" * 120, "en"), rendered("en", subject))
    assert_well_formed(data)
    assert parse(data)["Subject"] == subject
    assert_to(data, "Ä" * 120, "a@example.org")


def test_long_unsubscribe_url_stays_a_link(site_settings: Settings) -> None:
    """However long the token, List-Unsubscribe is never turned into encoded-words."""
    data = build(site_settings, Recipient(10**15, "a@example.org", None, "en"))
    assert_well_formed(data)
    raw = [line for line in header_block(data).split(b"\r\n") if line.startswith(b"List-Unsubscribe:")]
    assert raw
    assert b"=?" not in header_block(data).split(b"List-Unsubscribe:", 1)[1].split(b"\r\nList-", 1)[0]


@pytest.mark.parametrize(
    "evil",
    [
        "Eve\r\nBcc: victim@example.net",
        "Eve\nBcc: victim@example.net",
        "Eve\rBcc: victim@example.net",
        "Eve\r\n\r\n<html>body</html>",
        "Eve\u2028Bcc: victim@example.net",
        "Eve\x85Bcc: victim@example.net",
    ],
)
def test_no_header_injection(site_settings: Settings, evil: str) -> None:
    """CR, LF and other line breaks in a name or a subject never start a header or the body."""
    data = build(site_settings, Recipient(1, "a@example.org", evil, "en"), rendered("en", evil))
    assert_well_formed(data)
    message = parse(data)
    assert message["Bcc"] is None
    assert len(message.get_all("Subject", [])) == 1
    assert len(message.get_all("To", [])) == 1
    assert "Eve" in message["Subject"]
    assert "\n" not in message["Subject"]
    assert "\r" not in message["Subject"]
    assert message["To"].addresses[0].addr_spec == "a@example.org"
    assert message.get_content_type() == "multipart/alternative"


# --- the To header round-trips any name and address -----------------------------------------

SPECIALS = st.sampled_from(
    [*"\"\\,;:<>()[]@.'`´«»=?", "=?utf-8?q?x?=", "Ж", "ß", "é", "漢", "😀", "\u200f", "👩\u200d💻"]
)
WORD = st.lists(
    st.one_of(SPECIALS, st.characters(exclude_categories=("C", "Z"))), min_size=1, max_size=25
).map("".join)
NAMES = st.lists(WORD, min_size=1, max_size=12).map(" ".join)
ATEXT = "abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-"
LOCAL = st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=12), min_size=1, max_size=3).map(".".join)
DOMAINS = st.sampled_from(["example.org", "mail.example.net", "bücher.example", "例え.テスト"])


def raw_header(data: bytes, name: str) -> str:
    """A header's value as sent, unfolded (CRLF removed, the folding space kept)."""
    lines = data.decode("utf-8").split("\r\n\r\n", 1)[0].split("\r\n")
    value: list[str] = []
    for line in lines:
        if value and line[:1] in {" ", "\t"}:
            value.append(line)
        elif value:
            break
        elif line.lower().startswith(name.lower() + ":"):
            value.append(line[len(name) + 1 :].lstrip(" "))
    assert value, f"no {name} header"
    return "".join(value)


ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def display_name(phrase: str) -> str:
    """Decode a display name as RFC 2047 (section 6.2) and RFC 5322 say a reader must.

    Python's own parser keeps the space between two adjacent encoded-words of a display
    name (RFC 2047 says a reader ignores it), so long encoded names are decoded here.
    """
    if phrase.startswith('"') and phrase.endswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    words: list[tuple[bool, str]] = []
    for token in re.split(r"(\s+)", phrase):
        match = ENCODED_WORD.fullmatch(token)
        if match:
            charset, encoding, text = match.groups()
            raw = base64.b64decode(text) if encoding in "bB" else binascii.a2b_qp(text, header=True)
            words.append((True, raw.decode(charset)))
        elif token:
            words.append((False, token))
    out = []
    for index, (_, text) in enumerate(words):
        between_encoded = (
            text.isspace() and 0 < index < len(words) - 1 and words[index - 1][0] and words[index + 1][0]
        )
        if not between_encoded:
            out.append(text)
    return "".join(out)


def assert_to(data: bytes, name: str, address: str) -> None:
    """The To header names exactly this person at exactly this address."""
    [to] = parse(data)["To"].addresses
    assert to.addr_spec == address
    raw = raw_header(data, "To")
    phrase, _, rest = raw.rpartition(" <")
    assert rest == address + ">"
    assert display_name(phrase) == name, raw
    # Python's parser agrees whenever the name went out in one piece.
    if len(ENCODED_WORD.findall(raw)) <= 1:
        assert to.display_name == name


@hypothesis_settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, local=LOCAL, domain=DOMAINS)
@example(name='Müller, "Jürgen" \\ Dr.', local="juergen", domain="example.org")
@example(name="x" * 300, local="a", domain="example.org")
@example(name="=?utf-8?q?Bob?=", local="b", domain="example.org")
@example(name="y" * 1000, local="c", domain="example.org")
@example(name="Ä" * 400, local="d", domain="example.org")
def test_to_header_round_trips(site_settings: Settings, name: str, local: str, domain: str) -> None:
    """Whatever the name (quotes, commas, backslashes, non-ASCII, long), To decodes to it and the address."""
    data = build(site_settings, Recipient(1, f"{local}@{domain}", name, "en"))
    assert_well_formed(data)
    assert_to(data, name, f"{local}@{domain.encode('idna').decode('ascii')}")


@hypothesis_settings(max_examples=25, deadline=None)
@given(name=NAMES, local=st.sampled_from(["jürgen", "josé.garcía", "用户"]))
def test_to_header_round_trips_with_smtputf8(site_settings: Settings, name: str, local: str) -> None:
    """A non-ASCII mailbox goes out as SMTPUTF8 and its To header still decodes exactly."""
    message = make_factory(site_settings).build(Recipient(1, f"{local}@example.org", name, "en"))
    assert message.smtputf8
    assert_well_formed(message.data)
    assert_to(message.data, name, f"{local}@example.org")


@hypothesis_settings(max_examples=30, deadline=None)
@given(subject=NAMES)
def test_subject_round_trips(site_settings: Settings, subject: str) -> None:
    """Whatever the subject (up to the 250 characters a subject is cut to), it decodes exactly."""
    subject = subject[:250].strip() or "x"
    data = build(site_settings, Recipient(1, "a@example.org", None, "en"), rendered("en", subject))
    assert_well_formed(data)
    assert parse(data)["Subject"] == subject


def test_idn_domain_goes_out_as_ascii(site_settings: Settings) -> None:
    """An internationalised domain is written as its A-label both in To and in the envelope."""
    message = make_factory(site_settings).build(Recipient(1, "info@bücher.example", None, "en"))
    assert not message.smtputf8
    assert message.recipient == "info@xn--bcher-kva.example"
    assert parse(message.data)["To"].addresses[0].addr_spec == "info@xn--bcher-kva.example"


def test_whitespace_in_a_name_collapses(site_settings: Settings) -> None:
    """Tabs, newlines and runs of spaces in a name become single spaces in the To header."""
    data = build(site_settings, Recipient(1, "a@example.org", "  Jane\t\tDoe \r\n Smith ", "en"))
    assert parse(data)["To"].addresses[0].display_name == "Jane Doe Smith"


# --- tokens -------------------------------------------------------------------------------


def test_unsubscribe_token_verifies() -> None:
    """A token made for a subscriber and group reads back as exactly them."""
    token = Signer(KEY).make("unsubscribe", 42, 7)
    read = Signer(KEY).read("unsubscribe", token)
    assert (read.subscriber_id, read.group_id) == (42, 7)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token), "tokens must be URL-safe"


URLSAFE_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip(token: str, position: int) -> str:
    """Change one base64 digit in its highest bit (a low-bit change of the last digit may be padding)."""
    digit = URLSAFE_B64.index(token[position])
    return token[:position] + URLSAFE_B64[digit ^ 0b100000] + token[position + 1 :]


@pytest.mark.parametrize("position", [0, 5, -1, -10])
def test_tampered_token_is_refused(position: int) -> None:
    """Changing one character anywhere in a token makes it invalid."""
    token = Signer(KEY).make("unsubscribe", 42, 7)
    with pytest.raises(BadToken):
        Signer(KEY).read("unsubscribe", _flip(token, position % len(token)))


def test_token_for_someone_else_cannot_be_forged() -> None:
    """Swapping in another subscriber's payload, or signing with another key, is refused."""
    mine = Signer(KEY).make("unsubscribe", 42, 7)
    theirs = Signer(KEY).make("unsubscribe", 43, 7)
    forged = theirs.split(".")[0] + "." + ".".join(mine.split(".")[1:])
    with pytest.raises(BadToken):
        Signer(KEY).read("unsubscribe", forged)
    with pytest.raises(BadToken):
        Signer(KEY).read("unsubscribe", Signer("another-key").make("unsubscribe", 43, 7))
    for junk in ["", "abc", "a.b.c", "eyJzIjo0M30"]:
        with pytest.raises(BadToken):
            Signer(KEY).read("unsubscribe", junk)


def test_token_for_another_purpose_is_refused() -> None:
    """A preferences or confirmation token cannot be used as an unsubscribe token, nor the reverse."""
    signer = Signer(KEY)
    with pytest.raises(BadToken):
        signer.read("unsubscribe", signer.make("preferences", 42, 7))
    with pytest.raises(BadToken):
        signer.read("preferences", signer.make("unsubscribe", 42, 7))
    with pytest.raises(BadToken):
        signer.read("unsubscribe", signer.make("confirm", 42, 7))


def test_bad_token_is_a_user_facing_error() -> None:
    """BadToken says what happened in one line, without the token or a traceback."""
    with pytest.raises(BadToken) as caught:
        Signer(KEY).read("unsubscribe", "nonsense.token.here")
    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert "nonsense" not in message


# --- VERP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("edition", "subscriber"), [(1, 1), (12, 345), (987654, 10**9)])
def test_verp_round_trip(edition: int, subscriber: int) -> None:
    """A VERP address decodes to the edition and subscriber it was made for."""
    address = verp.encode("news-bounces@example.org", KEY, edition, subscriber)
    assert address.startswith(f"news-bounces+e{edition}.s{subscriber}.")
    assert address.endswith("@example.org")
    assert verp.decode(address, KEY) == verp.VerpAddress(edition, subscriber)
    assert verp.decode(f"<{address.upper()}>", KEY) == verp.VerpAddress(edition, subscriber)


def test_forged_verp_address_is_ignored() -> None:
    """A changed edition, subscriber or signature, another key, or a foreign address decodes to None."""
    address = verp.encode("news-bounces@example.org", KEY, 12, 345)
    signature = address.split(".")[2].split("@")[0]
    assert verp.decode(address.replace("s345", "s346"), KEY) is None
    assert verp.decode(address.replace("e12", "e13"), KEY) is None
    assert verp.decode(address.replace(signature, "0" * 8), KEY) is None
    assert verp.decode(address, "another-key") is None
    assert verp.decode("news-bounces@example.org", KEY) is None
    assert verp.decode("someone+e12.s345@example.org", KEY) is None


def test_envelope_sender_is_verp(site_settings: Settings) -> None:
    """The envelope sender of a message names its edition and subscriber, signed."""
    message: OutgoingMessage = make_factory(site_settings).build(Recipient(345, "a@example.org", None, "en"))
    assert message.sender.startswith("news-bounces+")
    assert verp.decode(message.sender, KEY) == verp.VerpAddress(EDITION_ID, 345)
    assert message.recipient == "a@example.org"
