"""A sign-up's own cost: CPU of this process and of PostgreSQL, and statements, per sign-up.

    .venv/bin/python bench/signup_bench.py                      # SQLite
    .venv/bin/python bench/signup_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What the sign-up form's POST does once its form is read, without HTTP: the rate limits
on the database store (as with ``serve --workers 2``) and the sign-up itself, through
the same ``SignUp`` object the web app uses, one after another in one thread, each for
a new address. After a warm-up (so that statements are compiled and prepared), it
reports per sign-up: this process's CPU time, PostgreSQL's (every ``postgres`` process
on the machine, so run it on an otherwise idle database server), the wall time, and the
statements sent through SQLAlchemy (a pool's ping, BEGIN and COMMIT are not among them).
The serve processes' CPU per visit under load is ``bench/soak_bench.py``'s to measure.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from send_bench import database, machine  # noqa: E402
from soak_bench import postgres_seconds  # noqa: E402
from sqlalchemy import event  # noqa: E402
from workspace_bench import KEY, make_site, newsletter  # noqa: E402


def run(site_dir: Path, db_url: str, count: int, warm_up: int) -> dict[str, Any]:
    from newsletter.core.settings import load_settings
    from newsletter.core.site import Site
    from newsletter.web.pages import Pages
    from newsletter.web.public.links import Links
    from newsletter.web.public.signup import SignUp
    from newsletter.web.ratelimit import open_counter
    from newsletter.web.security import RateLimits

    site = Site.open(
        load_settings(site_dir, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": db_url})
    )
    statements = 0

    def counted(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(site.engine, "before_cursor_execute", counted)
    try:
        counter = open_counter("database", site.engine, processes=2)
        signup = SignUp(Links(site, Pages(site.settings)), RateLimits(name="sign-up", counter=counter))

        def sign_up(n: int) -> None:
            client = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            assert signup._subscribe("cepiug", f"bench{n}@example.org", "", "en", "I agree", client)

        for n in range(warm_up):
            sign_up(n)
        statements = 0
        cpu, wall, postgres = time.process_time(), time.perf_counter(), sum(postgres_seconds().values())
        for n in range(warm_up, warm_up + count):
            sign_up(n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        postgres = sum(postgres_seconds().values()) - postgres
    finally:
        site.close()
    per = 1000 / count
    figures: dict[str, Any] = {
        "python_cpu_ms": round(cpu * per, 3),
        "wall_ms": round(wall * per, 3),
        "statements": round(statements / count, 2),
    }
    if db_url.startswith("postgresql"):
        figures["postgresql_cpu_ms"] = round(postgres * per, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sign-ups", type=int, default=3000)
    parser.add_argument("--warm-up", type=int, default=300)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        site_dir = make_site(folder)
        with database(args.database_url, folder) as db_url:
            newsletter(site_dir, db_url, "migrate")
            figures = run(site_dir, db_url, args.sign_ups, args.warm_up)
    figures |= {
        "database": "postgresql" if args.database_url else "sqlite",
        "sign_ups": args.sign_ups,
        "machine": machine(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
