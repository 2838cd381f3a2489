"""The email's structure for assistive technology, its dark mode, and item images end to end.

The rendered HTML is parsed with the standard library's parser (no browser): headings,
``lang`` on blocks in another language than the edition, every link's accessible name
(its text, hidden text included), no ``target``, the logo's attributes, the preheader.
The palette's contrast is computed for the example groups and for awkward brand colours.
Images go the whole way: a real HTTP server on 127.0.0.1 (allowed by ``[fetch]
allowed_networks``), the safe fetcher, Pillow, the site's ``/images/`` route, the email.
"""

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from sqlmodel import select
from starlette.testclient import TestClient

from newsletter.collecting.images import EMAIL_WIDTH, NAME, resize
from newsletter.core.errors import InputError
from newsletter.core.models import Item
from newsletter.core.settings import Settings, load_settings
from newsletter.core.site import Site
from newsletter.editions.palette import AA, contrast, palette
from newsletter.editions.render import (
    LOGO_MAX_WIDTH,
    PREHEADER_CHARS,
    ItemImage,
    Renderer,
    clip,
)
from newsletter.web.app import create_app
from tests.conftest import Cli
from tests.feed_server import FeedServer, feed_server, rss, use_sources
from tests.test_render import BRAND, GROUP_NAMES, ITEMS, LEX_FR, STRINGS, SURVEY_EN, SURVEY_FR, content

