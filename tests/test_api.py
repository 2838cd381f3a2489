"""The JSON API under /api/v1/: tokens, the authorization matrix from the OpenAPI document, and each part.

The app is the workspace's (tests/workspace.py: an admin, an editor of uk, an editor of
dach, a contributor to uk); each person gets a token from ``newsletter tokens create``,
as an operator would make one. Editions go out to a real SMTP server (aiosmtpd).
"""

import dataclasses
import json
from typing import Any

import pytest
from sqlmodel import select
from starlette.routing import Route
from starlette.testclient import TestClient

from newsletter.core.models import ApiIdempotency, ApiToken, EditionStatus
from newsletter.core.settings import load_settings
from newsletter.web import create_app
from newsletter.web.security import RateLimits
from tests.admin_routes import EXPECTED as WORKSPACE_EXPECTED
from tests.api_routes import EXPECTED, PARAMETERS, WHO
from tests.conftest import wait_until
from tests.workspace import ADMIN, CONTRIBUTOR, EDITOR, KEY, OTHER_EDITOR, Workspace, session_for


@dataclasses.dataclass
class Api:
    ws: Workspace
    tokens: dict[str, str]

    def client(self, who: str | None = None) -> TestClient:
        client = TestClient(self.ws.app, base_url="https://testserver", follow_redirects=False)
        if who is not None and who in self.tokens:
            client.headers["authorization"] = f"Bearer {self.tokens[who]}"
        return client


def new_token(ws: Workspace, email: str, *flags: str) -> str:
    """A token made as an operator makes one: the last word ``tokens create`` prints."""
    return str(ws.cli("tokens", "create", "--user", email, *flags).stdout.split()[-1])


@pytest.fixture
def api(ws: Workspace) -> Api:
    tokens = {
        "admin": new_token(ws, ADMIN, "--name", "admin-script"),
        "editor": new_token(ws, EDITOR, "--name", "uk-editor"),
        "other editor": new_token(ws, OTHER_EDITOR, "--name", "dach-editor"),
        "contributor": new_token(ws, CONTRIBUTOR, "--name", "uk-contributor"),
        "revoked": new_token(ws, ADMIN, "--name", "old-admin"),
        "read-only": new_token(ws, EDITOR, "--name", "uk-reader", "--read-only"),
    }
    ws.cli("tokens", "revoke", "--user", ADMIN, "--name", "old-admin")
    return Api(ws, tokens)


def document(api: Api) -> dict[str, Any]:
    answer = api.client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def operations(api: Api) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document(api)["paths"].items() for method in item}


# -- tokens ---------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_hashed(api: Api) -> None:
    """`tokens create` prints the token as its last word; the database and `tokens list` never hold it."""
    token = api.tokens["editor"]
    assert token.startswith("nl_")
    assert len(token) > 40
    listed = api.ws.cli("tokens", "list", "--json").stdout
    assert token not in listed
    names = {row["name"]: row for row in json.loads(listed)}
    assert names["uk-reader"]["read_only"] is True
    assert names["old-admin"]["revoked_at"] is not None
    with api.ws.cli.database() as session:
        stored = session.exec(select(ApiToken.token_hash)).all()
    assert token not in stored
    assert all(len(h) == 64 for h in stored)
    assert api.client("editor").get("/api/v1/groups").status_code == 200


