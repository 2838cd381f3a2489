"""An editor's week in the workspace, in a real browser: Chromium (Playwright) and `newsletter serve`.

The example site runs in `newsletter serve` on 127.0.0.1 with SMTP as its transport, to
a real aiosmtpd server in this process: the sign-in links, the test copy and the edition
all arrive there. People are made with `newsletter users add`; they sign in by the link in
their email. A contributor proposes an item and cannot reach what is not theirs; the
editor approves it, builds, previews, tests, approves and sends the edition, and watches
it go out. Elements are found by role and accessible name, which checks the labels too.

Screenshots land in ``test-artifacts/screenshots/workspace-*.png``; the README's copies
in docs/images/ are refreshed from there by hand (``cp test-artifacts/screenshots/
workspace-{dashboard,items,edition,progress}.png docs/images/``). Debian's Chromium is
used (``apt-get install chromium``), never Playwright's own browser download.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.conftest import SCREENSHOTS, Cli, chromium, needs_chromium
from tests.smtp_server import Received, SmtpServer
from tests.web_server import over_smtp, serving

pytestmark = needs_chromium

KEY = "workspace-browser-test-signing-key-0123456789"
EDITOR = "eve.marsh@example.org"
CONTRIBUTOR = "cy.okafor@example.org"
GROUP = "UK Patent Information Users (example)"
# Sample items the editor approved earlier in the week (the others wait in the queue).
APPROVED = (
    "samples/items/2026-11-wipo-inspire-report.md",
    "samples/items/2026-11-wipo-patentscope-update.md",
    "samples/items/2026-11-wipo-global-brand-database.md",
)
WAITING = (
    "samples/items/2026-11-wipo-user-survey.md",
    "samples/items/2026-12-wipo-patentscope-webinar.md",
)
PROPOSAL = "British Library: free patent search clinics for small firms in 2027"
SUMMARY = (
    "The **Business & IP Centre** at the British Library runs free one-hour clinics with a\n"
    "patent searcher, in London and online:\n"
    "\n"
    "- prior art and freedom-to-operate basics\n"
    "- reading a search report\n"
    "\n"
    "Book a slot on [the clinics page](https://www.example.org/bipc/clinics)."
)
INTRO = "Hello from the editors. Thank you, Cy, for the British Library tip!"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TIMEOUT_MS = 30_000
DEFAULT_TIMEOUT_MS = 5_000  # Playwright's own


@pytest.fixture
def site_url(
    cli: Cli, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The example site's uk group with its members, sample items and two people, served over SMTP."""
    port = over_smtp(monkeypatch, smtp_server, KEY)
    cli("subscribers", "import", "uk", str(cli.site / "subscribers" / "uk.csv"))
    files = [arg for path in (*APPROVED, *WAITING) for arg in ("--file", str(cli.site / path))]
    ids = re.findall(r"added item #(\d+)", cli("items", "add", *files).stdout)
    cli("items", "approve", *ids[: len(APPROVED)])
    editor_of = ("--role", "editor", "--group", "uk", "--group", "cepiug")
    cli("users", "add", EDITOR, *editor_of, "--name", "Eve Marsh")
    cli("users", "add", CONTRIBUTOR, "--role", "contributor", "--group", "uk", "--name", "Cy Okafor")
    with serving(cli.site, cli.db_url, tmp_path / "serve.log", port=port) as base:
        yield base


@pytest.fixture
def browser() -> Iterator[Browser]:
    # A generous deadline for every expectation of this test (the default, 5 s, is tight on a
    # loaded machine); it only bounds a test that would otherwise hang.
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        with chromium() as instance:
            yield instance
    finally:
        expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


class Shot(Protocol):
    def __call__(
        self, page: Page, name: str, *, full_page: bool = ..., down_to: Locator | None = ...
    ) -> None: ...


