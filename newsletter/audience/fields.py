"""The site's custom fields on subscribers (``[fields.NAME]`` in newsletter.toml).

A value is one line of text: a ``text`` field keeps at most ``max_length`` characters,
a ``choice`` field one of its choices (matched without regard to case, stored as
declared). Values are set by hand (the workspace's add form) or by an import's column
of the same name; an empty cell leaves a value as it was.
"""

from collections.abc import Mapping

from newsletter.audience.addresses import clean_name
from newsletter.core.messages import Message, reason
from newsletter.core.sections import FieldConfig


def clean_value(name: str, spec: FieldConfig, raw: str | None) -> str | None:
    """The value as stored (None for an empty one); ValueError says why it cannot be."""
    value = clean_name(raw)
    if value is None:
        return None
    if spec.type == "choice":
        for choice in spec.choices:
            if choice.casefold() == value.casefold():
                return choice
        raise ValueError(
            Message(
                "{field} '{value}' is not one of {choices}", field=name, value=value, choices=spec.choices
            )
        )
    if len(value) > spec.max_length:
        raise ValueError(
            Message("{field} is longer than {limit} characters", field=name, limit=spec.max_length)
        )
    return value


def clean_values(
    specs: Mapping[str, FieldConfig], raw: Mapping[str, str | None]
) -> tuple[dict[str, str], list[Message]]:
    """The declared fields' cleaned values, and one problem per value that cannot be used."""
    values: dict[str, str] = {}
    problems: list[Message] = []
    for name, spec in specs.items():
        try:
            value = clean_value(name, spec, raw.get(name))
        except ValueError as exc:
            problems.append(reason(exc))
            continue
        if value is not None:
            values[name] = value
    return values, problems


def merged(current: Mapping[str, str] | None, new: Mapping[str, str]) -> dict[str, str] | None:
    """``current`` with ``new``'s values set (None when there is no value at all)."""
    values = {**(current or {}), **new}
    return values or None