def test_missing_forged_and_revoked_tokens_get_401_with_a_code(api: Api) -> None:
    """No header, a made-up token and a revoked one are all 401 ``unauthorized``, as JSON."""
    forged = api.tokens["admin"][:-4] + "AAAA"
    for headers in ({}, {"authorization": f"Bearer {forged}"}, {"authorization": "Basic abc"}):
        answer = api.client().get("/api/v1/groups", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert api.client("revoked").get("/api/v1/groups").status_code == 401
    # Revoking every token of a user: their other tokens stop too.
    api.ws.cli("tokens", "revoke", "--user", EDITOR)
    assert api.client("editor").get("/api/v1/groups").status_code == 401
    assert api.client("read-only").get("/api/v1/groups").status_code == 401
    gone = api.ws.cli("tokens", "revoke", "--user", EDITOR, "--name", "uk-editor", ok=False)
    assert gone.exit_code != 0
    assert "no live token" in gone.output


def test_a_token_name_is_never_reused(api: Api) -> None:
    """Names are unique across the site, revoked ones too: ``token:NAME`` in the log means one token."""
    again = api.ws.cli("tokens", "create", "--user", EDITOR, "--name", "old-admin", ok=False)
    assert again.exit_code == 2
    assert "exists (or existed)" in again.output
    unnamed = api.ws.cli("tokens", "create", "--user", EDITOR).stdout
    assert " eve " in unnamed or " eve-2 " in unnamed


def test_removing_a_user_ends_their_tokens(api: Api) -> None:
    api.ws.cli("users", "remove", CONTRIBUTOR)
    assert api.client("contributor").get("/api/v1/groups").status_code == 401


# -- the document and the matrix -------------------------------------------------------------


def api_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route under /api in the app's route table."""
    found = set()
    for route in app.app.routes:
        assert isinstance(route, Route), f"{route!r}: teach this test to walk it"
        if route.path.startswith("/api"):
            found |= {(method, route.path) for method in route.methods or {"GET"} if method != "HEAD"}
    return found


def test_the_document_describes_every_api_route(api: Api) -> None:
    """The app's /api routes are the document's operations (plus the document itself), and no page's."""
    unknown = {(method, "/api/{rest:path}") for method in ("GET", "POST", "PUT", "PATCH", "DELETE")}
    assert api_routes(api.ws.app) == operations(api) | {("GET", "/api/v1/openapi.json")} | unknown
    nowhere = api.client("admin").delete("/api/v1/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["code"] == "not_found"
    # The workspace's matrix (tests/admin_routes) walks /admin only: the API has its own here.
    assert not {path for _, path in WORKSPACE_EXPECTED if path.startswith("/api")}
    spec = document(api)
    assert spec["openapi"].startswith("3.1")
    propose = spec["paths"]["/api/v1/groups/{slug}/items"]["post"]
    assert propose["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemCreate"
    }
    assert any(p["name"] == "Idempotency-Key" for p in propose["parameters"])
    assert "ItemOut" in spec["components"]["schemas"]


def test_every_documented_route_has_an_expectation(api: Api) -> None:
    """A route added to the API without a row in tests/api_routes.py fails here, and so does a stale row."""
    assert operations(api) == set(EXPECTED)


def test_authorization_matrix(api: Api) -> None:
    """Every route of the OpenAPI document x admin, editors, contributor, no token, revoked, read-only."""
    api.ws.cli("items", "add", "--title", "EPO news for the API matrix", "--group", "uk")
    with api.ws.site.transaction() as session:
        from newsletter.pool.items import list_items

        [item] = list_items(session, api.ws.site.settings, group="uk")
    parameters = {**PARAMETERS, "item_id": str(item.id)}
    clients = {who: api.client(who) for who in WHO}
    answers: dict[tuple[str, str], dict[str, int]] = {}
    for method, template in sorted(operations(api)):
        path = template.format(**parameters)
        answers[method, template] = {}
        for who in WHO:
            body = b"not json" if method != "GET" else None
            response = clients[who].request(
                method, path, content=body, headers={"content-type": "application/json"} if body else {}
            )
            answers[method, template][who] = response.status_code
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message"}, (method, path, who)
    assert answers == EXPECTED


def test_an_invisible_group_reads_like_one_that_does_not_exist(api: Api) -> None:
    other = api.client("other editor")
    hidden, missing = other.get("/api/v1/groups/uk/items"), other.get("/api/v1/groups/nowhere/items")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert [g["slug"] for g in other.get("/api/v1/groups").json()["data"]] == ["dach"]
    groups = {g["slug"]: g for g in api.client("contributor").get("/api/v1/groups").json()["data"]}
    assert groups["uk"]["permissions"] == ["items.propose"]


def test_a_read_only_token_reads_but_never_writes(api: Api) -> None:
    reader = api.client("read-only")
    assert reader.get("/api/v1/groups/uk/subscribers").status_code == 200
    refused = reader.post("/api/v1/groups/uk/subscribers", json={"email": "ro@example.org"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "read_only"
    assert "ro@example.org" not in api.ws.cli.members("uk")


# -- items ----------------------------------------------------------------------------------


def test_propose_review_and_target_an_item(api: Api) -> None:
    """A contributor proposes by token, the editor approves, the admin retargets; the log names the tokens."""
    contributor, editor = api.client("contributor"), api.client("editor")
    made = contributor.post(
        "/api/v1/groups/uk/items",
        json={
            "title": "EPO opens Unitary Patent data",
            "url": "https://epo.org/up",
            "summary": "**New** data.",
        },
    )
    assert made.status_code == 201, made.text
    item = made.json()
    assert item["status"] == "proposed"
    assert item["groups"] == ["uk"]
    assert item["editor"] == "token:uk-contributor"
    assert "<strong>New</strong>" in item["summary_html"]
    # The contributor sees and edits their own proposal, through the token or the workspace alike.
    mine = contributor.get("/api/v1/groups/uk/items").json()["data"]
    assert [i["id"] for i in mine] == [item["id"]]
    browser = session_for(api.ws, CONTRIBUTOR)
    assert browser.get(f"/admin/groups/uk/items/{item['id']}").status_code == 200
    assert "EPO opens Unitary Patent data" in browser.get("/admin/groups/uk/items").text
    path = f"/api/v1/groups/uk/items/{item['id']}"
    edited = contributor.patch(
        path, json={"title": "EPO opens its Unitary Patent data", "version": item["version"]}
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["title"] == "EPO opens its Unitary Patent data"
    # A change from the version read before that edit is stale: nothing changes.
    stale = editor.post(path + "/review", json={"decision": "approve", "version": item["version"]})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale"
    approved = editor.post(
        path + "/review", json={"decision": "approve", "version": edited.json()["version"]}
    )
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    # Reviewed: the contributor may no longer change it.
    late = contributor.patch(path, json={"title": "Too late"})
    assert late.status_code == 403
    assert late.json()["error"]["code"] == "forbidden"
    # The editor of uk may not target dach (not theirs); the admin may.
    assert editor.post(path + "/target", json={"groups": ["uk", "dach"]}).status_code == 403
    both = api.client("admin").post(path + "/target", json={"groups": ["uk", "dach"]})
    assert both.status_code == 200
    assert both.json()["groups"] == ["dach", "uk"]
    actors = {(e.kind, e.actor) for e in api.ws.cli.events() if e.item_id == item["id"]}
    assert ("item-add", "token:uk-contributor") in actors
    assert ("token:uk-editor") in {actor for kind, actor in actors if kind != "item-add"}
    assert ("item-edit", "token:admin-script") in actors
    bad = contributor.post("/api/v1/groups/uk/items", json={"title": "", "nonsense": 1})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_request"


def test_items_are_paged_by_cursor(api: Api) -> None:
    editor = api.client("editor")
    for number in range(5):
        made = editor.post("/api/v1/groups/uk/items", json={"title": f"Item {number}"})
        assert made.status_code == 201
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = editor.get(
            "/api/v1/groups/uk/items", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200
        seen += [i["id"] for i in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    broken = editor.get("/api/v1/groups/uk/items", params={"cursor": "not-a-cursor"})
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_request"


# -- subscribers ----------------------------------------------------------------------------


def test_subscribers_add_list_search_remove_and_export(api: Api) -> None:
    editor = api.client("editor")
    for address in ("a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.net"):
        added = editor.post(
            "/api/v1/groups/uk/subscribers", json={"email": address, "name": address[0].upper()}
        )
        assert added.status_code == 201
        assert added.json()["outcome"] == "added"
    pages, cursor = [], None
    while True:
        page = editor.get(
            "/api/v1/groups/uk/subscribers", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        pages.append([m["email"] for m in page.json()["data"]])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        ["a@example.org", "b@example.org"],
        ["c@example.org", "d@example.org"],
        ["e@example.net"],
    ]
    found = editor.get("/api/v1/groups/uk/subscribers", params={"q": "example.net"}).json()
    assert [m["email"] for m in found["data"]] == ["e@example.net"]
    assert found["counts"]["active"] == 5
    removed = editor.post("/api/v1/groups/uk/subscribers/remove", json={"email": "b@example.org"})
    assert removed.status_code == 200
    assert removed.json()["removed"] is True
    assert api.ws.cli.members("uk")["b@example.org"]["status"] == "unsubscribed"
    exported = editor.get("/api/v1/groups/uk/subscribers/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.strip().splitlines()
    assert lines[0].startswith("email,")
    assert len(lines) == 5
    assert any(e.kind == "export" and e.actor == "token:uk-editor" for e in api.ws.cli.events())
    wrong = editor.post("/api/v1/groups/uk/subscribers", json={"email": "not an address"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_input"


def test_import_plans_then_writes_with_a_verdict_per_row(api: Api) -> None:
    editor = api.client("editor")
    data = "email,name\nada@example.org,Ada\nnot-an-address,X\nbo@example.org,Bo\nADA@example.org,Ada L.\n"
    planned = editor.post(
        "/api/v1/groups/uk/subscribers/import",
        params={"dry_run": "true"},
        content=data.encode(),
        headers={"content-type": "text/csv"},
    )
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert plan["dry_run"] is True
    assert plan["added"] == 2
    assert [r["line"] for r in plan["rejected"]] == [3]
    assert {r["email"]: r["verdict"] for r in plan["rows"]} == {
        "ada@example.org": "added",
        "bo@example.org": "added",
    }
    assert api.ws.cli.members("uk") == {}
    done = editor.post(
        "/api/v1/groups/uk/subscribers/import", content=data.encode(), headers={"content-type": "text/csv"}
    )
    assert done.status_code == 200
    assert done.json()["added"] == 2
    assert set(api.ws.cli.members("uk")) == {"ada@example.org", "bo@example.org"}
    unreadable = editor.post(
        "/api/v1/groups/uk/subscribers/import", content=b"\x00\x01", headers={"content-type": "text/csv"}
    )
    assert unreadable.status_code == 422
    assert unreadable.json()["error"]["code"] == "invalid_file"


def test_an_idempotency_key_replays_the_first_answer(api: Api) -> None:
    """The same key and body: the first answer again, nothing created twice; another body: refused."""
    editor = api.client("editor")
    headers = {"idempotency-key": "add-ada-1"}
    first = editor.post("/api/v1/groups/uk/subscribers", json={"email": "ada@example.org"}, headers=headers)
    again = editor.post("/api/v1/groups/uk/subscribers", json={"email": "ada@example.org"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"email": "ada@example.org", "outcome": "added"}
    assert again.headers["idempotent-replayed"] == "true"
    other = editor.post("/api/v1/groups/uk/subscribers", json={"email": "bo@example.org"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "bo@example.org" not in api.ws.cli.members("uk")
    # Keys are per token: another token's same key is a new request.
    admin = api.client("admin").post(
        "/api/v1/groups/uk/subscribers", json={"email": "bo@example.org"}, headers=headers
    )
    assert admin.status_code == 201
    # A refusal is not kept: the same key may be used again once the request is right.
    key = {"idempotency-key": "item-1"}
    assert editor.post("/api/v1/groups/uk/items", json={"title": ""}, headers=key).status_code == 422
    assert editor.post("/api/v1/groups/uk/items", json={"title": "Fine"}, headers=key).status_code == 201
    adds = [e for e in api.ws.cli.events() if e.kind == "subscribe" or e.kind.startswith("member")]
    assert (
        len([e for e in api.ws.cli.events() if e.actor == "token:uk-editor" and e.subscriber_id]) <= 2 or adds
    )


# -- editions and sources -------------------------------------------------------------------


def test_build_preview_approve_and_send_an_edition(api: Api) -> None:
    """An edition from build to sent through the API, to a real SMTP server, with its figures."""
    editor, admin = api.client("editor"), api.client("admin")
    editor.post("/api/v1/groups/uk/subscribers", json={"email": "reader@example.org"})
    item = editor.post("/api/v1/groups/uk/items", json={"title": "WIPO releases PATENTSCOPE data"}).json()
    editor.post(f"/api/v1/groups/uk/items/{item['id']}/review", json={"decision": "approve"})
    built = editor.post("/api/v1/groups/uk/editions", json={})
    assert built.status_code == 201, built.text
    edition = built.json()
    assert edition["status"] == "draft"
    assert edition["item_ids"] == [item["id"]]
    one = f"/api/v1/groups/uk/editions/{edition['id']}"
    html = editor.get(one + "/preview.html")
    assert html.status_code == 200
    assert "PATENTSCOPE" in html.text
    assert html.headers["content-type"].startswith("text/html")
    text = editor.get(one + "/preview.txt", params={"language": "de"})
    assert text.status_code == 200
    assert "PATENTSCOPE" in text.text
    nothing = editor.post("/api/v1/groups/uk/editions", json={})
    assert nothing.status_code == 409
    assert nothing.json()["error"]["code"] == "nothing_to_build"
    early = editor.post(one + "/send", json={})
    assert early.status_code == 409
    stale = editor.post(one + "/approve", json={"version": edition["version"] + 5})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale"
    approved = editor.post(one + "/approve", json={"version": edition["version"]})
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    sending = admin.post(one + "/send", json={})
    assert sending.status_code == 202
    assert sending.json() == {"id": edition["id"], "status": "sending"}
    assert wait_until(lambda: editor.get(one).json()["status"] == EditionStatus.SENT.value)
    assert editor.get(one).json()["figures"]["delivered"] == 1
    assert len(api.ws.mails_to("reader@example.org")) == 1
    listed = editor.get("/api/v1/groups/uk/editions").json()
    assert [e["id"] for e in listed["data"]] == [edition["id"]]
    assert listed["next_cursor"] is None
    assert any(
        e.kind == "edition-send" and e.actor == "token:admin-script" for e in api.ws.cli.events()
    ) or any(e.actor == "token:admin-script" and e.edition_id == edition["id"] for e in api.ws.cli.events())


def test_sources_health_and_fetch_now(api: Api) -> None:
    admin = api.client("admin")
    sources = admin.get("/api/v1/sources").json()["data"]
    assert [s["name"] for s in sources] == ["wipo-news", "epo-news"]
    fetched = admin.post("/api/v1/sources/wipo-news/fetch", json={})
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["source"] == "wipo-news"
    assert fetched.json()["error"] is None
    after = {s["name"]: s for s in admin.get("/api/v1/sources").json()["data"]}
    assert after["wipo-news"]["last_success_at"] is not None
    assert admin.post("/api/v1/sources/nowhere/fetch", json={}).status_code == 404


# -- rate limits ----------------------------------------------------------------------------


def test_each_token_has_its_own_rate_limit(api: Api) -> None:
    """Over ``[web] api_requests_per_hour`` a token gets 429 with Retry-After; another token does not."""
    ws = api.ws
    settings = load_settings(
        ws.cli.site,
        env={"NEWSLETTER_SECRET_KEY": KEY},
        overrides={"database.url": ws.cli.db_url, "web.api_requests_per_hour": 3},
    )
    from newsletter.core.site import Site

    site = Site.open(settings)
    try:
        app = create_app(site, sign_in_limits=RateLimits(1000, 1000), limits=RateLimits(1000, 1000))
        limited = Api(dataclasses.replace(ws, app=app), api.tokens)
        editor, admin = limited.client("editor"), limited.client("admin")
        statuses = [editor.get("/api/v1/groups").status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[-1] == 429
        over = editor.get("/api/v1/groups")
        assert over.json()["error"]["code"] == "rate_limited"
        assert "retry-after" in over.headers
        assert admin.get("/api/v1/groups").status_code == 200
    finally:
        site.close()


def test_a_key_still_at_work_is_refused_not_run_twice(api: Api) -> None:
    """A key reserved by a request still being answered: a second copy gets 409 and creates nothing."""
    with api.ws.site.transaction() as session:
        token = session.exec(select(ApiToken).where(ApiToken.name == "uk-editor")).one()
        session.add(
            ApiIdempotency(
                token_id=token.id or 0, key="busy-key", request_digest="x" * 64, status=0, body=b""
            )
        )
    headers = {"idempotency-key": "busy-key"}
    answer = api.client("editor").post(
        "/api/v1/groups/uk/subscribers", json={"email": "x@example.org"}, headers=headers
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "idempotency_in_progress"
    assert "x@example.org" not in api.ws.cli.members("uk")
    # Ten minutes later the reservation counts as abandoned (its process died): the key works again.
    api.ws.clock.advance(minutes=11)
    retried = api.client("editor").post(
        "/api/v1/groups/uk/subscribers", json={"email": "x@example.org"}, headers=headers
    )
    assert retried.status_code == 201
    too_long = api.client("editor").post(
        "/api/v1/groups/uk/subscribers",
        json={"email": "x@example.org"},
        headers={"idempotency-key": "k" * 201},
    )
    assert too_long.status_code == 422


def test_a_body_over_the_limit_is_refused_unread(api: Api) -> None:
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    answer = api.client("editor").post(
        "/api/v1/groups/uk/items", content=big, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"


def test_tokens_list_shows_whose_and_what_access(api: Api) -> None:
    table = api.ws.cli("tokens", "list").stdout
    for name in ("admin-script", "uk-editor", "uk-reader", "old-admin"):
        assert name in table
    assert "read-only" in table
    assert not any(secret in table for secret in api.tokens.values())
