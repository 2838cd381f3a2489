"""Delivery benchmark: one edition to N generated subscribers, against Postfix's smtp-sink.

    .venv/bin/python bench/send_bench.py                      # 10,000 recipients
    .venv/bin/python bench/send_bench.py --recipients 1000000 # takes a while
    .venv/bin/python bench/send_bench.py --recipients 100000 \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test --workers 2

Needs Debian's ``postfix`` package for ``/usr/sbin/smtp-sink`` and ``/usr/sbin/smtp-source``
(the Postfix daemon is never started). In one run it builds a site in a temp folder
with N subscribers (inserted by one SQL statement), sends one edition through the
delivery runner (``runner.send_edition``) in this process to smtp-sink on 127.0.0.1,
then times smtp-source sending N messages of the same size with the same number of
parallel sessions, twice:
in its default mode (a new session for each message) and with ``-d`` (each session
reused for many messages, as the engine does). Each round is repeated (``--rounds``,
the edition is reset to approved in between) and the medians are reported: rates,
their ratios, the CPU time per message, the median per-recipient build time and this
process's peak memory.

With ``--dkim`` every message is DKIM-signed (rsa-sha256, a 2048-bit key made for the
run; ``--ed25519`` adds an Ed25519 signature, RFC 8463), and the run also times this
machine's raw RSA-2048 signing on one core (OpenSSL through ``cryptography``, one
pre-hashed digest signed over and over): the signed send rate is reported against it.

With ``--workers N`` (PostgreSQL only: on SQLite one process delivers) the edition is
queued and N ``newsletter worker --until-idle`` processes share it, started together;
the time runs from their start to the last one's exit (so it includes their start-up,
about a second: use 100,000 recipients or more), smtp-source gets N times the sessions,
and the CPU time and peak memory reported are the workers' own. On PostgreSQL the
bench works in a schema of its own, dropped at the end.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
KEY = "bench-signing-key-3f8a1c9e2b7d4a60"
# This checkout's package, whatever the environment has installed.
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    ram = int(memory) / 1024 / 1024
    return f"{os.cpu_count()} CPUs ({cpu}), {ram:.1f} GiB RAM, Python {platform.python_version()}"


def make_site(folder: Path, connections: int) -> Path:
    site = folder / "site"
    site.mkdir()
    for part in ("newsletter.toml", "templates", "samples"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, site / part)
        elif source.is_file():
            shutil.copy(source, site / part)
    config = site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('transport = "outbox"', f'transport = "smtp"\nconnections = {connections}'),
        encoding="utf-8",
    )
    return site


def populate(db_url: str, slug: str, count: int) -> None:
    """N subscribers and active memberships, made by the database itself (no Python list)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.begin() as connection:
        group_id = connection.execute(
            text('SELECT id FROM "group" WHERE slug = :s'), {"s": slug}
        ).scalar_one()
        # SQLite stores the text as it is; PostgreSQL wants a timestamp, not text.
        now: Any = "2026-01-01 00:00:00.000000"
        if connection.dialect.name == "postgresql":
            now = datetime(2026, 1, 1, tzinfo=UTC)
        connection.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO subscriber (email, email_key, name, language, created_at, updated_at) "
                "SELECT 'member' || i || '@example' || (i % 50) || '.org', "
                "'member' || i || '@example' || (i % 50) || '.org', "
                "CASE i % 4 WHEN 0 THEN 'Jürgen Müller ' || i WHEN 1 THEN 'Anna Keller' "
                "WHEN 2 THEN NULL ELSE 'Łukasz \"Ł\" Wróbel, ' || i END, "
                "CASE i % 3 WHEN 0 THEN 'de' WHEN 1 THEN 'en' ELSE 'fr' END, :now, :now FROM n"
            ),
            {"count": count, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO membership (subscriber_id, group_id, status, source, status_changed_at, "
                "bounce_score, created_at) SELECT id, :g, 'active', 'bench', :now, 0, :now FROM subscriber"
            ),
            {"g": group_id, "now": now},
        )
    engine.dispose()


