"""The engine's SMTP connection (``transports/pipelined.py``) against a real server on 127.0.0.1.

Each test drives :class:`PipelinedSmtp` on its own event loop and reads what the
aiosmtpd server of ``tests/smtp_server.py`` received: the exact bytes, the envelope,
the sessions. The server offers PIPELINING or not, so both ways of sending the
envelope are exercised.
"""

import asyncio
import ssl
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from newsletter.core.errors import ConfigError, PermanentFailure, TemporaryFailure
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.pipelined import PipelinedSmtp, dot_stuffed
from newsletter.delivery.transports.smtp import SmtpUrl
from tests.smtp_server import SmtpServer, free_port, running_server

T = TypeVar("T")


def message(
    recipient: str = "anna@example.org", data: bytes | None = None, **changes: Any
) -> OutgoingMessage:
    body = (
        data if data is not None else f"From: news@example.org\r\nTo: {recipient}\r\n\r\nHello\r\n".encode()
    )
    fields: dict[str, Any] = {
        "sender": "bounces+e1.s1@example.org",
        "recipient": recipient,
        "data": body,
        "smtputf8": False,
        "message_id": "<1@example.org>",
        "edition_id": 1,
        "delivery_id": 1,
        "subscriber_id": 1,
    }
    return OutgoingMessage(**(fields | changes))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def send_all(
    connection: PipelinedSmtp, *messages: OutgoingMessage, ahead: bool = False
) -> list[BaseException | None]:
    """Stage and commit each message in turn; what each raised (None: accepted).

    ``ahead``: each commit is given the next message, as the engine does, so its
    envelope goes out with the final dot.
    """
    outcomes: list[BaseException | None] = []
    for index, each in enumerate(messages):
        following = messages[index + 1] if ahead and index + 1 < len(messages) else None
        try:
            await connection.stage(each)
            await connection.commit(following)
        except (TemporaryFailure, PermanentFailure) as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)
    await connection.close()
    return outcomes


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def server(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    with running_server() as started:
        started.handler.pipelining = request.param
        yield started


@pytest.fixture(params=[True, False], ids=["envelope-ahead", "envelope-when-staged"])
def ahead(request: pytest.FixtureRequest) -> bool:
    """Whether commits carry the next message (the engine's way) or not."""
    return bool(request.param)


def connect(server: SmtpServer, *, timeout: float = 5.0, **url: str) -> PipelinedSmtp:
    return PipelinedSmtp(SmtpUrl.parse(server.url(**url)), timeout=timeout)


def test_dot_stuffing() -> None:
    assert dot_stuffed(b".a\r\nb\r\n.\r\n..c\r\n") == b"..a\r\nb\r\n..\r\n...c\r\n"
    assert dot_stuffed(b"no line end") == b"no line end\r\n"
    assert dot_stuffed(b"x\r\n") == b"x\r\n"


def test_messages_arrive_byte_for_byte_on_one_session(server: SmtpServer, ahead: bool) -> None:
    """Lines that start with a dot, a lone dot, 8-bit text: what arrives is what was sent."""
    tricky = b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nGr\xc3\xbc\xc3\x9fe\r\nlast line\r\n"
    plain = message("anna@example.org")
    outcomes = run(send_all(connect(server), plain, message("bert@example.org", tricky), ahead=ahead))
    assert outcomes == [None, None]
    first, second = server.messages
    assert first.content == plain.data
    assert second.content == tricky
    assert second.mail_from == "bounces+e1.s1@example.org"
    assert second.rcpt_tos == ("bert@example.org",)
    assert any(option.upper().startswith("SIZE=") for option in second.mail_options)
    assert server.handler.connections == 1


def test_refusals_are_sorted_and_the_session_goes_on(server: SmtpServer, ahead: bool) -> None:
    """550/554 are permanent, 4xx temporary, a refused sender counts against the relay."""
    handler = server.handler
    handler.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
    handler.rcpt_replies["busy@example.org"] = "451 4.3.0 Try again later"
    handler.data_replies["spam@example.org"] = "554 5.7.1 Rejected as spam"
    outcomes = run(
        send_all(
            connect(server),
            message("gone@example.org"),
            message("busy@example.org"),
            message("spam@example.org"),
            message("anna@example.org"),
            ahead=ahead,
        )
    )
    gone, busy, spam, accepted = outcomes
    assert isinstance(gone, PermanentFailure)
    assert gone.code == 550
    assert not gone.connection
    assert "gone@example.org refused: 550" in str(gone)
    assert isinstance(busy, TemporaryFailure)
    assert busy.code == 451
    assert not busy.connection
    assert isinstance(spam, PermanentFailure)
    assert spam.code == 554
    assert accepted is None
    assert [m.rcpt_tos for m in server.messages] == [("anna@example.org",)]
    assert server.handler.connections == 1  # RSET after each refusal, the same session goes on

    handler.mail_reply = "530 5.7.0 Authentication required"
    (sender,) = run(send_all(connect(server), message("anna@example.org"), ahead=ahead))
    assert isinstance(sender, TemporaryFailure)
    assert sender.connection
    assert sender.code == 530


def test_a_421_or_a_dropped_session_is_a_connection_failure_then_a_new_session(
    server: SmtpServer, ahead: bool
) -> None:
    server.handler.rcpt_once["closing@example.org"] = "421 4.7.0 Closing connection"
    server.handler.drop_after = 2
    outcomes = run(
        send_all(
            connect(server),
            message("anna@example.org"),
            message("closing@example.org"),
            message("bert@example.org"),
            message("carl@example.org"),  # the session drops at this MAIL
            message("dora@example.org"),
            ahead=ahead,
        )
    )
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert outcomes[4] is None
    closing, dropped = outcomes[1], outcomes[3]
    assert isinstance(closing, TemporaryFailure)
    assert closing.connection
    assert closing.code == 421
    assert isinstance(dropped, TemporaryFailure)
    assert dropped.connection
    assert "lost" in str(dropped)
    assert [m.rcpt_tos[0] for m in server.messages] == [
        "anna@example.org",
        "bert@example.org",
        "dora@example.org",
    ]
    assert server.handler.connections == 3


def test_a_staged_message_is_discarded_when_the_connection_closes(server: SmtpServer) -> None:
    """Without its final dot the relay keeps nothing: closing mid-DATA sends no QUIT as content."""

    async def stage_then_close() -> None:
        connection = connect(server)
        await connection.stage(message("anna@example.org"))
        await connection.commit()
        await connection.stage(message("bert@example.org"))
        await connection.close()

    run(stage_then_close())
    server.wait_for(lambda: server.handler.connections == 1)
    assert [m.rcpt_tos for m in server.messages] == [("anna@example.org",)]


def test_the_next_envelope_goes_out_with_the_final_dot() -> None:
    """One write carries a message's dot and the next one's envelope; its refusal is still its own."""
    with running_server() as server:
        server.handler.rcpt_once["bert@example.org"] = "451 4.3.0 Try again later"

        async def scenario() -> TemporaryFailure:
            connection = connect(server)
            anna, bert = message("anna@example.org"), message("bert@example.org")
            await connection.stage(anna)
            await connection.commit(bert)
            # bert's RCPT was answered before bert was staged: it went with anna's dot.
            server.wait_for(lambda: "bert@example.org" not in server.handler.rcpt_once)
            with pytest.raises(TemporaryFailure) as refused:
                await connection.stage(bert)
            await connection.stage(message("carl@example.org"))
            await connection.commit()
            await connection.close()
            return refused.value

        refused = run(scenario())
        assert refused.code == 451
        assert not refused.connection
        assert [m.rcpt_tos for m in server.messages] == [("anna@example.org",), ("carl@example.org",)]
        assert server.handler.connections == 1


def test_an_envelope_sent_ahead_delivers_nothing_on_its_own() -> None:
    """Closing, or staging another message, after an envelope went ahead: no empty message arrives."""
    with running_server() as server:

        async def scenario() -> None:
            first = connect(server)
            await first.stage(message("anna@example.org"))
            await first.commit(message("bert@example.org"))
            await first.close()
            second = connect(server)
            await second.stage(message("carl@example.org"))
            await second.commit(message("dora@example.org"))
            # Not the message sent ahead: a new session, and dora's envelope is dropped.
            await second.stage(message("erik@example.org"))
            await second.commit()
            await second.close()

        run(scenario())
        server.wait_for(lambda: server.handler.connections == 3)
        assert [m.rcpt_tos[0] for m in server.messages] == [
            "anna@example.org",
            "carl@example.org",
            "erik@example.org",
        ]
        assert all(m.content for m in server.messages)


def test_a_slow_relay_times_out(server: SmtpServer) -> None:
    # The relay would answer the end of DATA after a minute: within this test, never.
    server.handler.data_delay = 60.0
    (slow,) = run(send_all(connect(server, timeout=0.2), message()))
    assert isinstance(slow, TemporaryFailure)
    assert "no reply within 0.2 s" in str(slow)
    assert slow.connection


def test_nobody_listening_is_a_connection_failure() -> None:
    connection = PipelinedSmtp(SmtpUrl.parse(f"smtp://127.0.0.1:{free_port()}"), timeout=2.0)
    (refused,) = run(send_all(connection, message()))
    assert isinstance(refused, TemporaryFailure)
    assert refused.connection
    assert "cannot connect to 127.0.0.1" in str(refused)


def test_smtputf8_is_asked_for_only_when_needed(server: SmtpServer, ahead: bool) -> None:
    address = "jürgen@example.org"
    outcomes = run(
        send_all(connect(server), message(address, smtputf8=True), message("anna@example.org"), ahead=ahead)
    )
    assert outcomes == [None, None]
    utf8, plain = server.messages
    assert utf8.smtputf8
    assert utf8.rcpt_tos == (address,)
    assert not plain.smtputf8
    assert "SMTPUTF8" not in plain.mail_options


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_and_auth_with_utf8_credentials(certificate: ssl.SSLContext, mechanism: str) -> None:
    """AUTH PLAIN or LOGIN after STARTTLS, with a non-ASCII password; a wrong one is a ConfigError."""
    password = "pässwört 1"
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    with running_server(
        tls="starttls", ssl_context=certificate, credentials=("newsletter", password), exclude_auth=(other,)
    ) as server:
        good = SmtpUrl.parse(
            server.url("smtp+starttls", userinfo="newsletter:p%C3%A4ssw%C3%B6rt%201", query="verify=false")
        )
        assert run(send_all(PipelinedSmtp(good), message())) == [None]
        assert [(login.username, login.password, login.tls) for login in server.handler.logins] == [
            ("newsletter", password, True)
        ]
        wrong = SmtpUrl.parse(server.url("smtp+starttls", userinfo="newsletter:wrong", query="verify=false"))
        with pytest.raises(ConfigError, match="refused the login: 535"):
            run(send_all(PipelinedSmtp(wrong), message()))
        untrusted = SmtpUrl.parse(server.url("smtp+starttls", userinfo="newsletter:x"))
        with pytest.raises(ConfigError, match="certificate"):
            run(send_all(PipelinedSmtp(untrusted), message()))
        assert len(server.messages) == 1


def test_data_taken_after_an_unreadable_reply_is_not_ended() -> None:
    """An out-of-spec relay answers RCPT with no readable code, then takes DATA: drop, never end it."""
    seen: list[bytes] = []
    # Set once the relay has read the connection to its end: everything sent has been seen.
    finished = asyncio.Event()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 odd relay\r\n")
        replies = {b"EHLO": b"250-odd\r\n250 PIPELINING\r\n", b"MAIL": b"250 ok\r\n"}
        replies |= {b"RCPT": b"2x0 accepted, sort of\r\n", b"DATA": b"354 go on\r\n"}
        while line := await reader.readline():
            seen.append(line)
            reply = replies.get(line[:4].upper())
            if reply:
                writer.write(reply)
                await writer.drain()
        writer.close()
        finished.set()

    async def scenario() -> BaseException | None:
        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = PipelinedSmtp(SmtpUrl.parse(f"smtp://127.0.0.1:{port}"), timeout=5.0)
        try:
            await connection.stage(message("anna@example.org"))
        except (TemporaryFailure, PermanentFailure) as exc:
            return exc
        finally:
            await connection.close()
            await asyncio.wait_for(finished.wait(), timeout=30)
            server.close()
            await server.wait_closed()
        return None

    refused = run(scenario())
    assert isinstance(refused, (TemporaryFailure, PermanentFailure))
    assert b".\r\n" not in seen, "the DATA was ended: the relay could deliver an empty message"
