"""Admission: a busy process answers 503 quickly instead of queueing requests without end.

At most ``limit`` requests are at work in one ``serve`` process; the next ones wait for
a turn, and one that waits longer than ``[web] request_wait_seconds`` is answered 503
with ``Retry-After`` before any of its work starts (so a visitor told to try again
was not subscribed).

Why: measured with ``bench/soak_bench.py`` on PostgreSQL (two processes, 150 sign-ups
a second, docs/performance.md), a moment when the database slowed left requests
queueing behind one another; each one then waited longer than the visitors' patience,
the server kept working on requests whose visitors had left, and from then on every
visit timed out while the processes' memory grew by 80 MB a minute. With a bounded
wait the queue cannot outgrow what the process serves in that time: the visitors
beyond it are told at once to come back, and the others are served.

Written here rather than with uvicorn's ``limit_concurrency``: that answers 503 at once
to any request beyond the limit, so a burst of a second would turn visitors away that
a moment's wait would have served.
"""

import asyncio

from newsletter.web.security import ASGIApp, Receive, Scope, Send

# What a request turned away is told, in seconds: when to try again.
RETRY_AFTER = 5


class Admission:
    """At most ``limit`` HTTP requests at work at once; ``busy`` answers one that waited ``wait`` seconds."""

    def __init__(self, app: ASGIApp, *, limit: int, wait: float, busy: ASGIApp) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self.busy = busy
        # Made on the first request: a semaphore belongs to the event loop it is used on.
        self._turns: asyncio.Semaphore | None = None
        self.turned_away = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.limit)
        turns = self._turns
        try:
            async with asyncio.timeout(self.wait):
                await turns.acquire()
        except TimeoutError:
            self.turned_away += 1
            await self.busy(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            turns.release()
