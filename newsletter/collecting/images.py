"""Item images: fetched safely, checked, resized once to the email's width, kept for the site.

An image reaches an item from a feed (``media:thumbnail``, or an image enclosure) or
from a Markdown item's ``image:`` (a URL, or a file beside the item file). It is
fetched through the safe fetcher (``fetch.py``: size, time and address limits), decoded
with Pillow within a pixel budget (a small file that claims a gigapixel is a
decompression bomb), turned upright, and resized to the email's content width. The
result is stored once under the site's ``media/images/`` by a name derived from its
bytes, and served by the site at ``/images/{name}`` (``web/public/images.py``), so every
edition and the archive point to the same small file and nothing is fetched per reader.
Fetching an image is never a reason to lose the item: a failure is reported and the
item keeps going without one.
"""

import hashlib
import io
import ipaddress
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from newsletter.collecting.fetch import MEGABYTE, AddressPolicy, Fetcher, FetchLimits, read_file
from newsletter.core.errors import FetchError, InputError
from newsletter.core.models import Item
from newsletter.core.settings import Settings

# The digest's content width: a 600 px body less 25 px of padding on each side.
EMAIL_WIDTH = 550
MAX_IMAGE_BYTES = 10 * MEGABYTE
# Decoding is refused past this many pixels (about 40 megapixels, a large photograph).
MAX_PIXELS = 40_000_000
FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
ACCEPT = "image/jpeg, image/png, image/gif, image/webp"
# What a stored name looks like: the URL route accepts nothing else.
NAME = re.compile(r"[0-9a-f]{32}\.(?:jpg|png)")


@dataclass(frozen=True)
class StoredImage:
    name: str
    width: int
    height: int


def image_dir(settings: Settings) -> Path:
    """Where the resized images are kept (served at ``/images/{name}``)."""
    return settings.site_dir / "media" / "images"


def is_web_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def resize(data: bytes, width: int = EMAIL_WIDTH) -> tuple[bytes, str, int, int]:
    """The image scaled down to ``width`` (never up): ``(bytes, extension, width, height)``.

    Photographs become JPEG, images with transparency PNG; animation is dropped (the
    first frame), as Outlook shows only that one anyway.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=sorted(FORMATS))
            if opened.width * opened.height > MAX_PIXELS:
                raise InputError(f"the image is {opened.width}x{opened.height} pixels, more than allowed")
            opened.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"not an image that can be used (JPEG, PNG, GIF or WebP): {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"the image is damaged: {exc}") from None
    image: Image.Image = ImageOps.exif_transpose(opened) or opened
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    alpha = image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info)
    out = io.BytesIO()
    if alpha:
        image.convert("RGBA").save(out, "PNG", optimize=True)
        extension = "png"
    else:
        image.convert("RGB").save(out, "JPEG", quality=82, optimize=True, progressive=True)
        extension = "jpg"
    return out.getvalue(), extension, image.width, image.height


def store(data: bytes, settings: Settings) -> StoredImage:
    """Resize and keep an image; the same picture twice is stored once."""
    body, extension, width, height = resize(data)
    name = f"{hashlib.sha256(body).hexdigest()[:32]}.{extension}"
    folder = image_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.exists():
        partial = folder / f".{name}.part"
        partial.write_bytes(body)
        partial.replace(target)
    return StoredImage(name, width, height)


def fetch_image(
    source: str,
    settings: Settings,
    fetcher: Fetcher,
    *,
    policy: AddressPolicy | None = None,
    base_dir: Path | None = None,
    deadline: float | None = None,
) -> StoredImage:
    """Fetch (a URL) or read (a file relative to ``base_dir``) an image and store it resized.

    Raises :class:`InputError` or :class:`FetchError` with a readable reason.
    """
    limit = min(MAX_IMAGE_BYTES, int(settings.fetch.max_megabytes * MEGABYTE))
    if is_web_url(source):
        allowed = tuple(_networks(settings))
        response = fetcher.fetch(
            source,
            policy=policy or AddressPolicy(allowed=allowed),
            limits=FetchLimits(max_bytes=limit, timeout=min(settings.fetch.timeout, 30.0), deadline=deadline),
            headers={"Accept": ACCEPT},
        )
        if not 200 <= response.status < 300:
            raise FetchError(f"{source} answered HTTP {response.status} {response.reason}".rstrip())
        data = response.body
    else:
        path = Path(source)
        if not path.is_absolute():
            path = (base_dir or settings.site_dir) / path
        data = read_file(path, limit, InputError)
    try:
        return store(data, settings)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


def _networks(settings: Settings) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.fetch.allowed_networks]


def attach(item: Item, stored: StoredImage, source: str, alt: str | None) -> None:
    """Record a stored image on its item."""
    item.image_source = source[:2000]
    item.image_name, item.image_width, item.image_height = stored.name, stored.width, stored.height
    item.image_alt = alt.strip() if alt and alt.strip() else None
