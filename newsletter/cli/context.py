"""What the commands share: the settings and the open site, made once per invocation."""

from functools import cached_property
from pathlib import Path
from typing import Any

from newsletter.core.audit import current_actor
from newsletter.core.settings import Settings, load_settings
from newsletter.core.site import Site


class AppContext:
    def __init__(self, site_dir: Path | None, overrides: dict[str, Any]) -> None:
        self.site_dir = site_dir
        self.overrides = overrides
        self.actor = current_actor()

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.site_dir, overrides=self.overrides)

    @cached_property
    def site(self) -> Site:
        return Site.open(self.settings)

    def close(self) -> None:
        if "site" in self.__dict__:
            self.site.close()
