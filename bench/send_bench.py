"""Delivery benchmark: one edition to N generated subscribers, against Postfix's smtp-sink.

    .venv/bin/python bench/send_bench.py                      # 10,000 recipients
    .venv/bin/python bench/send_bench.py --recipients 1000000 # takes a while

Needs Debian's ``postfix`` package for ``/usr/sbin/smtp-sink`` and ``/usr/sbin/smtp-source``
(the Postfix daemon is never started). In one run it builds a site in a temp folder
with N subscribers (inserted by one SQL statement), sends one edition through
``editions.send`` in this process to smtp-sink on 127.0.0.1, then times smtp-source
sending N messages of the same size with the same number of parallel sessions, twice:
in its default mode (a new session for each message) and with ``-d`` (each session
reused for many messages, as the engine does). Each round is repeated (``--rounds``,
the edition is reset to approved in between) and the medians are reported: rates,
their ratios, the CPU time per message, the median per-recipient build time and this
process's peak memory.
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
import time
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
        now = "2026-01-01 00:00:00.000000"
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
    args = parser.parse_args()
    for binary in (SINK, SOURCE):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: apt-get install postfix (the daemon need not run)")

    from newsletter import editions, splice
    from newsletter.message import MessageFactory, Recipient
    from newsletter.models import Group
    from newsletter.render import Renderer
    from newsletter.settings import load_settings
    from newsletter.site import Site
    from newsletter.tokens import Signer

    folder = Path(tempfile.mkdtemp(prefix="send-bench-"))
    port = free_port()
    site_dir = make_site(folder, args.connections)
    db_url = f"sqlite:///{folder / 'bench.db'}"
    env = {
        **os.environ,
        "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "NEWSLETTER_SECRET_KEY": KEY,
        "NEWSLETTER_DATABASE_URL": db_url,
    }
    settings = load_settings(site_dir, env=env)
    cli = [sys.executable, "-m", "newsletter", "--site", str(site_dir), "--database-url", db_url]
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
        for n in range(1, 20_001)
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

    sink = run_sink(port)
    rounds: list[dict[str, float]] = []
    try:
        for number in range(args.rounds):
            if number:
                reset(db_url, edition_id)
            rounds.append(measure_round(args, site, renderer, settings, edition_id, port, size))
            print(
                f"round {number + 1}: newsletter {rounds[-1]['ours']:.1f} msg/s, smtp-source "
                f"{rounds[-1]['source']:.1f} msg/s (new session per message), "
                f"{rounds[-1]['source_reused']:.1f} msg/s (-d, sessions reused)",
                flush=True,
            )
        memory = peak_mb()
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait()
        site.close()
        shutil.rmtree(folder, ignore_errors=True)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 1)

    ours, theirs, reused = median("ours"), median("source"), median("source_reused")
    figures = {
        "recipients": args.recipients,
        "sessions": args.connections,
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
    print(f"machine:             {figures['machine']}")
    print(f"recipients:          {args.recipients} over {args.connections} sessions, {size} bytes each")
    print(f"newsletter send:     {ours} msg/s (median of {args.rounds}; rendering and queueing included)")
    print(f"send CPU:            {figures['send_cpu_us_per_message']} us per message (user + system)")
    print(f"smtp-source:         {theirs} msg/s, {args.connections} in parallel, a new session per message")
    print(f"ratio:               {figures['ratio']:.1%} of smtp-source")
    print(f"smtp-source -d:      {reused} msg/s, {args.connections} sessions reused for all messages")
    print(f"ratio:               {figures['ratio_reused']:.1%} of smtp-source -d")
    print(
        f"build per recipient: {build_us:.1f} us median (email.message: {figures['slow_path_us_median']} us)"
    )
    print(f"peak memory:         {memory:.1f} MB (max RSS of this process)")
    if args.json:
        print(json.dumps(figures))


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


def measure_round(
    args: argparse.Namespace, site: Any, renderer: Any, settings: Any, edition_id: int, port: int, size: int
) -> dict[str, float]:
    """One send of the edition, then smtp-source both ways; rates in messages a second."""
    from newsletter import editions
    from newsletter.transports import open_transport

    transport = open_transport(settings)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = editions.send(site, renderer, transport, edition_id, actor="bench")
    ours = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if result.report.sent != args.recipients:
        raise SystemExit(f"sent {result.report.sent} of {args.recipients}: {result.report.errors[:3]}")
    rates = {"ours": args.recipients / ours, "cpu_us": cpu / args.recipients * 1e6}
    for key, extra in (("source", []), ("source_reused", ["-d"])):
        source_started = time.perf_counter()
        subprocess.run(
            [SOURCE, *extra, "-m", str(args.recipients), "-s", str(args.connections), "-l", str(size),
             "-f", "news@example.org", "-t", "member@example.org", f"127.0.0.1:{port}"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        rates[key] = args.recipients / (time.perf_counter() - source_started)
    return rates


if __name__ == "__main__":
    main()
