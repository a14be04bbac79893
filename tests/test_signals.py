"""A cancelled workflow's SIGTERM must reach the rollback whatever deployer is doing when it arrives, and stop a
run that has applied nothing yet (a build) at once, cleanly.

CI once saw a run freeze: the signal came while the main thread was writing a progress line, and the
handler tried to write its warning under the same console lock. The child process below gets the signal
from inside a write, the worst moment; a freeze shows as a timeout instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_scenarios import Deployer, Running, wait_until, write_manifests
from tests.kubesim import KubeSim

CHILD = textwrap.dedent(
    """
    import io, os, signal, sys, threading
    from deployer.console import Console
    from deployer.cancelling import cancelled_on_signals

    class SignalledMidWrite(io.StringIO):
        # The first write of a progress line delivers SIGTERM to this process while the console holds its lock.
        def write(self, text):
            if text.startswith("web:") and not getattr(self, "signalled", False):
                self.signalled = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super().write(text)

    out = SignalledMidWrite()
    console = Console(out=out, env={}, interactive=False)
    with cancelled_on_signals(console) as cancellation:
        cancellation.protect_changes()  # the rollout is applied: a signal now stops the wait
        console.info("web: 1/2 updated")
        if not cancellation.event.wait(10):
            sys.exit("the signal did not set the cancel event")
    sys.stdout.write(out.getvalue())
    """
)


def test_a_sigterm_arriving_while_a_line_is_written_cancels_and_is_announced_once() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "web: 1/2 updated",
        "warning: received SIGTERM: stopping the wait and rolling back",
    ]


def test_leaving_without_a_signal_says_nothing_and_restores_the_default_handler() -> None:
    child = textwrap.dedent(
        """
        import io, signal, threading
        from deployer.console import Console
        from deployer.cancelling import cancelled_on_signals

        out = io.StringIO()
        with cancelled_on_signals(Console(out=out, env={}, interactive=False)):
            pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL, signal.getsignal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert threading.active_count() == 1, threading.enumerate()
        print(repr(out.getvalue()))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "''"


# --- a signal during the build ------------------------------------------------------------------------------

# A docker CLI of the 20.10 line (deployer then builds with DOCKER_BUILDKIT=1 docker build) whose build starts,
# says so, and takes five minutes: the real process a cancelled build must not leave behind. It writes its pid.
SLOW_DOCKER_CLI = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "Docker version 20.10.24, build 297e128"; exit 0; fi
echo $$ > "$SLOW_BUILD_PID_FILE"
echo "#1 [internal] load build definition from Dockerfile"
exec sleep 300
"""


@pytest.fixture
def slow_build(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cli = tmp_path / "docker-20.10"
    cli.write_text(SLOW_DOCKER_CLI)
    cli.chmod(0o755)
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    pid_file = tmp_path / "build.pid"
    yield {"cli": cli, "context": context, "tmp": temporary, "pid_file": pid_file}
    if pid_file.exists():  # before the fix the build outlived deployer: the test cleans up what it started
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead, only not reaped by a parent that is gone.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)], ids=lambda x: str(x)
)
def test_a_signal_during_the_build_stops_the_docker_build_removes_its_files_and_says_so(
    docker_client: Any, kubesim: KubeSim, tmp_path: Path, slow_build: dict[str, Any], signum: signal.Signals, code: int
) -> None:
    deployer = Deployer.under(tmp_path, kubesim.kubeconfig_path)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"image": "<IMAGE>"}}
    manifests = write_manifests(deployer.workdir / "k8s", config)
    args = ["run", "-f", str(manifests), "-n", "shop", "--kubeconfig", str(kubesim.kubeconfig_path)]
    args += ["--image", "127.0.0.1:5055/deployer-test-signals/web", "--tag", "t1"]
    args += ["--build-context", str(slow_build["context"]), "--docker-cli", str(slow_build["cli"])]
    env = {**deployer.env, "TMPDIR": str(slow_build["tmp"]), "SLOW_BUILD_PID_FILE": str(slow_build["pid_file"])}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", *args],
        cwd=deployer.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    build = Running(args, process)
    try:
        build.wait_for_line(lambda line: "load build definition" in line, 60, "the build's first line")
        pid_file = slow_build["pid_file"]
        pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the build's pid"))
        build.send(signum)
        done = build.finish(timeout=30)
    finally:
        build.kill()

    assert done.code == code, done.explain()
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"error: cancelled by {signum.name} before anything was applied; nothing was applied to the cluster"
    )
    assert not alive(pid), "the docker build outlived deployer"
    assert list(slow_build["tmp"].iterdir()) == [], "deployer left temporary files behind"
