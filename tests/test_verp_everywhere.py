"""Every message the product sends has a signed VERP envelope sender, built in one place.

Editions and their test sends, confirmations, probes, notification digests and sign-in
links each take their envelope sender from ``verp.envelope_senders``; a bounce to any of
them is recognised as ours by ``bounces process``. Also here: Maildir messages are named
by the files they are, and ``subscribers list --json`` shows the bounce score.
"""

import json
import mailbox
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.core import verp
from newsletter.core.models import Group, Membership, Probe, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery.confirmation import confirmation_message
from newsletter.delivery.notifymail import digest_message
from newsletter.delivery.outgoing import send_test
from newsletter.delivery.probes import probe_message
from newsletter.delivery.signinmail import sign_in_message
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.editions.render import Renderer
from newsletter.feedback import read_inputs
from tests.conftest import Cli
from tests.test_bounces import ORDINARY, dsn


@pytest.fixture
def site(cli: Cli, site_dir: Path, db_url: str) -> Iterator[Site]:
    """The example site with the uk group's members imported."""
    cli("subscribers", "import", "uk", str(site_dir / "subscribers" / "uk.csv"))
    opened = Site.open(load_settings(site_dir, overrides={"database.url": db_url}))
    yield opened
    opened.close()


def _subscriber(site: Site, slug: str = "uk") -> tuple[Subscriber, Group]:
    with site.transaction() as session:
        subscriber, group = session.exec(
            select(Subscriber, Group)
            .join(Membership, col(Membership.subscriber_id) == Subscriber.id)
            .join(Group, col(Group.id) == Membership.group_id)
            .where(col(Group.slug) == slug)
            .order_by(col(Subscriber.id))
        ).first() or (None, None)
        assert subscriber is not None
        assert group is not None
        session.expunge(subscriber)
        session.expunge(group)
        return subscriber, group


