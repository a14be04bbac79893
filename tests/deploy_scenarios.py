"""What the end-to-end deploy tests and bench/rollout.py share: manifests as a user writes them, `deployer run`
as a user starts it (a child process in a directory of its own, with an environment we control), and the
real kubectl as the judge of what is live on the simulator.

It owns nothing of deployer and imports none of it: deployer is only ever run as ``python -m deployer``.
Every wait here is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The README's exit codes, written as a user's script would check them.
EXIT_OK, EXIT_FAILURE, EXIT_ROLLED_BACK = 0, 1, 3
# What the e2e tests' crashing image logs before it exits: a missing setting, as a real app would say it.
CRASH_LOG = "panic: DATABASE_URL is not set"
# Variables that would make a run behave differently from the one a test asks for.
_INHERITED_PREFIXES = ("DEPLOYER_", "GITHUB_", "RUNNER_", "KUBECONFIG", "DIGITALOCEAN_", "CI")


# --- manifests ------------------------------------------------------------------------------------------------


def deployment(
    name: str = "web",
    *,
    image: str = "<IMAGE>",
    replicas: int = 2,
    config_map: str | None = None,
    progress_deadline_seconds: int | None = None,
    http_port: int | None = None,
) -> dict[str, Any]:
    """A Deployment as a user writes it: the image is a placeholder unless given; ``config_map`` is read with
    envFrom; ``http_port`` adds a readiness probe on it (for the Docker kubelet)."""
    container: dict[str, Any] = {"name": name, "image": image}
    if config_map:
        container["envFrom"] = [{"configMapRef": {"name": config_map}}]
    if http_port:
        container["ports"] = [{"containerPort": http_port, "name": "http"}]
        # Three misses before a serving pod counts as unready: one probe slower than its 1 s timeout on a
        # loaded machine must not take a healthy pod out of what the tests see serving.
        container["readinessProbe"] = {
            "httpGet": {"path": "/index.html", "port": "http"},
            "periodSeconds": 1,
            "failureThreshold": 3,
        }
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def write_manifests(directory: Path, *documents: Mapping[str, Any], file_name: str = "app.yaml") -> Path:
    """Write the documents as one multi-document YAML file in ``directory`` (replacing what was there)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    (directory / file_name).write_text("# written by the deploy tests\n" + yaml.safe_dump_all(documents))
    return directory


# --- running deployer ---------------------------------------------------------------------------------------


