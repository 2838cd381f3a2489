"""``newsletter check``: find every problem in a site folder, each with file and line.

It checks the settings as every other command resolves them (``newsletter.toml``,
then ``NEWSLETTER_*`` variables, then flags such as ``--database-url``), so a bad
value from the environment or the command line is listed too, and the SMTP relay
is checked (its password file, its mode) when the site sends over SMTP or declares
an ``[smtp]`` table, and so is each webhook's signing secret. It changes no database.

Warnings do not fail the check: an image without alt text, in a template or on an
item still to be sent (read from the database when there is one, never created or
migrated here), is shown to screen-reader users as nothing at all, or as its file name.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jinja2 import Environment, TemplateSyntaxError
from sqlmodel import col, select

from newsletter.audience.csvfile import read_subscriber_csv
from newsletter.core.credentials import webhook_key
from newsletter.core.db import make_engine, require_current, transaction
from newsletter.core.errors import ConfigError, ImportFileError, KeyFileError, NewsletterError, RenderError
from newsletter.core.i18n import base_language
from newsletter.core.identity import sender_identity
from newsletter.core.models import Edition, EditionItem, EditionStatus, Item, ItemKind, ItemStatus
from newsletter.core.settings import (
    CONFIG_FILE,
    DkimSection,
    Problem,
    Resolution,
    Settings,
    SiteConfig,
    locate,
)
from newsletter.delivery.dkim import read_signer
from newsletter.delivery.transports.relayconfig import smtp_problems
from newsletter.editions.build import DEFAULT_SUBJECT
from newsletter.editions.render import MJML_TAGS, EditionContent, PoolItem, Renderer
from newsletter.operations.languages import LanguageGaps, language_gaps
from newsletter.scheduling.schedules import SCHEDULES_DIR, Schedule, load_schedules, parse_schedule

TEMPLATES_DIR = "templates"
# mjml-python copies an unknown tag into the HTML without a word, so typos are caught
# here, before a send, as well as when an edition is rendered.
KNOWN_TAGS = MJML_TAGS | {"mjml"}
TAG = re.compile(r"</?\s*(mj[a-z-]*)", re.IGNORECASE)


def template_files(site_dir: Path) -> list[Path]:
    return sorted(p for p in (site_dir / TEMPLATES_DIR).rglob("*.j2") if p.is_file())


def _check_template(path: Path, environment: Environment) -> list[Problem]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return [Problem.unreadable(path, exc)]
    try:
        environment.parse(text, name=path.name, filename=str(path))
    except TemplateSyntaxError as exc:
        return [Problem(path, exc.lineno, "", f"template syntax error: {exc.message}")]
    problems = []
    if path.name.endswith(".mjml.j2"):
        for number, line in enumerate(text.splitlines(), start=1):
            # Once a line: <mj-txt>...</mj-txt> is one mistake.
            for tag in dict.fromkeys(TAG.findall(line)):
                if tag.lower() not in KNOWN_TAGS:
                    problems.append(Problem(path, number, "", f"unknown MJML tag <{tag}>"))
    return problems


def _group_files(site_dir: Path, config: SiteConfig, text: str) -> list[Problem]:
    problems = []
    config_file = site_dir / CONFIG_FILE
    for slug, group in config.groups.items():
        for suffix in (".mjml.j2", ".txt.j2"):
            wanted = site_dir / TEMPLATES_DIR / f"{group.template}{suffix}"
            if not wanted.is_file():
                problems.append(
                    Problem(
                        config_file,
                        locate(text, ("groups", slug, "template")),
                        f"groups.{slug}.template",
                        f"{wanted.relative_to(site_dir)} does not exist",
                    )
                )
        csv_path = site_dir / (group.subscribers or f"subscribers/{slug}.csv")
        if csv_path.is_file():
            try:
                read_subscriber_csv(csv_path)
            except ImportFileError as exc:
                problems.append(Problem(csv_path, None, "", str(exc)))
    return problems


def _dkim_key(site_dir: Path, config: SiteConfig, text: str) -> list[Problem]:
    """Each DKIM key (``[dkim]``, ``[groups.SLUG.dkim]``) must be readable, PEM RSA, long enough
    (and an Ed25519 key, when there is one, an Ed25519 key)."""
    tables: list[tuple[tuple[str, ...], DkimSection]] = []
    if config.dkim is not None:
        tables.append((("dkim",), config.dkim))
    tables += [(("groups", slug, "dkim"), group.dkim) for slug, group in config.groups.items() if group.dkim]
    problems = []
    for path, table in tables:
        try:
            read_signer(site_dir, table)
        except KeyFileError as exc:
            line = locate(text, (*path, exc.setting))
            problems.append(Problem(site_dir / CONFIG_FILE, line, ".".join((*path, exc.setting)), str(exc)))
    return problems


def _unsigned_senders(site_dir: Path, config: SiteConfig, text: str) -> list[Problem]:
    """Warnings: a From domain that no configured DKIM key signs for (DMARC wants one aligned).

    Looked at: each group with a ``sender`` or a ``dkim`` table of its own, and the site's
    sender when ``[dkim]`` exists. A site with no key at all may well sign in its relay,
    so it gets no warning for groups that send as the site.
    """
    file = site_dir / CONFIG_FILE
    warnings = []
    site = sender_identity(config.site, config.delivery, config.dkim)
    if config.dkim is not None and not site.dkim_aligned:
        message = f"the site sends from {site.address} but [dkim] signs for {config.dkim.domain}"
        warnings.append(Problem(file, locate(text, ("dkim", "domain")), "dkim.domain", message))
    for slug, group in config.groups.items():
        if group.sender is None and group.dkim is None:
            continue
        identity = sender_identity(config.site, config.delivery, config.dkim, group)
        if identity.dkim_aligned:
            continue
        if identity.dkim is None:
            why = f"no DKIM key is configured for {identity.domain}"
        else:
            why = f"its DKIM key signs for {identity.dkim.domain}, not for {identity.domain}"
        key = "sender" if group.sender is not None else "dkim"
        warnings.append(
            Problem(
                file,
                locate(text, ("groups", slug, key)),
                f"groups.{slug}.{key}",
                f"group {slug} sends from {identity.address} but {why}; add a [groups.{slug}.dkim] "
                "table (selector, domain, key_file) or sign in the relay, or receivers may "
                "reject or junk its mail (DMARC)",
            )
        )
    return warnings


def _sample_items(language: str) -> list[PoolItem]:
    """One item of each kind with every field filled, so a trial render uses them all."""
    now = datetime.now(UTC).replace(microsecond=0)
    summary = '<p>A sample summary with <a href="https://example.org/more">a link</a>.</p>'
    return [
        PoolItem(
            id=number,
            title=f"Sample {kind.value}",
            url=f"https://example.org/{kind.value}",
            summary_html=summary,
            kind=kind,
            topic="Sample",
            language=language,
            published_at=now,
            event_start=now + timedelta(days=7) if kind == ItemKind.EVENT else None,
            event_end=now + timedelta(days=7, hours=2) if kind == ItemKind.EVENT else None,
            event_place="Online" if kind == ItemKind.EVENT else None,
            deadline=(now + timedelta(days=30)).date() if kind == ItemKind.SURVEY else None,
        )
        for number, kind in enumerate(ItemKind, 1)
    ]


def _trial_renders(
    settings: Settings,
    config_text: str,
    schedules: list[Schedule],
    *,
    groups_too: bool = True,
    texts: dict[str, str] | None = None,
) -> list[Problem]:
    """Render a sample edition for each group (and each schedule's template and subject).

    Parsing finds syntax errors only; a misspelt variable (``item.titel``) or a filter
    that fails shows only when a template is rendered, and would stop every build.
    ``groups_too`` False renders the schedules' editions only; ``texts`` gives a
    schedule file's text by schedule name when it is not (yet) the file on disk.
    """
    site_dir = settings.site_dir
    renderer = Renderer(settings)
    # What to render -> who asks for it, and where its subject line is written.
    wanted: dict[tuple[str, str, str], tuple[str, Path, int | None]] = {}
    for slug, group in settings.groups.items() if groups_too else ():
        subject_line = locate(config_text, ("groups", slug, "subject"))
        origin = (f"group {slug}", site_dir / CONFIG_FILE, subject_line)
        wanted.setdefault((slug, group.template, group.subject or DEFAULT_SUBJECT), origin)
    for schedule in schedules:
        path = site_dir / SCHEDULES_DIR / f"{schedule.name}.toml"
        text = (texts or {}).get(schedule.name)
        if text is None:
            text = path.read_text(encoding="utf-8", errors="replace")
        subject_line = locate(text, ("subject",))
        for slug in schedule.groups:
            template = schedule.template or settings.group(slug).template
            origin = (f"schedule {schedule.name} for {slug}", path, subject_line)
            wanted.setdefault((slug, template, schedule.subject), origin)
    # One problem for each fault, naming every group and schedule it stops.
    failures: dict[tuple[Path, int | None, str], list[str]] = {}
    for (slug, template, subject), (label, subject_file, subject_line) in wanted.items():
        group = settings.group(slug)
        content = EditionContent(
            edition_id=0, group_slug=slug, group=group, subject_template=subject, template=template,
            issued=datetime.now(UTC).date(), items=_sample_items(base_language(group.language)),
            # An editor's intro, so a template's intro branch is rendered too.
            intro_html="<p>A sample intro with <strong>a word</strong> from the editor.</p>",
        )  # fmt: skip
        try:
            renderer.render(content, base_language(group.language), allow_large=True)
            # The archive's copy takes the template's other branch (``archive`` set).
            renderer.render(content, base_language(group.language), allow_large=True, archive=True)
        except RenderError as exc:
            file, _, line = (exc.location or "").rpartition(":")
            if file:
                key = (Path(file), int(line) if line.isdigit() else None, exc.message)
            else:  # the subject line, which is no template file
                key = (subject_file, subject_line, exc.message)
            failures.setdefault(key, []).append(label)
    return [
        Problem(where, line, "", f"a sample edition does not render ({', '.join(labels)}): {message}")
        for (where, line, message), labels in failures.items()
    ]


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found: every problem, and how many of each thing it looked at.

    ``warnings`` are worth a look but stop nothing (the site is still OK).
    """

    problems: list[Problem]
    checked: dict[str, int] = field(default_factory=dict)
    # What works but should be looked at, not a failure: a group's language lacking
    # strings, images without alt text.
    warnings: list[Problem] = field(default_factory=list)
    # Per language a group uses, every string that would show in English.
    missing_strings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [
                {"file": str(p.file), "line": p.line, "key": p.key, "message": p.message}
                for p in self.problems
            ],
            "warnings": [
                {"file": str(p.file), "line": p.line, "key": p.key, "message": p.message}
                for p in self.warnings
            ],
            "missing_strings": self.missing_strings,
        }