LANGUAGE_OF = {"cepiug": "en", "uk": "en", "dach": "de", "fr": "fr"}
VOID = {"br", "img", "meta", "link", "hr", "input", "col", "area", "base", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    # The nearest lang up the tree (the element's own, or an ancestor's).
    lang: str = ""


@dataclass
class Parsed:
    headings: list[Element] = field(default_factory=list)
    links: list[Element] = field(default_factory=list)
    images: list[Element] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    preheader: str = ""


class _Reader(HTMLParser):
    """Collects headings, links (with all their text) and images, each with its language."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()
        self.stack: list[tuple[str, str]] = []  # (tag, lang in force)
        self.open: list[Element] = []
        self.in_preheader = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        lang = values.get("lang") or (self.stack[-1][1] if self.stack else "")
        if "target" in values:
            self.parsed.targets.append(values["target"])
        if tag == "img":
            self.parsed.images.append(Element(tag, values, lang=lang))
        if tag in VOID:
            return
        self.stack.append((tag, lang))
        if tag in {"h1", "h2", "h3", "h4", "a"}:
            self.open.append(Element(tag, values, lang=lang))
        if tag == "div" and values.get("style", "").startswith("display:none"):
            self.in_preheader = True

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self.stack:
            popped, _ = self.stack.pop()
            if popped == tag:
                break
        if tag == "div":
            self.in_preheader = False
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index].tag == tag:
                element = self.open.pop(index)
                # Runs of ordinary white space as one space; French no-break spaces stay.
                element.text = re.sub(r"[ \t\r\n]+", " ", element.text).strip()
                (self.parsed.links if tag == "a" else self.parsed.headings).append(element)
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.text += data
        if self.in_preheader:
            self.parsed.preheader += data


def parse(html: str) -> Parsed:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.parsed


@pytest.fixture
def settings(site_dir: Path) -> Settings:
    return load_settings(site_dir, env={})


def rendered(settings: Settings, group: str, language: str | None = None, items: list = ITEMS) -> str:  # type: ignore[type-arg]
    return Renderer(settings).render(content(settings, group, items), language or LANGUAGE_OF[group]).html


# --- headings, languages, link names ------------------------------------------------------------


@pytest.mark.parametrize("group", LANGUAGE_OF)
def test_sections_and_items_are_headings(settings: Settings, group: str) -> None:
    """One h1 (the group), an h2 per section, an h3 per item, in reading order."""
    language = LANGUAGE_OF[group]
    parsed = parse(rendered(settings, group))
    levels = {level: [h.text for h in parsed.headings if h.tag == level] for level in ("h1", "h2", "h3")}
    assert levels["h1"] == [GROUP_NAMES[group]]
    assert levels["h2"] == STRINGS[language]["sections"]
    assert len(levels["h3"]) == len(ITEMS)
    assert (SURVEY_FR if language == "fr" else SURVEY_EN) == levels["h3"][0]
    # Section headings keep their brand colour (as text readable on white).
    brand_text = palette(BRAND[group]).brand_text
    assert all(brand_text in h.attrs["style"] for h in parsed.headings if h.tag == "h2")


def test_blocks_in_another_language_carry_lang(settings: Settings) -> None:
    """German edition: English items say lang="en", the French one lang="fr"; nothing else is marked."""
    parsed = parse(rendered(settings, "dach"))
    titles = {h.text: h.lang for h in parsed.headings if h.tag == "h3"}
    assert titles[LEX_FR] == "fr"
    assert {lang for title, lang in titles.items() if title != LEX_FR} == {"en"}
    assert {h.lang for h in parsed.headings if h.tag in {"h1", "h2"}} == {"de"}  # the page's own


def test_a_translated_item_is_in_the_editions_language(settings: Settings) -> None:
    """French edition: the survey's French translation and the French item carry no lang; English ones do."""
    html = rendered(settings, "fr")
    parsed = parse(html)
    titles = {h.text: h.attrs.get("lang", "") for h in parsed.headings if h.tag == "h3"}
    assert titles[SURVEY_FR] == ""
    assert titles[LEX_FR] == ""
    assert sum(lang == "en" for lang in titles.values()) == len(ITEMS) - 2
    # The summary follows its title: one lang="en" block per English item, plus its button's name.
    assert html.count('<div lang="en"') == len(ITEMS) - 2


@pytest.mark.parametrize("group", LANGUAGE_OF)
def test_every_link_name_says_where_it_goes(settings: Settings, group: str) -> None:
    """Item titles are links; a name is never used for two places; buttons name their item."""
    language = LANGUAGE_OF[group]
    parsed = parse(rendered(settings, group))
    places: dict[str, set[str]] = {}
    for link in parsed.links:
        assert link.text, f"a link without a name: {link.attrs}"
        places.setdefault(link.text, set()).add(link.attrs["href"])
    assert {name: hrefs for name, hrefs in places.items() if len(hrefs) > 1} == {}
    colon = STRINGS[language]["colon"]
    read_more = [link.text for link in parsed.links if link.text.startswith(STRINGS[language]["read_more"])]
    assert len(read_more) == len(ITEMS)
    titles = {h.text for h in parsed.headings if h.tag == "h3"}
    assert {name.split(f"{colon} ", 1)[1] for name in read_more} == titles
    calendar = [link.text for link in parsed.links if link.text.startswith(STRINGS[language]["calendar"])]
    assert len(calendar) == 2
    title_links = [link for link in parsed.links if link.text in titles]
    assert len(title_links) == len(ITEMS)


@pytest.mark.parametrize("group", LANGUAGE_OF)
def test_no_link_opens_a_new_window(settings: Settings, group: str) -> None:
    html = rendered(settings, group)
    assert parse(html).targets == []
    assert "_blank" not in html


def test_the_hidden_part_of_a_name_is_hidden_in_the_email_clients_way(settings: Settings) -> None:
    """Inline styles only (Gmail drops classes' positioning), and mso-hide for Outlook on Windows."""
    html = rendered(settings, "cepiug")
    hidden = re.findall(r'<span style="([^"]*)">: Survey: how do you use', html)
    assert len(hidden) == 1
    for rule in ("width:1px", "height:1px", "overflow:hidden", "opacity:0", "mso-hide:all"):
        assert rule in hidden[0]


# --- preheader ------------------------------------------------------------------------------------


def test_clip_cuts_at_a_word_with_an_ellipsis() -> None:
    text = "Espacenet " * 30
    cut = clip(text)
    assert len(cut) <= PREHEADER_CHARS
    assert cut.endswith("Espacenet…")
    assert clip("short and sweet") == "short and sweet"
    assert clip("a · b · " + "x" * 200, 10) == "a · b…"
    assert clip("y" * 200, 10) == "y" * 9 + "…"  # one endless word: cut inside it after all
    exact = "w" * PREHEADER_CHARS
    assert clip(exact) == exact


@pytest.mark.parametrize("group", LANGUAGE_OF)
def test_preheader_is_in_the_editions_language_and_cut_at_a_word(settings: Settings, group: str) -> None:
    language = LANGUAGE_OF[group]
    preheader = parse(rendered(settings, group)).preheader.strip()
    assert 0 < len(preheader) <= PREHEADER_CHARS
    if language == "en":
        assert preheader.startswith(SURVEY_EN)
        assert LEX_FR not in preheader  # in French: stays out of an English preview line
        assert preheader.endswith("…")
        assert not preheader.endswith(" …")
        assert preheader[:-1] in " · ".join(
            h
            for h in [
                SURVEY_EN,
                "CEPIUG workshop: working with Unitary Patent data",
                "Webinar: searching chemistry in PATENTSCOPE",
            ]
        )
    elif language == "fr":
        assert preheader.startswith(SURVEY_FR)
        assert LEX_FR in preheader
        assert SURVEY_EN not in preheader
    else:
        # Every item is in English or French: the German section titles stand in.
        assert preheader.startswith(STRINGS["de"]["sections"][0])


# --- logo ----------------------------------------------------------------------------------------


def test_logo_with_alt_width_and_height(settings: Settings) -> None:
    group = settings.group("cepiug").model_copy(
        update={"logo_url": "https://news.example.org/logo.png", "logo_width": 180, "logo_height": 54}
    )
    settings = replace(settings, groups={**settings.groups, "cepiug": group})
    [logo] = [i for i in parse(rendered(settings, "cepiug")).images if i.attrs["src"].endswith("/logo.png")]
    assert logo.attrs["alt"] == "CEPIUG"
    assert (logo.attrs["width"], logo.attrs["height"]) == ("180", "54")


def test_a_wide_logo_is_shown_at_most_max_width_keeping_its_ratio(settings: Settings) -> None:
    group = settings.group("uk").model_copy(
        update={"logo_url": "https://news.example.org/wide.png", "logo_width": 1200, "logo_height": 300}
    )
    settings = replace(settings, groups={**settings.groups, "uk": group})
    [logo] = [i for i in parse(rendered(settings, "uk")).images if i.attrs["src"].endswith("/wide.png")]
    assert logo.attrs["alt"] == GROUP_NAMES["uk"]
    assert (int(logo.attrs["width"]), int(logo.attrs["height"])) == (LOGO_MAX_WIDTH, LOGO_MAX_WIDTH // 4)


def test_no_logo_no_image(settings: Settings) -> None:
    assert parse(rendered(settings, "cepiug")).images == []


def test_logo_url_must_be_a_web_address(site_dir: Path) -> None:
    config = site_dir / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'brand_color = "#1f4e79"', 'brand_color = "#1f4e79"\nlogo_url = "javascript:alert(1)"'
        ),
        encoding="utf-8",
    )
    with pytest.raises(Exception, match="logo_url"):
        load_settings(site_dir, env={})


