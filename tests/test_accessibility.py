"""axe-core in Debian's Chromium over the subscriber pages and every example group's email.

axe-core (the npm package, pinned in tests/axe/package.json and installed by `.ci/run`
with `npm ci --prefix tests/axe`) is injected with Playwright into each page and run
with its default rules, best practices included: no violation is allowed. Pages are
served by the app itself (every request of the browser, stylesheets included, goes
through the app's test client), so what axe sees is what a visitor's browser gets.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Cli, chromium, needs_chromium
from tests.test_archive_pages import send
from tests.test_web import Web, _factory, body_of, sign_up, token

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ORIGIN = "https://news.example.org"
GROUPS = ("cepiug", "uk", "dach", "fr")

needs_axe = pytest.mark.skipif(
    not AXE.exists(), reason="needs axe-core: npm ci --prefix tests/axe (.ci/run installs it)"
)
pytestmark = [needs_chromium, needs_axe]


@pytest.fixture
def web(site_dir: Path, db_url: str) -> Iterator[Web]:
    make = _factory(site_dir, db_url)
    yield next(make)()
    next(make, None)


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    with chromium() as running:
        yield running


# Rules about a whole page's landmarks, which a message does not have: a mail client shows
# an email inside its own page, whose landmarks (its "main") hold the message. The email
# marks itself the way mail clients expect instead (MJML's role="article" wrapper with
# aria-roledescription="email" and its lang). Every other rule applies to emails too.
PAGE_ONLY_RULES = ("landmark-one-main", "region")


def violations(page: "Page", *, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """axe's violations on the page as loaded (impact, rule, the first offending element)."""
    # evaluate() runs in the page without a <script> element, so the page's
    # Content-Security-Policy (no inline script) stays as it is.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    options = {"resultTypes": ["violations"], "rules": {rule: {"enabled": False} for rule in skip}}
    found: list[dict[str, Any]] = page.evaluate(
        "async (options) => (await axe.run(document, options)).violations"
        ".map(v => ({rule: v.id, impact: v.impact, help: v.help, target: v.nodes[0].target}))",
        options,
    )
    return found


def through_app(page: "Page", web: Web) -> None:
    """Answer every request of the page from the app (other hosts: refused)."""

    def answer(route: "Route") -> None:
        url = urlsplit(route.request.url)
        if f"{url.scheme}://{url.netloc}" != ORIGIN:
            route.abort()
            return
        reply = web.client.get(url.path + (f"?{url.query}" if url.query else ""))
        route.fulfill(status=reply.status_code, headers=dict(reply.headers), body=reply.content)

    page.route("**/*", answer)


def test_subscriber_and_archive_pages_have_no_axe_violations(web: Web, cli: Cli, browser: "Browser") -> None:
    member = "reader@example.org"
    sign_up(web, "cepiug", member, name="Ada Reader")
    edition = send(web, cli, "cepiug", "WIPO launches a new PATENTSCOPE search")
    pages = {
        "sign-up": "/subscribe/cepiug",
        "archive": "/archive/cepiug",
        "archive edition": f"/archive/cepiug/{edition}",
        "preferences": f"/preferences/{token(web, 'preferences', member, 'cepiug')}",
        "unsubscribe": f"/unsubscribe/{token(web, 'unsubscribe', member, 'cepiug')}",
        "confirm": f"/confirm/{token(web, 'confirm', member, 'cepiug')}",
    }
    found = {}
    for name, path in pages.items():
        page = browser.new_page()
        try:
            through_app(page, web)
            response = page.goto(ORIGIN + path)
            assert response is not None
            assert response.status == 200, (name, response.status)
            found[name] = violations(page)
        finally:
            page.close()
    assert found == {key: [] for key in pages}, json.dumps(found, indent=1)


def test_every_example_group_s_email_has_no_axe_violations(web: Web, cli: Cli, browser: "Browser") -> None:
    found = {}
    for slug in GROUPS:
        address = f"reader-{slug}@example.org"
        sign_up(web, slug, address)
        send(web, cli, slug, f"News for {slug}: PATENTSCOPE adds Korean full texts")
        [delivered] = [m for m in web.sent_to(address) if m.edition_id]
        part = body_of(delivered).get_body(("html",))
        assert part is not None
        page = browser.new_page()
        try:
            page.set_content(part.get_content())
            assert page.locator('[aria-roledescription="email"]').count() == 1
            found[slug] = violations(page, skip=PAGE_ONLY_RULES)
        finally:
            page.close()
    assert found == {key: [] for key in GROUPS}, json.dumps(found, indent=1)
