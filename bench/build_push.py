"""Benchmark: deployer's build + push against the plain docker CLI's `docker build` + `docker push`.

Both sides build the same context (workflows-examples/hello-app, with a file that changes every run so each
push uploads a new layer) with the same BuildKit-capable docker CLI, and push to the registry the tests use.
A deployer run includes what a real run pays: connecting to the engine and probing for BuildKit. Runs
alternate between the two sides to spread any drift evenly. Prints the medians and their ratio; the goal
is a ratio of at most 1.1.

Needs DEPLOYER_TEST_REGISTRY (host:port), DEPLOYER_TEST_REGISTRY_USERNAME, DEPLOYER_TEST_REGISTRY_PASSWORD,
as the tests do. The CLI logs in with --password-stdin into a temporary DOCKER_CONFIG removed afterwards.

    .venv/bin/python bench/build_push.py [--runs 5] [--context workflows-examples/hello-app]
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployer.docker_engine import BuildRequest, DockerEngine, RegistryLogin  # noqa: E402

BASE_IMAGE = "deployer-test/busybox-base:1"
BUSYBOX = Path("/bin/busybox")


def ensure_base_image(cli: str) -> None:
    """The busybox-from-scratch base the tests use (Docker Hub is out of reach here)."""
    if subprocess.run([cli, "image", "inspect", BASE_IMAGE], capture_output=True).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="deployer-bench-base-") as context:
        shutil.copy(BUSYBOX, Path(context) / "busybox")
        (Path(context) / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            'CMD ["/bin/sh"]\n'
        )
        subprocess.run([cli, "build", "-q", "-t", BASE_IMAGE, context], check=True, capture_output=True)


def fresh_context(template: Path, scratch: Path) -> Path:
    """A copy of the context with one file that differs every run, so every push uploads a layer."""
    context = scratch / uuid.uuid4().hex
    shutil.copytree(template, context)
    site = context / "site"
    site.mkdir(exist_ok=True)
    (site / "build-id.txt").write_text(f"{uuid.uuid4()}\n")
    return context


def delete_from_registry(registry: str, username: str, password: str, reference: str) -> None:
    """Removes a benchmark tag's manifest from the registry (the registry must allow deletes; if not, fine)."""
    name, tag = reference.removeprefix(f"{registry}/").rsplit(":", 1)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    url = f"http://{registry}/v2/{name}/manifests"
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/{tag}", method="HEAD", headers=headers)) as r:
            digest = r.headers["Docker-Content-Digest"]
        urllib.request.urlopen(urllib.request.Request(f"{url}/{digest}", method="DELETE", headers=headers)).close()
    except OSError:
        pass


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--context", type=Path, default=ROOT / "workflows-examples" / "hello-app")
    args = parser.parse_args()

    registry = os.environ.get("DEPLOYER_TEST_REGISTRY")
    username = os.environ.get("DEPLOYER_TEST_REGISTRY_USERNAME", "deployer")
    password = os.environ.get("DEPLOYER_TEST_REGISTRY_PASSWORD")
    if not registry or not password:
        print("set DEPLOYER_TEST_REGISTRY and DEPLOYER_TEST_REGISTRY_PASSWORD", file=sys.stderr)
        return 2
    if not (args.context / "Dockerfile").is_file():
        print(f"{args.context}/Dockerfile is missing", file=sys.stderr)
        return 2

    probe = DockerEngine.connect()
    buildkit = probe.buildkit_cli()
    probe.close()
    if buildkit is None:
        print("no docker CLI here builds with BuildKit; nothing fair to compare against", file=sys.stderr)
        return 1
    cli = buildkit.path
    ensure_base_image(cli)
    login = RegistryLogin(registry, username, password)
    repository = f"{registry}/deployer-bench/hello-app"
    build_args = {"BASE_IMAGE": BASE_IMAGE}
    created: list[str] = []
    deployer_times: list[float] = []
    cli_times: list[float] = []

    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        config = scratch / "docker-config"
        config.mkdir()
        cli_env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "1"}
        subprocess.run(
            [cli, "login", "--username", username, "--password-stdin", registry],
            input=password.encode(),
            env=cli_env,
            check=True,
            capture_output=True,
        )

        def deployer_run() -> None:
            reference = f"{repository}:deployer-{uuid.uuid4().hex[:8]}"
            created.append(reference)
            context = fresh_context(args.context, scratch)
            with DockerEngine.connect() as engine:
                engine.build(BuildRequest(context, [reference], build_args=build_args), lambda line: None)
                engine.push(reference, login, lambda line: None)

        def cli_run() -> None:
            reference = f"{repository}:cli-{uuid.uuid4().hex[:8]}"
            created.append(reference)
            context = fresh_context(args.context, scratch)
            build = [cli, "build", "--progress=plain", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", reference]
            subprocess.run([*build, str(context)], env=cli_env, check=True, capture_output=True)
            subprocess.run([cli, "push", reference], env=cli_env, check=True, capture_output=True)

        try:
            deployer_run()  # warm-up for both: base layers in the registry, CLI and Python caches
            cli_run()
            for run in range(args.runs):
                deployer_times.append(timed(deployer_run))
                cli_times.append(timed(cli_run))
                print(f"run {run + 1}: deployer {deployer_times[-1]:.3f}s, docker CLI {cli_times[-1]:.3f}s")
        finally:
            subprocess.run([cli, "logout", registry], env=cli_env, capture_output=True)
            for reference in created:
                subprocess.run([cli, "image", "rm", reference], capture_output=True)
                delete_from_registry(registry, username, password, reference)

    deployer_median = statistics.median(deployer_times)
    cli_median = statistics.median(cli_times)
    ratio = deployer_median / cli_median
    print(f"builder: {buildkit.describe()}")
    print(f"median of {args.runs}: deployer {deployer_median:.3f}s, docker build + docker push {cli_median:.3f}s")
    print(f"ratio deployer / docker CLI: {ratio:.2f} (goal <= 1.10: {'met' if ratio <= 1.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
