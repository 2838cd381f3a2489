"""The database rate-limit store across the turn of a window, in one process.

    .venv/bin/python bench/ratelimit_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ratelimit_bench.py --keys 100000                 # SQLite in a temp folder

Fills ``rate_limit`` with ``--keys`` keys in each of the last two windows (an hour of a
busy site's keys, a row each), then times ``--visits`` sign-ups' counts (two keys a
call, as a sign-up makes) in the current window, the same number just after the
window turns (when the keys of the window before the last are swept) and as many
again. A virtual clock turns the window; the figures are per ``hits`` call. The
counters are the ones ``serve --workers N`` uses (``web/ratelimit.py``).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from send_bench import database, machine  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402
from workspace_bench import make_site, newsletter  # noqa: E402

from newsletter.web.ratelimit import Counter  # noqa: E402


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill(engine: Engine, keys: int, window: int, prefix: str) -> None:
    """``keys`` rows of one hit each in ``window``, generated in the database."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :keys) "
                "INSERT INTO rate_limit (name, key, window_start, hits, previous_hits) "
                "SELECT 'sign-up:client', :prefix || '-' || i, :window, 1, 0 FROM n"
            ),
            {"keys": keys, "window": window, "prefix": prefix},
        )
        connection.execute(text("ANALYZE rate_limit"))


def timed(counter: Counter, visits: int, prefix: str) -> dict[str, float]:
    """Milliseconds per ``hits`` call for ``visits`` calls with new keys."""
    times = []
    for n in range(visits):
        client, address = f"{prefix}-client-{n}", f"{prefix}-{n}@example.org"
        started = time.perf_counter()
        counter.hits([("sign-up:client", client, 10), ("sign-up:address", address, 3)])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "mean_ms": round(statistics.mean(times), 2),
        "p99_ms": round(times[int(len(times) * 0.99)], 2),
        "max_ms": round(times[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keys", type=int, default=500_000, help="keys in each of the last two windows")
    parser.add_argument("--visits", type=int, default=3_000)
    args = parser.parse_args()

    from newsletter.core.db import make_engine
    from newsletter.web.ratelimit import WINDOW, DatabaseCounter

    with tempfile.TemporaryDirectory() as temp, database(args.database_url, Path(temp)) as db_url:
        newsletter(make_site(Path(temp)), db_url, "migrate")
        engine = make_engine(db_url)
        window = 1_000
        clock = Clock(window * WINDOW)
        fill(engine, args.keys, window - 1, "old")
        fill(engine, args.keys, window, "recent")
        counter = DatabaseCounter(engine, clock=clock)
        figures: dict[str, object] = {"current window": timed(counter, args.visits, "a")}
        clock.now += WINDOW
        figures["just after the turn"] = timed(counter, args.visits, "b")
        figures["after that"] = timed(counter, args.visits, "c")
        figures["rows left"] = len(counter)
        engine.dispose()
    figures |= {
        "database": "postgresql" if args.database_url else "sqlite",
        "keys_per_window": args.keys,
        "visits": args.visits,
        "machine": machine(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
