"""Benchmark: `deployer run` against the origin pipeline's way (`kubectl apply -f` then `kubectl rollout status`),
on the same cluster with the same manifests, on two clusters in one run: the Kubernetes simulator (tests/kubesim)
and the real control plane (tests/controlplane: kube-apiserver, controller-manager and scheduler), both with the
scripted node agent (no containers: pods behave as their image tag says). kubectl is each cluster's baseline, so
each figure is a ratio measured on one cluster in one run; `--cluster` picks kubesim, real or both.

(a) Bad image: seconds from the first failing pod status (ErrImagePull / ImagePullBackOff, seen in the simulator's
    store as it is written, or in a watch of the real API server) to each side's exit. kubectl waits out the
    Deployment's progress deadline; deployer fails fast, rolls back and waits for the previous revision to be ready
    again before exiting. On the simulator the deadline is 600 s and the clock runs --bad-clock-speed simulated
    seconds per real second: figures are given in both. The real control plane's clock cannot be sped up: there
    the deadline is --real-progress-deadline seconds, so its ratio says less about deployer than about that choice.
(b) Healthy deploy: wall time of a deploy whose pods become ready after --ready-after simulated seconds, the clock
    at real time (speed 1), replicas 2 (one pod at a time: maxSurge 1, maxUnavailable 0); deployer over kubectl,
    median of --runs runs, the sides alternating. Goal: ratio at most 1.1.
(c) API requests of one update deploy (tag v1 -> v2) of 1 and 20 Deployments, from the simulator's request counter,
    and of 1 Deployment whose pods take ten times longer: deployer must not grow with the wait (no polling).
    kubectl is counted with a warm discovery cache (same HOME as its first deploy) and a cold one (a fresh HOME,
    as on a new CI runner). Simulator only: the real API server counts no requests per client.

Prints figures and ratios, then the ratios of both clusters side by side; asserts nothing about time. Everything
it starts (clusters, deployer and kubectl processes, temporary directories) is stopped on exit, Ctrl-C or SIGTERM.

    .venv/bin/python bench/rollout.py [--runs 5] [--ready-after 5] [--bad-clock-speed 60]
        [--real-progress-deadline 30] [--only a,b,c] [--cluster kubesim,real]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.controlplane import ControlPlane  # noqa: E402
from tests.controlplane.api import ApiClient  # noqa: E402
from tests.deploy_scenarios import (  # noqa: E402
    Deployer,
    Kubectl,
    clean_environment,
    deployment,
    render_with_image,
    write_manifests,
)
from tests.kubesim import KubeSim  # noqa: E402

REPO = "registry.example/acme/web"
FAILING_REASONS = {"ErrImagePull", "ImagePullBackOff"}
CLUSTERS = ("kubesim", "real")
WATCH_SECONDS = 30


@dataclass
class Side:
    """One way of deploying (deployer or kubectl) into a namespace of its own on one cluster."""

    kubeconfig: Path
    scratch: Path
    kubectl_binary: str
    namespace: str

    def __post_init__(self) -> None:
        self.home = self.scratch / f"home-{self.namespace}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir = self.scratch / f"checkout-{self.namespace}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubectl = Kubectl(self.kubectl_binary, self.kubeconfig, self.home)
        self.deployer = Deployer(self.kubeconfig, self.workdir, clean_environment(self.home))

    def manifests(self, documents: list[dict[str, Any]]) -> Path:
        return write_manifests(self.workdir / "k8s", *documents)

    def deploy_with_deployer(self, tag: str, documents: list[dict[str, Any]], *extra: str) -> tuple[int, float]:
        done = self.deployer.run(tag, self.manifests(documents), self.namespace, *extra, timeout=900)
        return done.code, done.seconds

    def deploy_with_kubectl(
        self, tag: str, documents: list[dict[str, Any]], *, home: Path | None = None
    ) -> tuple[int, float]:
        """The origin pipeline: the image put into the manifests, `kubectl apply -f`, then `kubectl rollout
        status` for each Deployment in turn. Returns the first failing exit code (or 0) and the wall seconds."""
        kubectl = Kubectl(self.kubectl_binary, self.kubeconfig, home or self.home)
        rendered = self.workdir / "rendered"
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        write_manifests(rendered, namespace, *render_with_image(documents, f"{REPO}:{tag}"))
        started = time.monotonic()
        done = kubectl.run("-n", self.namespace, "apply", "-f", str(rendered), check=False, timeout=900)
        code = done.returncode
        for document in documents:
            if code:
                break
            name = document["metadata"]["name"]
            status = kubectl.run(
                "-n", self.namespace, "rollout", "status", f"deployment/{name}", check=False, timeout=900
            )
            code = status.returncode
        return code, time.monotonic() - started


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if not found:
        sys.exit("kubectl is not on PATH")
    return found


# --- the clusters -----------------------------------------------------------------------------------------------


@contextmanager
def uninterrupted() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while a cluster stops, so a second Ctrl-C cannot leave half of it running."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def failing(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return any((s.get("state") or {}).get("waiting", {}).get("reason") in FAILING_REASONS for s in statuses)


class PodFailures(Protocol):
    def at(self, namespace: str) -> tuple[float, float] | None:
        """When a pod of ``namespace`` first failed to pull: (time.monotonic(), the cluster's clock), if it did."""


class SimulatorPodFailures:
    """Failing pod statuses from the simulator's store, as each status is written."""

    def __init__(self, sim: KubeSim) -> None:
        self._sim = sim
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, float]] = {}
        sim.store.add_listener(self._changed)

    def _changed(self, event_type: str, rtype: Any, old: Any, new: Any, subresource: str) -> None:
        if rtype.kind == "Pod" and new and failing(new):
            with self._lock:
                self._seen.setdefault(new["metadata"].get("namespace", ""), (time.monotonic(), self._sim.clock.now()))

    def at(self, namespace: str) -> tuple[float, float] | None:
        with self._lock:
            return self._seen.get(namespace)


