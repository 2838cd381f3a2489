"""Topics subscribers choose: each member's copy keeps only the items of their topics.

The UK edition of the example site carries WIPO, EPO, IP5 and CEPIUG items. Members
choose topics through the self-service library (the preferences page's own call) or,
for choices the page cannot make, in the database; the edition goes over real SMTP to
an aiosmtpd server on 127.0.0.1, and what each member received is read off the wire.
The renders are counted by wrapping the one function that renders an edition's
languages: one per distinct copy, whatever the number of members.
"""

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.audience import selfservice
from newsletter.core.models import Delivery, DeliveryStatus, Membership, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery import outgoing, variants
from newsletter.delivery.engine import SKIP_REASON
from newsletter.editions import build
from tests.conftest import Cli
from tests.smtp_server import SmtpServer

KEY = "topics-test-signing-key-8e2f4a6c"
TITLES = {
    "WIPO": "WIPO Inspire: new reports compare legal status coverage in six patent databases",
    "EPO": "EPO: Espacenet and the European Patent Register show Unitary Patent status side by side",
    "IP5": "IP5 heads of office: report on the 2026 meeting published",
    "CEPIUG": "CEPIUG workshop: working with Unitary Patent data",
}


@pytest.fixture
def site(cli: Cli, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
    cli("subscribers", "import", "uk", str(cli.site / "subscribers" / "uk.csv"))
    files = sorted((cli.site / "samples" / "items").glob("*.md"))
    cli("items", "add", "--approve", *(arg for path in files for arg in ("--file", str(path))))
    return cli


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts each render of an edition (all its languages at once) made while sending."""
    counted: list[int] = []
    real = build.render_languages

    def counting(*args: Any, **kwargs: Any) -> Any:
        counted.append(len(args[2].items))
        return real(*args, **kwargs)

    monkeypatch.setattr(outgoing, "render_languages", counting)
    monkeypatch.setattr(variants, "render_languages", counting)
    return counted


def choose(cli: Cli, email: str, topics: list[str]) -> None:
    """The member's choice in the UK group, saved as the preferences page saves it."""
    settings = load_settings(
        cli.site, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": cli.db_url}
    )
    site = Site.open(settings)
    try:
        with site.transaction() as session:
            subscriber = session.exec(select(Subscriber).where(col(Subscriber.email_key) == email)).one()
            token = Signer(KEY).make("preferences", subscriber.id or 0, cli.group_id("uk"))
            data = Signer(KEY).read("preferences", token)
            selfservice.update_preferences(
                session,
                settings,
                data,
                groups={"uk"},
                name=subscriber.name,
                language=subscriber.language,
                chosen_topics={"uk": topics},
            )
    finally:
        site.close()


def store(cli: Cli, email: str, value: str | None) -> None:
    """A stored choice written directly (one the page would not make from today's offer)."""
    with cli.database() as session:
        row = session.exec(
            select(Membership)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .where(col(Subscriber.email_key) == email, col(Membership.group_id) == cli.group_id("uk"))
        ).one()
        row.topics = value
        session.add(row)
        session.commit()


def build_and_send(cli: Cli) -> int:
    edition_id = int(json.loads(cli("editions", "build", "uk", "--json").stdout)["id"])
    cli("editions", "approve", str(edition_id))
    cli("--transport", "smtp", "editions", "send", str(edition_id))
    return edition_id


def received_topics(server: SmtpServer, email: str) -> set[str]:
    """The topics whose sample item is in the member's copy (in both parts alike)."""
    (arrived,) = server.to(email)
    message = arrived.message()
    text, body = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert body is not None
    found = set()
    for topic, title in TITLES.items():
        in_text, in_html = title in text.get_content(), title in body.get_content()
        assert in_text == in_html, topic
        if in_text:
            found.add(topic)
    return found


def test_each_member_gets_the_items_of_their_topics_rendered_once_per_distinct_choice(
    site: Cli, smtp_server: SmtpServer, renders: list[int]
) -> None:
    """Two members with one choice share one copy, a member with another choice gets other items,
    no choice (or a choice of every topic the edition carries) is everything, and a choice
    the edition carries nothing of sends nothing and is recorded as skipped."""
    # The page offers the topics the group's sources and editions carry: WIPO and EPO so far.
    choose(site, "raj.patel@example.org", ["WIPO"])
    choose(site, "fiona.macleod@example.net", ["wipo"])
    choose(site, "owen.jones@example.org", ["EPO"])
    # Sofia's choice names every topic of this edition and more: she gets the full edition.
    store(site, "sofia.lindqvist@example.org", '["CEPIUG", "EPO", "Events", "IP5", "WIPO"]')
    # The library's choice, of a topic this edition does not carry, leaves nothing.
    store(site, "library@example.net", '["Events"]')

    edition_id = build_and_send(site)

    everything = set(TITLES)
    assert received_topics(smtp_server, "jane.doe@example.org") == everything
    assert received_topics(smtp_server, "siobhan.murphy@example.net") == everything
    assert received_topics(smtp_server, "sofia.lindqvist@example.org") == everything
    assert received_topics(smtp_server, "raj.patel@example.org") == {"WIPO"}
    assert received_topics(smtp_server, "fiona.macleod@example.net") == {"WIPO"}
    assert received_topics(smtp_server, "owen.jones@example.org") == {"EPO"}
    assert smtp_server.to("library@example.net") == []

    # The full edition, the WIPO copy and the EPO copy: three renders for six messages.
    assert len(renders) == 3
    assert len(smtp_server.messages) == 6
    with site.database() as session:
        skipped = session.exec(
            select(Delivery)
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(col(Delivery.edition_id) == edition_id, col(Subscriber.email_key) == "library@example.net")
        ).one()
    assert skipped.status == DeliveryStatus.SKIPPED
    assert skipped.last_error == SKIP_REASON


def test_a_dry_run_counts_the_members_whose_topics_leave_nothing_apart(site: Cli) -> None:
    """`editions send --dry-run` says how many would get a copy, and how many chose nothing it carries."""
    store(site, "library@example.net", '["Events"]')
    choose(site, "owen.jones@example.org", ["EPO"])
    edition_id = int(json.loads(site("editions", "build", "uk", "--json").stdout)["id"])
    site("editions", "approve", str(edition_id))
    line = site("editions", "send", str(edition_id), "--dry-run").stdout.strip()
    assert line.startswith(f"dry run: edition #{edition_id} would go to 6 member(s) (")
    assert "1 of them chose only topics this edition does not carry" in line


def test_without_choices_the_edition_is_rendered_once(
    site: Cli, smtp_server: SmtpServer, renders: list[int]
) -> None:
    """Nobody chose topics: everyone gets everything from the one render the send always made."""
    build_and_send(site)
    assert len(renders) == 1
    assert len(smtp_server.messages) == 7
    for arrived in smtp_server.messages:
        assert received_topics(smtp_server, arrived.rcpt_tos[0]) == set(TITLES)


def test_choosing_every_topic_or_none_is_no_choice(site: Cli) -> None:
    """Ticking every offered topic, or none, stores no choice: later topics arrive too."""
    choose(site, "raj.patel@example.org", ["EPO", "WIPO"])
    choose(site, "owen.jones@example.org", [])
    choose(site, "jane.doe@example.org", ["WIPO", "Forged topic"])
    with site.database() as session:
        stored: Callable[[str], str | None] = lambda email: session.exec(  # noqa: E731
            select(Membership.topics)
            .join(Subscriber, col(Subscriber.id) == Membership.subscriber_id)
            .where(col(Subscriber.email_key) == email)
        ).one()
        assert stored("raj.patel@example.org") is None
        assert stored("owen.jones@example.org") is None
        assert stored("jane.doe@example.org") == '["WIPO"]'
