"""Every template of the shared MJML corpus (jdrouet/mrml's test resources) through our renderer.

The corpus's SOURCES.md and expected.json say what must happen: the mrml-compare pairs and
the mrml-templates render with the same visible text as MJML's own reference HTML, and the
mrml-errors cases fail. Each template goes through ``compile_mjml`` directly and through
the full Jinja2 path (a site template folder holding it as ``NAME.mjml.j2``).
"""

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from newsletter.core.errors import RenderError
from newsletter.editions.render import compile_mjml, template_environment
from tests.conftest import CORPORA

MJML = CORPORA / "mjml"
HIDDEN = {"head", "style", "script", "title"}

pytestmark = pytest.mark.skipif(
    not (MJML / "expected.json").is_file(), reason=f"the MJML corpus is not at {MJML}"
)


class _Visible(HTMLParser):
    """Collects the text a reader sees, the title, links, images and plain comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hidden = 0
        self.text: list[str] = []
        self.title: list[str] = []
        self.in_title = False
        self.links: list[tuple[str, str]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HIDDEN:
            self.hidden += 1
        self.in_title = self.in_title or tag == "title"
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(("a", values["href"] or ""))
        if tag == "img" and values.get("src"):
            self.links.append(("img", values["src"] or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN and self.hidden:
            self.hidden -= 1
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if not self.hidden:
            self.text.append(data)

    def handle_comment(self, data: str) -> None:
        # Outlook's conditional comments are markup, not content; keep the plain ones.
        if not data.lstrip().startswith(("[if", "<![endif]", "[endif]")):
            self.comments.append(" ".join(data.split()))


def read_html(html: str) -> _Visible:
    parser = _Visible()
    parser.feed(html)
    parser.close()
    return parser


def visible_text(html: str) -> str:
    """The text a reader sees: no tags, <head>, <style> or comments; whitespace normalised."""
    return " ".join(" ".join(read_html(html).text).split())


def _cases() -> list[dict[str, Any]]:
    if not (MJML / "expected.json").is_file():
        return []
    cases: list[dict[str, Any]] = json.loads((MJML / "expected.json").read_text(encoding="utf-8"))
    return cases


CASES = _cases()
RENDERS = [c for c in CASES if c["observed_mjml_python_1_4_2"]["ok"]]
COMPARED = [c for c in RENDERS if c.get("expected_html")]
FAILS = [c for c in CASES if not c["observed_mjml_python_1_4_2"]["ok"]]


def _id(case: dict[str, Any]) -> str:
    return str(case["file"])


def through_jinja(tmp_path: Path, source: bytes, name: str) -> str:
    """Render a corpus file as a site template ``NAME.mjml.j2``, then compile it."""
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    template = f"{name}.mjml.j2"
    (templates / template).write_bytes(source)
    rendered = template_environment(tmp_path).get_template(template).render()
    return compile_mjml(rendered, template)


def test_the_corpus_is_what_sources_md_describes() -> None:
    """expected.json lists every .mjml file of the corpus, and every listed file exists."""
    on_disk = {str(p.relative_to(MJML)) for p in MJML.glob("*/*.mjml")}
    assert {c["file"] for c in CASES} == on_disk
    assert len(COMPARED) >= 20
    assert {c["file"] for c in FAILS} == {"mrml-errors/empty.mjml", "mrml-errors/mj-head-unknown-tag.mjml"}
    sources = (MJML / "SOURCES.md").read_text(encoding="utf-8")
    for case in CASES:
        assert Path(case["file"]).name in sources


@pytest.mark.parametrize("case", COMPARED, ids=_id)
def test_same_visible_text_as_the_reference(case: dict[str, Any]) -> None:
    """compile_mjml gives the reference HTML's visible text, links, images, title and preview."""
    source = (MJML / case["file"]).read_text(encoding="utf-8")
    html = compile_mjml(source, case["file"])
    ours, reference = read_html(html), read_html((MJML / case["expected_html"]).read_text(encoding="utf-8"))
    assert visible_text(html) == " ".join(" ".join(reference.text).split())
    assert ours.links == reference.links
    assert ours.comments == reference.comments
    if case["mj_title"]:
        assert "".join(ours.title).strip() == case["mj_title"]
    if case["mj_preview"]:
        assert case["mj_preview"] in visible_text(html)