class WatchedPodFailures:
    """Failing pod statuses from a watch of all pods on the real API server (its clock is the wall clock).

    The watch thread ends at its next event or watch timeout after ``stop``, or when the API server stops."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, float]] = {}
        self._stopped = threading.Event()
        resource_version = self._list()
        threading.Thread(target=self._watch, args=(resource_version,), daemon=True).start()

    def _note(self, pod: dict[str, Any]) -> None:
        if failing(pod):
            now = time.monotonic()
            with self._lock:
                self._seen.setdefault(pod["metadata"].get("namespace", ""), (now, now))

    def _list(self) -> str:
        listing = self._api.get("/api/v1/pods") or {}
        for pod in listing.get("items", ()):
            self._note(pod)
        return str(listing.get("metadata", {}).get("resourceVersion", ""))

    def _watch(self, resource_version: str) -> None:
        while not self._stopped.is_set():
            try:
                for event in self._api.watch("/api/v1/pods", resource_version, WATCH_SECONDS):
                    if self._stopped.is_set():
                        return
                    if event.get("type") == "ERROR":  # 410 Gone: the version is too old; list again
                        resource_version = self._list()
                        break
                    resource_version = event["object"]["metadata"]["resourceVersion"]
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._note(event["object"])
            except (OSError, ValueError, RuntimeError):  # the stream broke, or the API server is stopping
                if self._stopped.wait(1):
                    return

    def stop(self) -> None:
        self._stopped.set()

    def at(self, namespace: str) -> tuple[float, float] | None:
        with self._lock:
            return self._seen.get(namespace)


@dataclass
class Cluster:
    """Where a part runs: a simulator started for it, or the run's real control plane."""

    name: str
    kubeconfig: Path
    clock_speed: float  # cluster seconds per real second
    now: Callable[[], float]  # the cluster's clock
    failures: PodFailures


@contextmanager
def on_cluster(which: str, plane: ControlPlane | None, clock_speed: float) -> Iterator[Cluster]:
    """A fresh simulator (scripted kubelet) at ``clock_speed``, or the run's real control plane, whose clock runs
    at real time whatever ``clock_speed`` says."""
    if which == "real":
        assert plane is not None
        watch = WatchedPodFailures(plane.api)
        try:
            yield Cluster("real control plane", plane.kubeconfig_path, 1.0, time.monotonic, watch)
        finally:
            watch.stop()
        return
    sim = KubeSim.start(kubelet="scripted", clock_speed=clock_speed)
    try:
        yield Cluster("kubesim", sim.kubeconfig_path, clock_speed, sim.clock.now, SimulatorPodFailures(sim))
    finally:
        with uninterrupted():
            sim.stop()


# --- (a) bad image ---------------------------------------------------------------------------------------------


