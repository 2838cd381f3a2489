"""newsletter: collect patent-information news, build per-group editions, render and send them.

The pipeline, one module per stage::

    sources/ -> items -> editions -> render -> message -> outbox -> deliver -> transports/

The command line (``newsletter.cli``) is a thin layer over the functions named here.
"""

from newsletter.collect import collect
from newsletter.editions import approve as approve_edition
from newsletter.editions import build as build_edition
from newsletter.editions import send as send_edition
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
from newsletter.render import Renderer
from newsletter.scheduler import run_due
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
