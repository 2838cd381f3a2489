"""Signing up on a group's own website: the embedded form and the JSON endpoint, in-process.

The form is taken from the workspace page an editor copies it from, then posted the way
a browser on another site posts it: without our CSRF cookie, with another Origin. The
browser test with a real second origin is in ``tests/test_embed_browser.py``.
"""

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.models import Consent, Membership, MembershipStatus, Subscriber, utcnow
from newsletter.core.tokens import FORM_TOKEN_DAYS, make_form_token
from newsletter.web.public import embed
from newsletter.web.security import RateLimits
from tests.test_web import (
    KEY,
    Web,
    _factory,
    confirm,
    confirm_path,
    membership,
)
from tests.workspace import CONTRIBUTOR, EDITOR, Workspace, session_for
from tests.workspace import KEY as WORKSPACE_KEY

WEBSITE = "https://www.uk-pig.example"
OTHER_SITE = {"origin": WEBSITE, "referer": WEBSITE + "/join.html"}


@pytest.fixture
def site_dir(site_dir: Path) -> Path:
    """The example site, with the uk group's own website declared."""
    config = site_dir / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("[groups.uk]\n", f'[groups.uk]\nwebsite = "{WEBSITE}"\n')
    config.write_text(text, encoding="utf-8")
    return site_dir


@pytest.fixture
def make_web(site_dir: Path, db_url: str) -> Iterator[Callable[..., Web]]:
    """The subscriber app on that site (tests/test_web.py's factory)."""
    yield from _factory(site_dir, db_url)


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


def token(slug: str = "uk", form: str = "homepage", days_ago: int = 0, key: str = KEY) -> str:
    return make_form_token(key, slug, form, utcnow().date() - timedelta(days=days_ago))


def visitor(web: Web) -> TestClient:
    """A browser on the group's website: no cookie of ours, not following redirects."""
    return TestClient(web.app, base_url="https://news.example.org", follow_redirects=False)


def post_form(web: Web, slug: str = "uk", **fields: str) -> Any:
    data = {"form_token": token(slug), "email": "reader@example.org", "consent": "yes", **fields}
    return visitor(web).post(f"/subscribe/{slug}/embedded", data=data, headers=OTHER_SITE)


def post_json(web: Web, body: object, slug: str = "uk", **headers: str) -> Any:
    return TestClient(web.app).post(f"/subscribe/{slug}.json", json=body, headers=headers)


def stored(web: Web) -> tuple[int, int, int]:
    """How many subscribers, memberships and consent requests the database holds."""
    with web.site.transaction() as session:
        return tuple(  # type: ignore[return-value]
            len(session.exec(select(model)).all()) for model in (Subscriber, Membership, Consent)
        )


# -- the snippet -------------------------------------------------------------------------------


