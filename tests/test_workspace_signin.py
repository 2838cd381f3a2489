"""Signing in to the workspace: emailed links through a real SMTP server, passwords, sessions, refusals.

The app is ``create_app`` on the example site, driven in-process by Starlette's
TestClient as ``https://testserver`` (the example site's base_url is https, so the
session cookie is ``Secure``, and a client on plain http would not send it back). Sign-in
emails go over SMTP to aiosmtpd (tests/smtp_server.py); the tests read the link from
the received message. Time moves through the app's ``clock``, never by sleeping.
"""

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from starlette.routing import Route
from starlette.testclient import TestClient

from newsletter.accounts import users
from newsletter.core.models import Event, SignInToken, UserSession
from newsletter.web.admin.auth import SESSION_COOKIE
from newsletter.web.security import RateLimits
from tests.admin_routes import EXPECTED, PARAMETERS, PREPARE
from tests.conftest import wait_until
from tests.smtp_server import Received, free_port
from tests.web_server import serving
from tests.workspace import (
    ADMIN,
    CONTRIBUTOR,
    EDITOR,
    KEY,
    OTHER_EDITOR,
    PASSWORD,
    PEOPLE,
    WHO,
    Workspace,
    csrf,
    csrf_of,
    session_for,
    signed_in,
)


def ask_for_link(client: TestClient, address: str) -> Any:
    return client.post("/admin/sign-in", data={"csrf": csrf(client), "email": address})


def link_in(received: Received, base_url: str = "https://news.example.org") -> str:
    """The path of the sign-in link in a received email's text."""
    part = received.message().get_body(("plain",))
    assert part is not None
    found = re.search(re.escape(base_url) + r"(/admin/sign-in/\S+)", part.get_content())
    assert found, "the email has no sign-in link"
    return found.group(1)


def emailed_link(ws: Workspace, client: TestClient, address: str) -> str:
    """Ask for a link on the sign-in page and read it from the email that arrives."""
    before = len(ws.mails_to(address))
    assert ask_for_link(client, address).status_code == 200
    assert wait_until(lambda: len(ws.mails_to(address)) > before)
    return link_in(ws.mails_to(address)[-1])


