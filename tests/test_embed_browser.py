"""The embedded sign-up form in a real browser, on another site than the app.

`newsletter serve` runs on http://127.0.0.1:PORT; the group's "own website" is a second
HTTP server, reached as http://localhost:OTHER, so the form posts across sites (another
host, not only another port) and no cookie of ours goes with it. The page holds the
snippet exactly as the workspace gives it. The confirmation email goes through
`newsletter worker --until-idle` to a real SMTP server; its link confirms.
"""

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from newsletter.core.models import MembershipStatus, utcnow
from newsletter.core.settings import load_settings
from newsletter.web.public.embed import snippet
from tests.conftest import SCREENSHOTS, Cli, chromium, needs_chromium
from tests.smtp_server import SmtpServer, free_port
from tests.test_browser import link, membership, text_of
from tests.web_server import over_smtp, serving

KEY = "embed-browser-test-key-0123456789abcdef"
READER = "visitor@example.org"
BOT = "bot@example.org"
THANKS = "<!doctype html><title>Thanks</title><h1>Thank you!</h1>"

pytestmark = needs_chromium


class GroupWebsite:
    """The group's own website: one page with the snippet and a thank-you page, on its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.pages: dict[str, str] = {
            "/thanks.html": "<!doctype html><title>Thanks</title><h1>Thank you!</h1>"
        }
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "GroupWebsite":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def website() -> Iterator[GroupWebsite]:
    with GroupWebsite() as site:
        yield site


@pytest.fixture
def base_url(
    cli: Cli, smtp_server: SmtpServer, website: GroupWebsite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """`newsletter serve` for a site whose uk group lives at the second server's origin."""
    config = cli.site / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[groups.uk]\n", f'[groups.uk]\nwebsite = "{website.origin}/thanks.html"\n'),
        encoding="utf-8",
    )
    port = over_smtp(monkeypatch, smtp_server, KEY)
    settings = load_settings(cli.site)
    form = snippet(settings, "uk", "homepage", utcnow().date())
    website.pages["/join.html"] = (
        "<!doctype html><html lang=en><title>Join the UK group</title>"
        f"<h1>Join our newsletter</h1>\n{form}</html>"
    )
    with serving(cli.site, cli.db_url, tmp_path / "serve.log", port=port) as base:
        yield base


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(locale="en-GB")
        try:
            yield context.new_page()
        finally:
            context.close()


def test_form_on_another_site_signs_up_then_the_email_confirms(
    page: Page, base_url: str, website: GroupWebsite, smtp_server: SmtpServer, cli: Cli
) -> None:
    """A visitor on the group's website signs up, is sent back there, and confirms by the email's link."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{website.origin}/join.html")
    expect(page.locator("h1")).to_have_text("Join our newsletter")
    page.fill("#nl-uk-homepage-email", READER)
    page.fill("#nl-uk-homepage-name", "Vera Visitor")
    page.check("input[name=consent]")
    page.screenshot(path=str(SCREENSHOTS / "embed-01-form-on-the-group-site.png"), full_page=True)
    page.click("button[type=submit]")
    # Back on the group's own website, on the page its settings name.
    expect(page.locator("h1")).to_have_text("Thank you!")
    assert page.url == f"{website.origin}/thanks.html"
    assert membership(cli.db_url, READER, "uk") == MembershipStatus.PENDING

    assert "confirmations: sent 1," in cli("worker", "--until-idle").stdout
    smtp_server.wait_for(lambda: bool(smtp_server.to(READER)))
    [confirmation] = smtp_server.to(READER)
    page.goto(link(text_of(confirmation), base_url, "confirm"))
    expect(page.locator("h1")).to_have_text("Confirm your subscription")
    page.click("button[type=submit]")
    expect(page.locator("main p")).to_have_text("Your subscription is confirmed. Welcome!")
    assert membership(cli.db_url, READER, "uk") == MembershipStatus.ACTIVE


def test_a_bot_filling_the_honeypot_is_sent_back_and_nothing_is_stored(
    page: Page, base_url: str, website: GroupWebsite, cli: Cli
) -> None:
    """The hidden field, filled as a bot does: the same answer as a person's, no member, no email queued."""
    page.goto(f"{website.origin}/join.html")
    page.fill("#nl-uk-homepage-email", BOT)
    # People never see it (off-screen, out of the tab order); a bot fills every field.
    page.locator("#nl-uk-homepage-website").fill("http://spam.example/", force=True)
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Thank you!")
    assert membership(cli.db_url, BOT, "uk") is None
    assert "confirmations: sent 0," in cli("worker", "--until-idle").stdout


def test_an_altered_token_is_refused_on_our_page(
    page: Page, base_url: str, website: GroupWebsite, cli: Cli
) -> None:
    """A page whose token was tampered with gets our refusal page and signs nobody up."""
    website.pages["/join.html"] = re.sub(
        r'name="form_token" value="([^"]+)"',
        lambda found: f'name="form_token" value="{found.group(1)[:-4]}AAAA"',
        website.pages["/join.html"],
    )
    page.goto(f"{website.origin}/join.html")
    page.fill("#nl-uk-homepage-email", READER)
    page.check("input[name=consent]")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Request refused")
    assert page.url.startswith(base_url)
    assert membership(cli.db_url, READER, "uk") is None