def bench_bad_image(scratch: Path, kubectl: str, cluster: Cluster, deadline: int) -> float | None:
    """kubectl's seconds over deployer's, from the first failing pod status to the exit (None if one saw none)."""
    clock = (
        f"simulator clock speed {cluster.clock_speed:g} (sim s per real s)"
        if cluster.name == "kubesim"
        else ("real time")
    )
    print(f"(a) bad image on {cluster.name}, progressDeadlineSeconds {deadline}, {clock}")
    documents = [deployment("web", progress_deadline_seconds=deadline)]
    rows = []
    for name in ("deployer", "kubectl"):
        side = Side(cluster.kubeconfig, scratch / "a" / cluster.name, kubectl, f"bad-{name}")
        if name == "deployer":
            code, _ = side.deploy_with_deployer("v1", documents)
            assert code == 0, "the first deploy failed"
            running = side.deployer.start("pull-error", side.manifests(documents), side.namespace)
            try:
                done = running.finish(timeout=900)
            finally:
                running.kill()
            ended = running.started + done.seconds
            detected = next(
                (t for t, line in zip(running.arrived, running.lines, strict=True) if "rollout failed" in line),
                None,
            )
            code = done.code
        else:
            code, _ = side.deploy_with_kubectl("v1", documents)
            assert code == 0, "the first kubectl deploy failed"
            start = time.monotonic()
            code, seconds = side.deploy_with_kubectl("pull-error", documents)
            ended, detected = start + seconds, None
        cluster_ended = cluster.now() - (time.monotonic() - ended) * cluster.clock_speed
        first = cluster.failures.at(side.namespace)
        if first is None:
            print(f"  {name}: no failing pod status was seen (exit {code})")
            continue
        wall, simulated = ended - first[0], cluster_ended - first[1]
        rows.append((name, wall))
        extra = f"; failure reported {detected - first[0]:.2f} s after it" if detected else ""
        on_clock = f" ({simulated:7.1f} s simulated)" if cluster.name == "kubesim" else ""
        print(f"  {name:8}: exit {code} {wall:6.2f} s wall{on_clock} after the first failing pod status{extra}")
    if len(rows) != 2:
        return None
    ratio = rows[1][1] / rows[0][1]
    print(f"  kubectl / deployer: {ratio:.1f}x; goal: deployer < 2 s wall after the status")
    return ratio


BAD_IMAGE_NOTE = """\
  (deployer's figure includes its diagnosis and the rollback with the previous revision ready again;
   kubectl's is `rollout status` failing on the deadline, with nothing rolled back. deployer's time is
   its own work, not the cluster's: on kubesim its simulated figure is only its wall time times the clock speed)"""


# --- (b) healthy deploy ------------------------------------------------------------------------------------------


