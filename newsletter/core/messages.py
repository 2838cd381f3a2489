"""Sentences written once in English and read in each reader's language.

A :class:`Message` is a msgid (the English sentence, with ``{name}`` placeholders) and
the values for its placeholders. It is kept as that pair until someone reads it: an
error raised deep in the library (``str(exc)`` is the English for the CLI and the
logs), a notice stored for tomorrow's digest. Whoever shows it passes the reader's
catalog to :func:`translate`. Parameter values may be

- text and numbers, shown as they are (a title, an address, a count);
- a status value (any ``StrEnum``, or a :class:`Label`), shown by its label in the
  reader's language, looked up with the enum's class name as context
  (``msgctxt "EditionStatus"``), else as the plain word;
- another :class:`Message` (a reason inside a refusal), translated in turn;
- a list of those, joined with commas.

Placeholders are replaced by name, not by ``str.format``: a catalog (the site may add
its own) cannot reach attributes of the values.
"""

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, Union

PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


class Catalog(Protocol):
    """What :func:`translate` needs of a catalog (``gettext.NullTranslations`` and Babel's have it)."""

    def gettext(self, message: str, /) -> str: ...

    def pgettext(self, context: str, message: str, /) -> str: ...


@dataclass(frozen=True)
class Label:
    """A value shown by its name: a status (``context`` is its kind) or a figure's name."""

    context: str
    value: str


# What a placeholder may stand for (see the module docstring).
Param: TypeAlias = Union[str, int, float, Label, enum.StrEnum, "Message", Sequence["Param"], None]


@dataclass(frozen=True, init=False)
class Message:
    """An English sentence with ``{name}`` placeholders, and their values.

    ``Message("no group '{group}'", group=slug)``, or with the values as one mapping.
    """

    msgid: str
    params: Mapping[str, Param]

    def __init__(self, msgid: str, params: Mapping[str, Param] | None = None, /, **values: Param) -> None:
        object.__setattr__(self, "msgid", msgid)
        object.__setattr__(self, "params", {**(params or {}), **values})

    def __str__(self) -> str:
        return translate(self, None)

    def to_json(self) -> str:
        """The message as JSON, to store and translate later (:meth:`from_json`)."""
        return json.dumps(_encode(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Message":
        decoded = _decode(json.loads(text))
        if not isinstance(decoded, Message):
            raise ValueError("not a stored message")
        return decoded


def label(value: Label | enum.StrEnum, catalog: Catalog | None) -> str:
    """A status or figure's name in the catalog's language (English without a catalog)."""
    found = value if isinstance(value, Label) else Label(type(value).__name__, value.value)
    if catalog is None:
        return found.value.replace("_", " ")
    text = catalog.pgettext(found.context, found.value)
    if text == found.value:
        # No entry of its own for this context: the plain word's entry, if any.
        text = catalog.gettext(found.value)
    return text.replace("_", " ")


def translate(message: "Message | str", catalog: Catalog | None) -> str:
    """The message in the catalog's language; without a catalog, the English."""
    if isinstance(message, str):
        return catalog.gettext(message) if catalog is not None and message else message
    text = catalog.gettext(message.msgid) if catalog is not None else message.msgid
    if not message.params:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in message.params:
            return match.group(0)
        return _show(message.params[name], catalog)

    return PLACEHOLDER.sub(value, text)


def _show(value: Param, catalog: Catalog | None) -> str:
    if isinstance(value, Label | enum.StrEnum):
        return label(value, catalog)
    if isinstance(value, Message):
        return translate(value, catalog)
    if isinstance(value, list | tuple):
        return ", ".join(_show(part, catalog) for part in value)
    return "" if value is None else str(value)


def _encode(value: Param) -> object:
    if isinstance(value, Message):
        return {"msgid": value.msgid, "params": {k: _encode(v) for k, v in value.params.items()}}
    if isinstance(value, Label | enum.StrEnum):
        found = value if isinstance(value, Label) else Label(type(value).__name__, value.value)
        return {"label": found.value, "context": found.context}
    if isinstance(value, list | tuple):
        return [_encode(part) for part in value]
    return value


def _decode(value: object) -> Param:
    if isinstance(value, dict):
        if "msgid" in value:
            params = value.get("params") or {}
            return Message(str(value["msgid"]), {str(k): _decode(v) for k, v in params.items()})
        return Label(str(value.get("context", "")), str(value.get("label", "")))
    if isinstance(value, list):
        return [_decode(part) for part in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def reason(exc: BaseException) -> Message:
    """What an exception says as a message: an error's own, a ``ValueError(Message(...))``'s, or its text."""
    own = getattr(exc, "msg", None)
    if isinstance(own, Message):
        return own
    if exc.args and isinstance(exc.args[0], Message):
        return exc.args[0]
    return Message(str(exc))
