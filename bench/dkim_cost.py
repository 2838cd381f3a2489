"""What DKIM signing costs per message: median microseconds over N edition messages.

    .venv/bin/python bench/dkim_cost.py [N] [--bits 2048]

Builds N real messages with MessageFactory for the example site (each with its own
recipient, so nothing is cached), with an edition body of about 30 KB like the demo's,
then times ``DkimSigner.sign`` alone on each. The key is made here; nothing leaves the
machine. Prints the machine and library versions with the figure, for docs/performance.md.
"""

import argparse
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.core.settings import load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery.dkim import DkimSigner
from newsletter.delivery.message import MessageFactory, Recipient
from newsletter.editions.render import Marker, Rendered

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def edition_parts() -> Rendered:
    item = (
        "<tr><td style='padding:12px'><h2>PATENTSCOPE: new chemical structure search</h2>"
        "<p>WIPO has extended PATENTSCOPE with a search for chemical structures in full "
        "descriptions; result lists of up to 10,000 documents can now be exported as CSV.</p>"
        "<a href='https://www.wipo.int/patentscope/en/news/2026/news_0007.html'>Read more</a></td></tr>"
    )
    html = (
        f"<!doctype html><html lang='en'><body><p>{Marker.GREETING.value}</p><table>{item * 60}</table>"
        f"<a href='{Marker.UNSUBSCRIBE_URL.value}'>Unsubscribe</a> "
        f"<a href='{Marker.PREFERENCES_URL.value}'>Preferences</a></body></html>"
    )
    text = f"{Marker.GREETING.value}\n\n" + "PATENTSCOPE: new chemical structure search\n" * 60
    text += f"\nUnsubscribe: {Marker.UNSUBSCRIBE_URL.value}\n"
    return Rendered("en", "CEPIUG: patent information news", html, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=200, help="messages to sign (default 200)")
    parser.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=args.bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = DkimSigner("bench", "example.org", pem)
    settings = load_settings(REPO, env={"NEWSLETTER_SECRET_KEY": "bench-key"})
    factory = MessageFactory(
        settings,
        Signer("bench-key"),
        edition_id=1,
        group_id=1,
        group_slug="cepiug",
        group_name="CEPIUG",
        parts={"en": edition_parts()},
    )
    messages = [
        factory.build(Recipient(n, f"reader{n}@example.org", f"Reader {n}", "en")).data for n in range(args.n)
    ]
    signer.sign(messages[0])  # warm up
    timings = []
    for data in messages:
        start = time.perf_counter_ns()
        signer.sign(data)
        timings.append((time.perf_counter_ns() - start) / 1000)
    timings.sort()
    median = statistics.median(timings)
    print(
        f"DKIM rsa-sha256 {args.bits}-bit, relaxed/relaxed, {len(messages[0]) // 1000} KB messages, "
        f"N={args.n}: median {median:,.0f} us, p90 {timings[int(len(timings) * 0.9)]:,.0f} us "
        f"(about {1_000_000 / median:,.0f} messages/s on one core)"
    )
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, dkimpy {version('dkimpy')}"
    )


if __name__ == "__main__":
    main()
