"""A real `newsletter serve` for tests: uvicorn in its own process on a free port of 127.0.0.1."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_until
from tests.smtp_server import SmtpServer, free_port


@contextmanager
def serving(site: Path, db_url: str, log: Path, *, port: int | None = None, **env: str) -> Iterator[str]:
    """`newsletter serve` on the site and database, with this environment plus ``env``; its base URL.

    ``port``: the port to listen on (default: a free one). Its output goes to ``log``; a
    server that exits before it answers fails the test with that log.
    """
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:

            def answers() -> bool:
                if server.poll() is not None:
                    raise AssertionError(f"newsletter serve exited: {log.read_text()}")
                try:
                    return httpx.get(f"{base}/", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_until(answers), "newsletter serve did not answer"
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def over_smtp(monkeypatch: pytest.MonkeyPatch, smtp: SmtpServer, key: str) -> int:
    """Send through ``smtp`` with this signing key, with links to a port chosen now; that port.

    The links in the emails must lead to the server, whose port would be known only once it
    runs: the port is chosen first and given to both (``serving(..., port=...)``), on plain
    http (the workspace's session cookie then goes without ``Secure``).
    """
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp.url())
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", key)
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_BASE_URL", f"http://127.0.0.1:{port}")
    return port