def check_site(resolution: Resolution) -> CheckReport:
    """Every problem in the site whose settings ``resolution`` holds."""
    site_dir = resolution.site_dir
    config = resolution.file.config
    problems = list(resolution.problems)
    warnings: list[Problem] = []
    counts = {"groups": 0, "schedules": 0, "templates": 0}
    gaps = LanguageGaps([], [], {})
    templates = template_files(site_dir)
    environment = Environment(autoescape=True)
    warnings = []
    for path in templates:
        problems.extend(_check_template(path, environment))
        warnings.extend(_images_without_alt(path))
    counts["templates"] = len(templates)
    if config is not None:
        counts["groups"] = len(config.groups)
        # newsletter.toml, read once for the lines of what is wrong in it.
        text = resolution.file.text
        problems.extend(_group_files(site_dir, config, text))
        problems.extend(_dkim_key(site_dir, config, text))
        gaps = language_gaps(site_dir, config, text)
        problems.extend(gaps.problems)
        warnings.extend(_unsigned_senders(site_dir, config, text))
        schedules, schedule_problems = load_schedules(site_dir, config.groups)
        problems.extend(schedule_problems)
        problems.extend(_schedule_files(site_dir, schedules, environment))
        counts["schedules"] = len(schedules)
        settings = resolution.settings
        if settings is not None:
            problems.extend(_relay(settings))
            problems.extend(_webhook_secrets(settings, text))
        if settings is not None and not problems:
            problems.extend(_trial_renders(settings, text, schedules))
        if settings is not None:
            warnings.extend(_items_without_alt(settings))
    return CheckReport(problems, counts, [*gaps.warnings, *warnings], gaps.missing)


