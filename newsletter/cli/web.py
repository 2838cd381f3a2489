"""``newsletter serve``: the subscriber web pages, the one-click unsubscribe endpoint and the workspace."""

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@pass_app
def serve(app: AppContext, /, host: str, port: int) -> None:
    """Serve the subscriber pages, the archive and the editors' workspace (/admin/).

    Put it behind a TLS-terminating proxy at [site] base_url, and name that proxy in
    [web] trusted_proxies so that its X-Forwarded-For is believed. Sign-ups queue their
    confirmation emails; `newsletter daemon` or `newsletter worker` sends them (run one
    beside it; `worker --until-idle` sends what waits and stops).

    Workspace sign-in links go out at once through the configured transport. The
    session cookie is Secure when base_url is https; give people roles with
    `newsletter users add`.

    \b
    Example:
      NEWSLETTER_SECRET_KEY=... newsletter serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    from newsletter.web import create_app

    settings = app.settings
    if settings.secret_key is None:
        echo("warning: NEWSLETTER_SECRET_KEY is not set; links are signed with a development key", err=True)
    application = create_app(app.site)
    echo(f"serving {settings.site.name} on http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    # The app believes forwarded headers from [web] trusted_proxies only; uvicorn's own
    # handling would believe them from 127.0.0.1 (anyone on this host) by default.
    uvicorn.run(application, host=host, port=port, log_level="warning", proxy_headers=False)
