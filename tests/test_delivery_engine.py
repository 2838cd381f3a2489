"""The delivery engine under faults, kill -9 and several PostgreSQL workers.

Subscribers are generated (a CSV imported through the CLI); messages go to the aiosmtpd
server of ``tests/smtp_server.py`` on 127.0.0.1, which injects the faults. Counting what
arrived per envelope recipient is the proof; the database is read for what the wire
cannot tell (a permanent failure, a bounce score).
"""

import asyncio
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, select

from newsletter.core.counts import delivery_counts
from newsletter.core.models import Delivery, Membership, Subscriber
from newsletter.core.settings import load_settings
from newsletter.delivery.transports import open_transport
from newsletter.delivery.transports.relays import RelayPool
from tests.conftest import REPO, Cli
from tests.smtp_server import SmtpServer, running_server

KEY = "engine-test-signing-key-5b1e9d2c7a"


def generate(cli: Cli, count: int, group: str = "dach") -> list[str]:
    """Import ``count`` generated subscribers into the group; their addresses."""
    addresses = [f"member{n:06d}@example{n % 7}.org" for n in range(count)]
    path = cli.site / f"generated-{count}.csv"
    names = ["Anna Keller", "Müller, Jürgen", 'Zoë "Z" Ødegård', "", "Łukasz Wróbel"]
    rows = [f"{a};{names[n % len(names)]};{('de', 'en', 'fr')[n % 3]}" for n, a in enumerate(addresses)]
    path.write_text("email;name;language\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cli("subscribers", "import", group, str(path))
    item = cli.site / "samples" / "items" / "2026-11-wipo-user-survey.md"
    cli("items", "add", "--approve", "--file", str(item))
    return addresses


def bulk_members(cli: Cli, count: int, group: str = "dach") -> list[str]:
    """Insert ``count`` generated active members straight into the database (fast, for load)."""
    from newsletter.core.models import Group, MembershipStatus, utcnow

    generate(cli, 1, group)
    addresses = [f"bulk{n:06d}@example{n % 7}.org" for n in range(count)]
    now = utcnow()
    with database(cli.db_url) as session:
        group_id = session.exec(select(Group.id).where(Group.slug == group)).one()
        subscribers = Subscriber.__table__  # type: ignore[attr-defined]
        memberships = Membership.__table__  # type: ignore[attr-defined]
        rows = [
            {
                "email": a,
                "email_key": a,
                "name": f"Member {n}",
                "language": "de",
                "created_at": now,
                "updated_at": now,
            }
            for n, a in enumerate(addresses)
        ]
        session.connection().execute(subscribers.insert(), rows)
        ids = session.exec(select(Subscriber.id).where(Subscriber.email.startswith("bulk"))).all()
        session.connection().execute(
            memberships.insert(),
            [
                {"subscriber_id": i, "group_id": group_id, "status": MembershipStatus.ACTIVE,
                 "status_changed_at": now, "created_at": now, "bounce_score": 0.0, "source": "bulk"}
                for i in ids
            ],
        )  # fmt: skip
        session.commit()
    return [*addresses, "member000000@example0.org"]


def approved_edition(cli: Cli, group: str = "dach") -> int:
    edition_id = int(json.loads(cli("editions", "build", group, "--json").stdout)["id"])
    cli("editions", "approve", str(edition_id))
    return edition_id


def status(cli: Cli, edition_id: int) -> str:
    rows = json.loads(cli("editions", "list", "--json").stdout)
    return str(next(row for row in rows if row["id"] == edition_id)["status"])


@contextmanager
def database(url: str) -> Iterator[Session]:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def delivery_states(cli: Cli, edition_id: int) -> dict[str, str]:
    with database(cli.db_url) as session:
        rows = session.exec(
            select(Subscriber.email, Delivery.status)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)  # type: ignore[arg-type]
            .where(Delivery.edition_id == edition_id)
        ).all()
    return {email: str(state) for email, state in rows}


def make_retries_due(cli: Cli, edition_id: int) -> None:
    """Fast-forward the retry schedule: every deferred delivery is due now."""
    with database(cli.db_url) as session:
        session.execute(
            text("UPDATE delivery SET next_attempt_at = NULL WHERE edition_id = :e AND status = 'queued'"),
            {"e": edition_id},
        )
        session.commit()


