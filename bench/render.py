"""Rendering speed: 1,000 manifest documents through ``manifests.render_objects``, against a plain
ruamel.yaml round trip of the same documents measured in the same process.

The documents are a third each Deployment, Service and ConfigMap, with comments, in 100 files of 10
documents, rendered with an image, a namespace and a change-cause as ``deployer run`` does. Also prints
the rate of ``render_text`` (the comment-keeping path used for --output and --render-only) on one file.
Goal: render_objects over 500 documents per second. Prints figures only; it asserts nothing.

    python bench/render.py
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable

from ruamel.yaml import YAML

from deployer.manifest_yaml import ManifestSource
from deployer.manifests import RenderOptions, render_objects, render_text

DOCUMENTS = 1000
PER_FILE = 10
GOAL_PER_SECOND = 500

DEPLOYMENT = """\
# Deployment {i}: the web tier.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  labels:
    app: web-{i}
    tier: "frontend"
spec:
  replicas: 3
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app: web-{i}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0  # keep full capacity during the rollout
  template:
    metadata:
      labels:
        app: web-{i}
    spec:
      containers:
        - name: web
          image: <IMAGE>
          args: ["--port", "8080", '--log-level=info']
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: RELEASED
              value: "2024-01-01"
          readinessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 2
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits:
              memory: 64Mi
"""

SERVICE = """\
# Service {i}
apiVersion: v1
kind: Service
metadata:
  name: web-{i}
  labels:
    app: web-{i}
spec:
  selector:
    app: web-{i}  # the pods of Deployment {i}
  ports:
    - name: http
      port: 80
      targetPort: http
"""

CONFIGMAP = """\
# ConfigMap {i}: settings read at start-up.
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-{i}
data:
  LOG_LEVEL: info
  FEATURE_FLAGS: "a,b,c"
  config.yaml: |
    server:
      port: 8080
      workers: 4
    # a comment inside a block scalar
"""

TEMPLATES = (DEPLOYMENT, SERVICE, CONFIGMAP)
OPTIONS = RenderOptions(
    images={"": "ghcr.io/acme/web:abc1234"},
    namespace="bench",
    change_cause="deployer: ghcr.io/acme/web:abc1234 from commit abc1234def56",
)


def make_sources() -> list[ManifestSource]:
    documents = [TEMPLATES[i % 3].format(i=i) for i in range(DOCUMENTS)]
    return [
        ManifestSource(f"k8s/part-{start // PER_FILE:03}.yaml", "---\n".join(documents[start : start + PER_FILE]))
        for start in range(0, DOCUMENTS, PER_FILE)
    ]


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def round_trip(sources: list[ManifestSource]) -> None:
    """What a naive design does: a comment-keeping load_all + dump_all of every document."""
    yaml = YAML(typ="rt")
    for source in sources:
        out = io.StringIO()
        yaml.dump_all(list(yaml.load_all(source.text)), out)


def main() -> None:
    sources = make_sources()
    rendered = len(render_objects(sources, OPTIONS))  # printed below: the bench renders what it claims
    render_seconds = median_seconds(lambda: render_objects(sources, OPTIONS), repeats=5)
    baseline_seconds = median_seconds(lambda: round_trip(sources), repeats=1)
    one_file = sources[0]
    text_seconds = median_seconds(lambda: render_text(one_file, OPTIONS), repeats=20)

    render_rate = DOCUMENTS / render_seconds
    baseline_rate = DOCUMENTS / baseline_seconds
    text_rate = PER_FILE / text_seconds
    verdict = "meets" if render_rate > GOAL_PER_SECOND else "MISSES"
    rows = [
        ("documents", f"{DOCUMENTS} in {len(sources)} files (Deployment/Service/ConfigMap, commented)"),
        ("objects rendered", f"{rendered}"),
        ("render_objects", f"{render_rate:8.0f} documents/s  ({render_seconds:.3f} s, median of 5)"),
        ("ruamel round trip (baseline)", f"{baseline_rate:8.0f} documents/s  ({baseline_seconds:.3f} s)"),
        ("ratio", f"{render_rate / baseline_rate:8.1f}x the round trip"),
        (
            "render_text, one file",
            f"{text_rate:8.0f} documents/s  ({text_seconds * 1000:.1f} ms per {PER_FILE}-document file)",
        ),
        (f"goal (> {GOAL_PER_SECOND}/s)", f"{verdict} it"),
    ]
    for label, value in rows:
        print(f"{label + ':':<30} {value}")


if __name__ == "__main__":
    main()
