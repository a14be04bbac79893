"""The command line as a user runs it: a subprocess with a controlled environment, in a scratch directory.

Every user error is one line on stderr starting with "error:", naming what is wrong, with exit code 2 and
no traceback; the dry run prints the plan, writes rendered files and GitHub outputs; --help stays light.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_K8S = REPO_ROOT / "workflows-examples" / "hello-app" / "k8s"
SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE_FLAGS = ["--image", "ghcr.io/acme/hello-app", "--tag", "abc1234"]
DRY_RUN = ["run", "--dry-run", "--no-build"]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def base_env(home: Path) -> dict[str, str]:
    """No GITHUB_*, CI or DEPLOYER_* from the outer environment: only what a test sets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def deployer(*args: str, cwd: Path, env: Mapping[str, str] | None = None, python_flags: tuple[str, ...] = ()) -> Result:
    full_env = {**base_env(cwd), **(env or {})}
    done = subprocess.run(
        [sys.executable, *python_flags, "-m", "deployer", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_error_line(result: Result, *fragments: str, code: int = 2) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.code == code, result
    return lines[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=base_env(cwd),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


CONFIGMAP_WITH_IMAGE = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\ndata:\n  image: <IMAGE>\n"


# --- help and version -----------------------------------------------------------------------------

RUN_VARIABLES = [
    "DEPLOYER_MANIFESTS",
    "DEPLOYER_NAMESPACE",
    "DEPLOYER_REGISTRY",
    "DEPLOYER_IMAGE",
    "DEPLOYER_TAG",
    "DEPLOYER_SHA_LENGTH",
    "DEPLOYER_PLACEHOLDER",
    "DEPLOYER_BUILD_CONTEXT",
    "DEPLOYER_DOCKERFILE",
    "DEPLOYER_BUILD_ARG",
    "DEPLOYER_NO_BUILD",
    "DEPLOYER_DRY_RUN",
    "DEPLOYER_RENDER_ONLY",
    "DEPLOYER_OUTPUT",
    "DEPLOYER_FORMAT",
    "DEPLOYER_CLUSTER",
    "DEPLOYER_KUBECONFIG",
    "DEPLOYER_KUBE_CONTEXT",
    "DEPLOYER_TIMEOUT",
    "DEPLOYER_ROLLBACK_TIMEOUT",
    "DEPLOYER_NO_ROLLBACK",
]


def test_run_help_lists_every_option_with_its_variable_and_the_exit_codes(tmp_path: Path) -> None:
    result = deployer("run", "--help", cwd=tmp_path)
    assert result.code == 0
    for variable in RUN_VARIABLES:
        assert re.search(rf"\b{variable}\b", result.stdout), variable
    for flag in ["--manifests", "--namespace", "--dry-run", "--render-only", "--output", "--format", "--sha-length"]:
        assert flag in result.stdout
    assert "Exit codes:" in result.stdout
    assert result.stderr == ""


def test_top_level_help_names_the_commands_the_variables_and_exit_codes(tmp_path: Path) -> None:
    result = deployer("--help", cwd=tmp_path)
    assert result.code == 0
    for text in ["deployer run", "--dry-run", "DEPLOYER_*", "Exit codes:", "3  the rollout failed"]:
        assert text in result.stdout
    assert deployer("-h", cwd=tmp_path).stdout == result.stdout


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    from deployer import __version__

    result = deployer("--version", cwd=tmp_path)
    assert (result.code, result.stdout.strip()) == (0, f"deployer, version {__version__}")


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_imports_neither_kubernetes_nor_docker_nor_github(tmp_path: Path, args: list[str]) -> None:
    result = deployer(*args, cwd=tmp_path, python_flags=("-X", "importtime"))
    assert result.code == 0
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "deployer.cli" in imported  # the measurement itself worked
    heavy = {name for name in imported if name.split(".")[0] in {"kubernetes", "docker", "github"}}
    heavy |= imported & {"deployer.docker_engine", "deployer.kube", "deployer.github"}
    assert heavy == set()


# --- user errors: one line, exit code 2 -----------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "args", "fragments"),
    [
        (
            {"k8s/bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n data: x\n"},
            ["-f", "k8s"],
            ["k8s/bad.yaml:5:2 (document 1): invalid YAML: did not find expected key"],
        ),
        (
            {"k8s/app.yaml": CONFIGMAP_WITH_IMAGE + "---\napiVersion: v1\nmetadata:\n  name: b\n"},
            ["-f", "k8s/app.yaml"],
            ["k8s/app.yaml (document 2): kind: missing"],
        ),
        (
            {"k8s/app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\ndata: {i: <IMAGE>}\n"},
            ["-f", "k8s"],
            ["k8s/app.yaml (document 1): metadata.name: missing"],
        ),
        (
            {"k8s/a.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n", "k8s/b.yml": "x: 1\n" * 0},
            ["-f", "k8s"],
            ["the placeholder <IMAGE> appears in none of the manifests", "k8s/a.yaml"],
        ),
        (
            {"k8s/app.yaml": CONFIGMAP_WITH_IMAGE + "  worker: <IMAGE:typo>\n"},
            ["-f", "k8s"],
            ["k8s/app.yaml (document 1): data.worker: no image named 'typo'"],
        ),
        (
            {"k8s/app.yaml": CONFIGMAP_WITH_IMAGE + "  broken: <IMAGE\n"},
            ["-f", "k8s"],
            ["k8s/app.yaml (document 1): data.broken: placeholder left over"],
        ),
        (
            {"k8s/app.yaml": CONFIGMAP_WITH_IMAGE.replace("name: config", "name: config\n  namespace: staging")},
            ["-f", "k8s", "-n", "prod"],
            ["metadata.namespace", "'staging'", "--namespace is 'prod'"],
        ),
        (
            {"k8s/a.yaml": CONFIGMAP_WITH_IMAGE, "k8s/b.yaml": CONFIGMAP_WITH_IMAGE},
            ["-f", "k8s"],
            ["k8s/b.yaml (document 1): ConfigMap 'config' is also defined in k8s/a.yaml (document 1)"],
        ),
        ({}, ["-f", "missing-dir"], ["--manifests: missing-dir: no such file or directory"]),
        ({"k8s/readme.txt": "no yaml here"}, ["-f", "k8s"], ["--manifests: k8s: no *.yaml or *.yml files"]),
        ({}, [], ["--manifests: no manifests given"]),
        ({"k8s/app.yaml": CONFIGMAP_WITH_IMAGE}, ["-f", "k8s", "--format", "xml"], ["'--format'", "'xml'"]),
        ({"k8s/app.yaml": CONFIGMAP_WITH_IMAGE}, ["-f", "k8s", "--timeout", "10x"], ["'--timeout'", "not a duration"]),
        ({"k8s/app.yaml": CONFIGMAP_WITH_IMAGE}, ["-f", "k8s", "--sha-length", "2"], ["'--sha-length'"]),
        ({"k8s/app.yaml": CONFIGMAP_WITH_IMAGE}, ["-f", "k8s", "--build-arg", "NOEQUALS"], ["--build-arg: 'NOEQUALS'"]),
        ({"k8s/app.yaml": CONFIGMAP_WITH_IMAGE}, ["-f", "k8s", "--no-such-flag"], ["--no-such-flag"]),
    ],
    ids=[
        "invalid-yaml",
        "missing-kind",
        "missing-name",
        "placeholder-not-found",
        "placeholder-unknown-name",
        "placeholder-left-over",
        "namespace-conflict",
        "duplicate-object",
        "missing-path",
        "directory-without-yaml",
        "no-manifests",
        "unknown-format",
        "bad-duration",
        "sha-length-out-of-range",
        "bad-build-arg",
        "unknown-flag",
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(
    tmp_path: Path, files: dict[str, str], args: list[str], fragments: list[str]
) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, *args, cwd=tmp_path)
    assert_one_error_line(result, *fragments)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [("DEPLOYER_TIMEOUT", "10x", "DEPLOYER_TIMEOUT"), ("DEPLOYER_FORMAT", "xml", "'xml' is not one of")],
)
def test_bad_value_from_a_variable_is_reported_like_a_flag(
    tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    write(tmp_path / "k8s/app.yaml", CONFIGMAP_WITH_IMAGE)
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", "k8s", cwd=tmp_path, env={variable: value})
    assert_one_error_line(result, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "cannot tell the image owner: GITHUB_REPOSITORY is not set"),
        (["--tag", "abc1234"], "cannot tell the image owner"),
        (["--image", "ghcr.io/acme/web"], "cannot tell which commit to deploy"),
        (["--image", "ghcr.io/acme/web:v1"], "--image: 'ghcr.io/acme/web:v1' must name a repository"),
        (["--image", "ghcr.io/Acme/web", "--tag", "x"], "must be lowercase"),
    ],
)
def test_owner_or_sha_undeterminable_outside_git_and_actions_is_exit_code_2(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    write(tmp_path / "k8s/app.yaml", CONFIGMAP_WITH_IMAGE)
    result = deployer(*DRY_RUN, "-f", "k8s", *args, cwd=tmp_path)
    assert_one_error_line(result, fragment)


def test_error_in_actions_is_an_error_annotation_on_the_file(tmp_path: Path) -> None:
    write(tmp_path / "k8s/bad.yaml", "apiVersion: v1\nkind: [\n")
    env = {"GITHUB_ACTIONS": "true", "CI": "true"}
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", "k8s", cwd=tmp_path, env=env)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("::error file=k8s/bad.yaml,line=3,col=1::")


# --- the dry run on the example app ---------------------------------------------------------------


def test_dry_run_prints_the_plan_for_the_example_app(tmp_path: Path) -> None:
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", str(HELLO_K8S), "-n", "web", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "image:     ghcr.io/acme/hello-app:abc1234"
    assert lines[1] == "build:     skipped (--no-build)"
    assert "objects (2, in apply order):" in lines
    service = next(i for i, line in enumerate(lines) if "Service/hello-app" in line)
    deployment = next(i for i, line in enumerate(lines) if "Deployment/hello-app" in line)
    assert service < deployment
    assert "namespace web" in lines[deployment]


def test_dry_run_plan_as_json_parses(tmp_path: Path) -> None:
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", str(HELLO_K8S), "--format", "json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["image"] == "ghcr.io/acme/hello-app:abc1234"
    assert [(o["kind"], o["name"], o["namespace"]) for o in plan["objects"]] == [
        ("Service", "hello-app", None),
        ("Deployment", "hello-app", None),
    ]
    assert plan["objects"][1]["source"].endswith("deployment.yaml (document 1)")


def test_dry_run_writes_rendered_files_with_comments_to_output(tmp_path: Path) -> None:
    out_dir = tmp_path / "rendered"
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", str(HELLO_K8S), "-o", str(out_dir), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["deployment.yaml", "service.yaml"]
    deployment = (out_dir / "deployment.yaml").read_text(encoding="utf-8")
    assert "image: ghcr.io/acme/hello-app:abc1234" in deployment
    assert "<IMAGE>" not in deployment.split("\n", 1)[1]  # the header comment mentions <IMAGE> and stays
    assert "# keep full capacity while the new version comes up" in deployment
    assert "kubernetes.io/change-cause: 'deployer: ghcr.io/acme/hello-app:abc1234" in deployment
    assert "wrote 2 rendered manifest file(s)" in result.stderr


def test_render_only_prints_yaml_that_parses_and_holds_the_image(tmp_path: Path) -> None:
    result = deployer("run", "--render-only", *IMAGE_FLAGS, "-f", str(HELLO_K8S), "-n", "web", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    documents = list(YAML(typ="safe").load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["namespace"]) for d in documents] == [("Deployment", "web"), ("Service", "web")]
    container = documents[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/hello-app:abc1234"


def test_dry_run_in_actions_writes_image_and_tag_outputs(tmp_path: Path) -> None:
    outputs = tmp_path / "github_output"
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "Acme-Corp/Hello-App",
        "GITHUB_SHA": SHA,
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_OUTPUT": str(outputs),
    }
    result = deployer(*DRY_RUN, "-f", str(HELLO_K8S), cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert "image:     ghcr.io/acme-corp/hello-app:0123456" in result.stdout
    values = {
        name: value
        for name, _, value in re.findall(r"^(\w+)<<(\S+)\n(.*?)\n\2$", outputs.read_text(encoding="utf-8"), re.M)
    }
    assert values["image"] == "ghcr.io/acme-corp/hello-app:0123456"
    assert values["tag"] == "0123456"


def test_pull_request_event_tags_the_head_commit_not_the_merge_commit(tmp_path: Path) -> None:
    head = "fedcba9876543210fedcba9876543210fedcba98"
    event = write(tmp_path / "event.json", json.dumps({"pull_request": {"head": {"sha": head}}}))
    env = {
        "GITHUB_REPOSITORY": "acme/hello-app",
        "GITHUB_SHA": SHA,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
    }
    result = deployer(*DRY_RUN, "-f", str(HELLO_K8S), "--format", "json", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["image"] == "ghcr.io/acme/hello-app:fedcba9"


def test_manifests_variable_takes_newline_separated_paths(tmp_path: Path) -> None:
    write(tmp_path / "one/app.yaml", CONFIGMAP_WITH_IMAGE)
    write(tmp_path / "two/svc.yml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n")
    env = {"DEPLOYER_MANIFESTS": "one/app.yaml\ntwo\n"}
    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "--format", "json", cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [(o["kind"], o["source"]) for o in plan["objects"]] == [
        ("ConfigMap", "one/app.yaml (document 1)"),
        ("Service", "two/svc.yml (document 1)"),
    ]


def test_local_git_work_tree_gives_owner_and_short_sha_and_dirty_suffix(tmp_path: Path) -> None:
    write(tmp_path / "k8s/app.yaml", CONFIGMAP_WITH_IMAGE)
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", "git@github.com:Acme/Hello-App.git")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    head = git(tmp_path, "rev-parse", "HEAD")

    clean = deployer(*DRY_RUN, "-f", "k8s", "--format", "json", cwd=tmp_path)
    assert clean.code == 0, clean.stderr
    assert json.loads(clean.stdout)["image"] == f"ghcr.io/acme/hello-app:{head[:7]}"

    write(tmp_path / "untracked.txt", "changes what docker build copies")
    dirty = deployer(*DRY_RUN, "-f", "k8s", "--format", "json", "--sha-length", "10", cwd=tmp_path)
    assert dirty.code == 0, dirty.stderr
    assert json.loads(dirty.stdout)["image"] == f"ghcr.io/acme/hello-app:{head[:10]}-dirty"


# --- bad input still reports: the JSON result and the step outputs ---------------------------------------------

REAL_RUN = ["run", "--no-build", "--kubeconfig", "kubeconfig-never-read"]


def step_outputs(path: Path) -> dict[str, str]:
    return {
        name: value
        for name, _, value in re.findall(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", path.read_text(encoding="utf-8"), re.M | re.S)
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-f", "k8s", "--format", "json"], "k8s/app.yaml (document 1): kind: missing"),
        (["--timeout", "10x", "-f", "k8s", "--format", "json"], "'10x' is not a duration"),
        (["-f", "k8s", "--build-arg", "NOEQUALS", "--format", "json"], "--build-arg: 'NOEQUALS'"),
    ],
    ids=["bad manifest", "bad flag value", "bad build arg"],
)
def test_bad_input_to_a_real_run_is_a_json_result_with_the_error_and_step_outputs(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    write(tmp_path / "k8s/app.yaml", "apiVersion: v1\nmetadata:\n  name: a\n")
    outputs = tmp_path / "github-output"

    result = deployer(*REAL_RUN, *IMAGE_FLAGS, *args, cwd=tmp_path, env={"GITHUB_OUTPUT": str(outputs)})

    line = assert_one_error_line(result, fragment)
    document = json.loads(result.stdout)
    assert (document["status"], document["exit_code"]) == ("failed", 2)
    assert fragment in document["error"] and document["error"] in line
    values = step_outputs(outputs)
    assert values["status"] == "failed" and fragment in values["error"]


def test_a_failed_dry_run_in_json_is_a_result_document_not_a_plan(tmp_path: Path) -> None:
    write(tmp_path / "k8s/app.yaml", "apiVersion: v1\nmetadata:\n  name: a\n")

    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", "k8s", "--format", "json", cwd=tmp_path)

    assert_one_error_line(result, "kind: missing")
    document = json.loads(result.stdout)
    assert (document["status"], document["exit_code"], document["image"]) == (
        "failed",
        2,
        "ghcr.io/acme/hello-app:abc1234",
    )


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"pull_request": "not an object"}, "pull_request in the event payload is not an object"),
        ({"pull_request": {"head": 7}}, "pull_request.head in the event payload is not an object"),
        ({"pull_request": {"head": {"sha": ["a"]}}}, "pull_request.head.sha in the event payload is not a commit SHA"),
    ],
)
def test_a_malformed_pull_request_event_is_one_error_line_naming_the_file_and_field(
    tmp_path: Path, event: dict[str, object], field: str
) -> None:
    path = write(tmp_path / "event.json", json.dumps(event))
    env = {
        "GITHUB_REPOSITORY": "acme/hello-app",
        "GITHUB_SHA": SHA,
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(path),
    }
    result = deployer(*DRY_RUN, "-f", str(HELLO_K8S), cwd=tmp_path, env=env)
    assert_one_error_line(result, f"{path}: {field}")


@pytest.mark.parametrize("target", ["a-file/rendered", "/proc/deployer-rendered"], ids=["under a file", "in /proc"])
def test_output_that_cannot_be_written_is_one_error_line_naming_the_flag_and_path(tmp_path: Path, target: str) -> None:
    write(tmp_path / "a-file", "not a directory\n")

    result = deployer(*DRY_RUN, *IMAGE_FLAGS, "-f", str(HELLO_K8S), "-o", target, cwd=tmp_path)

    assert_one_error_line(result, f"--output: cannot write the rendered manifests to {target}: ")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("missing/dir/kubeconfig", "cannot write missing/dir/kubeconfig: missing/dir does not exist"),
        ("a-file/kubeconfig", "cannot write a-file/kubeconfig: a-file is not a directory"),
    ],
)
def test_kubeconfig_output_that_cannot_be_written_is_refused_before_digitalocean_is_asked(
    tmp_path: Path, target: str, problem: str
) -> None:
    write(tmp_path / "a-file", "not a directory\n")
    # Nothing listens on port 9: had deployer asked DigitalOcean first, this would be a connection error.
    args = ["kubeconfig", "--cluster", "web", "--digitalocean-api-url", "http://127.0.0.1:9", "-o", target]

    result = deployer(*args, cwd=tmp_path, env={"DIGITALOCEAN_ACCESS_TOKEN": "dop_v1_not-used"})

    assert_one_error_line(result, f"--output: {problem}")


def test_a_docker_cli_that_is_not_one_is_an_error_naming_the_flag(tmp_path: Path, docker_client: object) -> None:
    write(tmp_path / "Dockerfile", "FROM scratch\n")
    write(tmp_path / "k8s/app.yaml", CONFIGMAP_WITH_IMAGE)

    result = deployer("run", "--dry-run", *IMAGE_FLAGS, "-f", "k8s", "--docker-cli", "/bin/false", cwd=tmp_path)

    assert_one_error_line(result, "--docker-cli: /bin/false is not a working docker CLI")