@pytest.fixture
def shot(cli: Cli) -> Shot:
    """Screenshots in test-artifacts/screenshots/: workspace-NAME.png (postgres-workspace-NAME.png)."""
    prefix = "" if cli.db_url.startswith("sqlite") else "postgres-"

    def take(page: Page, name: str, *, full_page: bool = False, down_to: Locator | None = None) -> None:
        """The viewport, the whole page, or the page from its top to the end of ``down_to``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = str(SCREENSHOTS / f"{prefix}workspace-{name}.png")
        if down_to is None:
            page.screenshot(path=path, full_page=full_page)
            return
        box = down_to.bounding_box()
        assert box is not None
        page.screenshot(
            path=path,
            full_page=True,
            clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": box["y"] + box["height"] + 24},
        )

    return take


def scroll_to(locator: Locator) -> None:
    """Scroll the page so that the element is at the top of the viewport, with a little room."""
    locator.evaluate("node => window.scrollTo(0, node.getBoundingClientRect().top + window.scrollY - 16)")


def text_of(received: Received) -> str:
    part = received.message().get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def tab_to(page: Page, target: Locator, most: int = 10) -> None:
    """Press Tab from the top of the page until ``target`` has the focus (at most ``most`` times)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if target.evaluate("node => node === document.activeElement"):
            return
    expect(target).to_be_focused()


def sign_in(page: Page, base: str, smtp: SmtpServer, address: str, *, keyboard: bool = False) -> None:
    """Ask for a link on the sign-in page, open the link from the email, press Sign in."""
    mails = len(smtp.to(address))
    page.goto(f"{base}/admin/sign-in")
    form = page.locator("form").filter(has=page.get_by_role("button", name="Email me a sign-in link"))
    field = form.get_by_label("Email address")
    if keyboard:
        # Tab from the top of the page to the address field, type, and submit with Enter.
        tab_to(page, field)
        page.keyboard.type(address)
        page.keyboard.press("Enter")
    else:
        field.fill(address)
        form.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
    smtp.wait_for(lambda: len(smtp.to(address)) > mails, timeout=TIMEOUT_MS / 1000)
    found = re.search(rf"{re.escape(base)}/admin/sign-in/[\w-]+", text_of(smtp.to(address)[-1]))
    assert found, "no sign-in link in the email"
    page.goto(found.group(0))
    expect(page.get_by_text(f"Press the button to sign in as {address}.")).to_be_visible()
    button = page.get_by_role("button", name="Sign in")
    if keyboard:
        tab_to(page, button)
        page.keyboard.press("Enter")
    else:
        button.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your groups")
    expect(page.get_by_text(f"Signed in as {address}")).to_be_visible()


def status_of(page: Page, url: str) -> int:
    response = page.goto(url)
    assert response is not None
    return response.status


