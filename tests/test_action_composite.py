"""The composite action (action.yml) run step by step as the Actions runner runs it.

A small runner: the caller's `with:` values (what the runner would also expose as INPUT_<NAME>) and the
action's defaults form the `inputs` context; `${{ }}` expressions in `env:`, `with:`, `if:` and `outputs:`
are evaluated (only the forms action.yml uses; anything else fails the test loudly); each `run:` step runs
with `bash --noprofile --norc -eo pipefail`, its own GITHUB_OUTPUT file and the job's GITHUB_STEP_SUMMARY,
GITHUB_EVENT_PATH, GITHUB_* and RUNNER_* variables. `actions/setup-python` is stood in for by this machine's
Python, `astral-sh/setup-uv` by the uv installed beside the tests' Python (the dev extra pins the version the
action asks for), or fails as where uv cannot run; `continue-on-error` is honoured. The install step really
installs deployer from the action's path and its lock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_github_actions import read_output_file

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
SHA = "0123456789abcdef0123456789abcdef01234567"
HEAD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
TOKEN = "ghs_composite-test-token-0123456789"

# --- expressions ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op>\|\||==|!=)|(?P<word>[A-Za-z_][\w.-]*))")


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise AssertionError(f"expression this test runner does not support: {expression!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


def _value(token: tuple[str, str], contexts: Mapping[str, Any]) -> Any:
    kind, text = token
    if kind == "string":
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    head, *path = text.split(".")
    value: Any = contexts[head]
    for key in path:
        value = value.get(key, "") if isinstance(value, Mapping) else ""
    return value


def evaluate(expression: str, contexts: Mapping[str, Any]) -> Any:
    """`a`, `a == 'x'`, `a != 'x'`, `a || b || ...`: the subset of the expression language action.yml uses."""
    alternatives: list[list[tuple[str, str]]] = [[]]
    for token in _tokens(expression):
        if token == ("op", "||"):
            alternatives.append([])
        else:
            alternatives[-1].append(token)
    value: Any = ""
    for alternative in alternatives:
        if len(alternative) == 1:
            value = _value(alternative[0], contexts)
        elif len(alternative) == 3 and alternative[1][0] == "op":
            left, right = (str(_value(t, contexts)).lower() for t in (alternative[0], alternative[2]))
            value = (left == right) if alternative[1][1] == "==" else (left != right)
        else:
            raise AssertionError(f"expression this test runner does not support: {expression!r}")
        if value not in ("", False, None, 0):
            return value
    return value


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def interpolate(template: Any, contexts: Mapping[str, Any]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: as_text(evaluate(m[1], contexts)), as_text(template))


# --- the runner ----------------------------------------------------------------------------------------


@dataclass
class ActionRun:
    outcome: str  # success or failure, as steps.<id>.outcome
    exit_code: int
    outputs: dict[str, str]
    summary: str
    log: str
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CompositeRunner:
    workspace: Path
    runner_temp: Path
    event_name: str = "push"
    event: dict[str, Any] = field(default_factory=dict)
    github_env: dict[str, str] = field(default_factory=dict)
    #: False: setup-uv fails, as on a runner where uv cannot run.
    uv_runs: bool = True

    def base_env(self) -> dict[str, str]:
        event_path = self.runner_temp / "event.json"
        event_path.write_text(json.dumps(self.event))
        # The machine's settings for pip and uv (an index, a certificate bundle) reach the install step, as a
        # self-hosted runner's environment would.
        machine = ("PATH", "HOME", "SSL_CERT_FILE", "SSL_CERT_DIR")
        env = {key: value for key, value in os.environ.items() if key.startswith(("PIP_", "UV_")) or key in machine}
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(self.workspace),
                "GITHUB_ACTION_PATH": str(ROOT),
                "GITHUB_REPOSITORY": "Acme/Hello-App",
                "GITHUB_REPOSITORY_OWNER": "Acme",
                "GITHUB_SHA": SHA,
                "GITHUB_REF": "refs/heads/main",
                "GITHUB_EVENT_NAME": self.event_name,
                "GITHUB_EVENT_PATH": str(event_path),
                "GITHUB_ACTOR": "octocat",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": "http://127.0.0.1:9",  # nothing listens: GitHub reporting may only warn
                "GITHUB_RUN_ID": "4242",
                "GITHUB_RUN_ATTEMPT": "1",
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "RUNNER_TEMP": str(self.runner_temp),
            }
        )
        env.update(self.github_env)
        return env

    def contexts(self, inputs: Mapping[str, str], steps: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "inputs": inputs,
            "steps": steps,
            "github": {"token": TOKEN, "actor": "octocat", "action_path": str(ROOT)},
            "runner": {"temp": str(self.runner_temp), "os": "Linux"},
        }

    def run(self, given: Mapping[str, str]) -> ActionRun:
        unknown = set(given) - set(ACTION["inputs"])
        assert not unknown, f"inputs action.yml does not declare: {unknown}"
        env = self.base_env()
        defaults_context = self.contexts({}, {})
        inputs = {
            name: given[name] if name in given else interpolate(spec.get("default", ""), defaults_context)
            for name, spec in ACTION["inputs"].items()
        }
        summary_file = self.runner_temp / "step-summary.md"
        summary_file.write_text("")
        steps: dict[str, dict[str, Any]] = {}
        log: list[str] = []
        failed_code = 0
        for index, step in enumerate(ACTION["runs"]["steps"]):
            step_id = step.get("id", f"__{index}")
            contexts = self.contexts(inputs, steps)
            condition = step.get("if")
            if failed_code or (condition is not None and not evaluate(condition, contexts)):
                steps[step_id] = {"outputs": {}, "outcome": "skipped"}
                continue
            if "uses" in step:
                steps[step_id] = self._uses(step["uses"], step.get("with") or {}, contexts)
                if steps[step_id]["outcome"] == "failure" and not step.get("continue-on-error"):
                    failed_code = 1
                continue
            code, outputs, output = self._run_step(step, contexts, env, summary_file)
            log.append(output)
            steps[step_id] = {"outputs": outputs, "outcome": "success" if code == 0 else "failure"}
            failed_code = code
        contexts = self.contexts(inputs, steps)
        outputs = {name: interpolate(spec["value"], contexts) for name, spec in ACTION["outputs"].items()}
        return ActionRun(
            outcome="failure" if failed_code else "success",
            exit_code=failed_code,
            outputs=outputs,
            summary=summary_file.read_text(),
            log="\n".join(log),
            steps=steps,
        )

    def _uses(self, reference: str, given: Mapping[str, Any], contexts: Mapping[str, Any]) -> dict[str, Any]:
        if reference.startswith("astral-sh/setup-uv@"):
            if not self.uv_runs:
                return {"outputs": {}, "outcome": "failure"}
            uv = Path(sys.executable).parent / "uv"
            version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
            assert version == interpolate(given["version"], contexts), "the dev extra's uv is not the action's"
            return {"outputs": {"uv-path": str(uv), "uv-version": version, "cache-hit": "false"}, "outcome": "success"}
        if reference.startswith("actions/setup-python@"):
            version = ".".join(map(str, sys.version_info[:3]))
            base_python = getattr(sys, "_base_executable", sys.executable)
            return {"outputs": {"python-path": base_python, "python-version": version}, "outcome": "success"}
        if reference.startswith("actions/cache@"):
            return {"outputs": {"cache-hit": "false"}, "outcome": "success"}
        raise AssertionError(f"this test runner cannot stand in for {reference}")

    def _run_step(
        self, step: Mapping[str, Any], contexts: Mapping[str, Any], env: Mapping[str, str], summary: Path
    ) -> tuple[int, dict[str, str], str]:
        assert step.get("shell") == "bash", "composite run steps must name their shell"
        output_file = self.runner_temp / f"output-{os.urandom(4).hex()}"
        output_file.write_text("")
        step_env = dict(env)
        step_env.update({name: interpolate(value, contexts) for name, value in (step.get("env") or {}).items()})
        step_env.update({"GITHUB_OUTPUT": str(output_file), "GITHUB_STEP_SUMMARY": str(summary)})
        script = self.runner_temp / "step.sh"
        script.write_text(interpolate(step["run"], contexts))
        directory = self.workspace / interpolate(step.get("working-directory", "."), contexts)
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=directory,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return result.returncode, read_output_file(output_file.read_text()), result.stdout + result.stderr


# --- tests ---------------------------------------------------------------------------------------------


@pytest.fixture
def runner(action_runner_temp: Path) -> Iterator[CompositeRunner]:
    yield CompositeRunner(
        workspace=ROOT,
        runner_temp=action_runner_temp,
        event={"after": SHA, "repository": {"full_name": "Acme/Hello-App"}},
    )


DRY_RUN = {
    "manifests": "workflows-examples/hello-app/k8s",
    "namespace": "hello",
    "dry-run": "true",
    "no-build": "true",
    "cache": "false",
}


def test_the_expression_subset_reads_like_the_runner() -> None:
    contexts = {"inputs": {"a": "", "b": "B", "flag": "true"}, "steps": {}}

    assert evaluate("inputs.a || inputs.b", contexts) == "B"
    assert evaluate("inputs.flag == 'TRUE'", contexts) is True
    assert interpolate("x-${{ inputs.b }}-${{ inputs.a }}", contexts) == "x-B-"
    with pytest.raises(AssertionError, match="does not support"):
        evaluate("fromJSON(inputs.b)", contexts)


def test_dry_run_through_the_action_plans_and_sets_outputs(runner: CompositeRunner) -> None:
    run = runner.run(DRY_RUN)

    assert run.exit_code == 0, run.log
    assert run.outputs["image"] == "ghcr.io/acme/hello-app:0123456"
    assert run.outputs["tag"] == "0123456"
    assert run.outputs["status"] == "planned"
    assert "Deployment/hello-app" in run.log and "Service/hello-app" in run.log


def test_every_secret_input_is_masked_before_anything_prints(runner: CompositeRunner) -> None:
    run = runner.run({**DRY_RUN, "registry-password": "hunter2-registry-secret"})

    assert run.exit_code == 0, run.log
    for secret in (TOKEN, "hunter2-registry-secret"):
        assert f"::add-mask::{secret}" in run.log
        # On stdout and on stderr (the console's stream, ordered with its fences), never anywhere else.
        outside = [line for line in run.log.splitlines() if secret in line and line != f"::add-mask::{secret}"]
        assert outside == [], f"{secret[:6]}... printed outside its ::add-mask::"


def test_pull_request_events_tag_the_head_commit(runner: CompositeRunner) -> None:
    runner.event_name = "pull_request"
    runner.event = {"pull_request": {"head": {"sha": HEAD_SHA}, "number": 7}}

    run = runner.run(DRY_RUN)

    assert run.exit_code == 0, run.log
    assert run.outputs["tag"] == HEAD_SHA[:7]


def test_a_missing_manifests_path_fails_the_step_with_exit_code_2_and_an_annotation(runner: CompositeRunner) -> None:
    run = runner.run({**DRY_RUN, "manifests": "no/such/dir"})

    assert run.outcome == "failure"
    assert run.exit_code == 2, run.log
    assert "::error" in run.log and "no/such/dir" in run.log


def test_shell_syntax_in_an_input_reaches_deployer_as_text(runner: CompositeRunner, tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    hostile = f"<IMAGE $(touch {marker})>"

    run = runner.run({**DRY_RUN, "placeholder": hostile})

    assert not marker.exists(), "an input was executed by the shell"
    assert run.exit_code == 2, run.log
    assert f"$(touch {marker})" in run.log, "deployer should name the placeholder it did not find"


# --- the install step ----------------------------------------------------------------------------------


def locked_runtime_pins() -> tuple[set[str], set[str]]:
    """`name==version` of every wheel in the action's lock export, and those without an environment marker
    (which every runner must have)."""
    pins, everywhere = set(), set()
    for line in (ROOT / "action-requirements.txt").read_text().splitlines():
        if line[:1].isalnum():
            requirement, _, marker = line.removesuffix("\\").partition(";")
            pin = normalized_pin(requirement.strip())
            pins.add(pin)
            if not marker.strip():
                everywhere.add(pin)
    return pins, everywhere


def normalized_pin(pin: str) -> str:
    name, _, version = pin.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"


def installed_pins(venv: Path) -> set[str]:
    script = "import importlib.metadata as m\nfor d in m.distributions(): print(d.metadata['Name'] + '==' + d.version)"
    listing = subprocess.run(
        [venv / "bin" / "python", "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    # deployer is built from the checkout; pip (and setuptools before Python 3.12) is what `python -m venv` seeds.
    seeded = ("deployer==", "pip==", "setuptools==")
    return {normalized_pin(pin) for pin in listing if not pin.startswith(seeded)}


def test_the_install_step_installs_exactly_the_locked_wheels_with_uv(runner: CompositeRunner) -> None:
    run = runner.run(DRY_RUN)

    assert run.exit_code == 0, run.log
    assert run.steps["uv"]["outcome"] == "success"
    assert "::warning::" not in run.log
    locked, everywhere = locked_runtime_pins()
    installed = installed_pins(runner.runner_temp / "deployer-venv")
    assert installed - locked == set(), "installed but not locked"
    assert everywhere - installed == set(), "locked but not installed"


def test_where_uv_cannot_run_pip_installs_the_same_locked_wheels(tmp_path: Path) -> None:
    runner = CompositeRunner(workspace=ROOT, runner_temp=tmp_path, event={"after": SHA}, uv_runs=False)
    # pip downloading and checking 40 wheels takes minutes on this machine: the venv is made and filled from
    # the same hashed file beforehand by uv (in seconds, and without pip, which the step's `python -m venv` then
    # adds), so pip's part is to accept that file in hash-checking mode, find every pin satisfied, and build and
    # install deployer itself.
    venv = tmp_path / "deployer-venv"
    uv = Path(sys.executable).parent / "uv"
    requirements = ROOT / "action-requirements.txt"
    quiet = {**os.environ, "UV_NO_CONFIG": "1"}
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, venv], check=True, env=quiet)
    fill = [
        uv,
        "pip",
        "install",
        "--quiet",
        "--python",
        venv / "bin" / "python",
        "--require-hashes",
        "-r",
        requirements,
    ]
    subprocess.run(fill, check=True, env=quiet)

    run = runner.run(DRY_RUN)

    assert run.exit_code == 0, run.log
    assert run.outputs["status"] == "planned"
    assert "::warning::setup-uv could not run on this runner" in run.log
    locked, everywhere = locked_runtime_pins()
    installed = installed_pins(tmp_path / "deployer-venv")
    assert installed - locked == set(), "installed but not locked"
    assert everywhere - installed == set(), "locked but not installed"
