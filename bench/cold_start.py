"""Start-up of the action: its install step as the runner runs it, then deployer up to the first line it prints.

Runs the `run:` script of action.yml's "Install deployer" step with bash, in a fresh RUNNER_TEMP each time,
once through uv (UV set, as setup-uv leaves it) and once through the pip fallback (UV empty), each with a cold
cache (an empty UV_CACHE_DIR or PIP_CACHE_DIR) and with a warm one (the cache a first, untimed run filled). The
clock stops at the first line `deployer run --dry-run` prints from the venv the step made. Prints medians and
the pip/uv ratios. Goal: under 5 s with uv and a warm cache. Prints figures only; it asserts nothing. The cold
runs download every wheel from the package index, so they measure this machine's network too.

    python bench/cold_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

GOAL_SECONDS = 5.0
ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"  # the dev extra's uv: the version the action sets up
FIRST_RUN = [
    "run",
    "--dry-run",
    "--no-build",
    "-f",
    str(ROOT / "workflows-examples" / "hello-app" / "k8s"),
    "-n",
    "hello",
    "--image",
    "ghcr.io/acme/hello-app",
    "--tag",
    "bench",
]


def install_script() -> str:
    steps = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"]
    [install] = [step for step in steps if step.get("name") == "Install deployer"]
    return str(install["run"])


def start_up(installer: str, cache: Path, script: str) -> tuple[float, float]:
    """Seconds of the install step, and from its start to deployer's first line, in a fresh RUNNER_TEMP."""
    with tempfile.TemporaryDirectory(prefix="deployer-cold-start-") as runner_temp:
        env = {
            **os.environ,
            "GITHUB_ACTION_PATH": str(ROOT),
            "RUNNER_TEMP": runner_temp,
            "PYTHON": getattr(sys, "_base_executable", sys.executable),
            "UV": str(UV) if installer == "uv" else "",
            "UV_CACHE_DIR": str(cache),
            "PIP_CACHE_DIR": str(cache),
        }
        started = time.perf_counter()
        subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            env=env,
            cwd=runner_temp,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        installed = time.perf_counter() - started
        deployer = subprocess.Popen(
            [Path(runner_temp) / "deployer-venv" / "bin" / "deployer", *FIRST_RUN],
            env=env,
            cwd=runner_temp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert deployer.stdout is not None
        first_line = deployer.stdout.readline()
        first = time.perf_counter() - started
        deployer.stdout.read()
        deployer.stdout.close()
        if deployer.wait() != 0 or not first_line:
            raise SystemExit(f"deployer failed after the {installer} install: {first_line!r}")
        return installed, first


def measure(installer: str, runs: int, script: str) -> dict[str, tuple[float, float]]:
    """Median (install, first line) seconds: one run with an empty cache, then `runs` with the cache it filled."""
    with tempfile.TemporaryDirectory(prefix=f"deployer-{installer}-cache-") as directory:
        cache = Path(directory)
        cold = start_up(installer, cache, script)
        warm = [start_up(installer, cache, script) for _ in range(runs)]
    return {
        "cold": cold,
        "warm": (statistics.median(w[0] for w in warm), statistics.median(w[1] for w in warm)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm-cache runs of each installer (default 3)")
    runs = parser.parse_args().runs
    script = install_script()
    figures = {installer: measure(installer, runs, script) for installer in ("uv", "pip")}
    rows = [("warm runs each", f"{runs} (median), after 1 cold run")]
    for installer in ("uv", "pip"):
        for cache in ("cold", "warm"):
            installed, first = figures[installer][cache]
            rows.append(
                (f"{installer}, {cache} cache", f"{first:6.1f} s to the first line ({installed:.1f} s install)")
            )
    for cache in ("cold", "warm"):
        ratio = figures["pip"][cache][1] / figures["uv"][cache][1]
        rows.append((f"pip / uv, {cache} cache", f"{ratio:6.1f}x"))
    verdict = "meets" if figures["uv"]["warm"][1] < GOAL_SECONDS else "MISSES"
    rows.append((f"goal (uv, warm, < {GOAL_SECONDS:.0f} s)", f"{verdict} it"))
    for label, value in rows:
        print(f"{label + ':':<27} {value}")


if __name__ == "__main__":
    main()
