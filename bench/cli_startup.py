"""How long `newsletter --help` and `newsletter --version` take: wall-clock per fresh process.

    .venv/bin/python bench/cli_startup.py [--runs 30]

Each command runs as a new process, as from a shell, after two warm-up runs (so the
files are in the page cache); the figures are the minimum and the median of the
runs, beside a bare ``python -c pass`` for the interpreter's own start. The machine's
load average is printed with them: on a busy machine the median grows, the minimum
much less. ``hyperfine -N '.venv/bin/newsletter --help'`` measures the same with more
statistics. The promise (under 0.3 s) is proved by what the commands import
(tests/test_cli_contract.py), not by this timing.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{runs} runs each, {os.cpu_count()} CPUs, load average {load}, Python {sys.version.split()[0]}")
    for name, command in COMMANDS.items():
        measured = [seconds * 1000 for seconds in timings(command, runs)]
        print(f"{name:<22} min {min(measured):6.0f} ms   median {statistics.median(measured):6.0f} ms")


if __name__ == "__main__":
    main()
