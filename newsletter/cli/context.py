"""What the commands share: the settings and the open site, made once per invocation.

Nothing is imported or read before a command asks for it, so ``newsletter --help``
stays fast and a command that needs no database (``check``) never opens one.
"""

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newsletter.core.settings import Resolution, Settings
    from newsletter.core.site import Site


class AppContext:
    def __init__(
        self, site_dir: Path | None, overrides: dict[str, Any], env: Mapping[str, str] | None = None
    ) -> None:
        self.site_dir = site_dir
        # Flags given on the command line, as ``section.key`` -> value (None: not given).
        self.overrides = overrides
        self.env: Mapping[str, str] = os.environ if env is None else env

    @cached_property
    def actor(self) -> str:
        from newsletter.core.audit import current_actor

        return current_actor()

    @cached_property
    def resolution(self) -> "Resolution":
        """The settings from flags, NEWSLETTER_* variables and newsletter.toml, or their problems."""
        from newsletter.core.settings import resolve

        return resolve(self.site_dir, env=self.env, overrides=self.overrides)

    @cached_property
    def settings(self) -> "Settings":
        return self.resolution.require()

    @cached_property
    def site(self) -> "Site":
        from newsletter.core.site import Site

        return Site.open(self.settings)

    def close(self) -> None:
        if "site" in self.__dict__:
            self.site.close()
