"""Email quality as delivered: spam score, rendering in a real browser, and the text part.

Each group of the example site gets an edition built from the sample items and
written to the outbox; one delivered message per group is checked.
"""

import email
import re
import shutil
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.conftest import REPO, SCREENSHOTS, Cli, chromium, needs_chromium

GROUPS = {"cepiug": "en", "uk": "en", "dach": "de", "fr": "fr"}
HTML_TAG = re.compile(r"</?(?:p|a|br|div|span|strong|em|b|i|ul|ol|li|table|tr|td|img|h\d)\b[^>]*>", re.I)


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EmailMessage]:
    """One delivered message per group of the example site (SQLite, outbox transport)."""
    site = tmp_path_factory.mktemp("quality") / "site"
    site.mkdir()
    for part in ("newsletter.toml", "templates", "subscribers", "schedules", "samples"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, site / part)
    cli = Cli(site, f"sqlite:///{site / 'news.db'}")
    files = [
        arg for path in sorted((site / "samples" / "items").glob("*.md")) for arg in ("--file", str(path))
    ]
    cli("items", "add", "--approve", *files)
    messages = {}
    for number, group in enumerate(GROUPS, start=1):
        cli(
            "subscribers",
            "add",
            group,
            f"reader-{group}@example.org",
            "--name",
            "Test Reader",
            "--language",
            GROUPS[group],
        )
        cli("editions", "build", group)
        cli("editions", "approve", str(number))
        cli("editions", "send", str(number))
        [eml] = sorted((site / "outbox" / f"edition-{number}").glob("*.eml"))
        messages[group] = email.message_from_bytes(eml.read_bytes(), policy=default)
    return messages


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.parametrize("group", GROUPS)
def test_spamassassin_scores_at_most_one(
    delivered: dict[str, EmailMessage], group: str, tmp_path: Path
) -> None:
    """Each group's edition, as delivered, scores at most 1.0 with SpamAssassin's offline rules."""
    if shutil.which("spamassassin") is None:
        pytest.skip("needs SpamAssassin (apt-get install spamassassin; .ci/run installs it)")
    raw = delivered[group].as_bytes()
    result = subprocess.run(
        ["spamassassin", "-L", "-t"], input=raw, capture_output=True, timeout=120, check=False
    )
    report = result.stdout.decode("utf-8", "replace")
    match = re.search(r"X-Spam-Status: \w+, score=(-?[\d.]+)", report)
    assert match, report[:2000]
    details = report[report.find("Content analysis details") :]
    assert float(match.group(1)) <= 1.0, details


@pytest.mark.parametrize("group", GROUPS)
def test_text_part_has_no_html_and_lists_every_link(delivered: dict[str, EmailMessage], group: str) -> None:
    """The plain-text part holds no HTML tag and writes out every http(s) link of the HTML part."""
    message = delivered[group]
    text, html = text_of(message), html_of(message)
    assert not HTML_TAG.search(text), HTML_TAG.search(text)
    links = set(re.findall(r'href="(https?://[^"]+)"', html))
    assert links, "the HTML part should have links"
    missing = sorted(link.replace("&amp;", "&") for link in links if link.replace("&amp;", "&") not in text)
    assert not missing


# Contrast per WCAG 2.1: relative luminance of the text colour against the first
# opaque background found walking up the tree; 4.5:1, or 3:1 for large text.
CONTRAST_JS = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
      const attr = e.getAttribute && e.getAttribute('bgcolor');
      if (attr) { const d = document.createElement('div'); d.style.color = attr; document.body.appendChild(d);
        const v = parse(getComputedStyle(d).color); d.remove(); return v; }
    }
    return [255, 255, 255];
  };
  const failures = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim()) continue;
    const el = node.parentElement;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.display === 'none' || style.visibility === 'hidden' || box.width < 2 || box.height < 2
        || parseFloat(style.maxHeight) === 0 || parseFloat(style.opacity) === 0) continue;
    const fg = lum(parse(style.color)), bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const label = node.textContent.trim().slice(0, 40);
    if (ratio < (large ? 3 : 4.5)) failures.push(`${label}: ${ratio.toFixed(2)}`);
  }
  return failures;
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as instance:
        yield instance


@needs_chromium
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("group", GROUPS)
def test_renders_in_chromium(
    delivered: dict[str, EmailMessage], browser: object, group: str, width: int, scheme: str
) -> None:
    """In Chromium at 375 and 600 px, light and dark (``prefers-color-scheme`` emulated, as Apple
    Mail honours it): no sideways scroll, images with alt, the edition's lang, AA contrast."""
    message = delivered[group]
    page = browser.new_page(  # type: ignore[attr-defined]
        viewport={"width": width, "height": 900}, color_scheme=scheme
    )
    try:
        page.set_content(html_of(message), wait_until="load")
        scroll, client = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll <= client, f"{scroll}px wide content in a {client}px window"
        assert page.evaluate("() => document.documentElement.lang") == GROUPS[group]
        without_alt = page.evaluate("() => [...document.images].filter(i => !i.hasAttribute('alt')).length")
        assert without_alt == 0
        assert page.evaluate(CONTRAST_JS) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches") == (scheme == "dark")
        card = page.evaluate("() => getComputedStyle(document.querySelector('.nl-card')).backgroundColor")
        assert card == ("rgb(28, 31, 36)" if scheme == "dark" else "rgb(255, 255, 255)")
        suffix = "-dark" if scheme == "dark" else ""
        page.screenshot(path=str(SCREENSHOTS / f"email-{group}-{width}{suffix}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("group", GROUPS)
def test_outlook_and_preheader_survive(delivered: dict[str, EmailMessage], group: str) -> None:
    """The HTML keeps Outlook conditional comments and a hidden preheader naming the first items."""
    html = html_of(delivered[group])
    assert "<!--[if mso" in html
    preheader = re.search(r'<div style="display:none;[^"]*">(.*?)</div>', html, re.S)
    assert preheader is not None
    assert preheader.group(1).strip()
