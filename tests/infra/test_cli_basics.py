"""The CLI's own surface: version, a description for every subcommand."""
from __future__ import annotations

from importlib.metadata import version

import pytest

from alignflow.cli import build_parser


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
