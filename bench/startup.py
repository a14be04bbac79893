"""Start-up time of ``deployer --help`` against a bare interpreter, both measured in this run.

Runs ``python -m deployer --help`` and ``python -c pass`` 20 times each with the same interpreter (the
venv's, ``sys.executable``) and prints both medians and their ratio. Goal: ``deployer --help`` under
0.25 s. Prints figures only; it asserts nothing, so a slow shared machine does not fail a build.

    python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

GOAL_SECONDS = 0.25


def wall_time(command: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    # One untimed run of each warms the OS page cache and writes .pyc files, so the first timed run is fair.
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    subprocess.run([sys.executable, "-m", "deployer", "--help"], stdout=subprocess.DEVNULL, check=True)
    # Interleaved, so that a burst of load from other processes on the shared machine hits both alike.
    baseline_times, help_times = [], []
    for _ in range(runs):
        baseline_times.append(wall_time([sys.executable, "-c", "pass"]))
        help_times.append(wall_time([sys.executable, "-m", "deployer", "--help"]))
    baseline = statistics.median(baseline_times)
    deployer_help = statistics.median(help_times)
    verdict = "meets" if deployer_help < GOAL_SECONDS else "MISSES"
    rows = [
        ("runs each", f"{runs}"),
        ("python -c pass (baseline)", f"{baseline * 1000:7.1f} ms median"),
        ("deployer --help", f"{deployer_help * 1000:7.1f} ms median"),
        ("ratio", f"{deployer_help / baseline:7.2f}x the bare interpreter"),
        (f"goal (< {GOAL_SECONDS * 1000:.0f} ms)", f"{verdict} it"),
    ]
    for label, value in rows:
        print(f"{label + ':':<27} {value}")


if __name__ == "__main__":
    main()
