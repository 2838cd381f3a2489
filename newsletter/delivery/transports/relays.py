"""Several SMTP relays, several connections each, each relay under its own rate limit.

A :class:`RelayPool` is a transport (``send`` goes through its first connection, for a
test copy) that hands out *lanes* (:class:`RelayLane`): one SMTP connection each
(:class:`~newsletter.delivery.transports.pipelined.PipelinedSmtp`), all driven by the delivery
engine's event loop; it declares as many lanes as its relays have connections. Every
lane of a relay takes a token from that relay's :class:`TokenBucket` before each
message; an optional per-domain bucket keeps any one recipient domain under its own
rate, whatever the relay. Waiting for a token suspends only the lane that waits. Time
is read and waited for through a :class:`Clock`, the system's unless a test hands in
one of its own.
"""

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.base import Capabilities
from newsletter.delivery.transports.pipelined import PipelinedSmtp
from newsletter.delivery.transports.smtp import SmtpTransport, SmtpUrl


class Clock(Protocol):
    """Seconds on a monotonic clock, and the two ways of waiting for them."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def pause(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``rate`` 0 means no limit."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self._tokens = self.burst
        self._at = clock.now()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take a token; the seconds to wait before using it (0 when one was there)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock.now()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def take(self) -> None:
        wait = self.delay()
        if wait:
            self.clock.sleep(wait)


class DomainBuckets:
    """One bucket per recipient domain, made when first needed."""

    def __init__(self, rate: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def delay(self, address: str) -> float:
        """Take a token of the address's domain; the seconds to wait before using it."""
        if self.rate <= 0:
            return 0.0
        domain = address.rpartition("@")[2].lower()
        with self._lock:
            bucket = self._buckets.get(domain)
            if bucket is None:
                bucket = self._buckets[domain] = TokenBucket(self.rate, clock=self.clock)
        return bucket.delay()

    def take(self, address: str) -> None:
        wait = self.delay(address)
        if wait:
            self.clock.sleep(wait)


@dataclass
class Relay:
    name: str
    url: str
    connections: int
    bucket: TokenBucket
    timeout: float = 30.0


@dataclass
class RelayLane:
    """One connection to one relay: a :class:`~newsletter.delivery.transports.base.Lane` of the engine."""

    relay: Relay
    connection: PipelinedSmtp
    domains: DomainBuckets
    clock: Clock = SYSTEM_CLOCK
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.relay.name

    # The message whose tokens were taken when the previous one was committed, and
    # the clock's time it may go at.
    _paid: tuple[OutgoingMessage, float] | None = field(default=None, init=False)

    async def stage(self, message: OutgoingMessage) -> None:
        """The message up to its final dot, within the rate limits."""
        paid, self._paid = self._paid, None
        if paid is not None and paid[0] is message:
            wait = paid[1] - self.clock.now()
        else:
            wait = self._tokens(message)
        if wait > 0:
            await self.clock.pause(wait)
        await self.connection.stage(message)

    async def commit(self, following: OutgoingMessage | None = None) -> None:
        """The final dot; the next message's envelope goes with it if it may go now."""
        if following is not None:
            wait = self._tokens(following)
            self._paid = (following, self.clock.now() + wait)
            if wait > 0:
                following = None
        await self.connection.commit(following)

    def _tokens(self, message: OutgoingMessage) -> float:
        """Take the relay's token and the domain's for the message; seconds to wait."""
        return max(self.domains.delay(message.recipient), self.relay.bucket.delay())

    async def close(self) -> None:
        await self.connection.close()


class RelayPool:
    """The configured relays as one transport, and as lanes for parallel sending."""

    name = "smtp"

    def __init__(self, relays: list[Relay], *, domain_rate: float = 0.0, clock: Clock = SYSTEM_CLOCK) -> None:
        if not relays:
            raise ValueError("at least one relay")
        self.relays = relays
        self.clock = clock
        self.domains = DomainBuckets(domain_rate, clock=clock)
        self._first = SmtpTransport(relays[0].url, timeout=relays[0].timeout)
        self.capabilities = Capabilities(lanes=sum(relay.connections for relay in relays), delivers=True)

    def lanes(self, wanted: int) -> list[RelayLane]:
        """Up to ``wanted`` lanes, spread over the relays in proportion to their connections."""
        lanes: list[RelayLane] = []
        for round_ in range(max(r.connections for r in self.relays)):
            for relay in self.relays:
                if round_ < relay.connections and len(lanes) < max(1, wanted):
                    connection = PipelinedSmtp(SmtpUrl.parse(relay.url), timeout=relay.timeout)
                    lanes.append(RelayLane(relay, connection, self.domains, self.clock))
        return lanes

    def begin(self, edition_id: int, previews: Mapping[str, str]) -> None:
        pass

    def send(self, message: OutgoingMessage) -> None:
        self.domains.take(message.recipient)
        self.relays[0].bucket.take()
        self._first.send(message)

    def close(self) -> None:
        self._first.close()