def clean_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without anything that steers deployer, with a private HOME and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.update({"HOME": str(home), "USER": "e2e-tester", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"})
    env.update(extra or {})
    return env


def github_run(run_id: int) -> dict[str, str]:
    """Variables that give a run a run URL (its lock holder and change-cause name it), outside Actions."""
    return {
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_REPOSITORY": "acme/web",
        "GITHUB_RUN_ID": str(run_id),
    }


def run_url(run_id: int) -> str:
    return f"https://github.example/acme/web/actions/runs/{run_id}"


@dataclass
class Finished:
    """A finished `deployer run`: its exit code, what it printed, how long it took (wall seconds)."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return f"deployer {' '.join(self.args)} exited {self.code} after {self.seconds:.1f}s\n{self.stderr}"


@dataclass
class Deployer:
    """`deployer run` against one cluster, from ``workdir`` with ``env``."""

    kubeconfig: Path
    workdir: Path
    env: dict[str, str]
    repository: str = "registry.example/acme/web"

    @classmethod
    def under(cls, tmp_path: Path, kubeconfig: Path) -> Deployer:
        """A deployer with a checkout and a HOME of its own under ``tmp_path``."""
        workdir = tmp_path / "checkout"
        workdir.mkdir()
        home = tmp_path / "home"
        home.mkdir()
        return cls(kubeconfig, workdir, clean_environment(home))

    def args(self, tag: str | None, manifests: Path, namespace: str, *extra: str) -> list[str]:
        args = ["run", "--no-build", "--image", self.repository, "-f", str(manifests), "-n", namespace]
        args += ["--kubeconfig", str(self.kubeconfig), *extra]
        return args + (["--tag", tag] if tag else [])

    def run(
        self,
        tag: str | None,
        manifests: Path,
        namespace: str,
        *extra: str,
        env: Mapping[str, str] | None = None,
        # A bound for a hung run, not a claim about speed: generous, so a loaded machine is not a failure.
        timeout: float = 180,
    ) -> Finished:
        args = self.args(tag, manifests, namespace, *extra)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "deployer", *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Finished(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def start(
        self, tag: str | None, manifests: Path, namespace: str, *extra: str, env: Mapping[str, str] | None = None
    ) -> Running:
        args = self.args(tag, manifests, namespace, *extra)
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer", *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Running(args, process)


def deployed(deployer: Deployer, tag: str, manifests: Path, namespace: str, *extra: str) -> Finished:
    """A successful deploy the test builds on (anything else fails the test)."""
    done = deployer.run(tag, manifests, namespace, *extra)
    assert done.code == EXIT_OK, done.explain()
    return done


@dataclass
class Running:
    """A `deployer run` still going: its stderr is read line by line as it comes, on a thread of its own."""

    args: list[str]
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.monotonic() when each line of ``lines`` came
    _queue: queue.Queue[tuple[float, str] | None] = field(default_factory=queue.Queue)
    _stdout: list[str] = field(default_factory=list)
    _stdout_done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, args=(self.process.stderr, self._queue), daemon=True).start()
        threading.Thread(target=self._drain_stdout, daemon=True).start()

    @staticmethod
    def _read(stream: Any, into: queue.Queue[tuple[float, str] | None]) -> None:
        # Each reader closes its pipe at the end of the output: the process has exited and nothing else reads it.
        with stream:
            for line in stream:
                into.put((time.monotonic(), line.rstrip("\n")))
        into.put(None)

    def _drain_stdout(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as stdout:
            self._stdout.append(stdout.read())
        self._stdout_done.set()

    def wait_for_line(self, wanted: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first stderr line (seen before or arriving within ``timeout`` seconds) for which ``wanted`` holds."""
        for line in self.lines:
            if wanted(line):
                return line
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                raise AssertionError(f"deployer exited before {what}:\n" + "\n".join(self.lines))
            line = self._take(item)
            if wanted(line):
                return line
        raise AssertionError(f"no {what} within {timeout:g}s:\n" + "\n".join(self.lines))

    def _take(self, item: tuple[float, str]) -> str:
        self.arrived.append(item[0])
        self.lines.append(item[1])
        return item[1]

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float) -> Finished:
        """Wait for the exit (killing the process if it overruns ``timeout``) and collect everything it wrote."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"deployer did not exit within {timeout:g}s:\n" + "\n".join(self.lines)) from None
        seconds = time.monotonic() - self.started
        while (item := self._queue.get(timeout=10)) is not None:
            self._take(item)
        self._stdout_done.wait(timeout=10)  # the stdout reader ends right after the exit
        return Finished(self.args, code, "".join(self._stdout), "\n".join(self.lines) + "\n", seconds)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- kubectl, the judge --------------------------------------------------------------------------------------


@dataclass
class Kubectl:
    """The real kubectl on the simulator's kubeconfig, with a HOME of its own (no shared discovery cache)."""

    binary: str
    kubeconfig: Path
    home: Path

    @classmethod
    def under(cls, tmp_path: Path, binary: str, kubeconfig: Path) -> Kubectl:
        """kubectl with a HOME of its own under ``tmp_path``."""
        home = tmp_path / "kubectl-home"
        home.mkdir()
        return cls(binary, kubeconfig, home)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HOME": str(self.home)},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def jsonpath(self, namespace: str, resource: str, path: str) -> str:
        return self.run("-n", namespace, "get", resource, "-o", f"jsonpath={path}").stdout

    def image(self, namespace: str, resource: str = "deployment/web") -> str:
        return self.jsonpath(namespace, resource, "{.spec.template.spec.containers[0].image}")

    def get_json(self, namespace: str, *what: str) -> Any:
        return json.loads(self.run("-n", namespace, "get", *what, "-o", "json").stdout)

    def exists(self, namespace: str, resource: str) -> bool:
        done = self.run("-n", namespace, "get", resource, check=False)
        if done.returncode != 0 and "NotFound" not in done.stderr:
            raise AssertionError(f"kubectl get {resource} failed: {done.stderr}")
        return done.returncode == 0

    def serving_images(self, namespace: str, app: str) -> set[str]:
        """The images of the Ready pods of ``app`` that are not being deleted: what serves traffic now."""
        pods = self.get_json(namespace, "pods", "-l", f"app={app}")["items"]
        images = set()
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            if conditions.get("Ready") == "True":
                images.update(c["image"] for c in pod["spec"]["containers"])
        return images

    def apply_client_side(self, namespace: str, path: Path) -> str:
        return self.run("-n", namespace, "apply", "-f", str(path)).stdout


def render_with_image(documents: Sequence[Mapping[str, Any]], image: str) -> list[dict[str, Any]]:
    """The documents with every ``<IMAGE>`` replaced, as the origin pipeline's sed did before `kubectl apply`."""
    text = yaml.safe_dump_all(documents).replace("<IMAGE>", image)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
