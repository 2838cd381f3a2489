"""``newsletter serve``: the subscriber web pages, the one-click unsubscribe endpoint and the workspace."""

import os
from typing import Any

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the pages; several share the rate limits through [web] rate_limit_store.",
)
@pass_app
def serve(app: AppContext, /, host: str, port: int, workers: int) -> None:
    """Serve the subscriber pages, the archive and the editors' workspace (/admin/).

    Put it behind a TLS-terminating proxy at [site] base_url, and name that proxy in
    [web] trusted_proxies so that its X-Forwarded-For is believed. Sign-ups queue their
    confirmation emails; `newsletter daemon` or `newsletter worker` sends them (run one
    beside it; `worker --until-idle` sends what waits and stops).

    Workspace sign-in links go out at once through the configured transport. The
    session cookie is Secure when base_url is https; give people roles with
    `newsletter users add`.

    With --workers N, N processes share the port; the rate limits are then kept in
    the database (or the Redis server [web] rate_limit_store names) so that they hold
    across processes. GET /healthz answers 200 while the database answers, for the
    proxy. On SIGTERM or Ctrl-C the server stops taking connections and finishes the
    requests in hand (up to 30 seconds).

    \b
    Examples:
      NEWSLETTER_SECRET_KEY=... newsletter serve --host 127.0.0.1 --port 8000
      NEWSLETTER_SECRET_KEY=... newsletter serve --workers 4
    """
    import uvicorn

    from newsletter.web import create_app
    from newsletter.web.app import PROCESSES_VARIABLE
    from newsletter.web.ratelimit import open_counter

    settings = app.settings
    if settings.secret_key is None:
        echo("warning: NEWSLETTER_SECRET_KEY is not set; links are signed with a development key", err=True)
    # The app believes forwarded headers from [web] trusted_proxies only; uvicorn's own
    # handling would believe them from 127.0.0.1 (anyone on this host) by default.
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "proxy_headers": False,
        "timeout_graceful_shutdown": 30,
    }
    processes = f", {workers} processes" if workers > 1 else ""
    if workers == 1:
        application: Any = create_app(app.site)
    else:
        # Each process builds its app from the settings resolved here (flags included).
        open_counter(settings.web.rate_limit_store, app.site.engine, processes=workers)  # refuses "memory"
        os.environ.update(
            {
                "NEWSLETTER_SITE": str(settings.site_dir),
                "NEWSLETTER_DATABASE_URL": settings.database_url,
                "NEWSLETTER_TRANSPORT": settings.transport,
                PROCESSES_VARIABLE: str(workers),
            }
        )
        application = "newsletter.web.app:app_from_environment"
        options |= {"factory": True, "workers": workers}
    echo(f"serving {settings.site.name} on http://{host}:{port}/{processes} (Ctrl-C to stop)", err=True)
    uvicorn.run(application, **options)
