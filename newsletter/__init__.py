"""newsletter: collect patent-information news, build per-group editions, render and send them.

The pipeline, one module per stage::

    sources/ -> items -> editions -> render -> message -> outbox -> deliver -> transports/

The command line (``newsletter.cli``) is a thin layer over the functions named here.
"""

from newsletter.errors import (
    ConfigError,
    DatabaseError,
    ImportFileError,
    InputError,
    NewsletterError,
    NotFoundError,
    SiteError,
    StateError,
)
from newsletter.items import ItemDraft, add_item, edit_item, list_items, set_status
from newsletter.settings import Settings, load_settings
from newsletter.site import Site
from newsletter.subscribers import ImportReport, forget, import_csv

__all__ = [
    "ConfigError",
    "DatabaseError",
    "ImportFileError",
    "ImportReport",
    "InputError",
    "ItemDraft",
    "NewsletterError",
    "NotFoundError",
    "Settings",
    "Site",
    "SiteError",
    "StateError",
    "add_item",
    "edit_item",
    "forget",
    "import_csv",
    "list_items",
    "load_settings",
    "set_status",
]