def press_sign_in(client: TestClient, path: str) -> Any:
    """Open the link's page and press its one button."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    return client.post(path, data={"csrf": csrf_of(page.text)})


def sign_in(ws: Workspace, address: str) -> TestClient:
    """A browser signed in as ``address`` through the emailed link."""
    client = ws.client()
    done = press_sign_in(client, emailed_link(ws, client, address))
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/"
    return client


# -- sign-in by link -------------------------------------------------------------------------


def test_sign_in_by_link_end_to_end(ws: Workspace) -> None:
    """The link arrives by SMTP; its GET shows one button and uses nothing; the POST signs in, once."""
    client = ws.client()
    path = emailed_link(ws, client, ADMIN)
    mail = ws.mails_to(ADMIN)[-1].message()
    assert mail["To"] == "Ada <ada@example.org>"
    assert mail["Subject"] == "Sign in to CEPIUG Patent Information News"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert "List-Unsubscribe" not in mail
    token = path.rsplit("/", 1)[1]
    with ws.site.transaction() as session:
        assert session.exec(select(SignInToken.token_hash)).one() != token

    # Opening the link (as a mail scanner would, twice) only shows the button.
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200
        assert re.findall(r"<button[^>]*>([^<]*)</button>", page.text) == ["Sign in"]
        assert f'<form method="post" action="{path}">' in page.text
    assert not signed_in(client)

    done = client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/admin"):
        assert attribute in cookie, cookie
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert "Signed in as ada@example.org" in dashboard.text

    # The link works once: the second POST, even from the same browser, is refused.
    again = client.post(path, data={"csrf": csrf_of(page.text)})
    assert again.status_code == 400
    assert "expired or was already used" in again.text
    assert client.get(path).status_code == 400
    with ws.site.transaction() as session:
        signed = session.exec(select(Event).where(Event.kind == "sign-in")).one()
        assert signed.actor == "user:ada@example.org"
        assert users.get(session, ADMIN).last_sign_in_at == ws.clock()


def test_an_expired_link_is_refused(ws: Workspace) -> None:
    """A link works for 15 minutes: a minute before, it signs in; a second after, its GET and POST fail."""
    client = ws.client()
    early = emailed_link(ws, client, EDITOR)
    late = emailed_link(ws, client, EDITOR)
    ws.clock.advance(minutes=14)
    assert press_sign_in(ws.client(), early).status_code == 303
    page = client.get(late)
    assert page.status_code == 200
    ws.clock.advance(minutes=1, seconds=1)
    assert client.get(late).status_code == 400
    refused = client.post(late, data={"csrf": csrf_of(page.text)})
    assert refused.status_code == 400
    assert "expired or was already used" in refused.text
    assert not signed_in(client)


def test_an_unknown_address_gets_the_same_answer_and_no_mail(ws: Workspace) -> None:
    """Known, unknown and removed addresses get the same page; only the known one gets an email."""
    ws.cli("users", "add", "gone@example.org", "--role", "editor", "--group", "fr")
    ws.cli("users", "remove", "gone@example.org")
    answers = {
        address: ask_for_link(ws.client(), address)
        for address in (EDITOR, "nobody@example.org", "gone@example.org", "not an address")
    }
    assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 1)
    assert {r.status_code for r in answers.values()} == {200}
    assert len({r.text for r in answers.values()}) == 1
    assert "If this address belongs to an account" in answers[EDITOR].text
    assert [m.rcpt_tos for m in ws.smtp.messages] == [(EDITOR,)]
    with ws.site.transaction() as session:
        assert len(session.exec(select(SignInToken)).all()) == 1


def test_a_relay_that_is_down_changes_nothing_the_visitor_sees(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """The page is the same when the mail cannot go out; the failure is in the log for the operator."""
    normal = ask_for_link(ws.client(), "nobody@example.org")
    ws.smtp.handler.down = True
    with caplog.at_level("WARNING", logger="newsletter.web.admin.signin"):
        failed = ask_for_link(ws.client(), EDITOR)
    assert (failed.status_code, failed.text) == (normal.status_code, normal.text)
    assert "could not send a sign-in link" in caplog.text
    assert ws.smtp.messages == []


def test_the_pages_and_the_email_speak_the_browsers_language(ws: Workspace) -> None:
    """A German browser gets the sign-in page, the answer and the email in German."""
    client = ws.client()
    client.headers["accept-language"] = "de-DE,de;q=0.9,en;q=0.5"
    page = client.get("/admin/sign-in")
    assert "Anmeldelink per E-Mail senden" in page.text
    answer = client.post("/admin/sign-in", data={"csrf": csrf_of(page.text), "email": EDITOR})
    assert "ist ein Anmeldelink unterwegs" in answer.text
    assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 1)
    mail = ws.mails_to(EDITOR)[0].message()
    assert mail["Subject"] == "Anmeldung bei CEPIUG Patent Information News"
    assert mail["Content-Language"] == "de"
    assert "innerhalb von 15 Minuten" in str(mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_a_forged_link_is_refused_like_a_used_one(ws: Workspace) -> None:
    """A made-up token reads like a used or expired one, GET and POST alike."""
    client = ws.client()
    token = csrf(client)
    for path in ("/admin/sign-in/forged", "/admin/sign-in/" + "A" * 43):
        assert client.get(path).status_code == 400
        refused = client.post(path, data={"csrf": token})
        assert refused.status_code == 400
        assert "expired or was already used" in refused.text


# -- sessions --------------------------------------------------------------------------------


def test_sign_out_everywhere_ends_every_session_of_that_user_only(ws: Workspace) -> None:
    """Two browsers of one editor, one of the admin: sign out everywhere ends both editor sessions."""
    laptop, phone, admin = sign_in(ws, EDITOR), sign_in(ws, EDITOR), sign_in(ws, ADMIN)
    account = laptop.get("/admin/account")
    assert account.status_code == 200
    assert account.text.count("<tr><td>") == 2
    assert "(this browser)" in account.text
    done = laptop.post("/admin/sign-out-everywhere", data={"csrf": csrf_of(account.text)})
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/sign-in"
    assert not signed_in(laptop)
    assert not signed_in(phone)
    assert signed_in(admin)
    # The phone's old cookie, replayed, is no good either.
    assert phone.get("/admin/account").status_code == 303
    with ws.site.transaction() as session:
        event = session.exec(select(Event).where(Event.kind == "sign-out-everywhere")).one()
        assert event.actor == "user:eve@example.org"


def test_sign_out_ends_this_browser_only(ws: Workspace) -> None:
    laptop, phone = sign_in(ws, EDITOR), sign_in(ws, EDITOR)
    page = laptop.get("/admin/")
    secret = laptop.cookies.get(SESSION_COOKIE)
    assert laptop.post("/admin/sign-out", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert not signed_in(laptop)
    assert signed_in(phone)
    # The ended session's cookie, kept by a copy of the browser, no longer signs in.
    replay = ws.client()
    replay.cookies.set(SESSION_COOKIE, secret or "", domain="testserver.local", path="/admin")
    assert not signed_in(replay)


def test_signing_in_again_in_a_browser_ends_its_previous_session(ws: Workspace) -> None:
    """On a shared computer the next person's sign-in ends the previous person's session."""
    browser = sign_in(ws, EDITOR)
    before = browser.cookies.get(SESSION_COOKIE) or ""
    assert press_sign_in(browser, emailed_link(ws, browser, ADMIN)).status_code == 303
    assert "Signed in as ada@example.org" in browser.get("/admin/").text
    replay = ws.client()
    replay.cookies.set(SESSION_COOKIE, before, domain="testserver.local", path="/admin")
    assert not signed_in(replay)


def test_users_remove_signs_the_user_out_everywhere(ws: Workspace) -> None:
    browser = sign_in(ws, EDITOR)
    assert signed_in(browser)
    assert "1 session(s) ended" in ws.cli("users", "remove", EDITOR).stdout
    assert not signed_in(browser)


def test_an_idle_session_expires(ws: Workspace) -> None:
    """A session unused for the idle time (480 minutes by default) ends; one in use stays."""
    idle, busy = sign_in(ws, EDITOR), sign_in(ws, ADMIN)
    for _ in range(3):
        ws.clock.advance(minutes=200)
        assert signed_in(busy)
    assert not signed_in(idle)
    with ws.site.transaction() as session:
        assert len(session.exec(select(UserSession)).all()) == 2


def test_only_the_hash_of_a_session_id_is_stored(ws: Workspace) -> None:
    browser = sign_in(ws, EDITOR)
    secret = browser.cookies.get(SESSION_COOKIE) or ""
    assert len(secret) >= 40
    with ws.site.transaction() as session:
        row = session.exec(select(UserSession)).one()
    assert secret not in row.session_hash
    assert row.user_agent == "testclient"


# -- CSRF, rate limits, passwords, redirects -----------------------------------------------


def test_csrf_is_required_on_every_sign_in_form(ws: Workspace) -> None:
    """Without the token matching the browser's cookie: 403, no mail, no link used, no session ended."""
    client = ws.client()
    path = emailed_link(ws, client, EDITOR)
    browser = sign_in(ws, ADMIN)
    mails = len(ws.smtp.messages)
    theirs = csrf(ws.client())
    attacks: dict[str, dict[str, str]] = {
        "missing": {},
        "forged": {"csrf": "0" * 64},
        "another visitor's": {"csrf": theirs},
    }
    for attack, extra in attacks.items():
        for url, data, who in (
            ("/admin/sign-in", {"email": EDITOR}, client),
            ("/admin/password-sign-in", {"email": ADMIN, "password": PASSWORD}, client),
            (path, {}, client),
            ("/admin/sign-out", {}, browser),
            ("/admin/sign-out-everywhere", {}, browser),
        ):
            response = who.post(url, data=data | extra)
            assert response.status_code == 403, (attack, url)
            assert "Request refused" in response.text
    assert len(ws.smtp.messages) == mails
    assert signed_in(browser)
    # The link was not used by the refused POSTs.
    assert press_sign_in(client, path).status_code == 303


