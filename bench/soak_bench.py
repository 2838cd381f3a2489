"""Soak: sign-ups at a steady rate for a long while, with a big send every few minutes.

    .venv/bin/python bench/soak_bench.py                                   # 30 min, SQLite
    .venv/bin/python bench/soak_bench.py --connections 24 --send-cpu 1     # the sends on a core of their own
    .venv/bin/python bench/soak_bench.py --minutes 3 --members 20000 --send-every 1
    .venv/bin/python bench/soak_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --workers 2 --rate 150 --connections 24 --prefill-keys 1000000

A site in a temp folder with N members in one group, a real ``newsletter serve`` (with
``--workers``), Postfix's smtp-sink as the relay. An open-loop generator (raw asyncio
streams on uvloop, so it costs little of the two cores) starts ``--rate`` visitors a
second, each from an address of its own (the server trusts this process as its proxy);
a visitor GETs the sign-up form and POSTs a new address, with a 10 s deadline. Every
``--send-every`` minutes an edition goes to the whole group (``editions send`` over
SMTP); the first send runs before any load, as the rate alone, and another once the
load is over, as a second reading of it. Each minute prints p50/p95/p99 of the
visitors' whole visit, errors and timeouts, the serve processes' memory, and the cores
used by the serve processes, PostgreSQL, the generator and the whole machine. Each
send prints its rate, its own CPU per message (which tells a machine that got slower
from a send that got less of its core), the cores it, the serve processes and the sink
used, and how often the kernel took its core; the end prints the sends' rates against
both readings alone. On a PostgreSQL server whose autovacuum is off it vacuums before
each send and, each minute, analyzes the tables autovacuum would. Needs Debian's
postfix package for /usr/sbin/smtp-sink.
"""

import argparse
import asyncio
import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402
from ratelimit_bench import fill  # noqa: E402
from send_bench import database, free_port, machine, run_sink  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from workspace_bench import make_site, newsletter, populate  # noqa: E402

from newsletter.web.ratelimit import WINDOW  # noqa: E402

KEY = "bench-signing-key-3f8a1c9e2b7d4a60"
DEADLINE = 10.0
SLOW = 0.3  # the p99 target, in seconds
CSRF = re.compile(rb'name="csrf" value="([^"]+)"')
COOKIE = re.compile(rb"set-cookie: (nl_csrf=[^;]+)", re.IGNORECASE)


