"""Workflow commands and workflow files, read back the way the Actions runner reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deployer import github_actions, workflow_commands
from deployer.errors import OptionError

# --- a reader that follows the runner's rules (actions/runner: ActionCommand, file commands) ---------

_COMMAND = re.compile(r"^::(?P<name>[A-Za-z-]+)(?: (?P<properties>[^:]*))?::(?P<data>.*)$")


def unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def read_command(line: str) -> tuple[str, dict[str, str], str]:
    """Command name, properties and message as the runner understands the line."""
    assert "\n" not in line and "\r" not in line, "a command must be one line"
    match = _COMMAND.match(line)
    assert match, f"not a workflow command: {line!r}"
    properties = {}
    for pair in filter(None, (match["properties"] or "").split(",")):
        key, _, value = pair.partition("=")
        properties[key] = unescape_property(value)
    return match["name"], properties, unescape_data(match["data"])


def read_output_file(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner parses it: ``name=value`` or ``name<<DELIMITER`` ... ``DELIMITER``."""
    values: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            values[line[:equals]] = line[equals + 1 :]
            continue
        name, delimiter = line[:heredoc], line[heredoc + 2 :]
        assert name and delimiter
        body = []
        for candidate in lines:
            if candidate == delimiter:
                break
            body.append(candidate)
        else:
            raise AssertionError(f"no closing delimiter for {name}")
        values[name] = "\n".join(body)
    return values


# --- commands ----------------------------------------------------------------------------------------

TRICKY = [
    "plain",
    "100% done",
    "two\nlines",
    "crlf\r\nline",
    "a:b,c=d",
    "%0A literally",
    "::error::inside",
    "",
]


@pytest.mark.parametrize(
    ("text", "escaped_data", "escaped_property"),
    [
        ("plain", "plain", "plain"),
        ("100%", "100%25", "100%25"),
        ("a\nb", "a%0Ab", "a%0Ab"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("k8s/app.yaml:3,4", "k8s/app.yaml:3,4", "k8s/app.yaml%3A3%2C4"),
        ("%0A", "%250A", "%250A"),
    ],
)
def test_escaping_follows_the_runner(text: str, escaped_data: str, escaped_property: str) -> None:
    assert workflow_commands.escape_data(text) == escaped_data
    assert workflow_commands.escape_property(text) == escaped_property


@pytest.mark.parametrize("text", TRICKY)
def test_message_and_properties_read_back_unchanged(text: str) -> None:
    line = workflow_commands.annotation("warning", text, file=text or None, title="t: x, y")

    name, properties, message = read_command(line)

    assert name == "warning"
    assert message == text
    assert properties.get("file") == (text or None)
    assert properties["title"] == "t: x, y"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: workflow_commands.error_annotation("bad"), "::error::bad"),
        (lambda: workflow_commands.error_annotation("bad", file="k8s/app.yaml"), "::error file=k8s/app.yaml::bad"),
        (
            lambda: workflow_commands.error_annotation("bad", file="k8s/app.yaml", line=3, col=7),
            "::error file=k8s/app.yaml,line=3,col=7::bad",
        ),
        (lambda: workflow_commands.warning_annotation("slow", line=2), "::warning line=2::slow"),
        (
            lambda: workflow_commands.annotation("notice", "n", file="f", line=1, end_line=2, col=3, end_column=4),
            "::notice file=f,line=1,endLine=2,col=3,endColumn=4::n",
        ),
    ],
)
def test_annotations_name_the_file_position(call: object, expected: str) -> None:
    assert callable(call)
    assert call() == expected


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("s3cret", ["s3cret"]),
        ("50% off:x,y", ["50% off:x,y"]),
        ("line-one\nline-two\n", ["line-one\nline-two\n", "line-one", "line-two"]),
        ("  \n", []),
    ],
)
def test_mask_registers_the_secret_and_each_of_its_lines(secret: str, masked: list[str]) -> None:
    commands = [read_command(line) for line in workflow_commands.mask(secret)]

    assert [name for name, _, _ in commands] == ["add-mask"] * len(masked)
    assert [message for _, _, message in commands] == masked


def test_fenced_lines_resume_only_with_a_fresh_random_token() -> None:
    first = workflow_commands.fenced(["::error::x"])
    second = workflow_commands.fenced(["::error::x"])

    name, _, token = read_command(first[0])
    assert name == "stop-commands"
    assert first[1:] == ["::error::x", f"::{token}::"]
    assert len(token) > 30
    assert token != read_command(second[0])[2]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("plain build output", ["plain build output"]),
        ("", [""]),
        ("a\rb\r\nc", ["a", "b", "c"]),
        ("#5 [2/3] RUN make: done", ["#5 [2/3] RUN make: done"]),
    ],
)
def test_text_that_cannot_be_a_command_is_left_as_lines(text: str, lines: list[str]) -> None:
    assert workflow_commands.inert_lines(text) == lines


