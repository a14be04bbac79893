"""`deployer run` end to end with manifests that used to hang, crash or half-apply it, and with manifests from
standard input (``-f -``) and from a kustomization (``-k DIR``), on the real control plane (tests/controlplane/)
with the real kubectl as the judge of what is live: a namespace per test, web_images' images.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_scenarios import (
    EXIT_OK,
    Deployer,
    Kubectl,
    deployed,
    deployment,
    write_manifests,
)
from tests.manifest_texts import alias_bomb, nested

pytestmark = [pytest.mark.kubectl, pytest.mark.docker]

EXIT_BAD_INPUT = 2
WEB_PORT = 8080  # where web_images' tags serve, and where deployment()'s readiness probe asks


def web() -> dict[str, Any]:
    """The Deployment the tests deploy, with a readiness probe where web_images' tags serve."""
    return deployment("web", http_port=WEB_PORT)


def config_map(name: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def run_with_stdin(
    deployer: Deployer, text: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`deployer ARGS` with ``text`` on its standard input, as `kustomize build | deployer run -f -` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        input=text,
        cwd=deployer.workdir,
        env={**deployer.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    """The last line of stderr is deployer's one error line, with every fragment, and there is no traceback."""
    assert "Traceback" not in stderr, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in line, stderr
    return line


# --- manifests that must be refused before anything remote happens ---------------------------------------------


def test_a_binary_value_the_api_cannot_take_fails_before_anything_is_applied(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", config_map("web-config", {"mode": "v1"}), web())
    deployed(deployer, "v1", manifests, namespace)
    # v2 changes the ConfigMap (applied first) and puts PNG bytes, which are no text, in the Deployment.
    changed = web()
    changed["spec"]["template"]["metadata"]["annotations"] = {"checksum": "BINARY"}
    text = yaml.safe_dump_all([config_map("web-config", {"mode": "v2"}), changed])
    (manifests / "app.yaml").write_text(text.replace("BINARY", "!!binary iVBORw0KGgo="))

    done = deployer.run("v2", manifests, namespace)

    assert done.code == EXIT_BAD_INPUT, done.explain()
    assert_one_line_error(done.stderr, "app.yaml:", "(document 2)", "!!binary value is not UTF-8 text")
    assert judge.jsonpath(namespace, "configmap/web-config", "{.data.mode}") == "v1"
    assert judge.image(namespace) == f"{deployer.repository}:v1"


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry run", "run"])
def test_an_alias_bomb_is_refused_at_once_with_exit_2(
    deployer: Deployer, judge: Kubectl, namespace: str, dry_run: bool
) -> None:
    manifests = deployer.workdir / "k8s"
    manifests.mkdir()
    (manifests / "bomb.yaml").write_text(alias_bomb())

    done = deployer.run("v1", manifests, namespace, *(["--dry-run"] if dry_run else []))

    assert done.code == EXIT_BAD_INPUT, done.explain()
    assert_one_line_error(done.stderr, "bomb.yaml:", "(document 1)", "excessive aliasing")
    assert not judge.exists("", f"namespace/{namespace}")  # nothing remote happened


def test_nesting_past_the_documented_depth_is_refused_without_a_traceback(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    manifests = deployer.workdir / "k8s"
    manifests.mkdir()
    (manifests / "deep.yaml").write_text(nested(5000))

    done = deployer.run("v1", manifests, namespace)

    assert done.code == EXIT_BAD_INPUT, done.explain()
    assert_one_line_error(done.stderr, "deep.yaml:", "(document 1)", "nested deeper than 100 levels")
    assert not judge.exists("", f"namespace/{namespace}")


@pytest.mark.parametrize(
    ("link_to", "problem"),
    [("gone.yaml", "a broken symbolic link to gone.yaml"), ("loop.yaml", "a symbolic link loop")],
)
def test_a_manifest_link_that_leads_nowhere_is_an_error(
    deployer: Deployer, namespace: str, link_to: str, problem: str
) -> None:
    manifests = write_manifests(deployer.workdir / "k8s", web())
    (manifests / "loop.yaml").symlink_to(link_to)

    done = deployer.run("v1", manifests, namespace, "--dry-run")

    assert done.code == EXIT_BAD_INPUT, done.explain()
    assert_one_line_error(done.stderr, "--manifests:", "loop.yaml: cannot open:", problem)


# --- manifests from standard input ------------------------------------------------------------------------------


def test_manifests_piped_to_f_dash_are_deployed(deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    text = yaml.safe_dump_all([config_map("web-config", {"mode": "piped"}), web()])

    done = run_with_stdin(deployer, text, *deployer.args("v1", Path("-"), namespace))

    assert done.returncode == EXIT_OK, done.stderr
    assert judge.image(namespace) == f"{deployer.repository}:v1"
    assert judge.jsonpath(namespace, "configmap/web-config", "{.data.mode}") == "piped"


def test_an_error_in_piped_manifests_names_stdin_its_document_and_line(
    deployer: Deployer, judge: Kubectl, namespace: str
) -> None:
    text = yaml.safe_dump_all([config_map("a", {}), config_map("b", {}), web()])
    text = text.replace("  replicas: 2\n", "  replicas: 2\n   bad: indentation\n")

    done = run_with_stdin(deployer, text, *deployer.args("v1", Path("-"), namespace))

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    line = assert_one_line_error(done.stderr, "<stdin>:", "(document 3)", "invalid YAML")
    number = text.splitlines().index("   bad: indentation") + 1
    assert f"<stdin>:{number}:" in line
    assert not judge.exists("", f"namespace/{namespace}")


# --- kustomizations ------------------------------------------------------------------------------------------------


def kustomization(root: Path) -> Path:
    """A base (a Deployment with the placeholder) and a prod overlay that prefixes names and sets replicas."""
    base = write_manifests(root / "base", web(), file_name="web.yaml")
    (base / "kustomization.yaml").write_text("resources:\n- web.yaml\n")
    overlay = root / "overlays" / "prod"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources:\n- ../../base\nnamePrefix: prod-\nreplicas:\n- name: web\n  count: 3\n"
    )
    return overlay


def test_k_deploys_what_kubectl_kustomize_builds(deployer: Deployer, judge: Kubectl, namespace: str) -> None:
    overlay = kustomization(deployer.workdir)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "run",
            "--no-build",
            "--image",
            deployer.repository,
            "--tag",
            "v1",
            "-n",
            namespace,
            "-k",
            str(overlay.relative_to(deployer.workdir)),
            "--kubeconfig",
            str(deployer.kubeconfig),
        ],
        cwd=deployer.workdir,
        env=deployer.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == EXIT_OK, done.stderr
    assert judge.image(namespace, "deployment/prod-web") == f"{deployer.repository}:v1"
    assert judge.jsonpath(namespace, "deployment/prod-web", "{.spec.replicas}") == "3"


def test_a_kustomization_that_fails_is_one_prefixed_line(deployer: Deployer) -> None:
    overlay = kustomization(deployer.workdir)
    (overlay / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "run",
            "--dry-run",
            "--no-build",
            "--image",
            deployer.repository,
            "--tag",
            "v1",
            "-k",
            str(overlay),
        ],
        cwd=deployer.workdir,
        env=deployer.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert_one_line_error(done.stderr, f"<kubectl kustomize {overlay}>: kubectl kustomize failed:", "missing.yaml")
    assert len(done.stderr.strip().splitlines()) == 1


def test_k_without_kubectl_says_what_to_do(deployer: Deployer, tmp_path: Path) -> None:
    overlay = kustomization(deployer.workdir)
    empty_path = tmp_path / "bin"
    empty_path.mkdir()

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "run",
            "--dry-run",
            "--no-build",
            "--image",
            deployer.repository,
            "--tag",
            "v1",
            "-k",
            str(overlay),
        ],
        cwd=deployer.workdir,
        env={**deployer.env, "PATH": str(empty_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert_one_line_error(
        done.stderr, "--kustomize: kubectl is not installed", "kustomize build DIR | deployer run -f -"
    )


def test_k_and_f_together_are_refused_as_kubectl_refuses_them(deployer: Deployer) -> None:
    overlay = kustomization(deployer.workdir)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployer",
            "run",
            "--dry-run",
            "--no-build",
            "--image",
            deployer.repository,
            "--tag",
            "v1",
            "-k",
            str(overlay),
            "-f",
            str(deployer.workdir / "base"),
        ],
        cwd=deployer.workdir,
        env=deployer.env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert_one_line_error(done.stderr, "--kustomize: give either -k DIRECTORY or -f PATH, not both")
