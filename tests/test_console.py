"""What a person sees: secrets redacted everywhere, workflow commands in Actions, progress once per change."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from deployer.console import Console
from tests.runner_commands import executed_commands

ACTIONS = {"GITHUB_ACTIONS": "true", "CI": "true"}
PLAIN_CI = {"CI": "true"}
SECRET = "dop_v1_0123456789abcdef"
OTHER_SECRET = "ghp_ABCDEFGHIJKLMNOP"


def make_console(env: dict[str, str], *, interactive: bool = False, quiet: bool = False) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(out=out, env=env, interactive=interactive, quiet=quiet), out


def write_everything(console: Console, text: str) -> None:
    console.info(text)
    console.detail(text)
    console.warn(text)
    console.error(text, file="k8s/app.yaml", line=3, col=1)
    console.progress("deployment/web", f"deployment/web: {text}")
    with console.phase(f"Phase {text}"):
        console.info(text)


@pytest.mark.parametrize(
    ("env", "interactive"),
    [({}, False), (PLAIN_CI, False), (ACTIONS, False), ({}, True)],
    ids=["terminal-plain", "ci", "actions", "terminal-live"],
)
def test_added_secrets_never_appear_in_what_the_console_writes(
    env: dict[str, str], interactive: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    console, out = make_console(env, interactive=interactive)
    console.add_secret(SECRET)
    console.add_secret(OTHER_SECRET)
    console.add_secret(None)
    write_everything(console, f"token={SECRET} and {OTHER_SECRET}, twice {SECRET}")
    masks = [f"::add-mask::{SECRET}", f"::add-mask::{OTHER_SECRET}"]
    written = "\n".join(line for line in out.getvalue().splitlines() if line not in masks)
    assert SECRET not in written
    assert OTHER_SECRET not in written
    assert "token=*** and ***, twice ***" in written
    # The mask commands are the only place the runner may see the value, and only in Actions.
    stdout = capsys.readouterr().out
    if env is ACTIONS:
        assert stdout.splitlines() == [f"::add-mask::{SECRET}", f"::add-mask::{OTHER_SECRET}"]
    else:
        assert stdout == ""


def test_each_line_of_a_multi_line_secret_is_redacted_on_its_own() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----"
    console, out = make_console({})
    console.add_secret(key)
    console.info(f"whole: {key}")
    console.info("one line: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in out.getvalue()
    assert "one line: ***" in out.getvalue()


def test_a_secret_added_later_is_redacted_from_then_on() -> None:
    console, out = make_console({})
    console.add_secret(SECRET)
    console.add_secret(SECRET)  # twice is harmless
    console.info(SECRET)
    assert out.getvalue() == "***\n"


def test_add_mask_lines_in_actions_go_to_both_streams_before_anything_is_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console, out = make_console(ACTIONS)
    console.add_secret("multi-line\nsecret-value")
    masks = ["::add-mask::multi-line%0Asecret-value", "::add-mask::multi-line", "::add-mask::secret-value"]
    assert capsys.readouterr().out.splitlines() == masks
    assert out.getvalue().splitlines() == masks


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.warn("disk almost full"), "::warning::disk almost full\n"),
        (lambda c: c.error("it broke"), "::error::it broke\n"),
        (
            lambda c: c.error("bad YAML: 100% wrong\nsecond line", file="k8s/app.yaml", line=3, col=5),
            "::error file=k8s/app.yaml,line=3,col=5::bad YAML: 100%25 wrong%0Asecond line\n",
        ),
        (lambda c: c.error("x", file="dir,with:colon/a.yaml"), "::error file=dir%2Cwith%3Acolon/a.yaml::x\n"),
    ],
)
def test_warnings_and_errors_are_workflow_commands_in_actions(call: Callable[[Console], None], expected: str) -> None:
    console, out = make_console(ACTIONS)
    call(console)
    assert out.getvalue() == expected


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.warn("disk almost full"), "warning: disk almost full\n"),
        (lambda c: c.error("it broke", file="k8s/app.yaml", line=3), "error: it broke\n"),
    ],
)
def test_warnings_and_errors_are_plain_lines_outside_actions(call: Callable[[Console], None], expected: str) -> None:
    console, out = make_console(PLAIN_CI)
    call(console)
    assert out.getvalue() == expected


def test_phases_are_groups_in_actions_and_headings_elsewhere() -> None:
    for env, expected in [
        (ACTIONS, "::group::Build ghcr.io/acme/web:abc1234\nstep 1\n::endgroup::\n"),
        (PLAIN_CI, "==> Build ghcr.io/acme/web:abc1234\nstep 1\n"),
    ]:
        console, out = make_console(env)
        with console.phase("Build ghcr.io/acme/web:abc1234"):
            console.info("step 1")
        assert out.getvalue() == expected


def test_progress_in_ci_prints_one_line_per_change() -> None:
    console, out = make_console(PLAIN_CI)
    updates = [
        ("deployment/web", "deployment/web: 0 of 2 updated"),
        ("deployment/web", "deployment/web: 0 of 2 updated"),
        ("deployment/api", "deployment/api: 0 of 1 updated"),
        ("deployment/web", "deployment/web: 0 of 2 updated"),
        ("deployment/web", "deployment/web: 1 of 2 updated"),
        ("deployment/api", "deployment/api: 0 of 1 updated"),
        ("deployment/web", "deployment/web: 1 of 2 updated"),
        ("deployment/web", "deployment/web: 2 of 2 updated"),
    ]
    for key, text in updates:
        console.progress(key, text)
    assert out.getvalue().splitlines() == [
        "deployment/web: 0 of 2 updated",
        "deployment/api: 0 of 1 updated",
        "deployment/web: 1 of 2 updated",
        "deployment/web: 2 of 2 updated",
    ]
    assert "\x1b" not in out.getvalue()


def test_progress_starts_afresh_after_a_phase() -> None:
    console, out = make_console(PLAIN_CI)
    with console.phase("Rollout"):
        console.progress("deployment/web", "deployment/web: 2 of 2 updated")
    with console.phase("Rollback"):
        console.progress("deployment/web", "deployment/web: 2 of 2 updated")
    assert out.getvalue().count("deployment/web: 2 of 2 updated") == 2


def test_quiet_console_keeps_warnings_and_errors_only() -> None:
    console, out = make_console(PLAIN_CI, quiet=True)
    console.info("info")
    console.detail("build output")
    console.progress("deployment/web", "progress")
    console.warn("careful")
    console.error("failed")
    assert out.getvalue() == "warning: careful\nerror: failed\n"


def test_live_progress_on_a_terminal_redraws_the_block_in_place() -> None:
    console, out = make_console({}, interactive=True)
    console.progress("a", "a: 0/2")
    console.progress("b", "b: 0/1")
    console.progress("a", "a: 1/2")
    console.info("a log line")
    # Each redraw moves up over the block (ESC[nF), clears it (ESC[J) and writes the current state.
    assert out.getvalue() == (
        "a: 0/2\n\x1b[1F\x1b[Ja: 0/2\nb: 0/1\n\x1b[2F\x1b[Ja: 1/2\nb: 0/1\n\x1b[2F\x1b[Ja log line\na: 1/2\nb: 0/1\n"
    )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, True), ({"CI": "true"}, False), ({"CI": "TRUE"}, False), ({"GITHUB_ACTIONS": "true"}, False)],
)
def test_console_is_live_only_on_a_terminal_outside_ci(env: dict[str, str], expected: bool) -> None:
    assert Console(out=FakeTerminal(), env=env).interactive is expected
    assert Console(out=io.StringIO(), env=env).interactive is False


def test_a_long_error_in_actions_is_a_short_annotation_and_whole_in_the_log_as_text() -> None:
    console, out = make_console(ACTIONS)
    # What a rollback of 100 workloads ends with: every workload named, far past what an annotation shows.
    # A termination message quoted in it must not act as a command in the whole text either.
    message = "rollout failed: deployment/web-0: Error: ##[error]bye; " + "; ".join(
        f"rolled back deployment/web-{n} to revision 3 (image ghcr.io/acme/web:v3)" for n in range(100)
    )

    console.error(message)

    lines = out.getvalue().splitlines()
    annotation = lines[-1]
    assert annotation.startswith("::error::rollout failed: deployment/web-0: Error: ##[error]bye; ")
    assert len(annotation) <= 600 and annotation.endswith("(cut: the whole message is in the job log)")
    assert f"error: {message}" in lines
    # The runner, reading the whole output, obeys the annotation and nothing else.
    assert [c.name for c in executed_commands(out.getvalue())] == ["error"]


def test_a_short_error_in_actions_is_one_whole_annotation() -> None:
    console, out = make_console(ACTIONS)
    console.error("--timeout: '10x' is not a duration")
    assert out.getvalue() == "::error::--timeout: '10x' is not a duration\n"


def test_a_result_goes_to_its_own_stream_unredacted_while_the_log_is_redacted() -> None:
    # The result is what the command was asked for: a kubeconfig holds the very token the log must not show.
    out, result_out = io.StringIO(), io.StringIO()
    console = Console(out=out, result_out=result_out, env=PLAIN_CI)
    console.add_secret(SECRET)
    kubeconfig = f"users:\n- name: doks\n  user:\n    token: {SECRET}\n"

    console.result(kubeconfig)
    console.info(f"token: {SECRET}")

    assert result_out.getvalue() == kubeconfig
    assert out.getvalue() == "token: ***\n"


QUOTED_DIFF = "configmap/c: update\n-  k: old\n+  k: '::error::injected'\n+  j: x ##[warning]injected\n"


def test_a_result_that_quotes_the_cluster_cannot_act_as_a_workflow_command() -> None:
    out, result_out = io.StringIO(), io.StringIO()
    console = Console(out=out, result_out=result_out, env=ACTIONS)

    console.quoted_result(QUOTED_DIFF)

    assert executed_commands(result_out.getvalue()) == []
    assert [
        line for line in result_out.getvalue().splitlines() if not line.startswith("::")
    ] == QUOTED_DIFF.splitlines()


def test_outside_actions_a_quoted_result_is_printed_as_it_is() -> None:
    result_out = io.StringIO()
    Console(out=io.StringIO(), result_out=result_out, env=PLAIN_CI).quoted_result(QUOTED_DIFF)

    assert result_out.getvalue() == QUOTED_DIFF


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("env", "terminal", "coloured"),
    [
        ({}, True, True),
        ({}, False, False),
        (PLAIN_CI, True, False),
        (ACTIONS, True, False),
        ({"NO_COLOR": "1"}, True, False),
    ],
)
def test_a_result_is_coloured_only_on_a_terminal_outside_ci(
    env: dict[str, str], terminal: bool, coloured: bool
) -> None:
    result_out = _Terminal() if terminal else io.StringIO()

    assert Console(out=io.StringIO(), result_out=result_out, env=env).colours_result() is coloured
