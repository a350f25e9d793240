"""The CLI's own surface: version, a description for every subcommand, --json that is always JSON."""
from __future__ import annotations

import argparse
import json
from importlib.metadata import version

import pytest

from alignflow.cli import build_parser
from tests.project import cli, make_project, project_env


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"alignflow {version('alignflow')}"


def test_every_subcommand_has_a_one_line_description():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(helps) == set(sub.choices) and "report" in helps
    assert all(h and "\n" not in h for h in helps.values()), helps


# Arguments that make each command offering --json do its real work in a fresh clone with no run yet.
JSON_CALLS = {
    ("status",): [],
    ("lineage",): ["models/sft/model"],
    ("registry",): ["list"],
    ("deps",): [],
    ("results", "save"): ["first"],
    ("services",): ["status"],
}


def _json_offerings(parser, path=()) -> set[tuple[str, ...]]:
    found = {path} if any("--json" in a.option_strings for a in parser._actions) else set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found |= _json_offerings(child, (*path, name))
    return found


@pytest.mark.slow  # six CLI processes in a fresh clone: 30-130 s on 2 cores
def test_every_json_flag_prints_json_or_fails_with_nothing_on_stdout(tmp_path):
    """`--json` is honoured wherever offered: stdout parses as JSON, or it is empty and the command failed with
    its error on stderr, so a script never parses half a table."""
    assert _json_offerings(build_parser()) == set(JSON_CALLS), "give a new --json command its JSON_CALLS entry"
    root = make_project(tmp_path / "ws")
    env = project_env(tmp_path / "home", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db")
    outcomes = {}
    for command, args in JSON_CALLS.items():
        proc = cli(root, env, *command, *args, "--json", timeout=300)
        outcomes[command] = proc.returncode
        if proc.stdout or proc.returncode == 0:
            json.loads(proc.stdout)  # a status may answer in JSON and exit non-zero (services not running)
        else:
            assert proc.stderr.strip(), command
    # a fresh clone: everything stale, nothing registered, no dvc.lock to save
    assert outcomes[("status",)] == 0 and outcomes[("registry",)] == 0 and outcomes[("results", "save")] != 0