def test_sign_in_is_rate_limited_by_client_and_by_address(make_workspace: Callable[..., Workspace]) -> None:
    """Past the address's limit no more mail goes out (same page); past the client's, 429."""
    ws = make_workspace(RateLimits(per_client_per_hour=5, per_address_per_hour=2))
    client = ws.client()
    answers = [ask_for_link(client, EDITOR) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert len({r.text for r in answers}) == 1
    assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 2)
    # Every spelling of the address counts against it.
    assert ask_for_link(client, "EVE@Example.org").status_code == 200
    assert len(ws.mails_to(EDITOR)) == 2
    assert ask_for_link(client, ADMIN).status_code == 200
    too_many = ask_for_link(client, ADMIN)
    assert too_many.status_code == 429
    refused = client.post(
        "/admin/password-sign-in", data={"csrf": csrf(client), "email": ADMIN, "password": "x"}
    )
    assert refused.status_code == 429


def test_sign_in_with_a_password(ws: Workspace) -> None:
    """A set password signs in; a wrong one, or an account without one, gets the same refusal."""
    ws.cli("users", "password", ADMIN, input=f"{PASSWORD}\n{PASSWORD}\n")
    client = ws.client()

    def attempt(address: str, password: str, next_: str = "/admin/") -> Any:
        return client.post(
            "/admin/password-sign-in",
            data={"csrf": csrf(client), "email": address, "password": password, "next": next_},
        )

    refusals = [
        attempt(ADMIN, "wrong password here"),
        attempt(EDITOR, PASSWORD),
        attempt("no@example.org", PASSWORD),
    ]
    assert {r.status_code for r in refusals} == {400}
    assert len({re.sub(r'value="[^"]*"', "", r.text) for r in refusals}) == 1
    assert "do not match" in refusals[0].text
    assert not signed_in(client)
    done = attempt(ADMIN.upper(), PASSWORD, "/admin/groups/uk/")
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/groups/uk/"
    assert signed_in(client)
    with ws.site.transaction() as session:
        methods = [e.detail for e in session.exec(select(Event).where(Event.kind == "sign-in"))]
    assert methods == ['{"method": "password"}']


