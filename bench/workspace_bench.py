"""Workspace speed: the subscriber list of a group with 100,000 members, over HTTP.

    .venv/bin/python bench/workspace_bench.py                       # SQLite, 100,000 members
    .venv/bin/python bench/workspace_bench.py --members 20000 --runs 30
    .venv/bin/python bench/workspace_bench.py \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    NEWSLETTER_TEST_POSTGRES_URL=... .venv/bin/python bench/workspace_bench.py --both

It builds the example site in a temp folder with two custom fields, fills the group
``uk`` with N members (names with accents, an organisation and a country each, 90 %
active and the rest unsubscribed, bounced or pending), starts ``newsletter serve``
(uvicorn, one process) on 127.0.0.1, signs an editor in (a session made in the
database) and times each page, as a browser asks for it, ``--runs`` times after three
warm-up requests: the first page, a search matching many members and one matching a
single member (a substring scan of the whole group), a status filter, a field filter,
and the last page (a cursor near the end of the address order). It prints p50 and p95
in milliseconds per page and the machine. The promise is p95 under 200 ms at 100,000
members. On PostgreSQL the bench works in a schema of its own, dropped at the end.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-signing-key-3f8a1c9e2b7d4a60"
# This checkout's package, whatever the environment has installed.
sys.path.insert(0, str(REPO))

# The sibling bench script (this folder is on sys.path when a script in it runs).
from send_bench import database, free_port, machine  # noqa: E402

FIELDS = """
[fields.organisation]
label = "Organisation"

