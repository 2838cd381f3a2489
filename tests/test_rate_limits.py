"""Rate limits on a virtual clock: the token buckets, and a relay lane that waits for them.

The buckets and the lane read and wait for time through the clock they are given; here
it is a :class:`VirtualClock`, whose time moves only when someone waits, by exactly
that long. So every start time below is exact, and nothing depends on how busy the
machine is. The end-to-end tests in ``test_delivery_engine.py`` check that the
settings reach these buckets; ``bench/rate_bench.py`` measures real rates on the wire.
"""

import asyncio
from typing import cast

import pytest

from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.pipelined import PipelinedSmtp
from newsletter.delivery.transports.relays import DomainBuckets, Relay, RelayLane, TokenBucket


class VirtualClock:
    """Time that moves only when someone waits, by exactly the time waited."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += seconds

    async def pause(self, seconds: float) -> None:
        self.time += seconds


class Wire:
    """Stands for an SMTP connection: notes the time each message's envelope went out.

    Like :class:`PipelinedSmtp`, ``commit(following)`` sends the next envelope with the
    final dot, and ``stage`` of that same message goes on from there.
    """

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.started: list[tuple[float, str]] = []
        self._ahead: OutgoingMessage | None = None

    async def stage(self, message: OutgoingMessage) -> None:
        if message is not self._ahead:
            self.started.append((self.clock.now(), message.recipient))
        self._ahead = None

    async def commit(self, following: OutgoingMessage | None = None) -> None:
        if following is not None:
            self.started.append((self.clock.now(), following.recipient))
            self._ahead = following

    async def close(self) -> None:
        pass


def message(recipient: str) -> OutgoingMessage:
    return OutgoingMessage(
        sender="bounces@example.org",
        recipient=recipient,
        data=b"Subject: x\r\n\r\nx\r\n",
        smtputf8=False,
        message_id="<1@example.org>",
        edition_id=1,
        delivery_id=None,
        subscriber_id=1,
    )


def send_through_lane(lane: RelayLane, recipients: list[str]) -> None:
    """Drive the lane as the delivery engine does: stage, then commit with the next message."""
    messages = [message(r) for r in recipients]

    async def drive() -> None:
        for n, current in enumerate(messages):
            await lane.stage(current)
            await lane.commit(messages[n + 1] if n + 1 < len(messages) else None)

    asyncio.run(drive())


def within_rate(times: list[float], rate: float, burst: float) -> bool:
    """Whether no stretch of time [a, b] holds more than ``burst + rate * (b - a)`` of the times."""
    ordered = sorted(times)
    return all(
        last - first + 1 <= burst + rate * (ordered[last] - ordered[first]) + 1e-9
        for first in range(len(ordered))
        for last in range(first, len(ordered))
    )


def lane(clock: VirtualClock, *, rate: float, domain_rate: float) -> tuple[RelayLane, Wire]:
    wire = Wire(clock)
    relay = Relay("test", "smtp://127.0.0.1:25", 1, TokenBucket(rate, clock=clock))
    connection = cast(PipelinedSmtp, wire)
    return RelayLane(relay, connection, DomainBuckets(domain_rate, clock=clock), clock), wire


def test_a_bucket_gives_its_burst_at_once_then_rate_tokens_a_second() -> None:
    """A full bucket of 10 a second hands out 10 tokens at once, then one every tenth of a second."""
    clock = VirtualClock()
    bucket = TokenBucket(10, clock=clock)
    assert [bucket.delay() for _ in range(10)] == [0.0] * 10
    assert [bucket.delay() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    # Blocking take() waits out its delay: the 14th token goes at 0.4 s.
    bucket.take()
    assert clock.now() == pytest.approx(0.4)
    # Refilled at 10 a second, never past the burst: after a long pause, 10 again, not more.
    clock.sleep(60)
    assert [bucket.delay() for _ in range(10)] == [0.0] * 10
    assert bucket.delay() == pytest.approx(0.1)
    unlimited = TokenBucket(0, clock=clock)
    assert {unlimited.delay() for _ in range(1000)} == {0.0}


def test_domain_buckets_hold_each_domain_apart() -> None:
    """Each recipient domain (however it is spelt) has its own bucket; one domain's wait is not another's."""
    clock = VirtualClock()
    domains = DomainBuckets(2, clock=clock)
    assert [domains.delay(f"a{n}@one.example") for n in range(3)] == pytest.approx([0, 0, 0.5])
    assert domains.delay("b@ONE.example") == pytest.approx(1.0)
    assert [domains.delay(f"c{n}@two.example") for n in range(2)] == [0.0, 0.0]
    domains.take("d@two.example")
    assert clock.now() == pytest.approx(0.5)


def test_a_lane_starts_no_message_before_the_relay_rate_allows() -> None:
    """20 messages through a lane of a 5-a-second relay: 5 at once, then one every 0.2 s, never faster."""
    clock = VirtualClock()
    relay_lane, wire = lane(clock, rate=5, domain_rate=0)
    send_through_lane(relay_lane, [f"m{n}@d{n % 4}.example" for n in range(20)])
    times = [t for t, _ in wire.started]
    assert len(times) == 20
    assert within_rate(times, rate=5, burst=5)
    assert times == pytest.approx([0.0] * 5 + [0.2 * n for n in range(1, 16)])


def test_a_lane_holds_each_domain_to_its_rate() -> None:
    """Alternating two domains at 1 a second each: both go at once, then one of each a second."""
    clock = VirtualClock()
    relay_lane, wire = lane(clock, rate=10, domain_rate=1)
    send_through_lane(relay_lane, [f"m{n}@{'ab'[n % 2]}.example" for n in range(10)])
    for domain in ("a", "b"):
        times = [t for t, r in wire.started if r.endswith(f"@{domain}.example")]
        assert within_rate(times, rate=1, burst=1), domain
        assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0]), domain
    # The check itself: ten starts at one moment break a rate of one a second.
    assert not within_rate([0.0] * 10, rate=1, burst=1)
