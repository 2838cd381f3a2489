"""Draining an outbox through one or more SMTP connections: the delivery engine.

Everything runs on one asyncio event loop in one thread, except DKIM signatures, which
OpenSSL makes on a small thread pool without holding the GIL. A recording task claims
batches of due deliveries (one transaction each) and feeds them to *lanes*, one task
per connection (``transports.relays``; any other transport is one lane). Each lane
builds each message by splicing (``splice.py``) and hands it over; the recording task
writes the outcomes as they come, all that arrived since its last commit in one
transaction (group commit). One thread, not a thread per connection: measured on two
cores, threads spent more time handing Python's GIL to each other than sending.

Crash safety: a lane sends a message's final dot (the moment the relay takes it) only
once the previous message it sent is recorded as sent. So at any instant each
connection has at most one message the relay may have accepted and the database does
not know about: after a kill -9 and a restart (the next runner puts the rows of the
dead claimer back in the queue, see ``claims.py``) at most one message per open
connection can arrive twice, and nothing is lost. The wait costs little: a lane stages the next message
(envelope and content, everything but the dot) while the previous one is recorded,
and the envelope of the one after goes out with each dot (an envelope alone delivers
nothing).
Whatever else stops the engine (an error, Ctrl-C, SIGTERM, a relay that keeps
failing, a lost lease) the outcomes of messages handed over are recorded before it
returns, and the rest go back to the queue.

The engine knows nothing of editions' states or leases: it takes its work from a
:class:`Queue` (the runner's, ``runner.py``), which claims rows, keeps their leases
(and the edition's) alive and takes back what was not handed over.
"""

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from newsletter.core.errors import DeliveryError
from newsletter.core.i18n import reader_language
from newsletter.core.models import DeliveryStatus
from newsletter.core.site import Site
from newsletter.delivery import lease, outbox
from newsletter.delivery.claims import Claimed
from newsletter.delivery.message import OutgoingMessage, Recipient
from newsletter.delivery.transports.base import Lane, Transport

T = TypeVar("T")

# This many connection failures in a row mean the relay is down: pause, don't burn the list.
PAUSE_AFTER_CONNECTION_FAILURES = 5
# Event-loop turns the recorder lets pass, while fewer outcomes than lanes are in, before
# it commits: each turn lets lanes whose replies have arrived add theirs to the group.
GROUP_COMMIT_YIELDS = 8
# The rows in hand (and the edition's send lease) are renewed this often, in seconds.
RENEW_EVERY = lease.RENEW_EVERY
# A lane (connection) is opened for every this many due messages, up to the pool's size.
MESSAGES_PER_LANE = 50


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    paused: bool = False
    errors: list[str] = field(default_factory=list)
    # The editions whose relay kept failing (the worker pauses them).
    paused_editions: set[int] = field(default_factory=set)


class Queue(Protocol):
    """Where the engine takes its work and gives back what it did not do."""

    def claim(self, limit: int) -> list[Claimed]:
        """The next due rows, marked as ours; an empty list when none is due (or we stop)."""

    def keep(self, delivery_ids: list[int]) -> None:
        """Renew the leases of the rows in hand (raise to stop the engine: the lease is lost)."""

    def release(self, delivery_ids: list[int]) -> None:
        """Rows claimed but never handed over: back to the queue."""

    def requeue(self, delivery_ids: list[int]) -> None:
        """Rows that failed only because the relay was down: due again, the attempt not counted."""


def _keep_all(topics: str | None) -> bool:
    """No member's topics leave their copy empty (the default: an edition without topic choices)."""
    return False


@dataclass(frozen=True)
class Job:
    """How to build one edition's messages.

    ``build`` may leave a message's DKIM signature pending (``OutgoingMessage.pending``):
    the engine makes it on its signing pool before the message goes to a transport.

    ``skip`` says, from a member's choice of topics, that their copy would have no item
    (``variants.py``); the row is then recorded as skipped, with ``SKIP_REASON``.
    """

    build: Callable[[Recipient], OutgoingMessage]
    group_language: str
    skip: Callable[[str | None], bool] = _keep_all


# What a skipped row's last_error says when the member's topics left nothing in their copy.
SKIP_REASON = "no item of this edition is in the member's chosen topics"


# A row taken from the queue ahead of its turn (None: the queue's end), with its message
# (None: not built, as for a member no longer active).
Ahead = tuple[Claimed | None, OutgoingMessage | None]


