"""No text deployer did not write can act as a workflow command in GitHub Actions, judged by the runner's own
parsing rules (tests/runner_commands.py): build output, events, logs, termination messages, API messages
and python logging go through the console, whose only commands the runner obeys are its own."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable

import pytest

from deployer import diagnoses
from deployer.console import Console
from tests.runner_commands import REGISTERED, Runner, executed_commands, parse_legacy, parse_v2, runner_lines

ACTIONS = {"GITHUB_ACTIONS": "true", "CI": "true"}
SECRET = "dop_v1_0123456789abcdef"

# What a hostile workload, build step or API answer prints: both command forms, a command behind white space,
# upper case, a stop that would swallow deployer's own commands, and line breaks of every kind.
INJECTIONS = [
    "::error::INJECTED-x",
    "::add-mask::INJECTED-y",
    "::stop-commands::INJECTED-z",
    "##[error]INJECTED-w",
    "  ::warning::INJECTED-v",
    "::ERROR file=a.yaml,line=1::INJECTED-u",
    "##[set-output name=image]INJECTED-t",
    "::stop-commands::",
]
HOSTILE = "readiness said\n" + "\n".join(INJECTIONS) + "\r::error::INJECTED-cr\r\n##[group]INJECTED-crlf"


def injected(commands: list[object]) -> list[object]:
    """Commands that came from the hostile text: their data (or a mask's value) is the injection itself."""
    return [c for c in commands if getattr(c, "data", "").startswith("INJECTED")]


# --- the model of the runner, pinned to its rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("::error::x", ("error", "x")),
        ("   ::warning file=a.yaml,line=3::x%0Ay", ("warning", "x\ny")),
        ("\u3000::error::x", ("error", "x")),  # an ideographic space is white space to .NET
        ("::ERROR::x", ("ERROR", "x")),
        ("::add-mask::s3cret", ("add-mask", "s3cret")),
        ("| ::error::x", None),  # the current form only at the start
        ("\x1f::error::x", None),  # not white space to .NET, though it is to Python
        ("::unknown::x", None),
        ("::error x", None),
        ("::::x", None),
    ],
)
def test_the_model_reads_the_current_form_as_the_runner_does(line: str, command: tuple[str, str] | None) -> None:
    parsed = parse_v2(line, REGISTERED)
    assert (None if parsed is None else (parsed.name, parsed.data)) == command


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("##[error]x", ("error", "x")),
        ("    | log line ##[error]x", ("error", "x")),  # anywhere in the line: a prefix does not stop it
        ("##[warning file=a.yaml;line=3]x%5Dy", ("warning", "x]y")),
        ("##[Error]x", ("Error", "x")),
        ("##[nothing]x", None),
        ("##[error x", None),
    ],
)
def test_the_model_reads_the_legacy_form_anywhere_in_a_line(line: str, command: tuple[str, str] | None) -> None:
    parsed = parse_legacy(line, REGISTERED)
    assert (None if parsed is None else (parsed.name, parsed.data)) == command


def test_the_model_cuts_lines_where_dotnet_readline_does() -> None:
    assert runner_lines("a\nb\rc\r\nd\x0be\u2028f") == ["a", "b", "c", "d\x0be\u2028f"]
    assert runner_lines("a\n\nb\n") == ["a", "", "b"]


def test_the_model_stops_until_the_token_and_never_after_an_empty_one() -> None:
    output = "::stop-commands::abc\n::error::ignored\n##[error]ignored\n::ABC::\n::error::after\n"
    runner = Runner().feed_output(output)
    assert [(c.name, c.data) for c in runner.executed] == [("error", "after")]
    assert not runner.stopped

    for_ever = Runner().feed_output("::stop-commands::\n::error::x\n::::\n::add-mask::y\n")
    assert for_ever.executed == [] and for_ever.stopped


def test_the_hostile_text_is_a_real_injection_when_printed_raw() -> None:
    """Without a fence the model finds the injected commands: the tests below could fail."""
    raw = Runner().feed_output(HOSTILE + "\n")
    assert [c.data for c in injected(raw.executed)] == ["INJECTED-x", "INJECTED-y"]
    # ... and the workload's stop swallows every command after it, deployer's own included.
    assert raw.stopped and raw.token == "INJECTED-z"
    prefixed = executed_commands("\n".join(f"    | {line}" for line in HOSTILE.splitlines() if "-z" not in line))
    assert [c.data for c in injected(prefixed)] == ["INJECTED-w", "INJECTED-t", "INJECTED-crlf"]


# --- the console --------------------------------------------------------------------------------------------


def actions_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out=out, env=ACTIONS, interactive=False), out


