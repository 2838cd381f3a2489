"""``newsletter worker``: deliver the due messages of every edition being sent (``delivery/worker.py``)."""

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo
from newsletter.delivery.runner import Runner
from newsletter.delivery.transports import open_transport
from newsletter.delivery.worker import work
from newsletter.editions.render import Renderer

pass_app = click.make_pass_decorator(AppContext)


@click.command()
@click.option("--until-idle", is_flag=True, help="Stop when nothing is due, instead of waiting for more.")
@click.option("--poll", type=float, default=5.0, show_default=True, help="Seconds between looks when idle.")
@click.option("--batch-size", type=int, default=200, show_default=True, help="Deliveries claimed at a time.")
@pass_app
def worker(app: AppContext, /, until_idle: bool, poll: float, batch_size: int) -> None:
    """Deliver the due messages of every edition being sent; run several on PostgreSQL.

    `editions send ID` starts an edition (and delivers it too); workers on this or
    other hosts share its deliveries, and pick up retries when they fall due. On
    SQLite only one process delivers an edition: a worker leaves one that another
    process is sending to it, and a second worker is refused. A worker only continues
    sends of its own kind: one writing to the outbox folder leaves real sends alone.
    Each round first sends the confirmation emails that sign-ups queued;
    `worker --until-idle` sends what waits once and stops.

    \b
    Example:
      newsletter --transport smtp worker --until-idle
    """
    transport = open_transport(app.settings)
    runner = Runner(app.site, Renderer(app.settings), transport, actor="worker", batch_size=batch_size)
    done = work(runner, until_idle=until_idle, poll=poll)
    for note in done.notes + done.confirmations.errors:
        echo(note, err=True)
    report = done.report
    echo(
        f"worker done: sent {report.sent}, failed {report.failed}, skipped {report.skipped}, "
        f"deferred {report.deferred} (via {transport.name}); {done.confirmations}"
    )