[fields.country]
label = "Country"
type = "choice"
choices = ["GB", "DE", "FR", "CH", "AT", "JP", "US"]
"""
ORGANISATIONS = ["EPO", "WIPO", "JPO", "USPTO", "UKIPO", "DPMA", "Siemens AG", "Novartis", "Philips"]
NAMES = ["Jürgen Müller", "Anna Keller", "Łukasz Wróbel", "Ada Lovelace", "Grace Hopper", "José García"]
EDITOR = "editor@example.org"
BATCH = 5000


def make_site(folder: Path) -> Path:
    site = folder / "site"
    site.mkdir()
    for part in ("newsletter.toml", "templates", "samples"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, site / part)
        elif source.is_file():
            shutil.copy(source, site / part)
    config = site / "newsletter.toml"
    config.write_text(config.read_text(encoding="utf-8") + FIELDS, encoding="utf-8")
    return site


def newsletter(site: Path, db_url: str, *args: str) -> None:
    command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url, *args]
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "NEWSLETTER_SECRET_KEY": KEY}
    )


def populate(db_url: str, slug: str, count: int) -> None:
    """N subscribers with names and fields, and their memberships of ``slug``, in batches."""
    from sqlalchemy import create_engine, insert, text

    from newsletter.core.models import Subscriber, search_key

    engine = create_engine(db_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        group_id = connection.execute(
            text('SELECT id FROM "group" WHERE slug = :s'), {"s": slug}
        ).scalar_one()
        for start in range(0, count, BATCH):
            rows = []
            for i in range(start, min(start + BATCH, count)):
                email = f"member{i:06d}@example{i % 50}.org"
                values = {"organisation": ORGANISATIONS[i % 9], "country": ["GB", "DE", "FR", "CH"][i % 4]}
                person = Subscriber(
                    email=email, email_key=email, name=f"{NAMES[i % 6]} {i}", field_values=values
                )
                rows.append(
                    {
                        "email": email,
                        "email_key": email,
                        "name": person.name,
                        "language": ["de", "en", "fr"][i % 3],
                        "field_values": values,
                        "search_key": search_key(person),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            connection.execute(insert(Subscriber), rows)
        connection.execute(
            text(
                "INSERT INTO membership (subscriber_id, group_id, status, source, status_changed_at, "
                "bounce_score, created_at) SELECT id, :g, CASE WHEN id % 100 < 90 THEN 'active' "
                "WHEN id % 100 < 95 THEN 'unsubscribed' WHEN id % 100 < 98 THEN 'bounced' "
                "ELSE 'pending' END, 'bench', :now, 0, :now FROM subscriber"
            ),
            {"g": group_id, "now": now},
        )
        if connection.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))
    engine.dispose()


def signed_in(site: Path, db_url: str) -> tuple[str, int]:
    """A session cookie for the editor, and the id of the member near the end of the address order."""
    from sqlalchemy import select
    from sqlmodel import col

    from newsletter.accounts import sessions, users
    from newsletter.core.models import Subscriber
    from newsletter.core.settings import load_settings
    from newsletter.core.site import Site

    settings = load_settings(site, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": db_url})
    opened = Site.open(settings)
    try:
        with opened.transaction() as session:
            user = users.get(session, EDITOR)
            secret = sessions.start(
                session,
                user.id or 0,
                now=datetime.now(UTC),
                idle=timedelta(hours=2),
                user_agent="bench",
                ip=None,
            )
            late = session.execute(
                select(col(Subscriber.id)).order_by(col(Subscriber.email_key).desc()).offset(60).limit(1)
            ).scalar_one()
    finally:
        opened.close()
    return secret, int(late)


@contextmanager
def serving(site: Path, db_url: str, log: Path) -> Iterator[str]:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "NEWSLETTER_SECRET_KEY": KEY, "NEWSLETTER_BASE_URL": base}
    command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"newsletter serve did not answer: {log.read_text()}")
                try:
                    if httpx.get(f"{base}/", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=10)


def measure(base: str, cookie: str, pages: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    import httpx

    figures = {}
    with httpx.Client(base_url=base, cookies={"nl_session": cookie}, timeout=30) as client:
        for name, path in pages.items():
            timings = []
            for attempt in range(runs + 3):
                started = time.perf_counter()
                response = client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or "<table" not in response.text:
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
                if attempt >= 3:
                    timings.append(elapsed)
            cuts = statistics.quantiles(timings, n=100, method="inclusive")
            figures[name] = (statistics.median(timings), cuts[94])
    return figures


def bench(url: str | None, members: int, runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="workspace-bench-"))
    try:
        with database(url, folder) as db_url:
            site = make_site(folder)
            newsletter(site, db_url, "migrate")
            newsletter(site, db_url, "users", "add", EDITOR, "--role", "editor", "--group", "uk")
            started = time.perf_counter()
            populate(db_url, "uk", members)
            filled = time.perf_counter() - started
            cookie, late = signed_in(site, db_url)
            base_path = "/admin/groups/uk/subscribers"
            pages = {
                "first page": base_path,
                "search, many matches ('müller')": f"{base_path}?q=m%C3%BCller",
                "search, one match": f"{base_path}?q=member0{members // 2:05d}%40",
                "status filter (bounced)": f"{base_path}?status=bounced",
                "field filter (country DE)": f"{base_path}?field.country=DE",
                "last page (cursor)": f"{base_path}?after={late}",
            }
            with serving(site, db_url, folder / "serve.log") as base:
                figures = measure(base, cookie, pages, runs)
            engine = "PostgreSQL" if url else "SQLite"
            print(f"\n{engine}: {members:,} members in group uk (filled in {filled:.0f} s), {runs} runs each")
            print(f"{'page':<36} {'p50 ms':>8} {'p95 ms':>8}")
            for name, (p50, p95) in figures.items():
                print(f"{name:<36} {p50:8.1f} {p95:8.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--database-url",
        help="A PostgreSQL database to work in (a schema of its own); default: SQLite in a temp folder.",
    )
    parser.add_argument(
        "--both", action="store_true", help="SQLite, then PostgreSQL at $NEWSLETTER_TEST_POSTGRES_URL."
    )
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{machine()}, load average {load}")
    urls: list[Any] = [args.database_url]
    if args.both:
        urls = [None, os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")]
        if not urls[1]:
            raise SystemExit("--both needs NEWSLETTER_TEST_POSTGRES_URL")
    for url in urls:
        bench(url, args.members, args.runs)


if __name__ == "__main__":
    main()