class _Shared:
    """State the lanes and the recording task share (one thread: no locks)."""

    def __init__(self, pause_after: int) -> None:
        self.todo: asyncio.Queue[Claimed | None] = asyncio.Queue()
        self.results: list[tuple[int, outbox.Outcome]] = []
        # Set when a lane adds an outcome; replaced by a fresh one after each commit.
        self.arrived = asyncio.Event()
        self.recorded = asyncio.Event()
        self.sequence = 0
        self.committed = 0
        self.stop = False
        self.failure: BaseException | None = None
        # The connection failures in a row: (delivery id, edition id).
        self.streak: list[tuple[int, int]] = []
        self.pause_after = pause_after
        self.paused = False
        self._sealers: concurrent.futures.ThreadPoolExecutor | None = None

    async def seal(self, message: OutgoingMessage) -> OutgoingMessage:
        """The message with its DKIM signature made, on a thread of a pool, one per usable core.

        Signing is the one CPU-heavy step per message (about a millisecond for RSA-2048);
        OpenSSL releases the GIL while it signs, so the other core signs while this
        thread keeps the connections busy (docs/performance.md).
        """
        if self._sealers is None:
            self._sealers = concurrent.futures.ThreadPoolExecutor(usable_cores(), thread_name_prefix="dkim")
        return await asyncio.get_running_loop().run_in_executor(self._sealers, message.sealed)

    def close(self) -> None:
        if self._sealers is not None:
            self._sealers.shutdown(wait=True)

    async def wait_recorded(self, sequence: int) -> bool:
        """Wait until outcome ``sequence`` is committed; False if the engine is stopping."""
        while self.committed < sequence and not self.stop:
            await self.recorded.wait()
        return self.committed >= sequence

    def commit(self, top: int) -> None:
        self.committed = max(self.committed, top)
        woken, self.recorded = self.recorded, asyncio.Event()
        woken.set()

    def halt(self) -> None:
        self.stop = True
        self.arrived.set()
        self.recorded.set()


async def _lane(lane: Lane, shared: _Shared, jobs: Callable[[int], Job]) -> None:
    last_sent = 0
    # The next row, taken from the queue while the previous message was committed.
    ahead: Ahead | None = None
    try:
        while not shared.stop:
            if ahead is None:
                row, message = await shared.todo.get(), None
            else:
                (row, message), ahead = ahead, None
            if row is None:
                return
            outcome, connection, ahead = await _attempt(lane, row, message, jobs, shared, last_sent)
            if outcome is None:
                # Stopping before handing it over: it goes back to the queue.
                return
            shared.sequence += 1
            if outcome.status == DeliveryStatus.SENT:
                last_sent = shared.sequence
            if connection:
                shared.streak.append((row.delivery_id, row.edition_id))
                if len(shared.streak) >= shared.pause_after:
                    shared.paused = True
                    shared.halt()
            elif outcome.status != DeliveryStatus.SKIPPED:
                shared.streak.clear()
            shared.results.append((row.edition_id, outcome))
            shared.arrived.set()
    except BaseException as exc:  # handed to the recording task, which re-raises it
        if shared.failure is None:
            shared.failure = exc
        shared.halt()
    finally:
        await lane.close()


async def _attempt(
    lane: Lane,
    row: Claimed,
    message: OutgoingMessage | None,
    jobs: Callable[[int], Job],
    shared: _Shared,
    last_sent: int,
) -> tuple[outbox.Outcome | None, bool, Ahead | None]:
    """Send one row (``message``, if already built).

    Returns its outcome (None: not handed over), whether the connection failed, and
    the next row with its message if one was taken from the queue meanwhile.
    """
    if not row.active:
        return outbox.Outcome(row.delivery_id, DeliveryStatus.SKIPPED), False, None
    if row.topics is not None and jobs(row.edition_id).skip(row.topics):
        return outbox.Outcome(row.delivery_id, DeliveryStatus.SKIPPED, error=SKIP_REASON), False, None
    if message is None:
        message = await _build(row, jobs, shared)
    ahead: Ahead | None = None
    try:
        await lane.stage(message)
        # The previous message this connection sent must be on record before this
        # one's final dot goes.
        if last_sent and not await shared.wait_recorded(last_sent):
            return None, False, None
    except DeliveryError as exc:
        return _failed(row, exc), exc.connection, None
    if not shared.todo.empty():
        # The next row is there: its envelope can go out with this final dot.
        following = shared.todo.get_nowait()
        ahead = (
            following,
            await _build(following, jobs, shared) if following and _wanted(following, jobs) else None,
        )
    try:
        await lane.commit(ahead[1] if ahead else None)
    except DeliveryError as exc:
        return _failed(row, exc), exc.connection, ahead
    return outbox.Outcome(row.delivery_id, DeliveryStatus.SENT, message.message_id), False, ahead


def _failed(row: Claimed, exc: DeliveryError) -> outbox.Outcome:
    return outbox.Outcome(
        row.delivery_id, DeliveryStatus.FAILED, error=str(exc)[:500], retry=not exc.permanent, code=exc.code
    )


def _wanted(row: Claimed, jobs: Callable[[int], Job]) -> bool:
    """Whether the row gets a message: its member is active and their topics leave an item."""
    return bool(row.active) and (row.topics is None or not jobs(row.edition_id).skip(row.topics))


