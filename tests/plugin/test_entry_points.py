"""A check family from another distribution, found through the ``safetycheck.families`` entry
point: collected, given its default bounds, validated in threshold files and reported like a
built-in one. ``thirdparty/`` holds the distribution as installed (a package beside its
``.dist-info`` with ``entry_points.txt``); putting it on ``sys.path`` installs it for a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from safetycheck import checks
from safetycheck.core.registry import CheckFamily, FamilyDefinitionError

REPO = Path(__file__).resolve().parents[2]
THIRD_PARTY = Path(__file__).resolve().parent / "thirdparty"


def run_pytest(tmp_path: Path, *args: str, extra_path: Path = THIRD_PARTY):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.real_data
def test_an_entry_point_family_runs_end_to_end(tmp_path, data_root):
    (tmp_path / "thresholds.toml").write_text(
        '[thresholds]\n"confident_coverage[threshold=0.9]" = 0.97\n'
        "[models.lenet.thresholds]\nclean_accuracy = 0.99\n"
    )
    result = run_pytest(
        tmp_path,
        f"--safety-model={REPO / 'example_models' / 'lenet.py'}",
        "--safety-checks=clean_accuracy,confident_coverage",
        "--safety-samples=500",
        "--safety-thresholds=thresholds.toml",
        "--safety-json=results.json",
        "--safety-report=report.html",
        "-v",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "confident_coverage[threshold=0.9] PASSED" in output
    assert "confident_coverage[threshold=0.99] PASSED" in output
    records = {
        r["check"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]
    }
    file_bound = records["confident_coverage[threshold=0.9]"]
    assert file_bound["threshold"] == 0.97 and "thresholds.toml" in file_bound["threshold_source"]
    default_bound = records["confident_coverage[threshold=0.99]"]
    assert default_bound["threshold"] == 0.4
    assert default_bound["threshold_source"] == "built-in default"
    # The example LeNet-5 is confident: most of 500 images clear 0.9, fewer clear 0.99.
    assert 0.97 <= file_bound["value"] <= 1.0 and default_bound["value"] < file_bound["value"]
    assert file_bound["n"] == 500 and file_bound["family"] == "confident_coverage"
    assert "coverage of confident predictions" in (tmp_path / "report.html").read_text()


def test_an_entry_point_family_is_validated_in_threshold_files(tmp_path):
    (tmp_path / "thresholds.toml").write_text(
        '[thresholds]\n"confident_coverage[threshold=0.5]" = 0.9\n'
    )
    (tmp_path / "model.py").write_text(
        "from torch import nn\n\ndef safety_model():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
    )
    result = run_pytest(tmp_path, "--safety-model=model.py", "--safety-thresholds=thresholds.toml")
    output = result.stdout + result.stderr
    assert result.returncode == 4, output[-3000:]  # a usage error, not a crash
    assert "confident_coverage[threshold=0.5]" in output and "0.9, 0.99" in output
    assert "INTERNALERROR" not in output and "Traceback" not in output


def test_a_broken_entry_point_is_one_clear_usage_error(tmp_path):
    site = tmp_path / "site"
    info = site / "broken_family-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-family\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[safetycheck.families]\nbroken = broken_family:FAMILY\n"
    )
    (site / "broken_family.py").write_text("FAMILY = 'not a family'\n")
    (tmp_path / "model.py").write_text(
        "from torch import nn\n\ndef safety_model():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
    )
    result = run_pytest(tmp_path, "--safety-model=model.py", extra_path=site)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output[-3000:]
    assert "entry point broken = 'broken_family:FAMILY'" in output
    assert "distribution broken-family" in output and "got str" in output
    assert "INTERNALERROR" not in output and "Traceback" not in output


def _fake_entry_points(monkeypatch, *points: metadata.EntryPoint):
    monkeypatch.setattr(checks, "_entry_points", lambda: tuple(points))


def test_a_family_name_taken_twice_is_refused(monkeypatch):
    point = metadata.EntryPoint("dup", "safetycheck.checks.accuracy:CLEAN_ACCURACY", "x")
    _fake_entry_points(monkeypatch, point)
    with pytest.raises(FamilyDefinitionError, match="'clean_accuracy' is declared twice"):
        checks.families()


def test_entry_point_families_follow_the_built_in_ones(monkeypatch):
    point = metadata.EntryPoint("extra", "safetycheck_confidence:FAMILY", "safetycheck.families")
    monkeypatch.syspath_prepend(str(THIRD_PARTY))
    _fake_entry_points(monkeypatch, point)
    names = list(checks.families())
    assert names[-1] == "confident_coverage" and names[0] == "attack_acceleration"
    assert checks.default_profile()["confident_coverage[threshold=0.99]"] == 0.4
    assert "confident_coverage" not in checks.default_families()  # declared default=False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "bad name"}, "identifier"),
        ({"bound": "above"}, 'bound must be "min" or "max"'),
        ({"plot": "pie"}, "plot 'pie' is not one of"),
        ({"default_bounds": {"other": 0.5}}, "is not 'demo' or one of its check ids"),
        ({"default_bounds": {"demo": 1.5}}, "lies outside"),
        ({"value_range": (1.0, 0.0)}, "is empty"),
    ],
)
def test_an_inconsistent_family_is_refused_where_it_is_declared(fields, message):
    base = {"name": "demo", "metric": "m", "bound": "min", "variants": list, "measure": list}
    with pytest.raises(FamilyDefinitionError, match=message):
        CheckFamily(**{**base, **fields})