@pytest.mark.parametrize(
    "next_", ["https://evil.example/", "//evil.example/admin/", "/admin/..//evil", "/elsewhere"]
)
def test_after_sign_in_only_workspace_paths_are_followed(ws: Workspace, next_: str) -> None:
    ws.cli("users", "password", ADMIN, input=f"{PASSWORD}\n{PASSWORD}\n")
    client = ws.client()
    done = client.post(
        "/admin/password-sign-in",
        data={"csrf": csrf(client), "email": ADMIN, "password": PASSWORD, "next": next_},
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/"


def test_anonymous_requests_are_sent_to_sign_in_and_back(ws: Workspace) -> None:
    """/admin/groups/uk/ without a session: 303 to the sign-in page, which carries the way back."""
    ws.cli("users", "password", EDITOR, input=f"{PASSWORD}\n{PASSWORD}\n")
    client = ws.client()
    first = client.get("/admin/groups/uk/")
    assert first.status_code == 303
    assert first.headers["location"] == "/admin/sign-in?next=/admin/groups/uk/"
    page = client.get(first.headers["location"])
    assert 'name="next" value="/admin/groups/uk/"' in page.text
    done = client.post(
        "/admin/password-sign-in",
        data={"csrf": csrf_of(page.text), "email": EDITOR, "password": PASSWORD, "next": "/admin/groups/uk/"},
    )
    assert done.headers["location"] == "/admin/groups/uk/"
    group = client.get("/admin/groups/uk/")
    assert group.status_code == 200
    assert "UK Patent Information Users" in group.text


def test_the_dashboard_lists_only_the_users_groups(ws: Workspace) -> None:
    """Each person's dashboard links the groups they hold a permission on, and no other."""
    names = {slug: html.escape(g.name) for slug, g in ws.site.settings.groups.items()}
    expected = {
        ADMIN: {"cepiug", "uk", "dach", "fr"},
        EDITOR: {"uk"},
        OTHER_EDITOR: {"dach"},
        CONTRIBUTOR: {"uk"},
    }
    for address, groups in expected.items():
        page = session_for(ws, address).get("/admin/")
        assert page.status_code == 200
        shown = {slug for slug, name in names.items() if f">{name}</a>" in page.text}
        assert shown == groups, address
        assert {*re.findall(r'href="/admin/groups/([^/]+)/"', page.text)} == groups


# Besides the workspace, the public routes whose answer must not depend on who asks.
PUBLIC_PREFIXES = ("/images/",)


def workspace_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route under /admin (and PUBLIC_PREFIXES) in the route table."""
    found = set()
    for route in app.app.routes:
        assert isinstance(route, Route), f"{route!r}: teach this test to walk it"
        if route.path.startswith(("/admin", *PUBLIC_PREFIXES)):
            found |= {(method, route.path) for method in route.methods or {"GET"} if method != "HEAD"}
    return found


def test_every_workspace_route_has_an_entry_in_the_matrix(ws: Workspace) -> None:
    """The route table and the matrix name the same routes; a new route without an entry fails here."""
    assert workspace_routes(ws.app) == set(EXPECTED)
    # The check is not blind: a route added to the app shows up as missing from the matrix.
    ws.app.app.router.routes.append(Route("/admin/new-page", lambda request: None))
    assert workspace_routes(ws.app) - set(EXPECTED) == {("GET", "/admin/new-page")}


def test_authorization_matrix(ws: Workspace) -> None:
    """Every workspace route x admin, editor of the group, editor of another, contributor, anonymous."""
    answers: dict[tuple[str, str], dict[str, int]] = {}
    parameters = dict(PARAMETERS)
    for prepare in PREPARE:
        parameters |= prepare(ws)
    for method, template in sorted(workspace_routes(ws.app)):
        path = template.format(**parameters)
        answers[method, template] = {}
        for who in WHO:
            client = session_for(ws, PEOPLE[who]) if who in PEOPLE else ws.client()
            data = {"csrf": csrf(client), "email": "nobody@example.org", "password": "not the password"}
            response = client.request(method, path, data=data if method == "POST" else None)
            answers[method, template][who] = response.status_code
            if response.status_code == 303 and who == "anonymous" and "sign-out" not in path:
                assert response.headers["location"] == f"/admin/sign-in?next={path}"
    assert answers == EXPECTED


def test_an_invisible_group_reads_like_one_that_does_not_exist(ws: Workspace) -> None:
    """The other editor's 404 for uk is the very page anyone gets for a group that is not there."""
    other = session_for(ws, OTHER_EDITOR)
    hidden, missing = other.get("/admin/groups/uk/"), other.get("/admin/groups/no-such-group/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    assert "UK Patent" not in hidden.text
    assert session_for(ws, ADMIN).get("/admin/groups/no-such-group/").status_code == 404


# -- the same app as `newsletter serve` ------------------------------------------------------


def test_newsletter_serve_signs_in_over_plain_http(ws: Workspace, tmp_path: Path) -> None:
    """`newsletter serve` on plain http: link by SMTP, button, session; the cookie is not Secure there."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_SMTP_URL": ws.smtp.url(),
        "NEWSLETTER_SECRET_KEY": KEY,
        "NEWSLETTER_BASE_URL": base,
    }
    with (
        serving(ws.cli.site, ws.cli.db_url, tmp_path / "serve.log", port=port, **environment),
        httpx.Client(base_url=base, follow_redirects=False, timeout=30) as browser,
    ):
        form = browser.get("/admin/sign-in")
        asked = browser.post("/admin/sign-in", data={"csrf": csrf_of(form.text), "email": EDITOR})
        assert asked.status_code == 200
        assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 1)
        path = link_in(ws.mails_to(EDITOR)[0], base)
        page = browser.get(path)
        done = browser.post(path, data={"csrf": csrf_of(page.text)})
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "Secure" not in cookie
        dashboard = browser.get("/admin/")
        assert dashboard.status_code == 200
        assert "Signed in as eve@example.org" in dashboard.text