@pytest.mark.parametrize("text", ["ok\n::error::x", "| ##[error]x", "see http://[::1]:8080/"])
def test_text_that_could_be_a_command_is_fenced_whole(text: str) -> None:
    lines = workflow_commands.inert_lines(text)
    token = read_command(lines[0])[2]
    assert lines[1:] == [*text.splitlines(), f"::{token}::"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"GITHUB_ACTIONS": "true"}, True), ({"GITHUB_ACTIONS": "false"}, False), ({}, False), ({"CI": "true"}, False)],
)
def test_is_github_actions_reads_the_runner_variable(env: dict[str, str], expected: bool) -> None:
    assert workflow_commands.is_github_actions(env) is expected


def test_a_path_inside_the_workspace_is_given_relative_to_it(tmp_path: Path) -> None:
    path = str(tmp_path / "k8s" / "app.yaml")
    assert github_actions.workspace_relative(path, {"GITHUB_WORKSPACE": str(tmp_path)}) == "k8s/app.yaml"


def test_a_path_outside_the_workspace_keeps_its_path() -> None:
    assert github_actions.workspace_relative("/elsewhere/app.yaml", {"GITHUB_WORKSPACE": "/w"}) == "/elsewhere/app.yaml"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/app", "GITHUB_RUN_ID": "9"},
            "https://github.com/acme/app/actions/runs/9",
        ),
        (
            {
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_REPOSITORY": "acme/app",
                "GITHUB_RUN_ID": "9",
                "GITHUB_RUN_ATTEMPT": "2",
            },
            "https://github.com/acme/app/actions/runs/9/attempts/2",
        ),
        ({"GITHUB_REPOSITORY": "acme/app"}, None),
    ],
)
def test_run_url_is_built_from_the_runner_variables(env: dict[str, str], expected: str | None) -> None:
    assert github_actions.run_url(env) == expected


# --- workflow files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", TRICKY + ["ends with newline\n", "name=value", "x<<EOF\ny\nEOF"])
def test_outputs_read_back_unchanged_by_the_runner(tmp_path: Path, value: str) -> None:
    output_file = tmp_path / "output"
    output_file.write_text("earlier=1\n")

    assert github_actions.write_outputs({"GITHUB_OUTPUT": str(output_file)}, {"value": value, "other": "o"})

    with output_file.open(encoding="utf-8", newline="") as handle:
        written = handle.read()
    assert read_output_file(written) == {"earlier": "1", "value": value, "other": "o"}


def test_a_value_cannot_end_the_heredoc_early_and_set_another_output() -> None:
    attack = "ok\nghadelimiter_x\nstatus<<EOF\nsuccess\nEOF"

    text = github_actions.output_lines({"revisions": attack})

    assert read_output_file(text) == {"revisions": attack}
    delimiter = text.split("\n")[0].partition("<<")[2]
    assert text.endswith(f"\n{delimiter}\n") and delimiter not in attack


@pytest.mark.parametrize("name", ["", "a=b", "two\nlines", "x<<y", "spaced name"])
def test_invalid_output_names_are_refused(name: str) -> None:
    with pytest.raises(OptionError, match="invalid output name"):
        github_actions.output_lines({name: "v"})


def test_outside_actions_nothing_is_written() -> None:
    assert github_actions.write_outputs({}, {"a": "b"}) is False
    assert github_actions.append_step_summary({}, "# hi") is False


def test_step_summary_is_appended_with_a_final_newline(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}

    github_actions.append_step_summary(env, "# one")
    github_actions.append_step_summary(env, "two\n")

    assert summary.read_text() == "# one\ntwo\n"


def test_a_step_summary_over_the_limit_is_cut_with_a_note(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * 1000)

    github_actions.append_step_summary({"GITHUB_STEP_SUMMARY": str(summary)}, "é" * github_actions.STEP_SUMMARY_LIMIT)

    text = summary.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= github_actions.STEP_SUMMARY_LIMIT
    assert text.rstrip().endswith("the job log has everything._")


@pytest.mark.parametrize(
    ("message", "expected"),
    [("short", "short"), ("x" * 500, "x" * 500)],
)
def test_short_annotation_messages_are_kept_whole(message: str, expected: str) -> None:
    assert workflow_commands.annotation_message(message) == expected


def test_a_long_annotation_message_is_cut_and_says_where_the_rest_is() -> None:
    cut = workflow_commands.annotation_message("rolled back deployment/web; " * 300)

    assert len(cut) <= workflow_commands.ANNOTATION_MESSAGE_LIMIT
    assert cut.startswith("rolled back deployment/web; ") and cut.endswith("(cut: the whole message is in the job log)")