# --- dark mode and contrast ----------------------------------------------------------------------

AWKWARD = ["#ffcc00", "#777777", "#767676", "#000000", "#ffffff", "#00ff00", "#0000ff", "#ff0000"]


@pytest.mark.parametrize("brand", [*BRAND.values(), *AWKWARD])
def test_palette_keeps_aa_contrast_in_light_and_dark(brand: str) -> None:
    colours = palette(brand)
    ratios = {name: contrast(fg, bg) for name, (fg, bg) in colours.pairs().items()}
    assert {name: round(r, 2) for name, r in ratios.items() if r < AA} == {}
    assert colours.dark_brand_text
    assert colours.brand_text


def test_contrast_matches_wcag_reference_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast("#1f4e79", "#1f4e79") == pytest.approx(1.0)


def test_example_brands_are_kept_as_they_are(settings: Settings) -> None:
    """The example groups' colours already pass: the palette does not change them."""
    for brand in BRAND.values():
        assert palette(brand).brand_text == brand
        assert palette(brand).on_brand == "#ffffff"


@pytest.mark.parametrize("group", LANGUAGE_OF)
def test_dark_mode_is_declared_and_styled(settings: Settings, group: str) -> None:
    html = rendered(settings, group)
    assert '<meta name="color-scheme" content="light dark"' in html
    assert '<meta name="supported-color-schemes" content="light dark"' in html
    assert "@media (prefers-color-scheme: dark)" in html
    colours = palette(BRAND[group])
    assert colours.dark_brand_text in html
    assert colours.dark_card in html
    # The HTML stays light (the issue measured 41-45 KB as delivered).
    assert len(html.encode()) < 45_000


