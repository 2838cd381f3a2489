"""Rate limits on the wire: how fast messages reach each relay and each recipient domain.

    .venv/bin/python bench/rate_bench.py
    .venv/bin/python bench/rate_bench.py --recipients 140 --rate 15 --backup-rate 10 --domain-rate 2

The tests prove the pacing on a virtual clock (``tests/test_rate_limits.py``); this
script measures it in real time, which a test must not do. It builds the example site
in a temp folder with N generated members of ``dach`` spread over seven domains, and
sends one edition twice with ``newsletter editions send`` to aiosmtpd servers on
127.0.0.1 (the one in ``tests/smtp_server.py``):

1. through two relays (``[delivery] rate`` and a ``[[relays]]`` backup with its own
   rate), reporting per relay the messages it took and the rate they arrived at;
2. through one unlimited relay with ``domain_rate``, reporting per domain.

A token bucket starts full, so the first ``burst`` (= rate) messages may arrive at
once; after them a relay or domain may not go faster than its rate. The measured
rate is therefore (messages - burst) / (seconds from first to last arrival). The
script exits 1 if any measured rate is more than 5 % over its limit.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "rate-bench-signing-key-9c2e4f1a7b"
DOMAINS = 7
# Measured rates may exceed the limit by this much (timer granularity), no more.
TOLERANCE = 1.05
# This checkout's package and test helpers, whatever the environment has installed.
sys.path.insert(0, str(REPO))

from tests.smtp_server import Received, running_server  # noqa: E402


def make_site(folder: Path, recipients: int) -> Path:
    site = folder / "site"
    site.mkdir()
    for part in ("newsletter.toml", "templates", "samples"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, site / part)
        else:
            shutil.copy(source, site / part)
    rows = [f"member{n:06d}@example{n % DOMAINS}.org;Member {n};de" for n in range(recipients)]
    (site / "members.csv").write_text("email;name;language\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return site


def configure(site: Path, delivery: str, extra: str = "") -> None:
    """The example site's settings with this [delivery] section (and these sections appended)."""
    config = site / "newsletter.toml"
    text = (REPO / "newsletter.toml").read_text(encoding="utf-8")
    start = text.index("[delivery]")
    end = text.index("\n[", start + 1)
    config.write_text(text[:start] + "[delivery]\n" + delivery + text[end:] + extra, encoding="utf-8")


def measured(messages: list[Received], burst: float) -> dict[str, float]:
    """The messages, the seconds from the first to the last, and the rate after the burst."""
    times = sorted(m.at for m in messages)
    seconds = times[-1] - times[0] if times else 0.0
    paced = len(times) - burst
    rate = paced / seconds if paced > 0 and seconds > 0 else 0.0
    return {"messages": len(times), "seconds": round(seconds, 3), "rate": round(rate, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=70)
    parser.add_argument("--rate", type=float, default=15, help="[delivery] rate of the first relay")
    parser.add_argument("--backup-rate", type=float, default=10, help="rate of the [[relays]] backup")
    parser.add_argument("--connections", type=int, default=2, help="connections of each relay")
    parser.add_argument("--domain-rate", type=float, default=2, help="[delivery] domain_rate")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="rate-bench-"))
    rows: list[dict[str, object]] = []
    try:
        site = make_site(folder, args.recipients)
        env = {**os.environ, "NEWSLETTER_SECRET_KEY": KEY}
        db_url = f"sqlite:///{folder / 'bench.db'}"

        def newsletter(*words: str) -> str:
            command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url]
            done = subprocess.run([*command, *words], env=env, cwd=REPO, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"newsletter {' '.join(words)} failed:\n{done.stdout}{done.stderr}")
            return done.stdout

        newsletter("subscribers", "import", "dach", str(site / "members.csv"))
        newsletter(
            "items", "add", "--approve", "--file", str(site / "samples/items/2026-11-wipo-user-survey.md")
        )

        def edition() -> str:
            built = str(json.loads(newsletter("editions", "build", "dach", "--json"))["id"])
            newsletter("editions", "approve", built)
            return built

        # Two relays, each under its own rate.
        with running_server() as first, running_server() as backup:
            env |= {"NEWSLETTER_SMTP_URL": first.url(), "NEWSLETTER_SMTP_URL_BACKUP": backup.url()}
            configure(
                site,
                f'transport = "smtp"\nconnections = {args.connections}\nrate = {args.rate}\n',
                f'\n[[relays]]\nname = "backup"\nurl_env = "NEWSLETTER_SMTP_URL_BACKUP"\n'
                f"connections = {args.connections}\nrate = {args.backup_rate}\n",
            )
            newsletter("editions", "send", edition())
            for name, server, limit in (("default", first, args.rate), ("backup", backup, args.backup_rate)):
                rows.append({"limit of": f"relay {name}", "limit": limit, **measured(server.messages, limit)})

        # One relay without a limit; each recipient domain under domain_rate.
        with running_server() as relay:
            env["NEWSLETTER_SMTP_URL"] = relay.url()
            lanes = args.connections * 2
            configure(site, f'transport = "smtp"\nconnections = {lanes}\ndomain_rate = {args.domain_rate}\n')
            # The edition above was sent; a second one goes to the same members.
            newsletter("items", "add", "--approve", "--title", "Second", "--url", "https://example.org/2")
            newsletter("editions", "send", edition())
            by_domain: dict[str, list[Received]] = defaultdict(list)
            for message in relay.messages:
                by_domain[message.rcpt_tos[0].rpartition("@")[2]].append(message)
            for domain, messages in sorted(by_domain.items()):
                rows.append(
                    {
                        "limit of": f"domain {domain}",
                        "limit": args.domain_rate,
                        **measured(messages, args.domain_rate),
                    }
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"{'limit of':<22} {'limit/s':>8} {'messages':>9} {'seconds':>8} {'measured/s':>11}")
    over = []
    for row in rows:
        print(
            f"{row['limit of']!s:<22} {row['limit']!s:>8} {row['messages']!s:>9} "
            f"{row['seconds']!s:>8} {row['rate']!s:>11}"
        )
        if float(str(row["rate"])) > float(str(row["limit"])) * TOLERANCE:
            over.append(str(row["limit of"]))
    if args.json:
        print(json.dumps(rows, indent=2))
    if over:
        raise SystemExit(f"over the limit: {', '.join(over)}")


if __name__ == "__main__":
    main()
