"""``safetycheck study``: the suite over several models, saved per model, resumed after an
interruption, and written as the plugin's JSON/HTML plus the study report."""

import json
import subprocess
import sys

import pytest

from safetycheck.cli import main

TWO_MODELS = """
import torch
from torch import nn

def safety_model():
    torch.manual_seed(0)
    first = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    second = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    second.family = "augmentation"
    return {"first": first, "second": second}
"""

FAST = [
    "--checks",
    "clean_accuracy,pgd_linf,calibration",
    "--eps",
    "0.1,0.3",
    "--attack-samples",
    "20",
]


@pytest.fixture
def models_file(tmp_path, data_root):
    path = tmp_path / "two.py"
    path.write_text(TWO_MODELS)
    return path


def test_study_writes_every_output_and_resumes(models_file, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", str(models_file), "--out", str(out), *FAST]) == 0
    for name in (
        "results.json",
        "report.html",
        "study.md",
        "tradeoffs.html",
        "models/first.json",
        "models/second.json",
    ):
        assert (out / name).is_file(), name
    document = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in document["results"]} == {"first", "second"}
    assert document["metadata"]["study"]["groups"] == {
        "first": "user model",
        "second": "augmentation",
    }
    first_run = capsys.readouterr().out
    assert "[1/2] first:" in first_run and "checks in" in first_run

    # An interrupted study resumes: saved models are reused, a missing one is evaluated again.
    (out / "models" / "second.json").unlink()
    assert main(["study", str(models_file), "--out", str(out), *FAST]) == 0
    second_run = capsys.readouterr().out
    assert "[1/2] first: resumed" in second_run and "[2/2] second: resumed" not in second_run
    again = json.loads((out / "results.json").read_text())
    assert [r["value"] for r in again["results"]] == [r["value"] for r in document["results"]]

    # Other settings invalidate the saved results rather than mixing numbers from two settings.
    assert main(["study", str(models_file), "--out", str(out), *FAST, "--seed", "1"]) == 0
    assert "resumed" not in capsys.readouterr().out


def test_only_selects_models_and_rejects_unknown_names(models_file, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", str(models_file), "--out", str(out), "--only", "second", *FAST]) == 0
    assert {r["model"] for r in json.loads((out / "results.json").read_text())["results"]} == {
        "second"
    }
    assert main(["study", str(models_file), "--out", str(out), "--only", "thrid", *FAST]) == 2
    assert "--only names thrid" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.py"], "not found"),
        (["{models}", "--checks", "pgd_lnf"], "did you mean 'pgd_linf'"),
        (["{models}", "--eps", "0.1,2"], "--eps"),
        (["{models}", "--samples", "0"], "--samples must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models_file, tmp_path, args, message):
    args = [a.replace("{models}", str(models_file)) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "safetycheck.cli", "study", *args, "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