# --- images --------------------------------------------------------------------------------------


def png(width: int, height: int, colour: tuple[int, ...] = (31, 78, 121)) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(data, "PNG")
    return data.getvalue()


def test_resize_scales_down_to_the_email_width_and_never_up() -> None:
    body, extension, width, height = resize(png(1200, 800))
    assert (extension, width, height) == ("jpg", EMAIL_WIDTH, 367)
    assert Image.open(io.BytesIO(body)).size == (EMAIL_WIDTH, 367)
    _, _, width, height = resize(png(300, 100))
    assert (width, height) == (300, 100)
    transparent = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(transparent, "PNG")
    assert resize(transparent.getvalue())[1] == "png"


@pytest.mark.parametrize(
    "data",
    [b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"GIF89a broken", b"", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"],
)
def test_what_is_not_a_usable_image_is_refused(data: bytes) -> None:
    with pytest.raises(InputError):
        resize(data)


def test_a_decompression_bomb_is_refused() -> None:
    """A tiny file that claims a huge canvas is refused before its pixels are decoded."""
    data = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(data, "PNG")
    assert len(data.getvalue()) < 100_000
    with pytest.raises(InputError, match=r"pixels|image"):
        resize(data.getvalue())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FeedServer]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "photo.png").write_bytes(png(1200, 800))
    with feed_server(root) as running:
        yield running


def allow_loopback_images(site_dir: Path) -> None:
    config = site_dir / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[fetch]\nallowed_networks = ["127.0.0.0/8"]\n',
        encoding="utf-8",
    )