def arrived(server: SmtpServer) -> Counter[str]:
    counted: Counter[str] = Counter()
    for message in server.messages:
        counted.update(message.rcpt_tos)
    return counted


@pytest.fixture
def relay(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    with running_server() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url())
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
        yield server


def test_faults_end_every_member_delivered_once_or_permanently_failed(cli: Cli, relay: SmtpServer) -> None:
    """4xx replies, slow replies and dropped sessions are retried; 550/554 fail and meet the bounce policy."""
    addresses = generate(cli, 240)
    edition_id = approved_edition(cli)
    handler = relay.handler
    refused = {addresses[3]: "550 5.1.1 No such user", addresses[77]: "554 5.7.1 Rejected"}
    handler.rcpt_replies.update(refused)
    handler.rcpt_once.update(
        {
            addresses[5]: "451 4.3.0 Try again later",
            addresses[9]: "452 4.2.2 Mailbox full",
            addresses[40]: "421 4.7.0 Closing connection",
            addresses[150]: "450 4.2.1 Busy",
        }
    )
    handler.data_delay = 0.01
    handler.drop_after = 60  # the session drops once, mid-list

    rounds = 0
    while status(cli, edition_id) != "sent":
        rounds += 1
        assert rounds <= 6, delivery_states(cli, edition_id)
        cli("--transport", "smtp", "editions", "send", str(edition_id), ok=False)
        make_retries_due(cli, edition_id)

    states = delivery_states(cli, edition_id)
    assert {a for a, s in states.items() if s == "failed"} == set(refused)
    assert {a for a, s in states.items() if s == "sent"} == set(addresses) - set(refused)
    assert arrived(relay) == Counter(set(addresses) - set(refused))
    assert handler.connections > 1  # several lanes, and new sessions after the drop and the 421
    with database(cli.db_url) as session:
        rows = session.exec(
            select(Subscriber.email, Membership.status, Membership.bounce_score).join(
                Membership,
                Membership.subscriber_id == Subscriber.id,  # type: ignore[arg-type]
            )
        ).all()
    memberships = {email: (str(state), score) for email, state, score in rows}
    # The bounce policy, as for a returned notice: 5.1.1 (no such mailbox) ends the
    # membership at once; 5.7.1 (a policy refusal) is soft and only scores.
    assert memberships.pop(addresses[3]) == ("bounced", 0.0)
    assert memberships.pop(addresses[77]) == ("active", 0.5)
    assert set(memberships.values()) == {("active", 0.0)}


def test_the_engine_runs_when_called_from_inside_an_event_loop(cli: Cli, relay: SmtpServer) -> None:
    """A send started from async code (an app, a notebook) gets its own loop and delivers."""
    addresses = generate(cli, 5)
    edition_id = approved_edition(cli)

    async def inside() -> None:
        cli("--transport", "smtp", "editions", "send", str(edition_id))

    asyncio.run(inside())
    assert arrived(relay) == Counter(addresses)
    assert status(cli, edition_id) == "sent"


def configure_delivery(cli: Cli, delivery: str, extra: str = "") -> None:
    """Replace the site's [delivery] settings (and append more sections)."""
    config = cli.site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    start = text.index("[delivery]")
    end = text.index("\n[", start + 1)
    config.write_text(text[:start] + "[delivery]\n" + delivery + text[end:] + extra, encoding="utf-8")


def relay_pool(cli: Cli) -> RelayPool:
    """The SMTP transport the site's settings make, as `editions send` makes it (nothing is sent)."""
    pool = open_transport(load_settings(cli.site, overrides={"database.url": cli.db_url}))
    assert isinstance(pool, RelayPool)
    return pool


