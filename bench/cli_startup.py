"""How long `newsletter --help`, `--version` and an idle `run-due` take: wall-clock per fresh process.

    .venv/bin/python bench/cli_startup.py [--runs 30]

Each command runs as a new process, as from a shell, after two warm-up runs (so the
files are in the page cache); the figures are the minimum and the median of the
runs, beside a bare ``python -c pass`` for the interpreter's own start. ``run-due`` runs
on a copy of the example site (SQLite, in a temp folder) at a moment it has already
handled once, so nothing is due: what cron pays every minute when there is no work. The machine's
load average is printed with them: on a busy machine the median grows, the minimum
much less. ``hyperfine -N '.venv/bin/newsletter --help'`` measures the same with more
statistics. The promise (under 0.3 s) is proved by what the commands import
(tests/test_cli_contract.py), not by this timing.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MOMENT = "2026-11-30T09:00:00+01:00"

# The console script beside this interpreter, as a shell runs it; else `python -m newsletter`.
SCRIPT = Path(sys.executable).with_name("newsletter")
NEWSLETTER = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "newsletter"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "newsletter --help": [*NEWSLETTER, "--help"],
    "newsletter --version": [*NEWSLETTER, "--version"],
}


def timings(command: list[str], runs: int) -> list[float]:
    for _ in range(2):
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    measured = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        measured.append(time.perf_counter() - started)
    return measured


def idle_run_due(folder: Path) -> list[str]:
    """The run-due command on a copy of the example site where everything at MOMENT is done."""
    site = folder / "site"
    site.mkdir()
    for part in ("newsletter.toml", "templates", "samples", "schedules", "subscribers"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, site / part)
        else:
            shutil.copy(source, site / part)
    command = [*NEWSLETTER, "--site", str(site)]
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "startup-bench-key-0123456789abcdef"}
    os.environ.update(env)
    subprocess.run([*command, "migrate"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*command, "run-due", "--at", MOMENT], check=True, stdout=subprocess.DEVNULL)
    return [*command, "run-due", "--at", MOMENT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{runs} runs each, {os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}")
    folder = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    commands = {**COMMANDS, "newsletter run-due (idle)": idle_run_due(folder)}
    try:
        for name, command in commands.items():
            measured = [seconds * 1000 for seconds in timings(command, runs)]
            print(f"{name:<27} min {min(measured):6.0f} ms   median {statistics.median(measured):6.0f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