def item_file(site_dir: Path, image: str, alt: str | None) -> Path:
    path = site_dir / "pictured.md"
    alt_line = f'image_alt: "{alt}"\n' if alt else ""
    path.write_text(
        "---\ntitle: Espacenet gets a new look\nurl: https://www.epo.org/news/look\ntopic: EPO\n"
        f"groups: [cepiug]\nimage: {image}\n{alt_line}---\nThe new search page.\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.postgres
def test_image_item_end_to_end(site_dir: Path, db_url: str, server: FeedServer) -> None:
    """Markdown item -> HTTP fetch -> resized once -> served by the app -> in the email with alt."""
    allow_loopback_images(site_dir)
    cli = Cli(site_dir, db_url)
    alt = "The new Espacenet search page"
    cli("items", "add", "--approve", "--file", str(item_file(site_dir, server.file_url("photo.png"), alt)))
    assert len(server.requests["/files/photo.png"]) == 1
    with cli.database() as session:
        [item] = [i for i in session.exec(select(Item)).all() if i.image_name]
        name, width, height = item.image_name, item.image_width, item.image_height
        assert item.image_alt == alt
        assert item.image_source == server.file_url("photo.png")
    assert name is not None
    assert NAME.fullmatch(name)
    assert (width, height) == (EMAIL_WIDTH, 367)

    settings = load_settings(site_dir, env={}, overrides={"database.url": db_url})
    site = Site.open(settings)
    try:
        answer = TestClient(create_app(site)).get(f"/images/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/jpeg"
        assert "immutable" in answer.headers["cache-control"]
        assert Image.open(io.BytesIO(answer.content)).size == (EMAIL_WIDTH, 367)
        for wrong in ("../newsletter.toml", "0" * 32 + ".gif", "%2e%2e%2fnewsletter.toml", "0" * 32 + ".jpg"):
            assert TestClient(create_app(site)).get(f"/images/{wrong}").status_code == 404
    finally:
        site.close()

    cli("editions", "build", "cepiug")
    html = cli("editions", "preview", "1").output
    [image] = [i for i in parse(html).images if name in i.attrs["src"]]
    assert image.attrs["src"] == f"https://news.example.org/images/{name}"
    assert image.attrs["alt"] == alt
    assert (image.attrs["width"], image.attrs["height"]) == (str(EMAIL_WIDTH), "367")


def test_an_image_from_a_private_address_is_refused_and_the_item_kept(
    site_dir: Path, db_url: str, server: FeedServer
) -> None:
    """Without allowed_networks, 127.0.0.1 is refused: a warning, and the item without its image."""
    cli = Cli(site_dir, db_url)
    result = cli("items", "add", "--file", str(item_file(site_dir, server.file_url("photo.png"), "alt")))
    assert "without its image" in result.output
    assert "loopback" in result.output
    assert server.requests["/files/photo.png"] == []
    with cli.database() as session:
        [item] = [i for i in session.exec(select(Item)).all() if i.title == "Espacenet gets a new look"]
        assert item.image_name is None


def test_an_image_file_beside_the_item_and_check_warns_without_alt(site_dir: Path, db_url: str) -> None:
    (site_dir / "photo.png").write_bytes(png(800, 400))
    cli = Cli(site_dir, db_url)
    cli("items", "add", "--file", str(item_file(site_dir, "photo.png", None)))
    check = cli("check")
    assert "warning: item #" in check.output
    assert "image without alt text" in check.output
    assert "site OK" in check.output  # a warning, not a failure
    item_id = re.search(r"items edit (\d+) --image-alt", check.output)
    assert item_id is not None
    cli("items", "edit", item_id.group(1), "--image-alt", "A laptop showing the new search page")
    assert "warning" not in cli("check").output
    outside = item_file(site_dir, "../../etc/hostname", None)
    assert "must be a URL or a file" in cli("items", "add", "--file", str(outside), ok=False).output


def test_check_warns_about_a_template_image_without_alt(site_dir: Path, db_url: str) -> None:
    template = site_dir / "templates" / "digest.mjml.j2"
    template.write_text(
        template.read_text(encoding="utf-8").replace(
            "<mj-column>", '<mj-column>\n        <mj-image src="https://news.example.org/x.png" />', 1
        ),
        encoding="utf-8",
    )
    check = Cli(site_dir, db_url)("check")
    assert re.search(r"warning: .*digest\.mjml\.j2:\d+: an image without alt text", check.output)


def test_feed_images_are_collected(site_dir: Path, db_url: str, server: FeedServer) -> None:
    """A media:thumbnail in a feed becomes the item's image (the source allows 127.0.0.1)."""
    body = (
        rss([{"title": "With a picture", "link": "https://example.org/pic", "guid": "g1"}])
        .replace("</item>", f'<media:thumbnail url="{server.file_url("photo.png")}"/></item>')
        .replace('<rss version="2.0">', '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">')
    )
    url = server.feed("feed.xml", body)
    use_sources(
        site_dir,
        [
            {
                "name": "pics",
                "url": url,
                "topic": "EPO",
                "groups": ["*"],
                "approval": "auto",
                "allow_private": True,
            }
        ],
    )
    cli = Cli(site_dir, db_url)
    cli("collect")
    with cli.database() as session:
        [item] = session.exec(select(Item)).all()
        assert item.image_name
        assert item.image_width == EMAIL_WIDTH
        assert item.image_alt is None


def test_image_view_reaches_the_template(settings: Settings) -> None:
    pictured = replace(ITEMS[0], image=ItemImage("a" * 32 + ".jpg", 550, 300, "A chart"))
    images = parse(rendered(settings, "cepiug", items=[pictured, *ITEMS[1:]])).images
    assert [(i.attrs["alt"], i.attrs["width"]) for i in images] == [("A chart", "550")]


def test_a_missing_feed_image_is_a_warning_and_the_item_stays(
    site_dir: Path, db_url: str, server: FeedServer
) -> None:
    """An enclosure that answers 404: the source reports it, the item is stored without an image."""
    missing = server.error("gone.png", 404)
    body = rss([{"title": "Picture gone", "link": "https://example.org/gone", "guid": "g2"}]).replace(
        "</item>", f'<enclosure url="{missing}" type="image/png" length="1"/></item>'
    )
    url = server.feed("feed.xml", body)
    use_sources(
        site_dir,
        [
            {
                "name": "pics",
                "url": url,
                "topic": "EPO",
                "groups": ["*"],
                "approval": "auto",
                "allow_private": True,
            }
        ],
    )
    cli = Cli(site_dir, db_url)
    output = cli("collect", "--json").output
    assert "image(s) left out" in output
    assert "404" in output
    with cli.database() as session:
        [item] = session.exec(select(Item)).all()
        assert item.title == "Picture gone"
        assert item.image_name is None
