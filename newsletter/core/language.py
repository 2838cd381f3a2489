"""Language codes: one spelling everywhere (``en``, ``de``, ``fr-CH``), checked with Babel."""

from babel import Locale, UnknownLocaleError

from newsletter.core.messages import Message


def normalize_language(code: str) -> str:
    """Return the canonical spelling of a language tag, or raise ``ValueError``.

    Babel knows which languages exist; accepting ``de_CH``, ``DE-ch`` or ``de-CH``
    alike and storing one form keeps comparisons simple later.
    """
    raw = code.strip().replace("_", "-")
    if not raw:
        raise ValueError(Message("empty language code"))
    try:
        locale = Locale.parse(raw, sep="-")
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(
            Message("unknown language '{code}' (expected a code such as en, de or fr)", code=code)
        ) from exc
    return f"{locale.language}-{locale.territory}" if locale.territory else locale.language
