"""Several processes sending one edition at once: every member gets exactly one copy.

Real processes of the CLI (``python -m newsletter``) send a 3,000-member edition to the
aiosmtpd server of ``tests/smtp_server.py`` on 127.0.0.1, on SQLite and on PostgreSQL.
The server holds every message at its final dot (its gate) until the test lets them
through, so that the processes are caught in the middle of the send, whatever the
machine's speed: no test here sleeps to wait for work or measures time.
"""

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, ClassVar

import pytest
from sqlmodel import select

from newsletter.core.models import Delivery
from tests.conftest import REPO, Cli, wait_until
from tests.smtp_server import SmtpServer, running_server
from tests.test_delivery_engine import KEY, approved_edition, arrived, bulk_members, database, status

# Long enough for a loaded machine; the conditions usually hold within a second or two.
DEADLINE = 120.0


def eventually(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Wait until ``condition`` holds; fail saying ``what`` did not happen."""
    if not wait_until(condition, timeout):
        raise AssertionError(f"{what} did not happen within {timeout:g} s")


class Process:
    """``newsletter --transport smtp ARGS`` in a process of its own, its output read as it comes."""

    # Every process started, so that a failing test leaves none running.
    started: ClassVar[list["Process"]] = []

    def __init__(self, cli: Cli, server: SmtpServer, *args: str, site_relay: bool = False) -> None:
        """``site_relay``: the relay is the site's ``[smtp]`` table, not NEWSLETTER_SMTP_URL."""
        env = {**os.environ, "NEWSLETTER_SMTP_URL": server.url(), "NEWSLETTER_SECRET_KEY": KEY}
        if site_relay:
            del env["NEWSLETTER_SMTP_URL"]
        command = [
            sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url,
            "--transport", "smtp", *args,
        ]  # fmt: skip
        self.popen = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()
        Process.started.append(self)

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def finish(self) -> int:
        """Wait for the process to end (within the deadline); its exit status."""
        code = self.popen.wait(timeout=DEADLINE)
        for reader in self._readers:
            reader.join(timeout=DEADLINE)
        return code

    def said_something(self) -> bool:
        return bool(self.err)

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Kill whatever process a failed test left running."""
    yield
    while Process.started:
        process = Process.started.pop()
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()


def sent_by(process: Process, prefix: str) -> int:
    """The "sent N" figure of a summary line that starts with ``prefix``."""
    line = next(line for line in process.out if line.startswith(prefix))
    return int(line.split("sent ", 1)[1].split(",")[0])


def delivery_states(cli: Cli, edition_id: int) -> Counter[str]:
    with database(cli.db_url) as session:
        rows = session.exec(select(Delivery.status).where(Delivery.edition_id == edition_id)).all()
    return Counter(str(state) for state in rows)


def test_two_sends_and_a_worker_send_each_of_3000_members_one_copy(cli: Cli) -> None:
    """Two `editions send` and a `worker` at once: one send wins, the other says who has it; one copy each."""
    addresses = bulk_members(cli, 2999)
    assert len(addresses) == 3000
    edition_id = approved_edition(cli)
    with running_server() as server:
        server.handler.keep_content = False
        server.handler.gate.clear()
        try:
            sends = [Process(cli, server, "editions", "send", str(edition_id)) for _ in range(2)]
            worker = Process(cli, server, "worker", "--until-idle")
            # The winner cannot finish while the gate is shut, so the loser meets its lease.
            eventually(lambda: any(s.popen.poll() is not None for s in sends), "a send ending")
        finally:
            server.handler.gate.set()
        codes = [process.finish() for process in (*sends, worker)]
        counted = arrived(server)

    assert counted == Counter(addresses)
    assert sorted(codes[:2]) == [0, 1], [s.stderr for s in sends]
    winner, loser = sends if codes[0] == 0 else sends[::-1]
    assert loser.out == []
    [line] = loser.err
    assert line.startswith(f"error: edition #{edition_id} is being sent by process ")
    assert f"`newsletter editions send {edition_id} --wait` waits for it to finish" in line
    assert codes[2] == 0, worker.stderr
    # On SQLite the worker leaves the edition to its owner; on PostgreSQL it may help.
    shares = sent_by(winner, f"edition #{edition_id} "), sent_by(worker, "worker done: ")
    assert sum(shares) == len(addresses)
    if cli.db_url.startswith("sqlite"):
        assert shares[1] == 0
    assert status(cli, edition_id) == "sent"
    assert delivery_states(cli, edition_id) == Counter({"sent": len(addresses)})


def test_a_second_send_with_wait_waits_for_the_first_and_ctrl_c_stops_waiting(cli: Cli) -> None:
    """`--wait` waits while another process sends, then reports it sent; Ctrl-C while waiting is clean."""
    addresses = bulk_members(cli, 199)
    edition_id = approved_edition(cli)
    with running_server() as server:
        # The first send's messages wait at the gate while two more processes start, which
        # on a loaded machine can take longer than the default 30 s reply timeout.
        with (cli.site / "newsletter.toml").open("a", encoding="utf-8") as config:
            config.write(
                f'\n[smtp]\nhost = "{server.host}"\nport = {server.port}\ntls = "none"\ntimeout = 600\n'
            )
        server.handler.gate.clear()
        try:
            first = Process(cli, server, "editions", "send", str(edition_id), site_relay=True)
            # The first process holds the lease: one of its messages waits at the gate.
            eventually(lambda: server.handler.held >= 1, "the first send reaching the relay")
            patient = Process(cli, server, "editions", "send", str(edition_id), "--wait", site_relay=True)
            impatient = Process(cli, server, "editions", "send", str(edition_id), "--wait", site_relay=True)
            for waiting in (patient, impatient):
                eventually(waiting.said_something, "a waiting line")
                assert waiting.err[0].startswith("waiting: process ")
                assert f"is sending edition #{edition_id} (since " in waiting.err[0]
            impatient.popen.send_signal(signal.SIGINT)
            assert impatient.finish() == 130
            assert impatient.err[1:] == ["interrupted; the current change was rolled back"]
            assert patient.popen.poll() is None
        finally:
            server.handler.gate.set()
        assert first.finish() == 0, first.stderr
        assert patient.finish() == 0, patient.stderr
        counted = arrived(server)
    assert counted == Counter(addresses)
    assert patient.out == [
        f"edition #{edition_id} sent: sent 0, failed 0, skipped 0, deferred 0 (via smtp)",
    ]
    assert patient.err[-1].startswith("waited for process ")
    assert status(cli, edition_id) == "sent"