def test_an_editors_week(
    browser: Browser, site_url: str, smtp_server: SmtpServer, cli: Cli, shot: Shot
) -> None:
    """A contributor proposes; the editor approves, builds, previews, tests, approves and sends."""
    base, smtp = site_url, smtp_server
    members = {m["email"] for m in cli.members("uk").values() if m["status"] == "active"}
    assert len(members) >= 5

    # -- the contributor: signs in with the keyboard only, proposes an item ----------------------
    contributor = browser.new_context(locale="en-GB", viewport=VIEWPORT)
    page = contributor.new_page()
    sign_in(page, base, smtp, CONTRIBUTOR, keyboard=True)
    page.get_by_role("link", name=GROUP).click()
    page.get_by_role("link", name="Items").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Your proposals to {GROUP}")
    page.get_by_role("link", name="Propose an item").click()
    page.get_by_label("Title").fill(PROPOSAL)
    page.get_by_label("Link (http or https)").fill("https://www.example.org/bipc/clinics-2027")
    page.get_by_label("Summary (Markdown)").fill(SUMMARY)
    page.get_by_label("Topic").fill("Training")
    # The live preview (htmx) shows the summary as the email renders it.
    preview = page.locator("#preview")
    expect(preview.locator("strong")).to_have_text("Business & IP Centre")
    expect(preview.get_by_role("link", name="the clinics page")).to_be_visible()
    expect(page.get_by_role("checkbox", name=GROUP)).to_be_checked()
    scroll_to(page.get_by_role("heading", level=1))
    shot(page, "items")
    page.get_by_role("button", name="Propose", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(PROPOSAL)
    expect(page.locator("#item-status")).to_have_text("proposed")
    # Nothing of the group's members, nor any other group, for a contributor.
    assert status_of(page, f"{base}/admin/groups/uk/subscribers") == 403
    assert status_of(page, f"{base}/admin/groups/uk/editions") == 403
    assert status_of(page, f"{base}/admin/groups/dach/") == 404
    assert status_of(page, f"{base}/admin/groups/dach/items") == 404
    contributor.close()

    # -- the editor: reviews the proposal --------------------------------------------------------
    editor = browser.new_context(locale="en-GB", viewport=VIEWPORT)
    page = editor.new_page()
    sign_in(page, base, smtp, EDITOR)
    expect(page.get_by_role("link", name="CEPIUG", exact=True)).to_be_visible()
    # The two sample items still proposed, and the contributor's proposal.
    expect(page.get_by_role("link", name="3 items wait for review")).to_be_visible()
    shot(page, "dashboard")
    page.get_by_role("link", name=GROUP).click()
    page.get_by_role("link", name="Items").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Items of {GROUP}")
    shot(page, "queue", full_page=True)
    page.get_by_role("link", name=PROPOSAL).click()
    expect(page.get_by_role("cell", name=f"user:{CONTRIBUTOR}").first).to_be_visible()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator("#item-status")).to_have_text("approved")

    # -- builds the edition, writes an intro, previews it ------------------------------------------
    page.get_by_role("link", name=f"Items of {GROUP}").click()
    page.get_by_role("link", name=GROUP).click()
    page.get_by_role("link", name="Editions").click()
    page.get_by_role("button", name="Build the next edition").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Edition #\d+"))
    titles = page.locator("td.item-title")
    expect(titles).to_have_count(len(APPROVED) + 1)
    expect(titles.filter(has_text=PROPOSAL)).to_have_count(1)
    page.get_by_label("Intro (Markdown, shown above the items)").fill(INTRO)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_label("Intro (Markdown, shown above the items)")).to_have_value(INTRO)
    page.get_by_role("link", name="Preview the email").click()
    for width in (375, 600):
        frame = page.frame_locator(f"iframe[title='The email, {width} pixels wide']")
        # The title is the item's link (the "Read more" button repeats it for screen readers).
        expect(frame.get_by_role("link", name=PROPOSAL, exact=True)).to_be_visible()
        expect(frame.get_by_text(INTRO)).to_be_visible()
    expect(page.locator("pre.text")).to_contain_text(PROPOSAL)
    expect(page.locator("pre.text")).to_contain_text("prior art and freedom-to-operate basics")
    scroll_to(page.get_by_role("heading", level=1))
    shot(page, "edition")
    page.get_by_role("link", name=re.compile(r"Back to edition #\d+")).click()

    # -- a test to themselves, then approve and send --------------------------------------------
    mails = len(smtp.to(EDITOR))
    page.get_by_role("button", name="Send a test to me").click()
    expect(page.get_by_role("status")).to_have_text(f"A test copy is on its way to {EDITOR}.")
    smtp.wait_for(lambda: len(smtp.to(EDITOR)) > mails, timeout=TIMEOUT_MS / 1000)
    test_copy = smtp.to(EDITOR)[-1]
    assert str(test_copy.message()["Subject"]).startswith("[TEST]"), test_copy.message()["Subject"]
    assert PROPOSAL in text_of(test_copy)
    assert not any(smtp.to(member) for member in members)
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("strong.state")).to_have_text("approved")
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Sending edition #\d+"))
    # htmx refreshes the counts; wait until every member's copy is delivered.
    expect(page.locator("#progress dd.delivered")).to_have_text(str(len(members)))
    expect(page.locator("#progress strong.state")).to_have_text("sent")
    expect(page.locator("#progress dd.failed")).to_have_text("0")
    expect(page.locator("#progress dd.waiting")).to_have_text("0")
    shot(page, "sending")

    # The figures on the edition page; the relay got one copy per active member.
    page.get_by_role("link", name=re.compile(r"Back to edition #\d+")).click()
    figures = page.get_by_role("region", name="Figures")
    expect(figures.locator("dd.delivered")).to_have_text(str(len(members)))
    for name in ("deferred", "failed", "bounced-hard", "bounced-soft", "complained", "unsubscribed"):
        expect(figures.locator(f"dd.{name}")).to_have_text("0")
    shot(page, "progress", down_to=figures)
    shot(page, "sent", full_page=True)
    for member in members:
        assert len(smtp.to(member)) == 1, member
    # Besides: the two sign-in links and the test copy, nothing else.
    assert len(smtp.messages) == len(members) + 3
    editor.close()