def test_two_relays_share_the_list_each_under_its_own_rate(
    cli: Cli, relay: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[[relays]]: both relays carry part of the list at no more than their rate; one copy each."""
    addresses = generate(cli, 70)
    edition_id = approved_edition(cli)
    configure_delivery(
        cli,
        'transport = "smtp"\nconnections = 2\nrate = 15\n',
        '\n[[relays]]\nname = "backup"\nurl_env = "NEWSLETTER_SMTP_URL_BACKUP"\nconnections = 2\nrate = 10\n',
    )
    with running_server() as backup:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL_BACKUP", backup.url())
        cli("editions", "send", str(edition_id))
        assert status(cli, edition_id) == "sent"
        counted = arrived(relay) + arrived(backup)
        assert counted == Counter(addresses)
        # Each relay took more than a full bucket's worth (its burst), so both paced their share.
        for server, rate in ((relay, 15), (backup, 10)):
            assert len(server.messages) > rate
        # Each relay got the rate and connections its settings give; that a lane keeps to its
        # relay's rate is proven on a virtual clock (test_rate_limits.py), the rate on the
        # wire is measured by bench/rate_bench.py.
        pool = relay_pool(cli)
        assert [(r.name, r.bucket.rate, r.connections) for r in pool.relays] == [
            ("default", 15, 2),
            ("backup", 10, 2),
        ]
        pool.close()


def test_per_domain_throttling(cli: Cli, relay: SmtpServer) -> None:
    """`domain_rate` holds every recipient domain to its rate, however many connections send."""
    addresses = generate(cli, 42)  # 6 members at each of 7 domains
    edition_id = approved_edition(cli)
    configure_delivery(cli, 'transport = "smtp"\nconnections = 4\ndomain_rate = 2\n')
    cli("editions", "send", str(edition_id))
    assert arrived(relay) == Counter(addresses)
    for domain in {a.rpartition("@")[2] for a in addresses}:
        to_domain = [m for m in relay.messages if m.rcpt_tos[0].endswith("@" + domain)]
        assert len(to_domain) == 6
    # Every lane of every relay shares one set of per-domain buckets at the configured rate;
    # a lane keeping to them is proven on a virtual clock in test_rate_limits.py.
    pool = relay_pool(cli)
    assert pool.domains.rate == 2
    assert len({id(lane.domains) for lane in pool.lanes(pool.capabilities.lanes)}) == 1
    pool.close()


def _send_process(cli: Cli, edition_id: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url,
        "--transport", "smtp", "editions", "send", str(edition_id),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_then_restart_loses_nobody_and_repeats_at_most_the_messages_in_flight(
    cli: Cli, relay: SmtpServer
) -> None:
    """A send killed with SIGKILL at random points, then restarted: all arrive; repeats <= connections."""
    addresses = generate(cli, 400)
    edition_id = approved_edition(cli)
    relay.handler.data_delay = 0.002
    connections = 4  # [delivery] connections, the default
    rng = random.Random()
    kills = 0
    for _ in range(2):
        process = _send_process(cli, edition_id)
        target = len(relay.messages) + rng.randint(5, 120)
        deadline = time.monotonic() + 60
        while len(relay.messages) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    final = _send_process(cli, edition_id)
    assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else ""
    assert kills >= 1
    assert status(cli, edition_id) == "sent"

    counted = arrived(relay)
    assert set(counted) == set(addresses)
    repeats = sum(n - 1 for n in counted.values())
    assert repeats <= kills * connections, counted.most_common(10)


def test_a_second_worker_on_sqlite_is_refused(cli: Cli, tmp_path: Path) -> None:
    """On SQLite a worker finds another's lock and stops, saying that one process delivers."""
    if not cli.db_url.startswith("sqlite"):
        pytest.skip("the lock is SQLite's")
    cli("status")
    lock = Path(cli.db_url.removeprefix("sqlite:///") + ".worker.lock")
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cli("worker", "--until-idle", ok=False)
    assert result.exit_code == 1
    assert "one process delivers" in result.stderr


def queue_for_workers(cli: Cli, edition_id: int) -> None:
    """Queue the edition and mark it sending, as `editions send` does before it delivers."""
    from newsletter.core.models import Edition, EditionStatus
    from newsletter.delivery import outbox

    with database(cli.db_url) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        outbox.enqueue(session, edition)
        edition.status = EditionStatus.SENDING
        session.add(edition)
        session.commit()


@pytest.mark.postgres
def test_three_postgresql_workers_share_an_edition_without_duplicates_or_loss(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three `newsletter worker` processes over 10,000 deliveries: each member gets exactly one copy."""
    if not cli.db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (NEWSLETTER_TEST_POSTGRES_URL)")
    addresses = bulk_members(cli, 10_000)
    edition_id = approved_edition(cli)

    queue_for_workers(cli, edition_id)
    with database(cli.db_url) as session:
        assert delivery_counts(session, edition_id) == {"queued": len(addresses)}
    with running_server() as server:
        server.handler.keep_content = False
        env = {**os.environ, "NEWSLETTER_SMTP_URL": server.url(), "NEWSLETTER_SECRET_KEY": KEY}
        command = [
            sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url,
            "--transport", "smtp", "worker", "--until-idle", "--batch-size", "100",
        ]  # fmt: skip
        workers = [
            subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        outputs = [worker.communicate(timeout=180) for worker in workers]
        for worker, (_, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err.decode()
        sent_by = [int(out.decode().split("sent ")[1].split(",")[0]) for out, _ in outputs]
        counted = arrived(server)
    assert sum(sent_by) == len(addresses)
    assert sum(1 for n in sent_by if n > 0) >= 2  # the work was shared
    assert counted == Counter(addresses)
    assert set(delivery_states(cli, edition_id).values()) == {"sent"}
    assert status(cli, edition_id) == "sent"


def test_a_database_error_while_recording_is_one_clear_error(tmp_path: Path) -> None:
    """The recorder writes through the driver itself: the driver's error still becomes DatabaseError."""
    from newsletter.core.db import make_engine
    from newsletter.core.errors import DatabaseError
    from newsletter.core.models import DeliveryStatus
    from newsletter.core.settings import BouncesSection
    from newsletter.delivery.outbox import Outcome, Recorder

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no delivery table in it
    recorder = Recorder(engine, BouncesSection())
    try:
        with pytest.raises(DatabaseError) as raised:
            recorder.write([Outcome(1, DeliveryStatus.SENT, "<1@example.org>")], {1: 1})
    finally:
        recorder.close()
        engine.dispose()
    assert str(raised.value) == "database error while recording sent messages: no such table: delivery"


def test_the_recorder_opens_a_new_connection_when_its_own_dies(cli: Cli) -> None:
    """A database connection lost mid-send fails one write (one clear error); the next write works."""
    from newsletter.core.db import make_engine
    from newsletter.core.errors import DatabaseError
    from newsletter.core.models import DeliveryStatus, Edition
    from newsletter.core.settings import BouncesSection
    from newsletter.delivery import outbox

    addresses = bulk_members(cli, 3)
    edition_id = approved_edition(cli)
    engine = make_engine(cli.db_url)
    recorder = outbox.Recorder(engine, BouncesSection())
    try:
        with Session(engine) as session:
            edition = session.get(Edition, edition_id)
            assert edition is not None
            outbox.enqueue(session, edition)
            session.commit()
            ids = list(session.exec(select(Delivery.id).where(Delivery.edition_id == edition_id)))
        first, second = (
            outbox.Outcome(ids[n] or 0, DeliveryStatus.SENT, f"<{n}@example.org>") for n in (0, 1)
        )
        recorder.write([first], {})
        connection = recorder._connection  # the test reaches in to cut it, as a server restart would
        assert connection is not None
        connection.dbapi_connection.close()  # type: ignore[union-attr]
        with pytest.raises(DatabaseError, match=r"^database error while recording sent messages: "):
            recorder.write([second], {})
        recorder.write([second], {})
    finally:
        recorder.close()
        engine.dispose()
    with database(cli.db_url) as session:
        rows = session.exec(select(Delivery.id, Delivery.status).where(col(Delivery.id).in_(ids[:3])))
        states = dict(rows.all())
    assert [states[i] for i in ids[:3]] == ["sent", "sent", "queued"]
    assert len(ids) >= len(addresses)


def test_rows_of_a_dead_worker_are_sent_once_their_lease_runs_out(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker died holding claimed rows: while their lease runs they wait; after it, a worker sends them."""
    from newsletter.core.models import utcnow
    from newsletter.delivery import claims

    addresses = bulk_members(cli, 30)
    edition_id = approved_edition(cli)
    queue_for_workers(cli, edition_id)
    with database(cli.db_url) as session:
        # A worker on another host claimed these, then was killed: nothing records them,
        # nothing renews them, and no process check can tell it is gone.
        dead = claims.claim(session, edition_id, "elsewhere/000000:4242:0badc0de", limit=5)
        session.commit()
    assert len(dead) == 5
    orphans = {row.email for row in dead}
    with running_server() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url())
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", KEY)
        cli("--transport", "smtp", "worker", "--until-idle")
        # The lease still runs: the rows are the dead worker's, nobody else sends them.
        assert set(arrived(server)) == set(addresses) - orphans
        with database(cli.db_url) as session:
            # Ten minutes later, as far as the leases go.
            held = session.exec(select(Delivery).where(Delivery.status == "sending")).all()
            assert sorted(d.id or 0 for d in held) == sorted(row.delivery_id for row in dead)
            for delivery in held:
                assert delivery.next_attempt_at is not None
                assert delivery.next_attempt_at > utcnow() + claims.LEASE - timedelta(minutes=1)
                delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
                session.add(delivery)
            session.commit()
        cli("--transport", "smtp", "worker", "--until-idle")
        assert arrived(server) == Counter(addresses)
    assert set(delivery_states(cli, edition_id).values()) == {"sent"}
    assert status(cli, edition_id) == "sent"


def test_the_engine_renews_the_lease_of_the_rows_in_hand(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a send runs, the rows it holds get their lease extended, so no worker takes them over."""
    from newsletter.delivery import claims
    from newsletter.delivery import engine as deliver

    addresses = bulk_members(cli, 40)
    edition_id = approved_edition(cli)
    renewed: list[list[int]] = []
    renew = claims.renew

    def recording(session: Session, delivery_ids: list[int], owner: str, **kwargs: object) -> None:
        renewed.append(list(delivery_ids))
        renew(session, delivery_ids, owner)

    monkeypatch.setattr(deliver, "RENEW_EVERY", 0.0)
    monkeypatch.setattr(claims, "renew", recording)
    cli("editions", "send", str(edition_id))
    assert renewed, "no lease was renewed"
    assert all(ids for ids in renewed)
    assert len(set().union(*map(set, renewed))) >= len(addresses) // 2


def test_a_4xx_retried_until_given_up_counts_as_a_soft_bounce(cli: Cli) -> None:
    """The last 4xx of a delivery whose retries ran out goes to the bounce policy, as a notice would."""
    from newsletter.core.models import DeliveryStatus, Edition, Event, Subscriber
    from newsletter.core.settings import BouncesSection
    from newsletter.delivery import outbox

    bulk_members(cli, 1)
    edition_id = approved_edition(cli)
    with database(cli.db_url) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        outbox.enqueue(session, edition)
        session.commit()
        delivery = session.exec(select(Delivery).where(Delivery.edition_id == edition_id)).first()
        assert delivery is not None
        assert delivery.id is not None
        member = session.get(Subscriber, delivery.subscriber_id)
        assert member is not None
        member_id, member_email = member.id, member.email
        refusal = "452 4.2.2 mailbox full"
        fail = outbox.Outcome(delivery.id, DeliveryStatus.FAILED, error=refusal, retry=True, code=452)
        # A retry still to come: queued again, nothing for the policy.
        outbox.record(session, [fail], {delivery.id: 1}, BouncesSection())
        session.commit()
        assert session.exec(select(Event).where(Event.kind == "bounce")).all() == []
        # The last attempt: failed, and a soft bounce for the member.
        outbox.record(session, [fail], {delivery.id: outbox.RETRY_ATTEMPTS + 1}, BouncesSection())
        session.commit()
        session.refresh(delivery)
        assert delivery.status == DeliveryStatus.FAILED
        (event,) = session.exec(select(Event).where(Event.kind == "bounce")).all()
    detail = json.loads(event.detail)
    assert (detail["verdict"], detail["status"]) == ("soft", "4.2.2")
    assert event.subscriber_id == member_id
    assert cli.members("dach")[member_email]["status"] == "active"  # one soft bounce ends nothing


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this system")
def test_the_signing_pool_has_a_thread_per_core_the_process_may_use_not_per_core_of_the_machine() -> None:
    # A worker unit with CPUAffinity=1 (docs/operations.md) signs on that one core: a
    # second thread would only take turns with the first.
    first = min(os.sched_getaffinity(0))
    ask = "from newsletter.delivery.engine import usable_cores; print(usable_cores())"
    pin = f"import os; os.sched_setaffinity(0, {{{first}}}); "
    answers = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
        for code in (pin + ask, ask)
    ]
    assert tuple(answer.stdout.strip() for answer in answers) == ("1", str(len(os.sched_getaffinity(0))))
