"""The option table is the one declaration of every option: the pytest plugin, ``safetycheck
study`` and the engine's ``Options`` defaults are built from it, and README's table lists exactly
the pytest options it declares."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from safetycheck import cli
from safetycheck.core import options
from safetycheck.run.settings import Options

REPO = Path(__file__).resolve().parents[2]


def readme_options() -> list[str]:
    table = REPO.joinpath("README.md").read_text().split("## Options", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(--safety-[a-z-]+)", table, flags=re.M)


def test_readme_lists_every_pytest_option_once():
    declared = [o.flag_name(options.PYTEST) for o in options.options_for(options.PYTEST)]
    listed = readme_options()
    assert sorted(listed) == sorted(declared)
    assert len(set(listed)) == len(listed)


def test_the_cli_parser_is_built_from_the_table(capsys):
    with pytest.raises(SystemExit):
        cli.main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in options.options_for(options.CLI):
        assert option.flag_name(options.CLI) in text, option.name
        assert " ".join(option.help_for(options.CLI).split()) in text, option.name


def test_pytest_help_shows_every_plugin_option_with_the_shared_text():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    text = " ".join(result.stdout.split())
    for option in options.options_for(options.PYTEST):
        assert option.flag_name(options.PYTEST) in text, option.name
        first_words = " ".join(option.help_for(options.PYTEST).split()[:4])
        assert first_words in text, option.name


def test_engine_option_defaults_come_from_the_table():
    fields = {f.name: f.default for f in dataclasses.fields(Options)}
    for option in options.OPTIONS:
        if option.engine:
            assert fields[option.field] == options.default(option.name), option.name


@pytest.mark.parametrize("option", options.OPTIONS, ids=lambda o: o.name)
def test_every_option_is_well_formed(option):
    assert re.fullmatch(r"[a-z][a-z0-9-]*", option.name)
    assert option.help and set(option.front_ends) <= {options.PYTEST, options.CLI}
    if option.choices is not None:
        assert option.default is None or option.default in option.choices
    option.help_for(options.PYTEST)  # every {prefix} placeholder resolves