@pytest.mark.parametrize("case", COMPARED, ids=_id)
def test_same_visible_text_through_jinja(tmp_path: Path, case: dict[str, Any]) -> None:
    """The corpus file as a Jinja2 site template renders to the same visible text as the reference."""
    source = (MJML / case["file"]).read_bytes()
    html = through_jinja(tmp_path, source, Path(case["file"]).stem)
    reference = (MJML / case["expected_html"]).read_text(encoding="utf-8")
    assert visible_text(html) == visible_text(reference)
    assert read_html(html).links == read_html(reference).links


def test_comments_are_kept() -> None:
    """A plain HTML comment in the MJML survives into the email, as MJML's reference keeps it."""
    html = compile_mjml((MJML / "mrml-compare" / "comment.mjml").read_text(encoding="utf-8"), "comment.mjml")
    assert read_html(html).comments == ["A comment"]


def test_preview_text_is_hidden_after_body() -> None:
    """mj-preview becomes the hidden preheader right after <body>, as in the reference."""
    html = compile_mjml((MJML / "mrml-compare" / "mj-preview.mjml").read_text(encoding="utf-8"), "p.mjml")
    body = html.split("<body", 1)[1]
    first_text = re.search(r">([^<>\s][^<>]*)<", body)
    assert first_text is not None
    assert first_text.group(1).strip() == "Hello MJML"


@pytest.mark.parametrize("case", RENDERS, ids=_id)
def test_crlf_copies_render_like_the_originals(tmp_path: Path, case: dict[str, Any]) -> None:
    """Saved with CRLF (or bare CR) line endings, every template renders exactly as with LF."""
    source = (MJML / case["file"]).read_bytes().replace(b"\r\n", b"\n")
    expected = compile_mjml(source.decode("utf-8"), case["file"])
    for ending in (b"\r\n", b"\r"):
        copy = source.replace(b"\n", ending)
        assert compile_mjml(copy.decode("utf-8"), case["file"]) == expected
    crlf = through_jinja(tmp_path, source.replace(b"\n", b"\r\n"), "crlf")
    assert visible_text(crlf) == visible_text(expected)


# SOURCES.md names three CRLF templates that mjml-python rejects unless line endings are
# normalised; the corpus copy here may not ship them.
CRLF_NAMED = ["racoon", "reactivation-email", "worldly"]


@pytest.mark.parametrize("name", CRLF_NAMED)
def test_crlf_templates_named_in_sources_md(tmp_path: Path, name: str) -> None:
    """racoon, reactivation-email and worldly (CRLF files) render after normalisation, if present."""
    found = sorted(MJML.glob(f"*/{name}.mjml"))
    if not found:
        pytest.skip(f"{name}.mjml is named in SOURCES.md but not in {MJML}")
    source = found[0].read_bytes()
    assert b"\r\n" in source
    html = compile_mjml(source.decode("utf-8"), found[0].name)
    assert visible_text(html)
    assert visible_text(through_jinja(tmp_path, source, name)) == visible_text(html)


@pytest.mark.parametrize("case", FAILS, ids=_id)
def test_error_cases_raise_a_clear_render_error(tmp_path: Path, case: dict[str, Any]) -> None:
    """The mrml-errors cases raise RenderError: one line that names the file, no Python repr."""
    path = MJML / case["file"]
    runs: tuple[Callable[[], str], ...] = (
        lambda: compile_mjml(path.read_text(encoding="utf-8"), case["file"]),
        lambda: through_jinja(tmp_path, path.read_bytes(), path.stem),
    )
    for run in runs:
        with pytest.raises(RenderError) as caught:
            run()
        message = str(caught.value)
        assert "\n" not in message
        assert path.name in message or f"{path.stem}.mjml.j2" in message
        assert "Traceback" not in message
        assert "ValueError" not in message