def test_every_kind_of_message_has_a_signed_verp_sender_from_one_function(
    site: Site, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Confirmations, probes, test sends, digests, sign-in links: signed senders from envelope_senders."""
    settings = site.settings
    asked: list[tuple[str, int]] = []
    real = verp.envelope_senders

    def spy(settings: Any, kind: verp.Kind, number: int, **kwargs: Any) -> Callable[[int], str]:
        asked.append((kind, number))
        return real(settings, kind, number, **kwargs)

    monkeypatch.setattr(verp, "envelope_senders", spy)
    subscriber, group = _subscriber(site)
    assert subscriber.id is not None
    assert group.id is not None
    signer = Signer(settings.signing_key)
    key = settings.signing_key

    # A confirmation (edition 0 of the list).
    from newsletter.audience.selfservice import Subscription

    subscription = Subscription(subscriber.id, group.id, subscriber.email, None, "en", True, None)
    confirmation = confirmation_message(settings, signer, subscription, group.slug)
    assert verp.decode(confirmation.sender, key) == verp.VerpAddress(0, subscriber.id)

    # A probe.
    probe = Probe(id=7, subscriber_id=subscriber.id, group_id=group.id)
    probed = probe_message(settings, signer, probe, subscriber, group)
    assert verp.decode(probed.sender, key) == verp.VerpAddress(0, subscriber.id, probe_id=7)

    # A notification digest and a sign-in link, to workspace user 3.
    digest = digest_message(
        settings, user_id=3, email="editor@example.org", name="Ed", notices=["x"], stop_url="https://s/x"
    )
    signin = sign_in_message(
        settings, user_id=3, email="editor@example.org", name="Ed", url="https://s/y", minutes=15
    )
    for message in (digest, signin):
        assert verp.decode(message.sender, key) == verp.VerpAddress(0, 0, user_id=3)
        assert message.sender != settings.bounce_address

    # A test send of an edition: the edition's, to nobody (subscriber 0).
    added = cli("items", "add", "--title", "A test item", "--url", "https://example.org/t", "--group", "uk")
    found = re.search(r"#(\d+)", added.stdout)
    assert found
    cli("items", "approve", found.group(1))
    built = re.search(r"edition #(\d+)", cli("editions", "build", "uk").stdout)
    assert built
    edition_id = int(built.group(1))
    transport = MemoryTransport()
    send_test(site, Renderer(settings), transport, edition_id, "tester@example.org", actor="test")
    [tested] = transport.messages
    assert verp.decode(tested.sender, key) == verp.VerpAddress(edition_id, 0)

    assert {kind for kind, _ in asked} == {"edition", "probe", "user"}
    assert ("edition", 0) in asked
    assert ("probe", 7) in asked
    assert ("user", 3) in asked
    assert ("edition", edition_id) in asked


def test_the_addresses_signed_before_still_verify() -> None:
    """An edition's and a probe's VERP addresses are the same as before envelope_senders existed."""
    key = "k" * 32
    address = verp.encode("news-bounces@example.org", key, 12, 345)
    assert address.startswith("news-bounces+e12.s345.")
    assert verp.decode(address, key) == verp.VerpAddress(12, 345)
    probe = verp.probe_address("news-bounces@example.org", key, 7, 345)
    assert verp.decode(probe, key) == verp.VerpAddress(0, 345, probe_id=7)
    user = verp.ReturnPaths("news-bounces@example.org", key, 3, "user").address(0)
    assert user.startswith("news-bounces+u3.s0.")
    assert verp.decode(user, key) == verp.VerpAddress(0, 0, user_id=3)
    # A user's signature is not an edition's or a probe's with the same numbers.
    assert verp.decode(user.replace("+u3.", "+e3."), key) is None
    assert verp.decode(user.replace("+u3.", "+p3."), key) is None


def test_a_bounce_of_workspace_mail_is_ours_and_touches_no_membership(site: Site, cli: Cli) -> None:
    """A DSN to a user's VERP address is verified and changes no membership, even at a member's address."""
    subscriber, _ = _subscriber(site)
    sender = verp.envelope_senders(site.settings, "user", 3)(0)
    path = Path(site.settings.site_dir) / "user-bounce.eml"
    path.write_bytes(dsn(subscriber.email, status="5.1.1", to=sender, message_id="<u3@mx>"))
    before = cli.members("uk")[subscriber.email]
    outcome = json.loads(cli("bounces", "process", str(path), "--json").stdout)["outcomes"][0]
    assert "workspace mail to user #3" in outcome["action"]
    assert cli.members("uk")[subscriber.email] == before


def test_maildir_messages_are_named_by_their_real_files(cli: Cli, tmp_path: Path) -> None:
    """`bounces process` names a Maildir message by its file: new/ or cur/, flags included."""
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    fresh = box.add(ORDINARY)
    seen = mailbox.MaildirMessage(ORDINARY)
    seen.set_subdir("cur")
    seen.set_flags("S")
    read = box.add(seen)
    labels = [incoming.label for incoming in read_inputs([str(tmp_path / "Maildir")])]
    assert sorted(labels) == sorted(
        [str(tmp_path / "Maildir" / "new" / fresh), str(tmp_path / "Maildir" / "cur" / f"{read}:2,S")]
    )
    for label in labels:
        assert Path(label).is_file(), label
    result = cli("bounces", "process", str(tmp_path / "Maildir"), "--json")
    sources = [o["source"] for o in json.loads(result.stdout)["outcomes"]]
    assert sorted(sources) == sorted(labels)


def test_subscribers_list_json_shows_the_bounce_score(site: Site, cli: Cli) -> None:
    """After a soft bounce the member's score shows in `subscribers list --json`."""
    subscriber, _ = _subscriber(site)
    assert cli.members("uk")[subscriber.email]["bounce_score"] == 0
    path = Path(site.settings.site_dir) / "soft.eml"
    path.write_bytes(dsn(subscriber.email, status="5.2.2", message_id="<soft@mx>"))
    cli("bounces", "process", str(path))
    assert cli.members("uk")[subscriber.email]["bounce_score"] == pytest.approx(0.5)
