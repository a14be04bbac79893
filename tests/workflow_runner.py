"""A workflow's jobs run as GitHub's job engine and the runner would run them, for the tests of the example
workflows (workflows-examples/reusable-deploy.yml).

What it does as GitHub does: the `workflow_call` inputs with their types and defaults; jobs in the order of
their `needs`, each job's `if` (with the implicit `success()` unless a status function is named);
`strategy.matrix` expanded from an expression, the combinations run one after another (so `max-parallel`
holds), and with `fail-fast` (the default) a failed one stops those not started; the job's `environment`
choosing its secrets (an environment's secret wins over the caller's); `${{ }}` in `with:`, `env:`, `if:`,
`outputs:` and names; each `run:` step in `bash -eo pipefail` or `python` with its own GITHUB_OUTPUT, the
job's GITHUB_STEP_SUMMARY and RUNNER_TEMP, `continue-on-error`; job and workflow outputs.

Actions are stood in for: `actions/checkout` does nothing (the workspace is the checkout),
`actions/upload-artifact` and `actions/download-artifact` copy files through a folder of the run, and the
test supplies the others (the deployer action runs through tests/test_action_composite.py's runner).

The expression language covers what the example workflows use: literals, `.` and `[...]` access, `==`,
`!=`, `&&`, `||`, `!`, parentheses, fromJSON, toJSON, always, success, failure, cancelled. Anything else
fails the test loudly rather than being read wrongly.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.test_github_actions import read_output_file

# --- expressions -------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|\[|\]|\.|,)"
    r"|(?P<name>[A-Za-z_][\w-]*))"
)
STATUS_FUNCTIONS = re.compile(r"\b(?:always|success|failure|cancelled)\s*\(")


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    contexts: Mapping[str, Any]
    status: Callable[[str], bool]
    position: int = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise AssertionError(f"expression this runner cannot read: expected {expected!r}, got {token!r}")
        self.position += 1
        return token

    def expression(self) -> Any:
        value = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            value = value if truthy(value) else right
        return value

    def conjunction(self) -> Any:
        value = self.comparison()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.comparison()
            value = right if truthy(value) else value
        return value

    def comparison(self) -> Any:
        value = self.unary()
        token = self.peek()
        if token in (("op", "=="), ("op", "!=")):
            self.take()
            same = equal(value, self.unary())
            return same if token == ("op", "==") else not same
        return value

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                value = index(value, self.take()[1])
            else:
                key = self.expression()
                self.take("]")
                value = index(value, key)
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text) if "." in text else int(text)
        if (kind, text) == ("op", "("):
            value = self.expression()
            self.take(")")
            return value
        if kind != "name":
            raise AssertionError(f"expression this runner cannot read at {text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == ("op", "("):
            self.take()
            arguments = []
            while self.peek() != ("op", ")"):
                arguments.append(self.expression())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            return self.call(text, arguments)
        if text not in self.contexts:
            raise AssertionError(f"no context {text!r} in this runner")
        return self.contexts[text]

    def call(self, name: str, arguments: list[Any]) -> Any:
        if name.lower() == "fromjson":
            return json.loads(as_text(arguments[0]))
        if name.lower() == "tojson":
            return json.dumps(arguments[0], indent=2)
        if name.lower() in ("always", "success", "failure", "cancelled"):
            return self.status(name.lower())
        raise AssertionError(f"function this runner does not have: {name}")


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "")


def index(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        # Contexts are case-insensitive; the workflows here spell keys as they were declared.
        return value.get(key if isinstance(key, str) else str(key))
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return None


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value.strip() or 0) if isinstance(value, str) else float("nan")
    except ValueError:
        return float("nan")


def equal(left: Any, right: Any) -> bool:
    """GitHub's loose equality: strings without case, mixed types as numbers, objects by identity."""
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    if isinstance(left, Mapping | list) or isinstance(right, Mapping | list):
        return left is right
    return _number(left) == _number(right)


def evaluate(expression: str, contexts: Mapping[str, Any], status: Callable[[str], bool] | None = None) -> Any:
    tokens, position = [], 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise AssertionError(f"expression this runner cannot read: {expression!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match[kind]))
        position = match.end()
    parser = _Parser(tokens, contexts, status or (lambda name: name in ("always", "success")))
    value = parser.expression()
    if parser.peek() is not None:
        raise AssertionError(f"expression this runner cannot read: {expression!r}")
    return value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping | list):
        return json.dumps(value)
    return str(value)


_WHOLE = re.compile(r"^\s*\$\{\{(.*?)\}\}\s*$", re.DOTALL)


def resolve(template: Any, contexts: Mapping[str, Any], status: Callable[[str], bool] | None = None) -> Any:
    """A value of the workflow: a lone ``${{ }}`` keeps its type (a matrix list), else text is interpolated."""
    if not isinstance(template, str):
        return template
    whole = _WHOLE.match(template)
    if whole and "${{" not in whole.group(1):
        return evaluate(whole.group(1), contexts, status)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: as_text(evaluate(m[1], contexts, status)), template)