def bench_healthy(scratch: Path, kubectl: str, cluster: Cluster, runs: int, ready_after: float) -> float:
    """The median of deployer's wall time over kubectl's, run by run."""
    print(
        f"(b) healthy deploy on {cluster.name}: 2 replicas ready {ready_after:g} s after start, clock at real "
        f"time, {runs} runs each"
    )
    documents = [deployment("web", replicas=2)]
    ours = Side(cluster.kubeconfig, scratch / "b" / cluster.name, kubectl, "healthy-deployer")
    theirs = Side(cluster.kubeconfig, scratch / "b" / cluster.name, kubectl, "healthy-kubectl")
    assert ours.deploy_with_deployer("v0", documents)[0] == 0
    assert theirs.deploy_with_kubectl("v0", documents)[0] == 0
    times: dict[str, list[float]] = {"deployer": [], "kubectl": []}
    for run in range(runs):
        tag = f"ready-after-{ready_after:g}s-run{run}"
        order = [("deployer", ours), ("kubectl", theirs)]
        for name, side in order if run % 2 == 0 else reversed(order):
            if name == "deployer":
                code, seconds = side.deploy_with_deployer(tag, documents)
            else:
                code, seconds = side.deploy_with_kubectl(tag, documents)
            assert code == 0, f"{name} failed run {run}"
            times[name].append(seconds)
    ratios = [d / k for d, k in zip(times["deployer"], times["kubectl"], strict=True)]
    for name, values in times.items():
        print(f"  {name:8}: median {statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    overhead = statistics.median(times["deployer"]) - statistics.median(times["kubectl"])
    ratio = statistics.median(ratios)
    print(
        f"  deployer / kubectl: median ratio {ratio:.3f} (goal <= 1.1); "
        f"median of medians {statistics.median(times['deployer']) / statistics.median(times['kubectl']):.3f}; "
        f"deployer's extra {overhead:+.2f} s"
    )
    return ratio


# --- (c) API requests -------------------------------------------------------------------------------------------


def total(counts: Counter[tuple[str, str]]) -> int:
    return sum(counts.values())


def breakdown(counts: Counter[tuple[str, str]]) -> str:
    return ", ".join(f"{verb} {what} {n}" for (verb, what), n in counts.most_common())


def bench_requests(scratch: Path, kubectl: str) -> None:
    speed = 20.0
    print(f"(c) API requests of one update deploy (v1 -> v2), 1 replica each, clock speed {speed:g}")
    sim = KubeSim.start(kubelet="scripted", clock_speed=speed)
    try:
        for count, ready_after in ((1, 20), (20, 20), (1, 200)):
            documents = [deployment(f"app{i}", replicas=1) for i in range(count)]
            label = f"{count:2} workload(s), pods ready after {ready_after:3} sim s ({ready_after / speed:4.1f} s)"
            ours = Side(sim.kubeconfig_path, scratch / "c", kubectl, f"req-deployer-{count}-{ready_after}")
            theirs = Side(sim.kubeconfig_path, scratch / "c", kubectl, f"req-kubectl-{count}-{ready_after}")
            tag = f"ready-after-{ready_after}s"
            assert ours.deploy_with_deployer(f"v1-{tag}", documents)[0] == 0
            assert theirs.deploy_with_kubectl(f"v1-{tag}", documents)[0] == 0
            sim.reset_request_counts()
            assert ours.deploy_with_deployer(f"v2-{tag}", documents)[0] == 0
            deployer_counts = sim.request_counts
            sim.reset_request_counts()
            assert theirs.deploy_with_kubectl(f"v2-{tag}", documents)[0] == 0
            warm = sim.request_counts
            cold_home = Path(tempfile.mkdtemp(dir=scratch))
            sim.reset_request_counts()
            assert theirs.deploy_with_kubectl(f"v3-{tag}", documents, home=cold_home)[0] == 0
            cold = sim.request_counts
            print(
                f"  {label}: deployer {total(deployer_counts):4}  kubectl {total(warm):4} (warm cache), "
                f"{total(cold):4} (cold)"
            )
            print(f"      deployer: {breakdown(deployer_counts)}")
            print(f"      kubectl (warm): {breakdown(warm)}")
    finally:
        with uninterrupted():
            sim.stop()


def start_real_plane(stack: ExitStack) -> ControlPlane:
    """The run's real control plane (scripted node agent: no containers), stopped when ``stack`` closes."""
    started = time.monotonic()
    plane = ControlPlane.start(kubelet="scripted")

    def stop() -> None:
        with uninterrupted():
            plane.stop()

    stack.callback(stop)
    print(
        f"real control plane: Kubernetes {plane.binaries.kubernetes_version}, etcd {plane.binaries.etcd_version}, "
        f"usable after {time.monotonic() - started:.1f} s"
    )
    return plane


def print_summary(clusters: list[str], ratios: dict[tuple[str, str], float | None]) -> None:
    """Each part's ratio on each cluster, side by side (each measured against kubectl on that cluster)."""
    names = {"kubesim": "kubesim", "real": "real control plane"}
    print("summary: ratios against kubectl on the same cluster, this run")
    print(f"  {'':48}" + "".join(f"{names[c]:>20}" for c in clusters))
    for part, label in (
        ("a", "(a) bad image: kubectl / deployer after failing"),
        ("b", "(b) healthy: deployer / kubectl"),
    ):
        if any((part, c) in ratios for c in clusters):
            figures = (ratios.get((part, c)) for c in clusters)
            print(f"  {label:48}" + "".join(f"{'-' if r is None else f'{r:.2f}x':>20}" for r in figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per side for (b)")
    parser.add_argument("--ready-after", type=float, default=5.0, help="seconds until a new pod is ready, for (b)")
    parser.add_argument("--bad-clock-speed", type=float, default=60.0, help="simulator clock speed for (a)")
    parser.add_argument(
        "--real-progress-deadline",
        type=int,
        default=30,
        help="progressDeadlineSeconds for (a) on the real control plane (its clock runs at real time)",
    )
    parser.add_argument("--only", default="a,b,c", help="which parts to run, e.g. a,c")
    parser.add_argument("--cluster", default=",".join(CLUSTERS), help="where to run (a) and (b): kubesim, real or both")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    clusters = [c for c in CLUSTERS if c in args.cluster.split(",")]
    if not clusters or not set(args.cluster.split(",")) <= set(CLUSTERS):
        parser.error(f"--cluster: choose from {', '.join(CLUSTERS)} (comma-separated), not {args.cluster!r}")
    # SIGTERM unwinds like Ctrl-C, through every finally below: clusters, processes and directories go.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kubectl = kubectl_binary()
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"kubectl: {version.strip()}; python {sys.version.split()[0]}")
    ratios: dict[tuple[str, str], float | None] = {}
    try:
        with ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deployer-bench-rollout-")))
            plane = start_real_plane(stack) if "real" in clusters and parts & {"a", "b"} else None
            if "a" in parts:
                for which in clusters:
                    with on_cluster(which, plane, args.bad_clock_speed) as cluster:
                        deadline = 600 if which == "kubesim" else args.real_progress_deadline
                        ratios["a", which] = bench_bad_image(scratch, kubectl, cluster, deadline)
                print(BAD_IMAGE_NOTE)
            if "b" in parts:
                for which in clusters:
                    with on_cluster(which, plane, 1.0) as cluster:
                        ratios["b", which] = bench_healthy(scratch, kubectl, cluster, args.runs, args.ready_after)
            if "c" in parts:
                bench_requests(scratch, kubectl)
            print_summary(clusters, ratios)
    except KeyboardInterrupt:
        print("interrupted: everything the bench started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