def run_sink(port: int) -> subprocess.Popen[bytes]:
    sink = subprocess.Popen(
        [SINK, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return sink
        time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4, help="SMTP sessions (ours and smtp-source's)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Rounds of sending and smtp-source; medians are reported.",
    )
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    parser.add_argument(
        "--database-url",
        help="A PostgreSQL database to work in (a schema of its own); default: SQLite in a temp folder.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="Deliver with this many `newsletter worker` processes (PostgreSQL) instead of in this process.",
    )
    parser.add_argument("--dkim", action="store_true", help="DKIM-sign every message (RSA-2048).")
    parser.add_argument("--ed25519", action="store_true", help="With --dkim: an Ed25519 signature too.")
    args = parser.parse_args()
    if args.workers and not (args.database_url or "").startswith("postgresql"):
        parser.error(
            "--workers needs --database-url postgresql+psycopg://...: on SQLite one process delivers"
        )
    for binary in (SINK, SOURCE):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: apt-get install postfix (the daemon need not run)")

    folder = Path(tempfile.mkdtemp(prefix="send-bench-"))
    try:
        with database(args.database_url, folder) as db_url:
            run_bench(args, folder, db_url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def database(url: str | None, folder: Path) -> Iterator[str]:
    """The URL to work in: SQLite in the folder, or a new schema in the PostgreSQL database."""
    if not url:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"send_bench_{os.getpid()}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_bench(args: argparse.Namespace, folder: Path, db_url: str) -> None:
    from newsletter.core.models import Group
    from newsletter.core.settings import load_settings
    from newsletter.core.site import Site
    from newsletter.core.tokens import Signer
    from newsletter.delivery import splice
    from newsletter.delivery.message import MessageFactory, Recipient
    from newsletter.editions import build as editions
    from newsletter.editions.render import Renderer

    port = free_port()
    site_dir = make_site(folder, args.connections)
    if args.dkim:
        add_dkim(site_dir, ed25519=args.ed25519)
    env = {
        **os.environ,
        "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "NEWSLETTER_SECRET_KEY": KEY,
        "NEWSLETTER_DATABASE_URL": db_url,
    }
    settings = load_settings(site_dir, env=env)
    cli = [sys.executable, "-m", "newsletter", "--site", str(site_dir), "--database-url", db_url]
    subprocess.run([*cli, "migrate"], check=True, env=env, capture_output=True, cwd=REPO)
    subprocess.run([*cli, "status"], check=True, env=env, capture_output=True, cwd=REPO)
    item = site_dir / "samples" / "items" / "2026-11-wipo-user-survey.md"
    subprocess.run(
        [*cli, "items", "add", "--approve", "--file", str(item)],
        check=True,
        env=env,
        capture_output=True,
        cwd=REPO,
    )
    started = time.perf_counter()
    populate(db_url, "dach", args.recipients)
    print(f"populated {args.recipients} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
    built = subprocess.run(
        [*cli, "editions", "build", "dach", "--json"], check=True, env=env, capture_output=True, cwd=REPO
    )
    edition_id = int(json.loads(built.stdout)["id"])
    subprocess.run(
        [*cli, "editions", "approve", str(edition_id)], check=True, env=env, capture_output=True, cwd=REPO
    )

    site = Site.open(settings)
    # Per-recipient build time and message size, on the edition's own parts.
    renderer = Renderer(settings)
    with site.transaction() as session:
        edition = editions.get_edition(session, edition_id)
        group = session.get(Group, edition.group_id)
        assert group is not None
        content = editions.content(session, settings, edition)
    parts = editions.render_languages(renderer, settings, content, allow_large=True)
    factory = MessageFactory(
        settings, Signer(KEY), edition_id=edition_id, group_id=group.id or 0, group_slug=group.slug,
        group_name=group.name, parts=parts,
    )  # fmt: skip
    build = splice.builder(factory)
    names = ["Jürgen Müller 12", "Anna Keller", None, 'Łukasz "Ł" Wróbel, 7']
    samples = [
        Recipient(n, f"member{n}@example{n % 50}.org", names[n % 4], ("de", "en", "fr")[n % 3], n)
        for n in range(1, 2_001 if args.dkim else 20_001)
    ]
    timings, size = [], 0
    for recipient in samples:
        before = time.perf_counter_ns()
        message = build(recipient)
        timings.append(time.perf_counter_ns() - before)
        size += len(message.data)
    build_us = statistics.median(timings) / 1000
    size //= len(samples)
    slow = [0.0] * 200
    for index, recipient in enumerate(samples[:200]):
        before = time.perf_counter_ns()
        factory.build(recipient)
        slow[index] = (time.perf_counter_ns() - before) / 1000
    del samples, timings

    raw_rsa = rsa_rate() if args.dkim else 0.0
    sink = run_sink(port)
    # smtp-source gets as many sessions as all the workers have together.
    sessions = args.connections * max(1, args.workers)
    rounds: list[dict[str, float]] = []
    try:
        for number in range(args.rounds):
            if number:
                reset(db_url, edition_id)
            if args.workers:
                command = [*cli, "--transport", "smtp", "worker", "--until-idle"]
                measured = run_workers(args, site, edition_id, command, env)
            else:
                measured = send_here(args, site, renderer, settings, edition_id)
            rounds.append(measured | smtp_source(args.recipients, sessions, size, port))
            print(
                f"round {number + 1}: newsletter {rounds[-1]['ours']:.1f} msg/s, smtp-source "
                f"{rounds[-1]['source']:.1f} msg/s (new session per message), "
                f"{rounds[-1]['source_reused']:.1f} msg/s (-d, sessions reused)",
                flush=True,
            )
        memory = max(r["peak_mb"] for r in rounds) if args.workers else peak_mb()
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait()
        site.close()

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 1)

    ours, theirs, reused = median("ours"), median("source"), median("source_reused")
    figures = {
        "recipients": args.recipients,
        "database": "postgresql" if args.database_url else "sqlite",
        "workers": args.workers,
        "sessions": sessions,
        "rounds": args.rounds,
        "message_bytes": size,
        "newsletter_msgs_per_s": ours,
        "smtp_source_msgs_per_s": theirs,
        "ratio": round(ours / theirs, 3),
        "smtp_source_reused_msgs_per_s": reused,
        "ratio_reused": round(ours / reused, 3),
        "build_us_median": round(build_us, 1),
        "slow_path_us_median": round(statistics.median(slow), 1),
        "peak_rss_mb": round(memory, 1),
        "send_cpu_us_per_message": median("cpu_us"),
        "machine": machine(),
    }
    if args.workers:
        figures |= {
            "sink_cpu_us_per_message": median("sink_cpu_us"),
            "database_cpu_us_per_message": median("database_cpu_us"),
            "cores_busy": round(statistics.median(r["cores_busy"] for r in rounds), 2),
        }
    if args.dkim:
        figures |= {"raw_rsa2048_signs_per_s": round(raw_rsa, 1), "ratio_raw_rsa": round(ours / raw_rsa, 3)}
    print(f"machine:             {figures['machine']}")
    print(f"recipients:          {args.recipients} over {sessions} sessions, {size} bytes each")
    if args.workers:
        print(f"database:            PostgreSQL, {args.workers} worker processes")
        print(f"newsletter send:     {ours} msg/s (median of {args.rounds}; the workers' start-up included)")
        print(f"send CPU:            {figures['send_cpu_us_per_message']} us per message (the workers')")
        print(
            f"on the same cores:   smtp-sink {figures['sink_cpu_us_per_message']} us, PostgreSQL "
            f"{figures['database_cpu_us_per_message']} us per message; {figures['cores_busy']} of "
            f"{os.cpu_count()} cores busy while the workers ran"
        )
    else:
        print(f"database:            {figures['database']}, this process delivers")
        print(f"newsletter send:     {ours} msg/s (median of {args.rounds}; rendering and queueing included)")
        print(f"send CPU:            {figures['send_cpu_us_per_message']} us per message (user + system)")
    print(f"smtp-source:         {theirs} msg/s, {sessions} in parallel, a new session per message")
    print(f"ratio:               {figures['ratio']:.1%} of smtp-source")
    print(f"smtp-source -d:      {reused} msg/s, {sessions} sessions reused for all messages")
    print(f"ratio:               {figures['ratio_reused']:.1%} of smtp-source -d")
    print(
        f"build per recipient: {build_us:.1f} us median (email.message: {figures['slow_path_us_median']} us)"
    )
    if args.dkim:
        signed = "rsa-sha256 and ed25519-sha256" if args.ed25519 else "rsa-sha256"
        print(f"DKIM:                every message signed ({signed}, 2048-bit RSA key)")
        print(f"raw RSA-2048 signs:  {raw_rsa:.1f} per second on one core (OpenSSL, pre-hashed digest)")
        print(f"ratio:               {figures['ratio_raw_rsa']:.1%} of the raw signing rate")
    whose = "the largest worker's" if args.workers else "this process's"
    print(f"peak memory:         {memory:.1f} MB (max RSS, {whose})")
    if args.json:
        print(json.dumps(figures))


def add_dkim(site_dir: Path, *, ed25519: bool) -> None:
    """A [dkim] table with keys made for this run (nothing is published anywhere)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ed
    from cryptography.hazmat.primitives.asymmetric import rsa

    def pem(key: Any) -> bytes:
        return key.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    (site_dir / "dkim").mkdir()
    (site_dir / "dkim" / "bench.pem").write_bytes(pem(rsa.generate_private_key(65537, 2048)))
    table = '\n[dkim]\nselector = "bench"\ndomain = "example.org"\nkey_file = "dkim/bench.pem"\n'
    if ed25519:
        (site_dir / "dkim" / "bench-ed25519.pem").write_bytes(pem(ed.Ed25519PrivateKey.generate()))
        table += 'ed25519_selector = "benche"\ned25519_key_file = "dkim/bench-ed25519.pem"\n'
    with (site_dir / "newsletter.toml").open("a", encoding="utf-8") as config:
        config.write(table)


def rsa_rate(seconds: float = 3.0) -> float:
    """RSA-2048 PKCS#1 v1.5 signatures a second on one core: the physical limit for signed mail."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = rsa.generate_private_key(65537, 2048)
    digest, pkcs1, prehashed = (
        hashlib.sha256(b"bench").digest(),
        padding.PKCS1v15(),
        Prehashed(hashes.SHA256()),
    )
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            key.sign(digest, pkcs1, prehashed)
        count += 50
    return count / elapsed


def reset(db_url: str, edition_id: int) -> None:
    """Make the sent edition approved again with no deliveries, for another round."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM delivery WHERE edition_id = :e"), {"e": edition_id})
        connection.execute(
            text("UPDATE edition SET status = 'approved', sent_at = NULL WHERE id = :e"), {"e": edition_id}
        )
    engine.dispose()


def send_here(
    args: argparse.Namespace, site: Any, renderer: Any, settings: Any, edition_id: int
) -> dict[str, float]:
    """Send the edition with the delivery runner in this process: its rate and CPU per message."""
    from newsletter.delivery.runner import send_edition
    from newsletter.delivery.transports import open_transport

    transport = open_transport(settings)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = send_edition(site, renderer, transport, edition_id, actor="bench")
    ours = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if result.report.sent != args.recipients:
        raise SystemExit(f"sent {result.report.sent} of {args.recipients}: {result.report.errors[:3]}")
    return {"ours": args.recipients / ours, "cpu_us": cpu / args.recipients * 1e6}


class CpuWatch:
    """The CPU seconds processes of some names spend while it runs (smtp-sink, PostgreSQL's).

    They share the cores with the workers, so what they use the workers cannot. Read
    from /proc every fifth of a second, per process: PostgreSQL's backends start and end
    with the workers' connections, so a reading at the start and one at the end alone
    would miss them (a process that ends loses at most its last fifth of a second).
    """

    def __init__(self, *names: str) -> None:
        self.names = names
        self._first: dict[int, int] = {}
        self._last: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _read(self) -> None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue  # gone meanwhile
            name = text[text.index("(") + 1 : text.rindex(")")]
            if name in self.names:
                fields = text.rsplit(")", 1)[1].split()
                pid, ticks = int(stat.parent.name), int(fields[11]) + int(fields[12])
                self._first.setdefault(pid, 0 if self._started else ticks)
                self._last[pid] = (name, ticks)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self._read()

    def __enter__(self) -> "CpuWatch":
        self._started = False
        self._read()  # what each process had spent before
        self._started = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()

    def seconds(self, name: str) -> float:
        ticks = sum(last - self._first[pid] for pid, (n, last) in self._last.items() if n == name)
        return ticks / os.sysconf("SC_CLK_TCK")


def run_workers(
    args: argparse.Namespace, site: Any, edition_id: int, command: list[str], env: dict[str, str]
) -> dict[str, float]:
    """Queue the edition as `editions send` does, then time N worker processes sharing it."""
    from newsletter.core.models import Edition, EditionStatus
    from newsletter.delivery import outbox

    with site.transaction() as session:
        edition = session.get(Edition, edition_id)
        outbox.enqueue(session, edition)
        edition.status = EditionStatus.SENDING
        session.add(edition)
    with ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(args.workers)]
        with CpuWatch("smtp-sink", "postgres") as watch:
            started = time.perf_counter()
            workers = [
                subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
                for log in logs
            ]
            # wait4, not Popen.wait: the resource use of each worker alone.
            usages = [os.wait4(worker.pid, 0) for worker in workers]
            elapsed = time.perf_counter() - started
        others = {name: watch.seconds(name) for name in watch.names}
        sent = 0
        for worker, (_, status, _), log in zip(workers, usages, logs, strict=True):
            worker.returncode = os.waitstatus_to_exitcode(status)
            log.seek(0)
            output = log.read().decode(errors="replace")
            if worker.returncode != 0:
                raise SystemExit(f"a worker failed (exit {worker.returncode}): {output.strip()}")
            sent += int(output.split("worker done: sent ")[1].split(",")[0])
    if sent != args.recipients:
        raise SystemExit(f"the workers sent {sent} of {args.recipients}")
    cpu = sum(usage.ru_utime + usage.ru_stime for _, _, usage in usages)
    return {
        "ours": args.recipients / elapsed,
        "cpu_us": cpu / args.recipients * 1e6,
        "peak_mb": max(usage.ru_maxrss for _, _, usage in usages) / 1024,
        "sink_cpu_us": others["smtp-sink"] / args.recipients * 1e6,
        "database_cpu_us": others["postgres"] / args.recipients * 1e6,
        "cores_busy": (cpu + sum(others.values())) / elapsed,
    }


def smtp_source(recipients: int, sessions: int, size: int, port: int) -> dict[str, float]:
    """smtp-source's rate with a new session per message, and with its sessions reused (-d)."""
    rates = {}
    for key, extra in (("source", []), ("source_reused", ["-d"])):
        started = time.perf_counter()
        subprocess.run(
            [SOURCE, *extra, "-m", str(recipients), "-s", str(sessions), "-l", str(size),
             "-f", "news@example.org", "-t", "member@example.org", f"127.0.0.1:{port}"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rates[key] = recipients / (time.perf_counter() - started)
    return rates


if __name__ == "__main__":
    main()
