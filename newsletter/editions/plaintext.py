"""Sanitised summary HTML -> readable plain text with every link written out.

The summaries that reach an email are already reduced by nh3 to a dozen tags
(see ``richtext.ALLOWED_TAGS``), so a small converter on the standard library's
HTML parser covers them. html2text would do it too but is GPL-licensed.
"""

import re
import textwrap
from html.parser import HTMLParser

BLOCKS = {"p", "ul", "ol", "blockquote", "pre", "h3", "h4", "hr"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.links: list[str | None] = []
        self.lists: list[list[int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCKS:
            self.out.append("\n\n")
        if tag == "br":
            self.out.append("\n")
        elif tag in {"ul", "ol"}:
            self.lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            marker = "-"
            if self.lists and self.lists[-1][0] >= 0:
                self.lists[-1][0] += 1
                marker = f"{self.lists[-1][0]}."
            self.out.append(f"\n{'  ' * (len(self.lists) - 1)}{marker} ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
        elif tag == "hr":
            self.out.append("----")

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            href = self.links.pop()
            if href:
                self.out.append(f" <{href}>")
        elif tag in {"ul", "ol"} and self.lists:
            self.lists.pop()
        if tag in BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        text = re.sub(r"\s+", " ", data)
        if not self.out or self.out[-1].endswith("\n"):
            text = text.lstrip()
        self.out.append(text)


def html_to_text(html: str, width: int = 70) -> str:
    """Convert a sanitised HTML fragment to wrapped plain text; links as ``text <url>``."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    raw = "".join(parser.out)
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", raw) if p.strip()]
    wrapped = []
    for paragraph in paragraphs:
        lines = []
        for line in paragraph.split("\n"):
            indent = re.match(r"\s*(?:-|\d+\.)?\s*", line)
            hanging = " " * (indent.end() if indent else 0)
            lines.append(
                textwrap.fill(
                    line.strip(),
                    width=width,
                    initial_indent=line[: len(line) - len(line.lstrip())],
                    subsequent_indent=hanging,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        wrapped.append("\n".join(lines))
    return "\n\n".join(wrapped)
