"""No outbox trap: an edition sent to the outbox folder is `written`, and can still be sent for real.

The outbox transport writes .eml files and delivers nothing. These tests send the example
site's `dach` edition there first, then through a real SMTP server (aiosmtpd on
127.0.0.1), and count what arrives per recipient. Runs on SQLite and PostgreSQL.
"""

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.delivery.runner import send_edition
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.editions.render import Renderer
from tests.conftest import Cli
from tests.smtp_server import SmtpServer, running_server
from tests.test_delivery_engine import KEY, arrived, status
from tests.test_send_smtp import approved_edition, load


@pytest.fixture
def relay(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A real SMTP server, which `--transport smtp` sends to."""
    with running_server() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url())
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
        yield server


def active_members(cli: Cli, group: str) -> set[str]:
    return set(cli.members(group, "--status", "active"))


def test_an_edition_written_to_the_outbox_is_sent_for_real_later(cli: Cli, relay: SmtpServer) -> None:
    """The outbox run says it delivered nothing and ends `written`; a relay's send then sends one each."""
    load(cli, "dach")
    edition_id = approved_edition(cli, "dach")
    members = active_members(cli, "dach")

    written = cli("editions", "send", str(edition_id))
    assert f"edition #{edition_id} written: sent {len(members)}," in written.stdout
    assert "\noutbox only: the messages were written to " in written.stdout
    assert f"outbox/edition-{edition_id} and nobody received them; " in written.stdout
    assert f"to deliver them: newsletter --transport smtp editions send {edition_id}" in written.stdout
    assert len(list((cli.site / "outbox" / f"edition-{edition_id}").glob("*.eml"))) == len(members)
    assert status(cli, edition_id) == "written"
    assert relay.messages == []
    # A written edition is not in the public archive: nobody received it.
    archive = json.loads(cli("editions", "list", "--status", "sent", "--json").stdout)
    assert archive == []

    real = cli("--transport", "smtp", "editions", "send", str(edition_id))
    assert f"edition #{edition_id} sent: sent {len(members)}," in real.stdout
    assert "outbox only" not in real.output
    assert arrived(relay) == Counter(members)
    assert status(cli, edition_id) == "sent"
    again = cli("--transport", "smtp", "editions", "send", str(edition_id), ok=False)
    assert again.stderr == f"error: edition #{edition_id} is already sent; nothing to send\n"
    assert arrived(relay) == Counter(members)
    kinds = [e.kind for e in cli.events() if e.edition_id == edition_id and e.kind.startswith("edition-")]
    assert kinds == [
        "edition-build", "edition-approve", "edition-send", "edition-written", "edition-send", "edition-sent",
    ]  # fmt: skip


def test_an_outbox_run_and_a_real_send_never_mix(cli: Cli, relay: SmtpServer) -> None:
    """A real send stopped halfway is not finished by the outbox (send or worker); a relay's worker is."""
    load(cli, "dach")
    edition_id = approved_edition(cli, "dach")
    members = active_members(cli, "dach")
    site = Site.open(load_settings(cli.site, overrides={"database.url": cli.db_url}))
    try:
        # A real send (memory stands in for a relay) stopped before its first batch.
        stopped = send_edition(
            site,
            Renderer(site.settings),
            MemoryTransport(),
            edition_id,
            actor="test",
            should_stop=lambda: True,
        )
        assert stopped.status == "sending"
    finally:
        site.close()

    refused = cli("editions", "send", str(edition_id), ok=False)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: edition #{edition_id} is being delivered for real; ")
    assert refused.stderr.count("\n") == 1
    left = cli("worker", "--until-idle")
    assert "worker done: sent 0," in left.stdout
    assert f"edition #{edition_id} is being delivered for real: left alone (via outbox)" in left.stderr
    assert not (cli.site / "outbox" / f"edition-{edition_id}").exists()
    assert status(cli, edition_id) == "sending"

    done = cli("--transport", "smtp", "worker", "--until-idle")
    assert f"worker done: sent {len(members)}," in done.stdout
    assert arrived(relay) == Counter(members)
    assert status(cli, edition_id) == "sent"


def test_a_relays_worker_leaves_an_outbox_run_alone(cli: Cli, relay: SmtpServer) -> None:
    """An outbox run stopped halfway is left alone by a relay's worker; `editions send` via one sends it."""
    load(cli, "dach")
    edition_id = approved_edition(cli, "dach")
    members = active_members(cli, "dach")
    site = Site.open(load_settings(cli.site, overrides={"database.url": cli.db_url}))
    try:
        from newsletter.delivery.transports.directory import DirectoryTransport

        outbox = DirectoryTransport(site.settings.outbox_dir)
        stopped = send_edition(
            site, Renderer(site.settings), outbox, edition_id, actor="test", should_stop=lambda: True
        )
        assert stopped.status == "sending"
        assert not stopped.delivered
    finally:
        site.close()
    left = cli("--transport", "smtp", "worker", "--until-idle")
    assert "worker done: sent 0," in left.stdout
    assert (
        f"edition #{edition_id} is being written to the outbox folder: left alone (via smtp)" in left.stderr
    )
    assert relay.messages == []

    cli("--transport", "smtp", "editions", "send", str(edition_id))
    assert arrived(relay) == Counter(members)
    assert status(cli, edition_id) == "sent"