WRITERS: dict[str, Callable[[Console, str], None]] = {
    "info": lambda c, text: c.info(f"rollout failed: {text}"),
    "detail (build output)": lambda c, text: [c.detail(line) for line in text.splitlines()],
    "progress": lambda c, text: c.progress("deployment/web", f"deployment/web: {text}"),
    "warn": lambda c, text: c.warn(f"could not release the lock: {text}"),
    "error": lambda c, text: c.error(f"rollout failed: {text}", file="k8s/app.yaml", line=2),
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_no_text_the_console_is_given_acts_as_a_command(write: Callable[[Console, str], None]) -> None:
    console, out = actions_console()
    with console.phase("Wait for 1 workload(s)"):
        write(console, HOSTILE)
        console.warn("deployer's own warning")

    runner = Runner().feed_output(out.getvalue())

    assert injected(runner.executed) == [], out.getvalue()
    names = [c.name for c in runner.executed]
    assert names[0] == "group" and names[-1] == "endgroup"
    assert ("warning", "deployer's own warning") in [(c.name, c.data) for c in runner.executed]
    assert not runner.stopped
    # Every fence is the console's: a fresh token each time, each closed.
    stops = [c.data for c in runner.fences if c.name == "stop-commands"]
    assert len(set(stops)) == len(stops) and all(token.startswith("deployer-") for token in stops)
    # The text is still there for a person to read.
    assert "INJECTED-w" in out.getvalue()


def test_a_mask_after_untrusted_output_still_masks_on_both_streams(capsys: pytest.CaptureFixture[str]) -> None:
    console, out = actions_console()
    console.detail("##[error]INJECTED-w")
    console.add_secret(SECRET)
    console.detail("::error::INJECTED-x")

    runner = Runner().feed_output(out.getvalue())
    stdout_runner = Runner().feed_output(capsys.readouterr().out)

    # The runner processes the streams in an order of its own; each stream alone carries the mask unfenced.
    assert ("add-mask", SECRET) in [(c.name, c.data) for c in runner.executed]
    assert [(c.name, c.data) for c in stdout_runner.executed] == [("add-mask", SECRET)]
    assert injected(runner.executed) == []


def test_a_line_that_cannot_be_a_command_is_printed_as_it_is() -> None:
    console, out = actions_console()
    console.detail("#5 [2/3] RUN make")
    console.info("deployment/web: 1/2 updated")
    assert out.getvalue() == "#5 [2/3] RUN make\ndeployment/web: 1/2 updated\n"


def test_multi_line_text_becomes_lines_the_runner_reads_one_by_one() -> None:
    console, out = actions_console()
    console.info("first\rsecond\r\nthird")
    assert out.getvalue() == "first\nsecond\nthird\n"


def test_live_progress_counts_the_lines_of_a_multi_line_state() -> None:
    out = io.StringIO()
    console = Console(out=out, env={}, interactive=True)
    console.progress("a", "a: waiting\nmore")
    console.info("x")
    assert out.getvalue() == "a: waiting\nmore\n\x1b[2F\x1b[Jx\na: waiting\nmore\n"


# --- the diagnosis ------------------------------------------------------------------------------------------


def crashing_pod() -> dict[str, object]:
    terminated = {"exitCode": 1, "reason": "Error", "message": "bye\n::error::INJECTED-x\n##[error]INJECTED-w"}
    return {
        "metadata": {"name": "web-1"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                    "lastState": {"terminated": terminated},
                }
            ],
        },
    }


def test_multi_line_fields_of_a_diagnosis_are_prefixed_lines_inside_their_item() -> None:
    event = {
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "reason": "Unhealthy",
        "message": "Readiness probe failed: ok\n::add-mask::INJECTED-y\n",
    }
    logs = {diagnoses.LogRequest("web-1", "web", previous=True): ["starting", "::stop-commands::INJECTED-z\rtail"]}
    found = diagnoses.diagnose(
        {"kind": "Deployment", "metadata": {"name": "web"}}, [], [crashing_pod()], [event], logs, reason="failed"
    )

    text = found.text()

    assert "      container web: waiting: CrashLoopBackOff: back-off 20s (restarts 2, last: terminated: Error, " in text
    assert "        | ::error::INJECTED-x\n        | ##[error]INJECTED-w)" in text
    assert "    pod/web-1: Unhealthy: Readiness probe failed: ok\n      | ::add-mask::INJECTED-y" in text
    assert "    | ::stop-commands::INJECTED-z\n    | tail" in text
    # No line of it starts where the current form is read.
    assert all(not line.lstrip().startswith("::") for line in text.splitlines())

    console, out = actions_console()
    console.info(diagnoses.render_text([found]))
    assert injected(executed_commands(out.getvalue())) == []


# --- python logging and warnings ----------------------------------------------------------------------------


def test_logged_warnings_become_redacted_workflow_warnings_while_captured() -> None:
    console, out = actions_console()
    console.add_secret(SECRET)
    with console.capturing_logs():
        logging.getLogger("deployer.kube.locking").warning("could not renew the deploy lock in %s: %s", "shop", SECRET)
        logging.getLogger("urllib3.connectionpool").warning("Retrying after connection broken: ##[error]INJECTED-w")
        logging.getLogger("kubernetes.client.rest").info("not a warning: not shown")
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # the test run turns warnings into errors; deployer's run does not
            warnings.warn("Unverified HTTPS request", UserWarning, stacklevel=1)
    logging.getLogger("deployer.kube.locking").warning("after: not the console's")

    commands = [(c.name, c.data) for c in executed_commands(out.getvalue()) if c.name != "add-mask"]
    assert commands == [
        ("warning", "could not renew the deploy lock in shop: ***"),
        ("warning", "Retrying after connection broken: ##[error]INJECTED-w"),
        ("warning", "UserWarning: Unverified HTTPS request"),
    ]
    assert SECRET not in out.getvalue().replace(f"::add-mask::{SECRET}\n", "")