# --- the runner --------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    outcome: str  # success, failure, skipped
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass
class JobRun:
    """One job (one matrix combination): its result, its outputs, what its steps printed."""

    name: str
    matrix: dict[str, Any]
    result: str  # success, failure, skipped, cancelled
    outputs: dict[str, str]
    summary: str
    steps: dict[str, StepResult]


@dataclass
class WorkflowRun:
    jobs: dict[str, list[JobRun]]
    results: dict[str, str]  # per job id, as needs.<id>.result
    outputs: dict[str, str]

    def log(self) -> str:
        return "\n".join(
            f"--- {run.name} [{run.result}] step {step_id} ({step.outcome}):\n{step.log}"
            for runs in self.jobs.values()
            for run in runs
            for step_id, step in run.steps.items()
        )


#: A stand-in for an action: (the step's resolved `with:`, the job's contexts) -> its result.
Action = Callable[[dict[str, str], Mapping[str, Any]], StepResult]


@dataclass
class WorkflowRunner:
    workflow: Path
    workspace: Path
    temp: Path  # a folder of this run's own: RUNNER_TEMP and the artifacts live under it
    actions: Mapping[str, Action]  # by the `uses:` prefix (owner/name@)
    secrets: Mapping[str, Mapping[str, str]]  # by environment name; "" for the caller's secrets
    github: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, inputs: Mapping[str, Any]) -> WorkflowRun:
        document = yaml.safe_load(self.workflow.read_text())
        call = (document.get("on") or document[True])["workflow_call"]
        typed = {name: self._input(spec, inputs.get(name)) for name, spec in call["inputs"].items()}
        unknown = set(inputs) - set(call["inputs"])
        assert not unknown, f"inputs the workflow does not declare: {unknown}"
        jobs: dict[str, list[JobRun]] = {}
        results: dict[str, str] = {}
        needs_outputs: dict[str, dict[str, str]] = {}
        for job_id in _in_order(document["jobs"]):
            spec = document["jobs"][job_id]
            needs = [spec["needs"]] if isinstance(spec.get("needs"), str) else list(spec.get("needs", []))
            contexts = {
                "inputs": typed,
                "github": dict(self.github),
                "needs": {n: {"result": results[n], "outputs": needs_outputs[n]} for n in needs},
            }
            runs = self._run_job(job_id, spec, contexts, [results[n] for n in needs])
            jobs[job_id] = runs
            results[job_id] = _job_result(runs)
            merged: dict[str, str] = {}
            for run in runs:
                merged.update({key: value for key, value in run.outputs.items() if value})
            needs_outputs[job_id] = merged
        jobs_context = {job_id: {"result": results[job_id], "outputs": needs_outputs[job_id]} for job_id in jobs}
        outputs = {
            name: as_text(resolve(spec["value"], {"jobs": jobs_context})) for name, spec in call["outputs"].items()
        }
        return WorkflowRun(jobs, results, outputs)

    @staticmethod
    def _input(spec: Mapping[str, Any], given: Any) -> Any:
        value = spec.get("default") if given is None else given
        if spec["type"] == "number":
            return int(value)
        if spec["type"] == "boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return "" if value is None else str(value)

    def _run_job(
        self, job_id: str, spec: Mapping[str, Any], contexts: dict[str, Any], need_results: list[str]
    ) -> list[JobRun]:
        def job_status(name: str) -> bool:
            return {
                "always": True,
                "success": all(r == "success" for r in need_results),
                "failure": any(r == "failure" for r in need_results),
                "cancelled": False,
            }[name]

        condition = str(spec.get("if", "success()"))
        condition = condition.removeprefix("${{").removesuffix("}}")
        if not STATUS_FUNCTIONS.search(condition):
            condition = f"success() && ({condition})"
        if not truthy(evaluate(condition, contexts, job_status)):
            return [JobRun(job_id, {}, "skipped", {}, "", {})]
        strategy = spec.get("strategy") or {}
        combinations = [{}]
        if "matrix" in strategy:
            axes = {key: resolve(value, contexts) for key, value in strategy["matrix"].items()}
            assert all(isinstance(values, list) for values in axes.values()), axes
            combinations = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
        fail_fast = strategy.get("fail-fast", True)
        runs: list[JobRun] = []
        for matrix in combinations:
            if fail_fast and any(run.result == "failure" for run in runs):
                runs.append(JobRun(job_id, matrix, "cancelled", {}, "", {}))
                continue
            runs.append(self._run_one(job_id, spec, {**contexts, "matrix": matrix}))
        return runs

    def _run_one(self, job_id: str, spec: Mapping[str, Any], contexts: dict[str, Any]) -> JobRun:
        environment = spec.get("environment")
        environment_name = resolve(
            environment.get("name") if isinstance(environment, Mapping) else environment, contexts
        )
        secrets = {**self.secrets.get("", {}), **self.secrets.get(as_text(environment_name), {})}
        job_temp = self.temp / f"{job_id}-{os.urandom(3).hex()}"
        job_temp.mkdir(parents=True)
        summary = job_temp / "step-summary.md"
        summary.write_text("")
        contexts = {
            **contexts,
            "secrets": secrets,
            "runner": {"temp": str(job_temp), "os": "Linux"},
            "strategy": {},
            "steps": {},
        }
        name = as_text(resolve(spec.get("name", job_id), contexts))
        steps: dict[str, StepResult] = {}
        failed = False
        for number, step in enumerate(spec.get("steps", [])):
            step_id = step.get("id", f"__{number}")

            def step_status(status: str, failed: bool = failed) -> bool:
                return {"always": True, "success": not failed, "failure": failed, "cancelled": False}[status]

            contexts["steps"] = {key: {"outcome": r.outcome, "outputs": r.outputs} for key, r in steps.items()}
            condition = str(step.get("if", "success()")).removeprefix("${{").removesuffix("}}")
            if not STATUS_FUNCTIONS.search(condition):
                condition = f"success() && ({condition})"
            if not truthy(evaluate(condition, contexts, step_status)):
                steps[step_id] = StepResult("skipped")
                continue
            result = self._run_step(step, contexts, job_temp, summary)
            steps[step_id] = result
            if result.outcome == "failure" and not step.get("continue-on-error", False):
                failed = True
        contexts["steps"] = {key: {"outcome": r.outcome, "outputs": r.outputs} for key, r in steps.items()}
        outputs = {key: as_text(resolve(value, contexts)) for key, value in (spec.get("outputs") or {}).items()}
        return JobRun(name, contexts["matrix"], "failure" if failed else "success", outputs, summary.read_text(), steps)

    def _run_step(
        self, step: Mapping[str, Any], contexts: Mapping[str, Any], job_temp: Path, summary: Path
    ) -> StepResult:
        given = {key: as_text(resolve(value, contexts)) for key, value in (step.get("with") or {}).items()}
        if "uses" in step:
            uses = step["uses"]
            if uses.startswith("actions/checkout@"):
                return StepResult("success")
            if uses.startswith("actions/upload-artifact@"):
                return self._upload(given)
            if uses.startswith("actions/download-artifact@"):
                return self._download(given)
            for prefix, action in self.actions.items():
                if uses.startswith(prefix):
                    return action(given, contexts)
            raise AssertionError(f"this runner cannot stand in for {uses}")
        output = job_temp / f"output-{os.urandom(4).hex()}"
        output.write_text("")
        script = job_temp / "step-script"
        script.write_text(as_text(resolve(step["run"], contexts)))
        env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME")}
        env.update(self.env)
        env.update({key: as_text(resolve(value, contexts)) for key, value in (step.get("env") or {}).items()})
        env.update({"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(job_temp)})
        shell = step.get("shell", "bash")
        command = {
            "python": [sys.executable, str(script)],
            "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        }
        assert shell in command, f"this runner has no shell {shell!r}"
        done = subprocess.run(command[shell], cwd=self.workspace, env=env, capture_output=True, text=True, timeout=120)
        outcome = "success" if done.returncode == 0 else "failure"
        return StepResult(outcome, read_output_file(output.read_text()), done.stdout + done.stderr)

    def _upload(self, given: Mapping[str, str]) -> StepResult:
        source = Path(given["path"])
        if not source.exists():
            # upload-artifact's default if-no-files-found is warn: the step still succeeds.
            return StepResult("success", log=f"warning: no files found at {source}")
        target = self.temp / "artifacts" / given["name"]
        assert not target.exists(), f"artifact {given['name']} uploaded twice in one run"
        target.mkdir(parents=True)
        shutil.copy(source, target / source.name)
        return StepResult("success")

    def _download(self, given: Mapping[str, str]) -> StepResult:
        artifacts = self.temp / "artifacts"
        found = sorted(p for p in artifacts.glob("*") if fnmatch.fnmatch(p.name, given.get("pattern", "*")))
        destination = Path(given["path"])
        destination.mkdir(parents=True, exist_ok=True)
        assert given.get("merge-multiple") == "true", "this runner only merges artifacts into one folder"
        for artifact in found:
            for file in artifact.iterdir():
                shutil.copy(file, destination / file.name)
        return StepResult("success" if found else "failure", log=f"{len(found)} artifact(s)")


def _in_order(jobs: Mapping[str, Any]) -> list[str]:
    """Job ids in an order where each comes after what it needs (the workflow's own order among equals)."""
    ordered: list[str] = []
    while len(ordered) < len(jobs):
        for job_id, spec in jobs.items():
            needs = spec.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if job_id not in ordered and all(n in ordered for n in needs):
                ordered.append(job_id)
                break
        else:
            raise AssertionError("the jobs' needs form a cycle")
    return ordered


def _job_result(runs: list[JobRun]) -> str:
    results = {run.result for run in runs}
    for result in ("failure", "cancelled", "success"):
        if result in results:
            return result
    return "skipped"