def test_editor_copies_a_snippet_whose_token_works(ws: Workspace) -> None:
    """The workspace page shows a plain form posting to the app, with a token, honeypot and consent."""
    page = session_for(ws, EDITOR).get("/admin/groups/uk/signup-form?form=homepage")
    assert page.status_code == 200
    found = re.search(r'<textarea id="snippet"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert found
    snippet = html.unescape(found.group(1))
    assert '<form method="post" action="https://news.example.org/subscribe/uk/embedded"' in snippet
    assert f'name="form_token" value="{token(key=WORKSPACE_KEY)}"' in snippet
    assert 'name="website" tabindex="-1"' in snippet
    assert 'name="consent" value="yes" required' in snippet
    assert f'name="return" value="{WEBSITE}"' in snippet
    assert "csrf" not in snippet
    assert "/subscribe/uk.json" in page.text
    # A name that cannot name a form is refused; the default is shown instead.
    bad = session_for(ws, EDITOR).get("/admin/groups/uk/signup-form?form=%3Cscript%3E")
    assert bad.status_code == 400
    assert "<script>" not in bad.text
    # Contributors cannot see it (they may not add members).
    assert session_for(ws, CONTRIBUTOR).get("/admin/groups/uk/signup-form").status_code == 403


# -- the embedded form -------------------------------------------------------------------------


def test_embedded_form_signs_up_pending_then_confirmed(web: Web) -> None:
    """A cross-site post without our cookie: the member is pending, gets the email, confirms."""
    response = post_form(web, "fr", name="Marie", language="fr")
    assert response.status_code == 200
    assert "Consultez votre boîte de réception" in response.text  # the form's language, French
    found = membership(web, "reader@example.org", "fr")
    assert found is not None
    assert found.status == MembershipStatus.PENDING
    assert found.source == "embed:homepage"
    with web.site.transaction() as session:
        consent = session.exec(select(Consent)).one()
    assert consent.source == "embed:homepage"
    assert "Information brevets" in (consent.text or "")
    [mail] = web.sent_to("reader@example.org")
    assert confirm(web, confirm_path(mail)).status_code == 200
    confirmed = membership(web, "reader@example.org", "fr")
    assert confirmed is not None
    assert confirmed.status == MembershipStatus.ACTIVE


def test_return_url_only_on_the_groups_website(web: Web) -> None:
    """Back to the group's website after signing up; any other place shows our page instead."""
    back = post_form(web, **{"return": WEBSITE + "/thanks.html?x=1"})
    assert back.status_code == 303
    assert back.headers["location"] == WEBSITE + "/thanks.html?x=1"
    for elsewhere in (
        "https://evil.example/thanks",
        "https://www.uk-pig.example.evil.example/",
        "http://www.uk-pig.example/",  # another scheme is another origin
        "https://www.uk-pig.example:8443/",
        "//evil.example/",
        "https://user@www.uk-pig.example/",
        "https:/\\evil.example",
        "javascript:alert(1)",
    ):
        response = post_form(web, email=f"r{len(elsewhere)}@example.org", **{"return": elsewhere})
        assert response.status_code == 200, elsewhere
        assert "location" not in response.headers
    # A group without a website never redirects.
    assert post_form(web, "dach", **{"return": WEBSITE + "/"}).status_code == 200


def test_honeypot_filled_stores_nothing(web: Web) -> None:
    """A bot that fills the hidden field is answered like a person, and nothing is stored or sent."""
    response = post_form(web, website="http://spam.example/")
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    back = post_form(web, website="http://spam.example/", **{"return": WEBSITE + "/"})
    assert back.status_code == 303  # sent back to the group's website, as a person would be
    assert stored(web) == (0, 0, 0)
    assert web.mails() == []


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="missing"),
        pytest.param(token()[:-2] + ("AA" if not token().endswith("AA") else "BB"), id="forged-mac"),
        pytest.param(token(form="other").replace("other", "homepage"), id="moved-to-another-form"),
        pytest.param(token(slug="dach"), id="another-group"),
        pytest.param(token(key="another-key-0123456789abcdef"), id="another-key"),
        pytest.param(token(days_ago=FORM_TOKEN_DAYS + 1), id="expired"),
        pytest.param(token(days_ago=-3), id="from-the-future"),
        pytest.param("f1.homepage.20261301.xxxx", id="no-such-date"),
        pytest.param("x" * 5000, id="huge"),
    ],
)
def test_forged_or_expired_token_is_refused(web: Web, bad: str) -> None:
    """A token that is missing, altered, made for something else or too old: 403, nothing stored."""
    response = post_form(web, form_token=bad)
    assert response.status_code == 403
    assert "no longer valid" in response.text
    assert stored(web) == (0, 0, 0)


def test_a_token_in_its_last_day_still_works(web: Web) -> None:
    assert post_form(web, form_token=token(days_ago=FORM_TOKEN_DAYS)).status_code == 200
    assert stored(web)[1] == 1


def test_consent_and_address_are_checked(web: Web) -> None:
    """No consent: 400; an address we cannot use: 400 with the reason; nothing stored by either."""
    data = {"form_token": token(), "email": "reader@example.org"}
    response = visitor(web).post("/subscribe/uk/embedded", data=data, headers=OTHER_SITE)
    assert response.status_code == 400
    assert post_form(web, email="not an address").status_code == 400
    assert stored(web) == (0, 0, 0)