async def _build(row: Claimed, jobs: Callable[[int], Job], shared: _Shared) -> OutgoingMessage:
    job = jobs(row.edition_id)
    language = reader_language(row.language, job.group_language)
    message = job.build(
        Recipient(row.subscriber_id, row.email, row.name, language, row.delivery_id, row.topics)
    )
    return message if message.pending is None else await shared.seal(message)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (systemd's ``CPUAffinity=``), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def run(
    site: Site,
    queue: Queue,
    jobs: Callable[[int], Job],
    lanes: Sequence[Lane],
    *,
    batch_size: int = 200,
    pause_after: int = PAUSE_AFTER_CONNECTION_FAILURES,
    progress: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Deliver what ``queue`` hands out through the lanes until none is due."""
    engine = _Engine(site, queue, jobs, lanes, batch_size, pause_after, progress)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(engine.run())
    # Called from code that runs an event loop in this thread (an async app, a notebook,
    # Playwright's sync API): the engine gets a loop of its own in a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="delivery") as pool:
        return pool.submit(run_loop, engine.run()).result()


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a new event loop: uvloop's where it is installed.

    The engine is CPU-bound on one core and most of that is the event loop's own
    work (socket writes, read callbacks, waking tasks): measured on the send
    benchmark, uvloop's loop (libuv, compiled) takes about 13 % off the CPU time per
    message. It is a dependency wherever it builds (not on Windows); elsewhere the
    standard loop does the same work, only slower.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@dataclass
class _Engine:
    site: Site
    queue: Queue
    jobs: Callable[[int], Job]
    lanes: Sequence[Lane]
    batch_size: int
    pause_after: int
    progress: Callable[[int], None] | None

    async def run(self) -> DeliveryReport:
        report = DeliveryReport()
        shared = _Shared(self.pause_after)
        recorder = outbox.Recorder(self.site.engine, self.site.settings.bounces)
        attempts: dict[int, int] = {}
        tasks = [asyncio.create_task(_lane(lane, shared, self.jobs)) for lane in self.lanes]
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + RENEW_EVERY
        exhausted = False
        try:
            while True:
                if loop.time() >= renew_at:
                    # Still working on these: no other process may take them for abandoned.
                    self.queue.keep(list(attempts))
                    renew_at = loop.time() + RENEW_EVERY
                if not exhausted and not shared.stop and shared.todo.qsize() < self.batch_size:
                    batch = self.queue.claim(self.batch_size)
                    exhausted = not batch
                    for row in batch:
                        attempts[row.delivery_id] = row.attempts + 1
                        shared.todo.put_nowait(row)
                if not shared.results and not shared.stop and (attempts or not exhausted):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.05 if not exhausted else 0.5):
                            await shared.arrived.wait()
                # Let every lane that is ready add its outcome, then commit them together.
                for _ in range(GROUP_COMMIT_YIELDS):
                    if len(shared.results) >= len(self.lanes):
                        break
                    await asyncio.sleep(0)
                shared.arrived.clear()
                results, shared.results = shared.results, []
                if results:
                    _record(recorder, results, attempts, report, self.progress)
                    shared.commit(shared.sequence)
                if shared.stop or (exhausted and not attempts):
                    break
        finally:
            shared.halt()
            for _ in tasks:
                shared.todo.put_nowait(None)
            await asyncio.gather(*tasks, return_exceptions=True)
            results, shared.results = shared.results, []
            # Record what was handed over even when interrupted; the rest goes back to the
            # queue, even when that recording fails (the database went away): rows left
            # `sending` would wait for `editions send`, which no worker runs.
            try:
                recorder.write([outcome for _, outcome in results], attempts)
                _count(results, report)
                for _, outcome in results:
                    attempts.pop(outcome.delivery_id, None)
            finally:
                shared.close()
                recorder.close()
                self.queue.release(list(attempts))
        if shared.failure is not None:
            raise shared.failure
        if shared.paused:
            # The relay is down, which says nothing about these recipients: they are due
            # again at once, without the attempt counting, when `send` resumes the edition.
            self.queue.requeue([delivery for delivery, _ in shared.streak])
            report.paused = True
            report.paused_editions = {edition for _, edition in shared.streak}
        return report


def _record(
    recorder: outbox.Recorder,
    results: list[tuple[int, outbox.Outcome]],
    attempts: dict[int, int],
    report: DeliveryReport,
    progress: Callable[[int], None] | None,
) -> None:
    """One transaction for every outcome that arrived since the last one."""
    recorder.write([outcome for _, outcome in results], attempts)
    _count(results, report)
    for _, outcome in results:
        attempts.pop(outcome.delivery_id, None)
    if progress is not None:
        progress(len(results))


def _count(results: list[tuple[int, outbox.Outcome]], report: DeliveryReport) -> None:
    for _, outcome in results:
        if outcome.status == DeliveryStatus.SENT:
            report.sent += 1
        elif outcome.status == DeliveryStatus.SKIPPED:
            report.skipped += 1
        else:
            if outcome.retry:
                report.deferred += 1
            else:
                report.failed += 1
            if len(report.errors) < 20:
                report.errors.append(outcome.error or "")  # the reply names the recipient


def lanes_for(transport: Transport, due: int) -> Sequence[Lane]:
    """The connections to use: one per MESSAGES_PER_LANE due messages, up to what the transport declares."""
    wanted = max(1, min(transport.capabilities.lanes, -(-due // MESSAGES_PER_LANE)))
    return transport.lanes(wanted)