async def visit(port: int, number: int) -> tuple[float, str]:
    """One visitor: the form, then the sign-up; (seconds, "ok" | status | "timeout" | "error")."""
    started = time.perf_counter()
    client = f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"

    async def request(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer

    head = f"Host: bench\r\nX-Forwarded-For: {client}\r\nConnection: close\r\n"
    try:
        async with asyncio.timeout(DEADLINE):
            form = await request(f"GET /subscribe/cepiug HTTP/1.1\r\n{head}\r\n".encode())
            token, cookie = CSRF.search(form), COOKIE.search(form)
            if token is None or cookie is None:
                return time.perf_counter() - started, form[9:12].decode() or "error"
            body = f"csrf={token.group(1).decode()}&email=soak{number}%40example.org&consent=yes".encode()
            post = (
                f"POST /subscribe/cepiug HTTP/1.1\r\n{head}Cookie: {cookie.group(1).decode()}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            answer = await request(post.encode() + body)
    except TimeoutError:
        return time.perf_counter() - started, "timeout"
    except OSError:
        return time.perf_counter() - started, "error"
    status = answer[9:12].decode()
    return time.perf_counter() - started, "ok" if status == "200" else status


def serve_pids(server: subprocess.Popen[bytes]) -> list[int]:
    """The serve process and its children (the workers)."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    if not children.exists():
        return [server.pid]
    return [server.pid, *(int(p) for p in children.read_text().split())]


def rss_mb(server: subprocess.Popen[bytes]) -> float:
    """Resident memory of the serve process and its children (the workers)."""
    total = 0
    for pid in serve_pids(server):
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmRSS:"))
            total += int(line.split()[1])
    return total / 1024


def process_seconds(pid: int | str) -> float:
    """CPU seconds (user and system) the process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU seconds so far of the serve processes (those gone count 0)."""
    return sum(process_seconds(pid) for pid in serve_pids(server))


def postgres_seconds() -> dict[str, float]:
    """CPU seconds so far of each PostgreSQL process on this machine, by pid."""
    postgres: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name.startswith("postgres"):
                postgres[entry.name] = process_seconds(entry.name)
    return postgres


def cpu_seconds(server: subprocess.Popen[bytes]) -> tuple[float, dict[str, float], float]:
    """CPU seconds so far of the serve processes, of each PostgreSQL process, and of the machine.

    Read from /proc; the differences between two readings a minute apart are the
    cores each used in that minute (the machine's: every busy core, the generator's,
    the sends' and the sink's included). A PostgreSQL backend that ended within the
    minute (a send's) is missing its last part: that column is a little low.
    """
    return serve_seconds(server), postgres_seconds(), busy_seconds()


def busy_seconds() -> float:
    """The CPU seconds the whole machine has been busy (not idle, not waiting for the disk)."""
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (sum(int(x) for x in busy) - int(busy[3]) - int(busy[4])) / os.sysconf("SC_CLK_TCK")


ALL_TABLES = "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()"
# The tables autovacuum's launcher would analyze now (PostgreSQL's documented threshold).
CHANGED_TABLES = (
    "SELECT quote_ident(s.relname) FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
    "WHERE s.schemaname = current_schema() AND s.n_mod_since_analyze > "
    "current_setting('autovacuum_analyze_threshold')::float "
    "+ current_setting('autovacuum_analyze_scale_factor')::float * greatest(c.reltuples, 0)"
)


def as_autovacuum_would(db_url: str, *, analyze_only: bool = False) -> bool:
    """On a PostgreSQL server whose autovacuum is off, do what autovacuum would to the bench's tables.

    Each send leaves two dead row versions per delivery; with autovacuum off (as on the
    machines these figures were taken on) nothing reclaims them, every send after the
    first works on a more bloated table, and a share "of its speed alone" would compare
    a fresh table with a bloated one: ``VACUUM (ANALYZE)`` runs before each send,
    untimed. And nothing re-analyzes a growing table, so the server's connections keep
    foreign-key checks planned while it was nearly empty (docs/performance.md): an
    ``ANALYZE`` runs each minute of the load. Both as autovacuum would do in the
    background on a server configured as usual. With ``analyze_only`` (each minute),
    only ``ANALYZE`` and only of the tables autovacuum would pick: those changed by more
    than its threshold since their last analysis (50 rows plus a tenth of the table, by
    the server's own settings), so that a minute's ``ANALYZE`` does not make every
    connection replan every statement. True if it ran.
    """
    if not db_url.startswith("postgresql"):
        return False
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if connection.exec_driver_sql("SHOW autovacuum").scalar_one() == "on":
                return False
            tables = (
                connection.exec_driver_sql(CHANGED_TABLES if analyze_only else ALL_TABLES).scalars().all()
            )
            command = "ANALYZE" if analyze_only else "VACUUM (ANALYZE)"
            if tables:
                connection.exec_driver_sql(f"{command} {', '.join(tables)}")
            return True
    finally:
        engine.dispose()


class Sent(NamedTuple):
    """What one send took: its rate, and who used the cores meanwhile."""

    rate: float  # messages a second
    cores: float  # the whole machine's busy cores
    own: float  # the send process's own CPU (its DKIM threads included), in cores
    serve: float  # the serve processes', in cores
    sink: float  # smtp-sink's, in cores
    preempted: int  # times the kernel took a core from the send process (involuntary switches)
    waited: int  # times the send process gave its core up to wait (voluntary switches)

    def line(self) -> str:
        # The send's own CPU per message tells a machine that got slower or faster (as
        # these virtual machines do, by a third) from a send that got less of its core.
        cost = self.own / self.rate * 1e6 if self.rate else 0.0
        return (
            f"{self.rate:.0f} msg/s, {cost:.0f} µs of CPU a message; "
            f"cores: machine {self.cores:.2f}, send {self.own:.2f}, "
            f"serve {self.serve:.2f}, sink {self.sink:.2f}; the send preempted {self.preempted} "
            f"times, waited {self.waited} times"
        )


def send(
    site: Path,
    db_url: str,
    sink_port: int,
    sink: subprocess.Popen[bytes],
    server: subprocess.Popen[bytes],
    nice: int = 0,
    cpu: int | None = None,
) -> Sent:
    """One edition to the whole group over SMTP: its rate, and the cores used meanwhile.

    With ``nice`` the send runs at that lower CPU priority, as a worker whose systemd
    unit says ``Nice=``: the web pages get the cores first. With ``cpu`` it runs on
    that core only, as a unit with ``CPUAffinity=`` would (docs/operations.md). The
    send process's own CPU and context switches come from ``getrusage`` of the children
    this process reaped during the send, which is the send alone: nothing else it
    starts ends meanwhile.
    """
    if as_autovacuum_would(db_url):
        print("autovacuum is off: VACUUM (ANALYZE) before the send", flush=True)
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": KEY, "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{sink_port}"}
    command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url]
    # Each send is a new edition with a new item (an item goes to a group once).
    title = f"Soak {time.time_ns()}"
    item = ["items", "add", "--title", title, "--url", f"https://example.org/{title[5:]}", "--group", "dach"]
    subprocess.run([*command, *item, "--approve"], env=env, check=True, capture_output=True)
    built = subprocess.run([*command, "editions", "build", "dach", "--json"], env=env, capture_output=True)
    edition = json.loads(built.stdout)["id"]
    subprocess.run([*command, "editions", "approve", str(edition)], env=env, check=True, capture_output=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, busy = time.perf_counter(), busy_seconds()
    serve, sunk = serve_seconds(server), process_seconds(sink.pid)
    done = subprocess.run(
        ["nice", "-n", str(nice)] * bool(nice)
        + ["taskset", "--cpu-list", str(cpu)] * (cpu is not None)
        + [*command, "--transport", "smtp", "editions", "send", str(edition)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = re.search(r"sent (\d+)", done.stdout)
    return Sent(
        rate=int(sent.group(1)) / seconds if sent else 0.0,
        cores=(busy_seconds() - busy) / seconds,
        own=(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / seconds,
        serve=(serve_seconds(server) - serve) / seconds,
        sink=(process_seconds(sink.pid) - sunk) / seconds,
        preempted=after.ru_nivcsw - children.ru_nivcsw,
        waited=after.ru_nvcsw - children.ru_nvcsw,
    )


async def soak(
    args: argparse.Namespace,
    site: Path,
    db_url: str,
    port: int,
    sink_port: int,
    sink: subprocess.Popen[bytes],
    server: subprocess.Popen[bytes],
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    sending = functools.partial(send, site, db_url, sink_port, sink, server, cpu=args.send_cpu)
    alone = await loop.run_in_executor(None, sending)
    print(f"send alone: {alone.line()}", flush=True)
    results: list[tuple[float, float, str]] = []
    sends: list[asyncio.Future[Sent]] = []
    analyses: list[asyncio.Future[bool]] = []
    visits: set[asyncio.Task[None]] = set()
    start, wall_start = time.perf_counter(), time.time()
    number = 0

    async def one(n: int) -> None:
        seconds, outcome = await visit(port, n)
        results.append((time.perf_counter() - start, seconds, outcome))

    def report(minute: int, cores: str) -> None:
        """One line for the visits that started in ``minute``, and the cores used in it."""
        rows = [(s, o) for at, s, o in results if minute * 60 <= at < (minute + 1) * 60]
        if not rows:
            return
        times = sorted(s * 1000 for s, _ in rows)
        q = statistics.quantiles(times, n=100) if len(times) > 1 else [times[0]] * 99
        bad = {o: sum(1 for _, x in rows if x == o) for o in {o for _, o in rows} - {"ok"}}
        clock = time.strftime("%H:%M:%S", time.gmtime(wall_start + minute * 60))
        print(
            f"minute {minute + 1} (from {clock} UTC): {len(rows)} visits, p50 {q[49]:.0f} ms, "
            f"p95 {q[94]:.0f} ms, p99 {q[98]:.0f} ms, not ok {bad or 0}, "
            f"serve {rss_mb(server):.0f} MB{cores}",
            flush=True,
        )
        if q[98] > SLOW * 1000:
            # When the slow visits began, to the second, to set beside the server's logs.
            seconds = Counter(
                int(at) for at, s, _ in results if minute * 60 <= at < (minute + 1) * 60 and s > SLOW
            )
            worst = ", ".join(
                f"{time.strftime('%H:%M:%S', time.gmtime(wall_start + second))} ({count})"
                for second, count in sorted(seconds.most_common(5))
            )
            print(f"  visits over {SLOW * 1000:.0f} ms began most at {worst}", flush=True)

    minute = 0
    cpu, cpu_at, generator_cpu = cpu_seconds(server), 0.0, time.process_time()
    while (elapsed := time.perf_counter() - start) < args.minutes * 60:
        while number < elapsed * args.rate:
            task = asyncio.create_task(one(number))
            visits.add(task)
            task.add_done_callback(visits.discard)
            number += 1
        if (
            elapsed >= (len(sends) + 1) * args.send_every * 60 - 30
            and len(sends) < args.minutes // args.send_every
        ):
            sends.append(loop.run_in_executor(None, sending, args.send_nice))
            sends[-1].add_done_callback(lambda f: print(f"send under load: {f.result().line()}", flush=True))
        if elapsed >= (minute + 1) * 60:
            now = cpu_seconds(server)
            seconds = elapsed - cpu_at
            serve, busy = (now[0] - cpu[0]) / seconds, (now[2] - cpu[2]) / seconds
            postgres = sum(used - cpu[1].get(pid, 0.0) for pid, used in now[1].items()) / seconds
            generator = (time.process_time() - generator_cpu) / seconds
            cores = f"; cores: serve {serve:.2f}"
            cores += f", postgresql {postgres:.2f}" if db_url.startswith("postgresql") else ""
            report(minute, f"{cores}, generator {generator:.2f}, machine {busy:.2f}")
            analyze = functools.partial(as_autovacuum_would, db_url, analyze_only=True)
            analyses.append(loop.run_in_executor(None, analyze))
            cpu, cpu_at, generator_cpu = now, elapsed, time.process_time()
            minute += 1
        await asyncio.sleep(0.005)
    await asyncio.gather(*visits, *analyses)
    report(minute, "")
    done = [await s for s in sends]
    rates = [d.rate for d in done]
    # The yardstick once more, the load over: these machines' speed drifts by a third
    # within a run, and a share of one reading alone can say 55 % or 125 % for that.
    again = await loop.run_in_executor(None, sending)
    print(f"send alone again, the load over: {again.line()}", flush=True)
    outcomes = [o for _, _, o in results]
    return {
        "visits": len(results),
        "ok": outcomes.count("ok"),
        "timeouts": outcomes.count("timeout"),
        "send_alone_msgs_per_s": round(alone.rate, 1),
        "sends_under_load_msgs_per_s": [round(r, 1) for r in rates],
        "share_of_alone": [round(r / alone.rate, 2) for r in rates] if alone.rate else [],
        "share_of_alone_again": [round(r / again.rate, 2) for r in rates] if again.rate else [],
        "send_alone": alone._asdict(),
        "send_alone_again": again._asdict(),
        "sends_under_load": [d._asdict() for d in done],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=50, help="sign-ups a second")
    parser.add_argument("--send-every", type=float, default=10, help="minutes between sends")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4, help="the sends' SMTP sessions")
    parser.add_argument(
        "--prefill-keys",
        type=int,
        default=0,
        help="rate-limit keys of the previous hour in the database store (--workers 2 or more)",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--send-nice", type=int, default=0, help="run the sends under load at this niceness (0-19)"
    )
    parser.add_argument(
        "--send-cpu",
        type=int,
        default=None,
        help="give the sends this core of their own and run everything else (serve, the sink, "
        "the generator) on the others, as the units in docs/operations.md do on a small machine",
    )
    parser.add_argument(
        "--serve-nice",
        type=int,
        default=0,
        help="run the serve processes at this niceness (0-19), as a unit with Nice= would",
    )
    args = parser.parse_args()
    if args.send_cpu is not None:
        if args.send_cpu not in os.sched_getaffinity(0) or len(os.sched_getaffinity(0)) < 2:
            parser.error(f"--send-cpu {args.send_cpu}: not one of two or more cores this process may use")
        # Inherited by every process this one starts; the sends are moved with taskset.
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {args.send_cpu})
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        site = make_site(folder)
        config = site / "newsletter.toml"
        text = config.read_text().replace("[delivery]\n", f"[delivery]\nconnections = {args.connections}\n")
        config.write_text(text + '\n[web]\ntrusted_proxies = ["127.0.0.1"]\n')
        with database(args.database_url, folder) as db_url:
            newsletter(site, db_url, "migrate")
            newsletter(site, db_url, "status")  # opening the site writes its groups
            populate(db_url, "dach", args.members)
            if args.prefill_keys:
                # The database store of a server that has been up for an hour or more:
                # keys of the previous hour, swept once the clock's hour turns.
                engine = create_engine(db_url)
                fill(engine, args.prefill_keys, int(time.time() // WINDOW) - 1, "prefill")
                engine.dispose()
            sink_port, port = free_port(), free_port()
            sink = run_sink(sink_port)
            env = {**os.environ, "NEWSLETTER_SECRET_KEY": KEY}
            command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url]
            log = (folder / "serve.log").open("wb")
            server = subprocess.Popen(
                ["nice", "-n", str(args.serve_nice)] * bool(args.serve_nice)
                + [*command, "serve", "--port", str(port), "--workers", str(args.workers)],
                env=env, stdout=log, stderr=log,
            )  # fmt: skip
            try:
                time.sleep(3)  # the server's start-up, before any visitor (a benchmark, not a test)
                # uvloop, as serve uses: the generator's own CPU is taken from the two cores.
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    figures = runner.run(soak(args, site, db_url, port, sink_port, sink, server))
            finally:
                server.terminate()
                server.wait(timeout=60)
                sink.terminate()
                sink.wait()
    figures |= {
        "database": "postgresql" if args.database_url else "sqlite",
        "rate": args.rate,
        "minutes": args.minutes,
        "members": args.members,
        "workers": args.workers,
        "connections": args.connections,
        "prefill_keys": args.prefill_keys,
        "send_nice": args.send_nice,
        "serve_nice": args.serve_nice,
        "send_cpu": args.send_cpu,
        "machine": machine(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