# An <img> or <mj-image> tag, and an alt attribute in one (alt="" is a choice: decorative).
IMAGE_TAG = re.compile(r"<(?:img|mj-image)\b[^>]*>", re.IGNORECASE)
ALT = re.compile(r"\salt\s*=", re.IGNORECASE)


def _images_without_alt(path: Path) -> list[Problem]:
    """Every image tag in a template that has no alt attribute, with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # already reported by _check_template
    return [
        Problem(path, text.count("\n", 0, found.start()) + 1, "", 'an image without alt text (add alt="...")')
        for found in IMAGE_TAG.finditer(text)
        if not ALT.search(found.group(0))
    ]


def _items_without_alt(settings: Settings) -> list[Problem]:
    """Items still to be sent whose image has no alt text (none when there is no usable database)."""
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
        with transaction(engine) as session:
            sent = select(EditionItem.item_id).join(Edition, col(Edition.id) == EditionItem.edition_id)
            sent = sent.where(col(Edition.status) == EditionStatus.SENT)
            rows = session.exec(
                select(Item.id, Item.title)
                .where(
                    col(Item.image_name).is_not(None),
                    col(Item.image_alt).is_(None),
                    col(Item.status) != ItemStatus.REJECTED,
                    col(Item.id).not_in(sent),
                )
                .order_by(col(Item.id))
            ).all()
    except NewsletterError:
        return []  # no database yet, or one to migrate: other commands say so
    finally:
        engine.dispose()
    return [
        Problem(
            Path(f"item #{item_id}"),
            None,
            "image_alt",
            f"{title!r} has an image without alt text; give it one "
            f"(newsletter items edit {item_id} --image-alt TEXT)",
        )
        for item_id, title in rows
    ]


def _relay(settings: Settings) -> list[Problem]:
    """A site that sends over SMTP must be able to: relay, password, signing key.

    A declared ``[smtp]`` table is checked (its password file, its mode) whatever the
    transport, so switching from the outbox to SMTP holds no surprise.
    """
    if settings.transport == "smtp":
        return smtp_problems(settings)
    if settings.smtp is not None and settings.smtp_url is None:
        return [p for p in smtp_problems(settings) if p.key.startswith("smtp.")]
    return []


def _webhook_secrets(settings: Settings, text: str) -> list[Problem]:
    """Each ``[[webhooks]]`` endpoint must have its secret where it says (set, readable, well formed)."""
    problems = []
    for index, hook in enumerate(settings.webhooks):
        try:
            webhook_key(settings, hook)
        except ConfigError as exc:
            where = "secret_env" if hook.secret_env else "secret_file"
            line = locate(text, ("webhooks", index, where))
            problems.append(Problem(settings.config_file, line, f"webhooks.{hook.name}.{where}", str(exc)))
    return problems


def _schedule_files(site_dir: Path, schedules: list[Schedule], environment: Environment) -> list[Problem]:
    """A schedule's own template must exist, and its subject must be a valid Jinja template."""
    problems = []
    for schedule in schedules:
        path = site_dir / SCHEDULES_DIR / f"{schedule.name}.toml"
        text = path.read_text(encoding="utf-8", errors="replace")
        problems.extend(_schedule_file(site_dir, schedule, path, text, environment))
    return problems