def test_embedded_form_has_the_rate_limits(make_web: Callable[..., Web]) -> None:
    """Per client: past the limit, 429; per address: silently the same answer, one consent request."""
    web = make_web(RateLimits(per_client_per_hour=3, per_address_per_hour=1))
    answers = [post_form(web, email="same@example.org").status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    assert stored(web)[2] == 1
    assert post_form(web, email="another@example.org").status_code == 429
    assert "another@example.org" not in {m.recipient for m in web.mails()}


def test_known_and_unknown_addresses_get_the_same_answer(web: Web) -> None:
    """An active member and a newcomer see the same page; the member's status does not change."""
    first = post_form(web, "dach", email="known@example.org")
    [mail] = web.sent_to("known@example.org")
    confirm(web, confirm_path(mail))
    again = post_form(web, "dach", email="known@example.org")
    newcomer = post_form(web, "dach", email="new@example.org")
    assert first.status_code == again.status_code == newcomer.status_code == 200
    assert strip_tokens(again.text) == strip_tokens(newcomer.text)
    known = membership(web, "known@example.org", "dach")
    assert known is not None
    assert known.status == MembershipStatus.ACTIVE


def strip_tokens(page: str) -> str:
    return re.sub(r'value="[^"]*"', "", page)


# -- the JSON endpoint -------------------------------------------------------------------------


def test_json_sign_up(web: Web) -> None:
    """From the website's server: 202 for a newcomer and a member alike; pending until confirmed."""
    body = {"token": token(), "email": "json@example.org", "name": "Jay", "consent": True}
    response = post_json(web, body)
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    found = membership(web, "json@example.org", "uk")
    assert found is not None
    assert (found.status, found.source) == (MembershipStatus.PENDING, "json:homepage")
    [mail] = web.sent_to("json@example.org")
    confirm(web, confirm_path(mail))
    again = post_json(web, body)
    assert (again.status_code, again.json()) == (response.status_code, response.json())
    confirmed = membership(web, "json@example.org", "uk")
    assert confirmed is not None
    assert confirmed.status == MembershipStatus.ACTIVE


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "a@example.org", "consent": True}, 401, "invalid_token"),
        (
            {"token": token(days_ago=FORM_TOKEN_DAYS + 5), "email": "a@b.org", "consent": True},
            401,
            "invalid_token",
        ),
        ({"token": token(slug="dach"), "email": "a@example.org", "consent": True}, 401, "invalid_token"),
        ({"token": token(), "email": "a@example.org"}, 400, "consent_required"),
        ({"token": token(), "email": "a@example.org", "consent": "yes"}, 400, "consent_required"),
        ({"token": token(), "consent": True}, 400, "invalid_request"),
        ({"token": token(), "email": ["a@example.org"], "consent": True}, 400, "invalid_request"),
        ({"token": token(), "email": "a@example.org", "name": 5, "consent": True}, 400, "invalid_request"),
        ({"token": token(), "email": "not an address", "consent": True}, 400, "invalid_address"),
        (["not", "an", "object"], 400, "invalid_json"),
    ],
)
def test_json_errors(web: Web, body: object, status: int, code: str) -> None:
    """Every refusal is JSON with a stable code, and stores nothing."""
    response = post_json(web, body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert stored(web) == (0, 0, 0)


def test_json_transport_errors(web: Web) -> None:
    """Wrong content type, broken JSON, a body over the limit, an unknown group: JSON answers."""
    client = TestClient(web.app)
    cases = [
        (client.post("/subscribe/uk.json", data={"token": token()}), 415, "unsupported_media_type"),
        (
            client.post("/subscribe/uk.json", content=b"{nope", headers={"content-type": "application/json"}),
            400,
            "invalid_json",
        ),
        (
            client.post(
                "/subscribe/uk.json", content=b"[" * 20000, headers={"content-type": "application/json"}
            ),
            413,
            "too_large",
        ),
        (post_json(web, {"token": token()}, slug="nope"), 404, "unknown_group"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    # Only POST: a GET falls through to the sign-up page's route, which knows no group "uk.json".
    assert client.get("/subscribe/uk.json").status_code == 404
    assert stored(web) == (0, 0, 0)


def test_json_rate_limit_per_form(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """All of a website's sign-ups come from one server: they count per form, then 429."""
    monkeypatch.setattr(embed, "JSON_PER_FORM_PER_HOUR", 2)
    answers = [
        post_json(web, {"token": token(), "email": f"p{n}@example.org", "consent": True}).status_code
        for n in range(3)
    ]
    assert answers == [202, 202, 429]
    with web.site.transaction() as session:
        joined = session.exec(select(Membership).where(col(Membership.source) == "json:homepage")).all()
    assert len(joined) == 2


def test_a_language_we_do_not_have_falls_back_to_the_groups(web: Web) -> None:
    """A posted language is taken only if we have its strings; else the group's own."""
    assert post_form(web, "dach", email="odd@example.org", language="../../etc/x").status_code == 200
    body = {"token": token("dach"), "email": "j@example.org", "language": "zz", "consent": True}
    assert post_json(web, body, slug="dach").status_code == 202
    with web.site.transaction() as session:
        languages = {s.email: s.language for s in session.exec(select(Subscriber))}
    assert languages == {"odd@example.org": "de", "j@example.org": "de"}
