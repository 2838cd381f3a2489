"""Schedules: one TOML file per schedule in ``schedules/`` (cron, zone, groups, template).

cron = "0 9 * * mon"        # five crontab fields; use day names for the weekday
timezone = "Europe/Berlin"  # optional: each group's own zone by default
groups = ["cepiug", "uk"]
template = "digest"
subject = "{{ group.name }}: patent information news"
skip_if_empty = true
approval = "auto"           # or "editor": build the draft, wait for `editions approve`
"""

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from newsletter.core.configfile import load_toml
from newsletter.core.settings import GroupConfig, Problem, locate

SCHEDULES_DIR = "schedules"


class Schedule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    cron: str
    timezone: str | None = None
    groups: tuple[str, ...]
    template: str | None = None
    subject: str = "{{ group.name }}: news"
    skip_if_empty: bool = True
    approval: Literal["auto", "editor"] = "editor"
    # A slot missed (daemon down) is still built this many hours late; later it is reported.
    grace_hours: float = Field(default=6.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5:
            raise ValueError(f"{value!r} needs five fields: minute hour day month weekday")
        if re.search(r"\d", fields[4]):
            # APScheduler counts weekday 0 as Monday, crontab as Sunday: names avoid the trap.
            raise ValueError(f"write the weekday of {value!r} as a name (mon, tue, ..., sun), not a number")
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid cron expression ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{value!r} is not a known time zone such as Europe/Paris") from None
        return value


def load_schedules(site_dir: Path, groups: Mapping[str, GroupConfig]) -> tuple[list[Schedule], list[Problem]]:
    """Every schedule file of the site, and every problem found in them."""
    schedules: list[Schedule] = []
    problems: list[Problem] = []
    for path in sorted((site_dir / SCHEDULES_DIR).glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            problems.append(Problem.unreadable(path, exc))
            continue
        schedule, found = parse_schedule(path, text, groups)
        problems.extend(found)
        if schedule is not None:
            schedules.append(schedule)
    return schedules, problems


def parse_schedule(
    path: Path, text: str, groups: Mapping[str, GroupConfig]
) -> tuple[Schedule | None, list[Problem]]:
    """One schedule file's text (named by ``path``'s stem): the schedule, and its problems.

    A schedule naming an unknown group is returned with that problem (the scheduler
    skips the group); one that does not parse or validate is None. The workspace's
    editor validates the text it is about to write with this, before writing it.
    """
    try:
        raw = load_toml(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        return None, [Problem(path, int(line.group(1)) if line else None, "", f"invalid TOML: {exc}")]
    try:
        schedule = Schedule.model_validate({"name": path.stem, **raw})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            problems.append(Problem(path, locate(text, loc), ".".join(map(str, loc)), message))
        return None, problems
    problems = [
        Problem(
            path,
            locate(text, ("groups",)),
            "groups",
            f"unknown group {slug!r} (known: {', '.join(sorted(groups))})",
        )
        for slug in schedule.groups
        if slug not in groups
    ]
    return schedule, problems
