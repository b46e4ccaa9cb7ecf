"""The plugin and the tests use pytest's public API only, so that a pytest release cannot break
them by moving its internals (the plugin runs on pytest 8.0 to the newest, see .ci/run); and the
public routes that replaced private ones keep working: JUnit suite properties under xdist, and
the ``safety_model`` fixture found where pytest would find it."""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_plugin import FAST, TINY_MODEL

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("plugins", "tests", "benchmarks", "safetycheck", "conftest.py")

# Names that hold pytest objects in this code base (and in pytest's own hook signatures).
PYTEST_OBJECTS = {
    "pytest",
    "session",
    "config",
    "item",
    "items",
    "request",
    "pluginmanager",
    "node",
    "parser",
    "pytester",
    "metafunc",
    "collector",
    "terminalreporter",
    "report",
    "call",
    "excinfo",
}


def _holder(node: ast.expr) -> str | None:
    """The name an attribute is read from: ``config`` for ``config._x`` and ``self.config._x``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for every ``_pytest`` import and every private attribute of a pytest object."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "_pytest"
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "_pytest":
            found.append((node.lineno, f"from {node.module}"))
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if _holder(node.value) in PYTEST_OBJECTS:
                found.append((node.lineno, f"{_holder(node.value)}.{node.attr}"))
        elif (  # getattr(config, "_x"), hasattr(item, "_x"), setattr(...)
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and _holder(node.args[0]) in PYTEST_OBJECTS
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append((node.lineno, f"{_holder(node.args[0])}.{node.args[1].value}"))
    return found


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from _pytest.junitxml import xml_key", ["from _pytest.junitxml"]),
        ("import _pytest.fixtures", ["_pytest.fixtures"]),
        ("session._fixturemanager.getfixturedefs('x', session)", ["session._fixturemanager"]),
        ("self.config._inicache", ["config._inicache"]),
        ("item.session._setupstate", ["session._setupstate"]),
        ("getattr(request, '_pyfuncitem')", ["request._pyfuncitem"]),
        ("cal._equal_width_bins(x, 5); self._cache = {}; torch._dynamo", []),
        ("config.__class__; config.getoption('--junitxml'); item.user_properties", []),
    ],
)
def test_the_checker_finds_private_uses_and_only_those(source, expected):
    assert [what for _, what in private_uses(source)] == expected


def test_no_private_pytest_api_in_the_repository():
    offenders = []
    for top in SCANNED:
        paths = [REPO / top] if top.endswith(".py") else sorted((REPO / top).rglob("*.py"))
        for path in paths:
            for line, what in private_uses(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not offenders, "private pytest API in use:\n" + "\n".join(offenders)


GATE = "[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n"


def _suite_properties(path: Path) -> dict[str, str]:
    return {
        prop.get("name"): prop.get("value")
        for suite in ET.parse(path).getroot().iter("testsuite")
        for prop in suite.findall("properties/property")
    }


def test_junit_suite_properties_survive_xdist_and_keep_the_users_own(pytester, data_root):
    """pytest's record_testsuite_property does nothing under xdist (pytest-dev/pytest#7767); the
    controller adds the measured values to the file pytest wrote, beside the user's properties."""
    pytester.makepyfile(tiny=TINY_MODEL)
    pytester.makefile(".toml", gate=GATE)
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(scope="session", autouse=True)
        def environment(record_testsuite_property):
            record_testsuite_property("ARCH", "x86")
    """)
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest_subprocess(
        "--safety-model=tiny.py",
        "--safety-thresholds=gate.toml",
        *FAST,
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--junitxml=out/j.xml",
    )
    result.assert_outcomes(passed=4)
    serial = pytester.runpytest_subprocess(
        "--safety-model=tiny.py", "--safety-thresholds=gate.toml", *FAST, "--junitxml=s.xml"
    )
    serial.assert_outcomes(passed=4)
    parallel = _suite_properties(pytester.path / "out" / "j.xml")
    assert parallel.keys() == {
        "safety[tiny]::clean_accuracy",
        "safety[tiny]::pgd_linf[eps=0.1]",
        "safety[tiny]::pgd_linf[eps=0.3]",
    }  # ARCH is lost under xdist (pytest's own limitation); ours are not
    assert parallel["safety[tiny]::pgd_linf[eps=0.3]"].startswith("PASS: robust accuracy ")
    assert _suite_properties(pytester.path / "s.xml") == {"ARCH": "x86", **parallel}


def test_safety_model_fixture_is_found_where_every_test_sees_it(pytester, data_root):
    """The rootdir's conftest.py provides models (a generator fixture, torn down at session end);
    a conftest.py in a subfolder serves only that folder, so its fixture is not a model source."""
    pytester.makeconftest("""
        import pytest
        import torch
        from torch import nn

        @pytest.fixture(scope="session")
        def safety_model():
            torch.manual_seed(0)
            yield {"root": nn.Sequential(nn.Flatten(), nn.Linear(784, 10))}
            open("torn-down", "w").write("yes")
    """)
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef safety_model():\n    raise RuntimeError('no')\n"
    )
    pytester.makefile(".toml", gate=GATE)
    result = pytester.runpytest(
        "--safety-thresholds=gate.toml", "--safety-json=r.json", "sub", *FAST
    )
    result.assert_outcomes(passed=3)
    records = json.loads((pytester.path / "r.json").read_text())["results"]
    assert {record["model"] for record in records} == {"root"}
    assert (pytester.path / "torn-down").read_text() == "yes"
