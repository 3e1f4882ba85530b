"""Every ``taskfate`` command explains itself in plain text.

argparse prints a description as written, so a docstring's reST markup
(``double backticks``, ``:func:`roles```) would reach the terminal as is.
"""

from __future__ import annotations

import re

import pytest

from taskfate.client import cli

COMMANDS = [name.rsplit(".", 1)[1] for name in cli._COMMANDS]
#: What reST looks like in a terminal: double backticks, roles, directives, emphasis.
MARKUP = re.compile(r"``|:[a-z]+:`|^\.\. |\*\*|(?<![\w*])\*\w[^*\n]*\*(?!\w)", re.M)


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_every_command_is_listed_with_a_one_line_summary(capsys):
    out = _help(capsys)
    listed = dict(re.findall(r"^    (\w+) +(\S.*)$", out, re.M))
    assert set(listed) == set(COMMANDS)
    assert not MARKUP.search(out), out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_has_a_plain_text_description(capsys, command):
    out = _help(capsys, command)
    # argparse prints: usage, a blank line, the description, a blank line, the options.
    usage, _, rest = out.partition("\n\n")
    assert usage.startswith(f"usage: taskfate {command}")
    description = "" if rest.startswith("options:") else rest.split("\n\n", 1)[0]
    assert len(description.split()) >= 8, f"taskfate {command} --help has no description:\n{out}"
    assert not MARKUP.search(out), f"taskfate {command} --help shows reST markup: {MARKUP.search(out)}\n{out}"
