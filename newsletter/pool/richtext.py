"""Turning editor Markdown and feed HTML into HTML that is safe to put in an email.

markdown-it-py renders CommonMark with raw HTML switched off; nh3 (ammonia) then
keeps only a small set of tags and the http, https and mailto link schemes, so a
``javascript:`` link or a ``<script>`` can never reach a subscriber.
"""

import html

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "a",
    "p",
    "br",
    "strong",
    "b",
    "em",
    "i",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "h3",
    "h4",
    "hr",
    "sub",
    "sup",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}

_markdown = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(
    ["replacements", "smartquotes"]
)


def sanitize_html(html: str) -> str:
    """Keep only harmless markup; links get ``rel="noopener noreferrer"``."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def markdown_to_html(text: str) -> str:
    """Render an editor's Markdown summary to sanitised HTML."""
    return sanitize_html(_markdown.render(text.replace("\r\n", "\n")))


def plain_text(markup: str) -> str:
    """The text of some HTML: tags dropped, entities decoded (``R&amp;D`` is ``R&D``), spaces folded."""
    return " ".join(html.unescape(nh3.clean(markup, tags=set())).split())
