"""Static checks of the action and the workflows: actionlint and zizmor find nothing, and action.yml keeps
its contract with `deployer run` (every input reaches the tool through a DEPLOYER_* variable it reads).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from deployer import cli

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
EXAMPLES = sorted((ROOT / "workflows-examples").glob("*.yml"))
OWN_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
WORKFLOWS = EXAMPLES + OWN_WORKFLOWS
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def tool(name: str) -> str:
    """The linter installed beside this Python (the dev extras), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run_tool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def load(path: Path) -> dict[Any, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def test_there_is_something_to_lint() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {
        "deploy-doks.yml",
        "reusable-deploy.yml",
        "caller.yml",
        "deploy-any-cluster.yml",
        "pr-dry-run.yml",
        "promote.yml",
    } <= names
    assert {"ci.yml", "e2e-kind.yml"} <= names


def test_actionlint_finds_nothing() -> None:
    result = run_tool(tool("actionlint"), "-no-color", *map(str, WORKFLOWS))

    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_offline_finds_nothing() -> None:
    result = run_tool(tool("zizmor"), "--offline", "--no-progress", str(ACTION), *map(str, WORKFLOWS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_the_linters_do_catch_a_template_injection(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request_target\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )

    actionlint = run_tool(tool("actionlint"), "-no-color", str(bad))
    zizmor = run_tool(tool("zizmor"), "--offline", "--no-progress", str(bad))

    assert actionlint.returncode != 0 and "github.event.pull_request.title" in actionlint.stdout
    assert zizmor.returncode != 0 and "template-injection" in zizmor.stdout


# --- the action's contract ---------------------------------------------------------------------------


def action_steps() -> list[dict[str, Any]]:
    steps = load(ACTION)["runs"]["steps"]
    assert isinstance(steps, list)
    return steps


def test_no_run_script_expands_an_expression() -> None:
    files = [ACTION, *WORKFLOWS]
    offenders = []
    for path in files:
        document = load(path)
        jobs = document.get("jobs", {}).values() if "jobs" in document else [{"steps": document["runs"]["steps"]}]
        for job in jobs:
            for step in job.get("steps", []):
                if "${{" in step.get("run", ""):
                    offenders.append(f"{path.name}: {step.get('name', step['run'][:40])}")
    assert offenders == [], "inputs must reach scripts through env:, not ${{ }} in run:"


def test_every_action_and_reusable_workflow_is_pinned_by_commit() -> None:
    references = []
    for path in [ACTION, *WORKFLOWS]:
        references += re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)", path.read_text(), flags=re.MULTILINE)
    remote = [r for r in references if not r.startswith("./")]

    assert remote, "no action reference found"
    assert [r for r in remote if not PINNED.match(r)] == []


def test_setup_python_is_pinned_to_v6_3_0() -> None:
    uses = [step["uses"] for step in action_steps() if "uses" in step]

    assert "actions/setup-python@ece7cb06caefa5fff74198d8649806c4678c61a1" in uses


def run_command_variables() -> dict[str, str]:
    """DEPLOYER_* (and other) variables `deployer run` reads, mapped to the option's long name."""
    command = cli.cli.commands["run"]
    variables: dict[str, str] = {}
    for parameter in command.params:
        if isinstance(parameter, click.Option) and parameter.envvar:
            names = [parameter.envvar] if isinstance(parameter.envvar, str) else list(parameter.envvar)
            for name in names:
                variables[name] = max(parameter.opts, key=len)
    return variables


def test_every_variable_the_action_sets_is_one_deployer_run_reads() -> None:
    deploy = next(step for step in action_steps() if step.get("id") == "deploy")
    known = run_command_variables()

    unknown = sorted(set(deploy["env"]) - set(known))

    assert unknown == []


def test_every_input_reaches_the_tool_or_the_setup() -> None:
    inputs = set(load(ACTION)["inputs"])
    used = set(re.findall(r"inputs\.([\w-]+)", ACTION.read_text()))

    assert inputs - used == set()
    assert used - inputs == set()


def test_each_input_maps_to_the_option_of_the_same_name() -> None:
    deploy = next(step for step in action_steps() if step.get("id") == "deploy")
    known = run_command_variables()
    # Where the input's name differs from the flag's, on purpose (shorter or matching docker's words).
    renamed = {
        "context": "--build-context",
        "build-args": "--build-arg",
        "extra-tags": "--extra-tag",
        "image-refs": "--image-ref",
        "kubeconfig": "--kubeconfig-data",
        "kubeconfig-path": "--kubeconfig",
    }

    mismatched = []
    for variable, value in deploy["env"].items():
        inputs = re.findall(r"inputs\.([\w-]+)", str(value))
        flag = known[variable].split("/")[0]
        if renamed.get(inputs[0], f"--{inputs[0]}") != flag:
            mismatched.append(f"{variable}: input {inputs[0]} vs flag {flag}")
    assert mismatched == []


def test_outputs_come_from_the_deploy_step() -> None:
    outputs = load(ACTION)["outputs"]

    assert set(outputs) == {"image", "digest", "tag", "status", "rolled-back", "revisions", "error"}
    assert all(o["value"] == f"${{{{ steps.deploy.outputs.{name} }}}}" for name, o in outputs.items())


def test_reusable_workflow_exposes_typed_inputs_secrets_and_outputs() -> None:
    document = load(ROOT / "workflows-examples" / "reusable-deploy.yml")
    # PyYAML reads the key `on` as True (YAML 1.1).
    call = (document.get("on") or document[True])["workflow_call"]

    assert {spec["type"] for spec in call["inputs"].values()} == {"string", "number", "boolean"}
    assert set(call["secrets"]) == {"DIGITALOCEAN_ACCESS_TOKEN", "KUBECONFIG", "REGISTRY_PASSWORD"}
    assert {"image", "digest", "status", "rolled-back", "revisions", "results"} <= set(call["outputs"])


BUILDS = {"contents": "read", "packages": "write", "deployments": "write"}
PROMOTES = {"contents": "read", "packages": "read", "deployments": "write"}


@pytest.mark.parametrize(
    ("name", "granted"),
    [
        ("deploy-doks.yml", {"deploy": BUILDS}),
        ("deploy-any-cluster.yml", {"deploy": BUILDS}),
        ("reusable-deploy.yml", {"plan": {}, "first-wave": BUILDS, "rest-wave": PROMOTES, "summary": {}}),
        ("promote.yml", {"staging": BUILDS, "production": PROMOTES}),
    ],
)
def test_deploy_workflows_grant_least_privilege(name: str, granted: dict[str, dict[str, str]]) -> None:
    document = load(ROOT / "workflows-examples" / name)

    assert document.get("permissions") in ({}, None)
    assert {job_id: job["permissions"] for job_id, job in document["jobs"].items()} == granted


def _deploy_step(job: dict[str, Any]) -> dict[str, Any]:
    [step] = [step for step in job["steps"] if str(step.get("uses", "")).startswith("your-org/deployer@")]
    return step


def test_promotion_deploys_the_staging_digest_to_production_without_a_build() -> None:
    jobs = load(ROOT / "workflows-examples" / "promote.yml")["jobs"]
    staging, production = jobs["staging"], jobs["production"]

    assert staging["environment"]["name"] == "staging" and production["environment"]["name"] == "production"
    assert production["needs"] == "staging"
    assert staging["outputs"]["digest"] == "${{ steps.deploy.outputs.digest }}"
    assert _deploy_step(staging)["with"]["pin-digest"] is True
    promoted = _deploy_step(production)["with"]
    assert promoted["no-build"] is True
    assert promoted["digest"] == "${{ needs.staging.outputs.digest }}"
    # Each records its own GitHub Deployment (deployer's, not the runner's) and locks its own namespace.
    assert _deploy_step(staging)["with"]["environment"] == "staging"
    assert promoted["environment"] == "production"
    assert staging["environment"]["deployment"] is False and production["environment"]["deployment"] is False
    assert _deploy_step(staging)["with"]["namespace"] != promoted["namespace"]
