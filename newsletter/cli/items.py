"""``newsletter items ...``: the shared pool of news items."""

from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from newsletter.cli.context import AppContext
from newsletter.cli.output import echo, emit_json, table
from newsletter.collecting import images
from newsletter.collecting.fetch import HttpFetcher
from newsletter.collecting.files import read_item_file
from newsletter.core.errors import FetchError, InputError, NotFoundError
from newsletter.core.language import normalize_language
from newsletter.core.models import Item, ItemKind, ItemStatus
from newsletter.core.settings import Settings
from newsletter.pool import items as library
from newsletter.pool import provenance
from newsletter.pool.items import ItemDraft, as_utc

pass_app = click.make_pass_decorator(AppContext)
KINDS = [k.value for k in ItemKind]


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> date | datetime | None:
    """A date (2026-12-03) or a date and time with its offset (2026-12-03T14:00+01:00)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date such as 2026-12-03 or 2026-12-03T14:00+01:00"
        ) from None


WHEN: dict[str, Any] = {"metavar": "DATE", "callback": _when}


def _language(code: str | None) -> str | None:
    if code is None:
        return None
    try:
        return normalize_language(code)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _item_fields(
    title: str | None,
    url: str | None,
    summary: str | None,
    kind: str | None,
    topic: str | None,
    language: str | None,
    when: Any,
    start: Any,
    end: Any,
    place: str | None,
    deadline: Any,
) -> dict[str, Any]:
    """The flags that were given, converted to item fields."""
    fields: dict[str, Any] = {
        "title": title,
        "url": url,
        "summary_md": summary,
        "kind": ItemKind(kind) if kind else None,
        "topic": topic,
        "language": _language(language),
        "published_at": as_utc(when, what="--date"),
        "event_start": as_utc(start, what="--start"),
        "event_end": as_utc(end, what="--end"),
        "event_place": place,
        "deadline": deadline.date() if isinstance(deadline, datetime) else deadline,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _item_options(function: Any) -> Any:
    options = [
        click.option("--title", help="The headline."),
        click.option("--url", help="Link to the full story (http or https)."),
        click.option("--summary", help="Summary in Markdown (no raw HTML)."),
        click.option("--kind", type=click.Choice(KINDS), help="What sort of news it is."),
        click.option("--topic", help="Section it goes in, e.g. WIPO, EPO, IP5."),
        click.option("--language", help="Language the item is written in (default: the site's)."),
        click.option("--date", "when", **WHEN, help="Publication date."),
        click.option("--start", **WHEN, help="Event start, with offset: 2026-12-03T14:00+01:00."),
        click.option("--end", **WHEN, help="Event end."),
        click.option("--place", help="Event place (a city, or Online)."),
        click.option("--deadline", **WHEN, help="Survey answer deadline."),
        click.option(
            "--group", "groups", multiple=True, help="Target this group (repeatable). Default: every group."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group()
def items() -> None:
    """Queue, edit, approve, reject and target news items."""


@items.command()
@_item_options
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Markdown file with front matter (repeatable); its front matter says what the item flags would.",
)
@click.option("--approve", is_flag=True, help="Approve at once instead of proposing.")
@click.option("--json", "as_json", is_flag=True, help="Print the items as JSON.")
@pass_app
def add(
    app: AppContext,
    /,
    files: tuple[Path, ...],
    approve: bool,
    as_json: bool,
    groups: tuple[str, ...],
    **flags: Any,
) -> None:
    """Queue a news item, from flags or from Markdown files.

    \b
    Examples:
      newsletter items add --title "EPO: new Espacenet release" \\
          --url https://www.epo.org/news --topic EPO --summary "What changed, **in short**."
      newsletter items add --kind survey --title "WIPO user survey" --deadline 2027-01-15 \\
          --url https://www.wipo.int/survey --group cepiug --group uk
      newsletter items add --file samples/items/2026-11-wipo-user-survey.md
    """
    settings = app.settings
    drafts: list[tuple[str, ItemDraft]]
    if files:
        given = [f"--{'date' if name == 'when' else name}" for name, value in flags.items() if value]
        given += ["--group"] if groups else []
        if given:
            # Ignoring them would send an item meant for one group to every group.
            raise InputError(
                f"{', '.join(given)} cannot be used with --file: put it in the file's front matter "
                "(e.g. groups: [uk]), or leave --file out"
            )
        drafts = [
            (f"{path}: ", read_item_file(path, default_language=settings.site.language)) for path in files
        ]
    else:
        fields = _item_fields(**flags)
        if "title" not in fields:
            raise InputError("give --title (or --file FILE); see `newsletter items add --help`")
        fields.setdefault("language", settings.site.language)
        drafts = [("", ItemDraft(**fields, groups=list(groups) or None))]
    # Images are fetched before the transaction: a slow server must not hold the database.
    pictures = _images(settings, drafts)
    results = []
    with app.site.transaction() as session:
        for where, draft in drafts:
            try:
                item, created = library.add_item(session, settings, draft, actor=app.actor, approve=approve)
            except NotFoundError as exc:
                # An unknown group in a file: say which file asked for it.
                raise NotFoundError(f"{where}{exc}") from exc
            stored = pictures.get(id(draft))
            if created and stored is not None and draft.image:
                images.attach(item, stored, draft.image, draft.image_alt)
                session.add(item)
            results.append((item, created, library.target_slugs(session, item)))
    if as_json:
        emit_json([_as_dict(item, targets) | {"created": created} for item, created, targets in results])
        return
    for item, created, targets in results:
        verb = f"added item #{item.id} ({item.status})" if created else f"item #{item.id} already in the pool"
        echo(f"{verb}: {item.title} -> {', '.join(targets)}")


def _images(settings: Settings, drafts: list[tuple[str, ItemDraft]]) -> dict[int, images.StoredImage]:
    """Each draft's image fetched and resized (by the draft's id); one that fails is a warning."""
    found: dict[int, images.StoredImage] = {}
    fetcher: HttpFetcher | None = None
    for where, draft in drafts:
        if not draft.image:
            continue
        fetcher = fetcher or HttpFetcher()
        try:
            found[id(draft)] = images.fetch_image(draft.image, settings, fetcher)
        except (FetchError, InputError) as exc:
            echo(f"warning: {where}the item is added without its image: {exc}", err=True)
    return found


def _as_dict(item: Item, targets: list[str]) -> dict[str, Any]:
    data = item.model_dump(exclude={"fingerprint"})
    data["groups"] = targets
    return data


@items.command("list")
@click.option("--status", type=click.Choice([s.value for s in ItemStatus]), help="Only this state.")
@click.option("--group", help="Only items meant for this group.")
@click.option("--topic", help="Only this topic.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def list_(app: AppContext, status: str | None, group: str | None, topic: str | None, as_json: bool) -> None:
    """List items, newest first.

    \b
    Examples:
      newsletter items list --status proposed
      newsletter items list --group dach --json
    """
    with app.site.transaction() as session:
        found = library.list_items(session, app.settings, status=status, group=group, topic=topic)
        rows = [(item, library.target_slugs(session, item)) for item in found]
    if as_json:
        emit_json([_as_dict(item, targets) for item, targets in rows])
        return
    table(
        ["id", "status", "kind", "topic", "date", "groups", "title"],
        [
            (
                i.id,
                i.status,
                i.kind,
                i.topic,
                i.published_at.date() if i.published_at else "",
                ",".join(t),
                i.title,
            )
            for i, t in rows
        ],
    )


@items.command()
@click.argument("item_id", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show(app: AppContext, item_id: int, as_json: bool) -> None:
    """Show item ID with its provenance, targeting and translations.

    \b
    Example:
      newsletter items show 7 --json
    """
    with app.site.transaction() as session:
        item = library.get_item(session, item_id)
        targets = library.target_slugs(session, item)
        translated = library.translations(session, item)
        sources = provenance.of_item(session, item_id)
    data = _as_dict(item, targets)
    data["translations"] = {t.language: {"title": t.title, "summary_md": t.summary_md} for t in translated}
    data["sources"] = [
        {
            "id": row.id,
            "origin": row.origin,
            "url": row.url,
            "title": row.title,
            "merged": row.merged,
            "similarity": row.similarity,
            "added_at": row.added_at.isoformat(),
        }
        for row in sources
    ]
    if as_json:
        emit_json(data)
        return
    for key in (
        "id",
        "title",
        "status",
        "kind",
        "topic",
        "language",
        "url",
        "groups",
        "published_at",
        "event_start",
        "event_end",
        "event_place",
        "deadline",
        "origin",
        "editor",
        "created_at",
        "updated_at",
    ):
        value = data.get(key)
        if value not in (None, "", []):
            echo(f"{key + ':':14} {', '.join(value) if isinstance(value, list) else value}")
    for language, text in data["translations"].items():
        echo(f"{'title [' + language + ']:':14} {text['title']}")
    for row in sources:
        how = {"url": "same link", "similar": f"similar, {row.similarity}"}.get(row.merged or "", "first")
        echo(
            f"{'source #' + str(row.id) + ':':14} {row.origin} ({how}): {row.title} {row.url or ''}".rstrip()
        )
    if item.summary_md:
        echo("\n" + item.summary_md)


def _set_status(app: AppContext, item_ids: tuple[int, ...], status: ItemStatus) -> None:
    if not item_ids:
        raise InputError("give at least one item id (see `newsletter items list`)")
    with app.site.transaction() as session:
        changed = library.set_status(session, item_ids, status, actor=app.actor)
    for item in changed:
        echo(f"{status}: #{item.id} {item.title}")


@items.command()
@click.argument("item_ids", nargs=-1, type=int, metavar="[ID]...")
@click.option("--all-proposed", is_flag=True, help="Approve every proposed item.")
@pass_app
def approve(app: AppContext, item_ids: tuple[int, ...], all_proposed: bool) -> None:
    """Approve the items ID... so editions can carry them.

    If any ID does not exist, nothing is approved.

    \b
    Example:
      newsletter items approve 3 4 7
    """
    if all_proposed:
        with app.site.transaction() as session:
            proposed = library.list_items(session, app.settings, status=ItemStatus.PROPOSED)
        item_ids += tuple(i.id for i in proposed if i.id is not None)
        if not item_ids:
            echo("no proposed items")
            return
    _set_status(app, item_ids, ItemStatus.APPROVED)


@items.command()
@click.argument("item_ids", nargs=-1, type=int, metavar="ID...")
@pass_app
def reject(app: AppContext, item_ids: tuple[int, ...]) -> None:
    """Reject the items ID...: they stay in the pool but no edition carries them.

    If any ID does not exist, nothing is rejected.

    \b
    Example:
      newsletter items reject 5 6
    """
    _set_status(app, item_ids, ItemStatus.REJECTED)


@items.command()
@click.argument("item_id", type=int, metavar="ID")
@_item_options
@click.option("--all-groups", is_flag=True, help="Target every group again.")
@click.option("--image-alt", help="The alt text of the item's image (what a screen reader says).")
@pass_app
def edit(
    app: AppContext,
    /,
    item_id: int,
    groups: tuple[str, ...],
    all_groups: bool,
    image_alt: str | None,
    **flags: Any,
) -> None:
    """Change the fields or the target groups of item ID.

    \b
    Example:
      newsletter items edit 4 --title "Corrected headline" --group dach --group fr
      newsletter items edit 9 --image-alt "The new Espacenet search page"
    """
    fields = _item_fields(**flags)
    if image_alt is not None:
        fields["image_alt"] = image_alt.strip() or None
    targets: list[str] | None = ["*"] if all_groups else (list(groups) or None)
    if not fields and targets is None:
        raise InputError("nothing to change; give at least one option (see --help)")
    with app.site.transaction() as session:
        item = library.edit_item(session, app.settings, item_id, fields, actor=app.actor, groups=targets)
        slugs = library.target_slugs(session, item)
    echo(f"updated #{item.id}: {item.title} -> {', '.join(slugs)}")


@items.command()
@click.argument("item_id", type=int, metavar="ID")
@click.argument("source_id", type=int, metavar="SOURCE")
@pass_app
def split(app: AppContext, item_id: int, source_id: int) -> None:
    """Split source SOURCE off item ID into an item of its own (a wrong merge of two stories).

    Sources merged by resemblance can be split; `items show ID` lists them with their
    numbers. The new item is a proposal for the same groups.

    \b
    Example:
      newsletter items show 12
      newsletter items split 12 31
    """
    with app.site.transaction() as session:
        item = provenance.split(session, item_id, source_id, actor=app.actor)
    echo(f"source #{source_id} is now item #{item.id} (proposed): {item.title}")
