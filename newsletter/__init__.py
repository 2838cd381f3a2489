"""newsletter: collect patent-information news, build per-group editions, render and send them.

The pipeline, one package per stage (each imports only those before it)::

    core -> accounts -> audience -> pool -> collecting -> editions -> feedback -> delivery -> scheduling
         -> operations -> web -> cli

The command line (``newsletter.cli``) is a thin layer over the functions named here.
They load on first use (PEP 562), so importing a part of the package (the CLI's
``--help``, say) does not import all of it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newsletter.audience.subscribers import ImportReport, forget, import_csv
    from newsletter.collecting.collect import collect
    from newsletter.core.errors import (
        ConfigError,
        DatabaseError,
        ImportFileError,
        InputError,
        NewsletterError,
        NotFoundError,
        SiteError,
        StateError,
    )
    from newsletter.core.settings import Settings, load_settings
    from newsletter.core.site import Site
    from newsletter.delivery.runner import send_edition
    from newsletter.editions.build import approve as approve_edition
    from newsletter.editions.build import build as build_edition
    from newsletter.editions.render import Renderer
    from newsletter.pool.items import ItemDraft, add_item, edit_item, list_items, set_status
    from newsletter.scheduling.scheduler import run_due

# Public name -> (module, name in that module).
_EXPORTS = {
    "ConfigError": ("newsletter.core.errors", "ConfigError"),
    "DatabaseError": ("newsletter.core.errors", "DatabaseError"),
    "ImportFileError": ("newsletter.core.errors", "ImportFileError"),
    "ImportReport": ("newsletter.audience.subscribers", "ImportReport"),
    "InputError": ("newsletter.core.errors", "InputError"),
    "ItemDraft": ("newsletter.pool.items", "ItemDraft"),
    "NewsletterError": ("newsletter.core.errors", "NewsletterError"),
    "NotFoundError": ("newsletter.core.errors", "NotFoundError"),
    "Renderer": ("newsletter.editions.render", "Renderer"),
    "Settings": ("newsletter.core.settings", "Settings"),
    "Site": ("newsletter.core.site", "Site"),
    "SiteError": ("newsletter.core.errors", "SiteError"),
    "StateError": ("newsletter.core.errors", "StateError"),
    "add_item": ("newsletter.pool.items", "add_item"),
    "approve_edition": ("newsletter.editions.build", "approve"),
    "build_edition": ("newsletter.editions.build", "build"),
    "collect": ("newsletter.collecting.collect", "collect"),
    "edit_item": ("newsletter.pool.items", "edit_item"),
    "forget": ("newsletter.audience.subscribers", "forget"),
    "import_csv": ("newsletter.audience.subscribers", "import_csv"),
    "list_items": ("newsletter.pool.items", "list_items"),
    "load_settings": ("newsletter.core.settings", "load_settings"),
    "run_due": ("newsletter.scheduling.scheduler", "run_due"),
    "send_edition": ("newsletter.delivery.runner", "send_edition"),
    "set_status": ("newsletter.pool.items", "set_status"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'newsletter' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "DatabaseError",
    "ImportFileError",
    "ImportReport",
    "InputError",
    "ItemDraft",
    "NewsletterError",
    "NotFoundError",
    "Renderer",
    "Settings",
    "Site",
    "SiteError",
    "StateError",
    "add_item",
    "approve_edition",
    "build_edition",
    "collect",
    "edit_item",
    "forget",
    "import_csv",
    "list_items",
    "load_settings",
    "run_due",
    "send_edition",
    "set_status",
]