def _schedule_file(
    site_dir: Path, schedule: Schedule, path: Path, text: str, environment: Environment
) -> list[Problem]:
    problems = []
    for suffix in (".mjml.j2", ".txt.j2") if schedule.template else ():
        wanted = site_dir / TEMPLATES_DIR / f"{schedule.template}{suffix}"
        if not wanted.is_file():
            message = f"{wanted.relative_to(site_dir)} does not exist"
            problems.append(Problem(path, locate(text, ("template",)), "template", message))
    try:
        environment.parse(schedule.subject)
    except TemplateSyntaxError as exc:
        message = f"template syntax error: {exc.message}"
        problems.append(Problem(path, locate(text, ("subject",)), "subject", message))
    return problems


def check_schedule_text(settings: Settings, path: Path, text: str) -> list[Problem]:
    """What ``check`` would say of one schedule file whose text is ``text`` (not yet written).

    The same steps as for the files on disk: parse and validate (``load_schedules``), the
    template and subject (``_schedule_files``), and a sample edition rendered with them.
    """
    schedule, problems = parse_schedule(path, text, settings.groups)
    if schedule is None or problems:
        return problems
    problems = _schedule_file(settings.site_dir, schedule, path, text, Environment(autoescape=True))
    if problems:
        return problems
    return _trial_renders(settings, "", [schedule], groups_too=False, texts={schedule.name: text})
