"""How long a first edition to 100,000 members takes to queue on a fresh PostgreSQL schema.

A fresh schema has no table statistics (nothing has run ANALYZE), which is where the
old anti-join plan went wrong. The benchmark makes a schema of its own, migrates it,
fills one group with N active members in SQL, and times ``outbox.enqueue`` for a first
edition, then again (nothing left to queue). It prints one JSON line; the schema is
dropped afterwards.

    python bench/enqueue_bench.py [--members 100000] [--database-url postgresql+psycopg://...]
"""

import argparse
import json
import os
import platform
import time
import uuid

import sqlalchemy as sa
from sqlmodel import Session

from newsletter.core.db import make_engine, migrate
from newsletter.core.models import Edition
from newsletter.delivery import outbox

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("NEWSLETTER_TEST_POSTGRES_URL", DEFAULT_URL))
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.database_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(f"{args.database_url}?options=-csearch_path%3D{schema}")
    try:
        migrate(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    'INSERT INTO "group" (slug, name, language, timezone, created_at) '
                    "VALUES ('g', 'G', 'en', 'UTC', now())"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO subscriber (email, email_key, created_at, updated_at) "
                    "SELECT 'm' || i || '@example.org', 'm' || i || '@example.org', now(), now() "
                    "FROM generate_series(1, :n) AS i"
                ),
                {"n": args.members},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO membership (subscriber_id, group_id, status, source, status_changed_at, "
                    "bounce_score, created_at) SELECT id, 1, 'active', '', now(), 0, now() FROM subscriber"
                )
            )
        with Session(engine) as session:
            edition = Edition(group_id=1, period_key="bench", subject="bench")
            session.add(edition)
            session.commit()
            started = time.perf_counter()
            queued = outbox.enqueue(session, edition)
            session.commit()
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = outbox.enqueue(session, edition)
            session.commit()
            second = time.perf_counter() - started
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    print(
        json.dumps(
            {
                "members": args.members,
                "queued": queued,
                "first_enqueue_s": round(first, 2),
                "again_queued": again,
                "again_s": round(second, 2),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            }
        )
    )


if __name__ == "__main__":
    main()
