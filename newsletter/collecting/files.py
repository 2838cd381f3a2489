"""Items written as Markdown files with YAML front matter.

---
title: "Webinar: searching chemistry in PATENTSCOPE"
url: https://www.wipo.int/meetings/en/details.jsp?meeting_id=90123
kind: event            # news, product, report, survey, event, meeting
topic: WIPO
groups: [cepiug, uk]   # omit for every group
language: en
date: 2026-11-20
start: 2026-12-03T14:00:00+01:00
end: 2026-12-03T15:30:00+01:00
place: Online
deadline: 2027-01-15   # surveys
image: images/webinar.png   # a URL, or a file beside this one; resized for the email
image_alt: "A chemical structure drawn in the PATENTSCOPE search form"
translations:
  de: {title: "...", summary: "..."}
---
The Markdown summary.
"""

from datetime import date, datetime
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import YAMLHandler

from newsletter.collecting.fetch import read_file
from newsletter.core.errors import InputError
from newsletter.core.language import normalize_language
from newsletter.core.models import ItemKind
from newsletter.pool.items import ItemDraft, Translation, as_utc

KEYS = {
    "title",
    "url",
    "kind",
    "topic",
    "groups",
    "language",
    "date",
    "start",
    "end",
    "place",
    "deadline",
    "translations",
    "image",
    "image_alt",
}
# An item file is a page of text; a bigger one is a mistake or an attack, refused unread.
MAX_FILE_BYTES = 1024 * 1024
# Front matter nests a few levels (translations: de: title:); far deeper is refused.
MAX_DEPTH = 20


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, and with a nesting limit.

    An alias (``*name``) copies a node by reference; a few lines of aliases of aliases
    expand to gigabytes (the "billion laughs"), and no front matter needs one. Deep
    nesting would exhaust Python's stack in the recursive composer. Both are refused
    with PyYAML's own error, which names the line. (The C loader cannot be bounded this
    way; item files are small, so the pure-Python one is fast enough.)
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in front matter", mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


class _BoundedYAML(YAMLHandler):
    def load(self, fm: str, **kwargs: object) -> Any:
        return yaml.load(fm, Loader=_BoundedLoader)


def _read_text(path: Path) -> str:
    data = read_file(path, MAX_FILE_BYTES, InputError)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None


def _text(meta: dict[str, Any], key: str, where: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        raise InputError(f"{where}: '{key}' must be text")
    return str(value).strip() or None


def _date(meta: dict[str, Any], key: str, where: str) -> date | datetime | None:
    value = meta.get(key)
    if value is None or isinstance(value, date):
        return value
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        # A quoted "2026-12-03" is a day, not midnight without a time zone.
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"{where}: '{key}' is not a date such as 2026-12-03 or 2026-12-03T14:00+01:00"
        ) from None


def _language(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        return normalize_language(value)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def read_item_file(path: Path, *, default_language: str = "en") -> ItemDraft:
    """Parse one Markdown item file into a draft; every problem names the file."""
    where = str(path)
    text = _read_text(path)
    try:
        post = frontmatter.loads(text, handler=_BoundedYAML())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # python-frontmatter strips leading blank lines, and hands PyYAML the text that
        # starts right after the opening ---, so YAML's line 0 is the file's first line.
        skipped = text[: len(text) - len(text.lstrip())].count("\n")
        line = f":{mark.line + 1 + skipped}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InputError(f"{path}{line}: the front matter is not valid YAML ({problem})") from None
    except ValueError as exc:
        # PyYAML builds dates itself and fails on impossible ones such as 2026-02-30.
        raise InputError(f"{where}: the front matter holds an impossible date ({exc})") from None
    meta = dict(post.metadata)
    unknown = sorted(set(meta) - KEYS)
    if unknown:
        raise InputError(
            f"{where}: unknown front matter key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})"
        )
    title = _text(meta, "title", where)
    if not title:
        raise InputError(f"{where}: the front matter needs a 'title'")
    kind_name = (_text(meta, "kind", where) or "news").lower()
    try:
        kind = ItemKind(kind_name)
    except ValueError:
        raise InputError(
            f"{where}: kind {kind_name!r} is not one of {', '.join(k.value for k in ItemKind)}"
        ) from None
    groups = meta.get("groups")
    if isinstance(groups, str):
        groups = [groups]
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise InputError(f"{where}: 'groups' must be a list of group names")
    deadline = _date(meta, "deadline", where)
    draft = ItemDraft(
        title=title,
        url=_text(meta, "url", where),
        summary_md=post.content.strip(),
        kind=kind,
        topic=_text(meta, "topic", where) or "",
        language=_language(_text(meta, "language", where), where) or default_language,
        groups=groups,
        published_at=as_utc(_date(meta, "date", where), what=f"{where}: date"),
        event_start=as_utc(_date(meta, "start", where), what=f"{where}: start"),
        event_end=as_utc(_date(meta, "end", where), what=f"{where}: end"),
        event_place=_text(meta, "place", where),
        deadline=deadline.date() if isinstance(deadline, datetime) else deadline,
        translations=_translations(meta.get("translations"), where),
        origin=f"file:{path.name}",
        image=_image(_text(meta, "image", where), path),
        image_alt=_text(meta, "image_alt", where),
    )
    try:
        draft.check()
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return draft


def _image(value: str | None, path: Path) -> str | None:
    """An image URL as it is; a file beside the item file (or below it), made absolute.

    A file elsewhere (``../../etc/...``) is refused: an item file names its own pictures.
    """
    if value is None or value.lower().startswith(("http://", "https://")):
        return value
    folder = path.parent.resolve()
    found = (folder / value).resolve()
    if not found.is_relative_to(folder):
        raise InputError(f"{path}: image {value!r} must be a URL or a file in the item file's folder")
    return str(found)


def _translations(value: Any, where: str) -> dict[str, Translation]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: 'translations' must map a language to a title and summary")
    found = {}
    for code, body in value.items():
        language = _language(str(code), where) or str(code)
        if not isinstance(body, dict) or not isinstance(body.get("title"), str):
            raise InputError(f"{where}: translation {code!r} needs at least a 'title'")
        found[language] = Translation(
            title=body["title"].strip(), summary_md=str(body.get("summary") or "").strip()
        )
    return found
