"""The colours of an email, in light and dark mode, with WCAG AA contrast whatever the brand colour.

A group's ``brand_color`` is the editor's choice; the email must stay readable with any
of them. From it come the text colour on the brand (white or near-black, whichever
contrasts more), and the brand as text on the card: darkened until it reaches 4.5:1 on
white, and lightened until it reaches 4.5:1 on the dark card that mail clients honouring
``prefers-color-scheme: dark`` show. The fixed greys are chosen to pass in both modes;
``tests/test_email_structure.py`` computes every pair.
"""

from dataclasses import dataclass

AA = 4.5
LIGHT_PAGE, LIGHT_CARD, LIGHT_TEXT, LIGHT_MUTED = "#f2f4f7", "#ffffff", "#222222", "#555555"
DARK_PAGE, DARK_CARD, DARK_TEXT, DARK_MUTED = "#121417", "#1c1f24", "#e6e8eb", "#b4b9c0"
# Black, not a near-black: one of white and black always reaches at least 4.58:1 on any colour.
WHITE, NEAR_BLACK = "#ffffff", "#000000"


def _channels(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def luminance(colour: str) -> float:
    """Relative luminance per WCAG 2.1."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = _channels(colour)
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""
    a, b = sorted((luminance(first), luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def _mix(colour: str, toward: str, share: float) -> str:
    pairs = zip(_channels(colour), _channels(toward), strict=True)
    return "#" + "".join(f"{round(c + (t - c) * share):02x}" for c, t in pairs)


def _readable_on(colour: str, background: str, toward: str) -> str:
    """``colour`` moved toward ``toward`` in small steps until it reaches AA on ``background``."""
    for step in range(21):
        candidate = _mix(colour, toward, step / 20)
        if contrast(candidate, background) >= AA:
            return candidate
    return toward


@dataclass(frozen=True)
class Palette:
    """Every colour the digest template uses; ``dark_*`` are for ``prefers-color-scheme: dark``."""

    brand: str
    on_brand: str
    brand_text: str
    page: str = LIGHT_PAGE
    card: str = LIGHT_CARD
    text: str = LIGHT_TEXT
    muted: str = LIGHT_MUTED
    dark_brand_text: str = ""
    dark_page: str = DARK_PAGE
    dark_card: str = DARK_CARD
    dark_text: str = DARK_TEXT
    dark_muted: str = DARK_MUTED

    def pairs(self) -> dict[str, tuple[str, str]]:
        """(text, background) of every pairing the template makes, by name: what the tests check."""
        return {
            "text on card": (self.text, self.card),
            "muted on card": (self.muted, self.card),
            "muted on page": (self.muted, self.page),
            "brand text on card": (self.brand_text, self.card),
            "text on brand": (self.on_brand, self.brand),
            "dark text on card": (self.dark_text, self.dark_card),
            "dark muted on card": (self.dark_muted, self.dark_card),
            "dark muted on page": (self.dark_muted, self.dark_page),
            "dark brand text on card": (self.dark_brand_text, self.dark_card),
            "dark text on brand": (self.on_brand, self.brand),
        }


def palette(brand: str) -> Palette:
    """The palette for a brand colour (``#rrggbb``)."""
    brand = brand.lower()
    on_brand = WHITE if contrast(WHITE, brand) >= contrast(NEAR_BLACK, brand) else NEAR_BLACK
    return Palette(
        brand=brand,
        on_brand=on_brand,
        brand_text=_readable_on(brand, LIGHT_CARD, "#000000"),
        dark_brand_text=_readable_on(brand, DARK_CARD, WHITE),
    )
