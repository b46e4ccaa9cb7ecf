"""--safety-update-thresholds: measured values less a margin, written into the threshold file with
every comment and unrelated setting kept, atomically, and read back by the config loader."""

import math
import os
import stat
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safetycheck.core.errors import ConfigError
from safetycheck.gate.thresholds import load_config
from safetycheck.gate.update import (
    ThresholdChange,
    format_changes,
    new_threshold,
    update_threshold_file,
    validate_margin,
)
from safetycheck.run.results import compare

STANDALONE = """\
# Release gate for the MNIST models.
seed = 0                          # attacked subset and random starts
epsilons = [0.05, 0.1, 0.2, 0.3]  # Linf radii in pixel units

[thresholds]                      # every model
clean_accuracy = 0.99
"pgd_linf[eps=0.1]" = 0.6         # team-wide floor

[models.lenet.thresholds]         # the example model
"pgd_linf[eps=0.1]" = 0.72  # measured 0.766 in March
"fgsm[eps=0.1]" = 0.80
"""

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "my-classifier"
version = "1.2.0"
dependencies = [
    "torch>=2.1",  # CPU wheels are fine
]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra"

# The release gate.
[tool.safetycheck]
seed = 0
epsilons = [0.05, 0.1]

[tool.safetycheck.models.lenet.thresholds]
clean_accuracy = 0.99   # never lower this
"pgd_linf[eps=0.1]" = 0.72

[tool.ruff]
line-length = 110
"""


def record(
    model="lenet", check="pgd_linf[eps=0.1]", value=0.766, bound="min", threshold=0.72, **extra
):
    family = check.partition("[")[0]
    return {
        "model": model,
        "check": check,
        "family": family,
        "params": {},
        "value": value,
        "threshold": threshold,
        "threshold_source": "pyproject.toml",
        "bound": bound,
        "passed": True,
        "n": 1000,
        "metric": "robust accuracy",
        "details": "",
        "randomized": False,
        "ci": None,
        **extra,
    }


RECORDS = [
    record(),  # updates a key in place
    record(check="fgsm[eps=0.1]", value=0.855, threshold=0.80),  # the same
    record(check="calibration[ece]", value=0.0018, bound="max", threshold=0.015),  # a new key
    record(model="cnn", check="clean_accuracy", value=0.9931, threshold=0.98),  # a new model
]


def write(path, text):
    path.write_bytes(text.encode())
    return path


# The new bound ---------------------------------------------------------------------------------


def test_new_bound_is_exact_in_decimal_and_rounded_outwards():
    assert new_threshold(0.766, "min", 0.01) == 0.756  # not 0.7559, as float arithmetic would give
    assert new_threshold(0.76649, "min", 0.0) == 0.7664  # down for a lower bound
    assert new_threshold(0.00181, "max", 0.0) == 0.0019  # up for an upper bound
    assert new_threshold(0.0018, "max", 0.01) == 0.0118
    assert new_threshold(0.005, "min", 0.01) == 0.0  # clamped at the metric's floor, never -0.0
    assert math.copysign(1, new_threshold(0.005, "min", 0.01)) == 1
    assert new_threshold(0.995, "max", 0.01, (-1.0, 1.0)) == 1.0  # and at its ceiling


@settings(max_examples=300, deadline=None)
@given(
    value=st.floats(0, 1),
    margin=st.floats(0, 1, exclude_max=True),
    bound=st.sampled_from(["min", "max"]),
)
def test_the_measured_value_passes_the_bound_derived_from_it(value, margin, bound):
    threshold = new_threshold(value, bound, margin, (0.0, 1.0))
    assert compare(value, threshold, bound)
    assert 0.0 <= threshold <= 1.0 and round(threshold, 4) == threshold
    target = value - margin if bound == "min" else value + margin
    if 0.0 < target < 1.0:  # not clamped: within one rounding step of the target, on the outside
        assert abs(threshold - target) <= 1e-4 + 1e-12
        assert (threshold <= target + 1e-12) if bound == "min" else (threshold >= target - 1e-12)


@pytest.mark.parametrize("margin", [-0.01, 1, 1.5, math.nan, math.inf, "0.01", True, None])
def test_an_invalid_margin_is_a_usage_error_naming_the_option(tmp_path, margin):
    path = write(tmp_path / "thresholds.toml", STANDALONE)
    with pytest.raises(ConfigError, match="--safety-threshold-margin"):
        update_threshold_file(path, RECORDS, margin=margin, pyproject=False)
    assert path.read_text() == STANDALONE
    assert validate_margin(0) == 0.0 and validate_margin(0.05) == 0.05


# Editing the file ------------------------------------------------------------------------------


def test_standalone_file_keeps_comments_and_settings_byte_for_byte(tmp_path):
    path = write(tmp_path / "thresholds.toml", STANDALONE)
    changes = update_threshold_file(path, RECORDS, margin=0.01, pyproject=False)
    assert (
        path.read_text()
        == """\
# Release gate for the MNIST models.
seed = 0                          # attacked subset and random starts
epsilons = [0.05, 0.1, 0.2, 0.3]  # Linf radii in pixel units

[thresholds]                      # every model
clean_accuracy = 0.99
"pgd_linf[eps=0.1]" = 0.6         # team-wide floor

[models.lenet.thresholds]         # the example model
"pgd_linf[eps=0.1]" = 0.756  # measured 0.766 in March
"fgsm[eps=0.1]" = 0.845
"calibration[ece]" = 0.0118

[models.cnn.thresholds]
clean_accuracy = 0.9831
"""
    )
    assert [(c.model, c.check, c.old, c.new, c.added) for c in changes] == [
        ("lenet", "pgd_linf[eps=0.1]", 0.72, 0.756, False),
        ("lenet", "fgsm[eps=0.1]", 0.80, 0.845, False),
        ("lenet", "calibration[ece]", 0.015, 0.0118, True),  # old: the bound the run applied
        ("cnn", "clean_accuracy", 0.98, 0.9831, True),
    ]


def test_pyproject_keeps_every_other_table_and_round_trips_through_load_config(tmp_path):
    path = write(tmp_path / "pyproject.toml", PYPROJECT)
    changes = update_threshold_file(path, RECORDS, margin=0.01, pyproject=True)
    text = path.read_text()
    before, after = PYPROJECT.split("[tool.safetycheck.models.lenet.thresholds]\n")
    assert text.startswith(
        before + "[tool.safetycheck.models.lenet.thresholds]\n"
        "clean_accuracy = 0.99   # never lower this\n"
        '"pgd_linf[eps=0.1]" = 0.756\n'
    )
    assert text.endswith("\n\n[tool.ruff]\nline-length = 110\n")
    assert "\n\n[tool.safetycheck.models.cnn.thresholds]\nclean_accuracy = 0.9831\n" in text
    assert tomllib.loads(text)["project"] == tomllib.loads(PYPROJECT)["project"]

    config = load_config(pyproject=path)
    assert config.settings["seed"] == 0 and config.settings["epsilons"] == [0.05, 0.1]
    for change in changes:
        threshold = config.threshold(change.model, change.check.partition("[")[0], change.check)
        assert threshold.value == change.new
        assert f"models.{change.model}.thresholds.{change.check}" in threshold.source
        assert compare(change.value, threshold.value, change.bound)
    assert config.threshold("lenet", "clean_accuracy", "clean_accuracy").value == 0.99  # untouched


def test_pyproject_without_a_safetycheck_table_gets_only_the_model_tables(tmp_path):
    original = PYPROJECT.split("# The release gate.")[0]
    path = write(tmp_path / "pyproject.toml", original)
    update_threshold_file(path, RECORDS[:1], margin=0.0, pyproject=True)
    assert original.endswith('addopts = "-ra"\n\n')
    assert (
        path.read_text()
        == original + '[tool.safetycheck.models.lenet.thresholds]\n"pgd_linf[eps=0.1]" = 0.766\n'
    )
    assert load_config(pyproject=path).model_thresholds == {"lenet": {"pgd_linf[eps=0.1]": 0.766}}


def test_standalone_file_with_a_tool_table_is_updated_inside_it(tmp_path):
    path = write(tmp_path / "gate.toml", "[tool.safetycheck.thresholds]\nclean_accuracy = 0.9\n")
    changes = update_threshold_file(path, RECORDS, margin=0.02, pyproject=False)
    document = tomllib.loads(path.read_text())
    assert set(document) == {"tool"}  # no top-level table added beside [tool.safetycheck]
    config = load_config(path)
    assert config.thresholds == {"clean_accuracy": 0.9}
    for change in changes:
        assert config.model_thresholds[change.model][change.check] == change.new


def test_a_missing_standalone_file_is_created_and_loads(tmp_path):
    path = tmp_path / "gate.toml"
    changes = update_threshold_file(path, RECORDS, margin=0.02, pyproject=False)
    assert len(changes) == 4 and all(c.added for c in changes)
    assert path.read_text().startswith(
        "# safetycheck thresholds, written by --safety-update-thresholds."
    )
    config = load_config(path)
    assert config.model_thresholds == {
        "lenet": {"pgd_linf[eps=0.1]": 0.746, "fgsm[eps=0.1]": 0.835, "calibration[ece]": 0.0218},
        "cnn": {"clean_accuracy": 0.9731},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()


def test_a_missing_pyproject_or_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="pyproject.toml not found.*--safety-thresholds"):
        update_threshold_file(tmp_path / "pyproject.toml", RECORDS, margin=0.01, pyproject=True)
    with pytest.raises(ConfigError, match="does not exist"):
        update_threshold_file(tmp_path / "no" / "gate.toml", RECORDS, margin=0.01, pyproject=False)
    assert list(tmp_path.iterdir()) == []


def test_invalid_toml_names_the_file_and_line_and_changes_nothing(tmp_path):
    broken = STANDALONE.replace('"fgsm[eps=0.1]" = 0.80', "fgsm[eps=0.1] = 0.80")
    path = write(tmp_path / "thresholds.toml", broken)
    with pytest.raises(ConfigError) as info:
        update_threshold_file(path, RECORDS, margin=0.01, pyproject=False)
    message = str(info.value)
    assert str(path) in message and "line 11" in message and "must be quoted" in message
    assert "Traceback" not in message and info.value.__cause__ is None
    assert path.read_text() == broken


def test_a_table_of_the_wrong_shape_is_a_usage_error(tmp_path):
    path = write(tmp_path / "pyproject.toml", "[tool]\nsafetycheck = 3\n")
    with pytest.raises(ConfigError, match="tool.safetycheck must be a table"):
        update_threshold_file(path, RECORDS, margin=0.01, pyproject=True)


def test_unchanged_bounds_are_not_reported_and_the_file_is_not_rewritten(tmp_path):
    path = write(tmp_path / "thresholds.toml", STANDALONE)
    assert update_threshold_file(path, RECORDS, margin=0.01, pyproject=False)
    written = path.read_bytes()
    os.utime(path, ns=(0, 0))
    assert update_threshold_file(path, RECORDS, margin=0.01, pyproject=False) == []
    assert path.read_bytes() == written and path.stat().st_mtime_ns == 0
    assert "no change" in format_changes([], path)


def test_skipped_missing_and_nan_values_are_ignored_and_duplicates_use_the_worst(tmp_path):
    path = tmp_path / "gate.toml"
    records = [
        record(check="ood_auroc[fmnist-knn]", value=None, skipped="no feature layer"),
        record(check="pgd_linf[eps=0.2]", value=None),
        record(check="pgd_linf[eps=0.3]", value=math.nan),
        record(value=0.77),
        record(value=0.75),
        record(value=0.76),  # say, several xdist workers
        record(check="calibration[ece]", value=0.002, bound="max"),
        record(check="calibration[ece]", value=0.003, bound="max"),
    ]
    changes = update_threshold_file(path, records, margin=0.0, pyproject=False)
    assert [(c.check, c.new) for c in changes] == [
        ("pgd_linf[eps=0.1]", 0.75),
        ("calibration[ece]", 0.003),
    ]


def test_a_key_spelled_differently_is_updated_not_doubled(tmp_path):
    path = write(
        tmp_path / "thresholds.toml",
        '[models.lenet.thresholds]\n"pgd_linf[eps=0.10]" = 0.7  # old\n',
    )
    (change,) = update_threshold_file(path, [record()], margin=0.01, pyproject=False)
    assert path.read_text() == '[models.lenet.thresholds]\n"pgd_linf[eps=0.10]" = 0.756  # old\n'
    assert (change.old, change.added) == (0.7, False)
    assert load_config(path).model_thresholds["lenet"] == {"pgd_linf[eps=0.1]": 0.756}


@pytest.mark.parametrize(
    "text",
    [
        'models = { lenet = { thresholds = { "pgd_linf[eps=0.1]" = 0.7 } } }\n',
        'models.lenet.thresholds."pgd_linf[eps=0.1]" = 0.7\n',
        "[models]\nlenet.thresholds.clean_accuracy = 0.9  # dotted\n",
    ],
)
def test_inline_and_dotted_tables_are_edited_where_they_are(tmp_path, text):
    path = write(tmp_path / "thresholds.toml", text)
    update_threshold_file(path, RECORDS, margin=0.01, pyproject=False)
    config = load_config(path)
    assert config.model_thresholds["lenet"]["pgd_linf[eps=0.1]"] == 0.756
    assert config.model_thresholds["cnn"] == {"clean_accuracy": 0.9831}


def test_model_names_that_need_quoting_are_quoted(tmp_path):
    path = tmp_path / "gate.toml"
    update_threshold_file(path, [record(model="lenet-v2.1")], margin=0.0, pyproject=False)
    assert '[models."lenet-v2.1".thresholds]' in path.read_text()
    assert load_config(path).model_thresholds == {"lenet-v2.1": {"pgd_linf[eps=0.1]": 0.766}}


def test_crlf_line_endings_and_permissions_survive_and_no_temporary_file_is_left(tmp_path):
    path = write(tmp_path / "thresholds.toml", STANDALONE.replace("\n", "\r\n"))
    path.chmod(0o640)
    update_threshold_file(path, RECORDS, margin=0.01, pyproject=False)
    data = path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") and b"# measured 0.766 in March\r\n" in data
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["thresholds.toml"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.floats(0, 1), min_size=1, max_size=4),
    margin=st.floats(0, 0.2),
    bound=st.sampled_from(["min", "max"]),
)
def test_every_written_bound_reads_back_and_passes(tmp_path, values, margin, bound):
    path = write(tmp_path / "pyproject.toml", PYPROJECT)
    family = "clean_accuracy" if bound == "min" else "calibration"
    checks = (
        ["clean_accuracy"]
        if bound == "min"
        else ["calibration[ece]", "calibration[rms]", "calibration[brier]"]
    )
    records = [
        record(model=f"m{i}", check=checks[i % len(checks)], value=v, bound=bound)
        for i, v in enumerate(values)
    ]
    update_threshold_file(path, records, margin=margin, pyproject=True)
    config = load_config(pyproject=path)
    for r in records:
        assert compare(r["value"], config.threshold(r["model"], family, r["check"]).value, bound)


# Where a bound belongs: the model's table on the file's dataset, else its per-dataset table --


def test_bounds_of_another_dataset_go_into_the_models_table_for_that_dataset(tmp_path):
    path = write(tmp_path / "pyproject.toml", PYPROJECT)
    records = [
        record(),  # no dataset: MNIST, the file's (it names none)
        record(check="clean_accuracy", value=0.9091, threshold=0.99, dataset="fashion_mnist"),
        record(check="clean_accuracy", value=0.71, threshold=0.99, dataset="my_defects"),
    ]
    changes = update_threshold_file(path, records, margin=0.01, pyproject=True)
    assert [(c.dataset, c.check, c.new) for c in changes] == [
        (None, "pgd_linf[eps=0.1]", 0.756),
        ("fashion_mnist", "clean_accuracy", 0.8991),
        ("my_defects", "clean_accuracy", 0.7),
    ]
    assert changes[1].describe().startswith("lenet on fashion_mnist clean_accuracy: 0.9900 ->")
    config = load_config(pyproject=path)
    # the model's MNIST bound is untouched by its Fashion-MNIST measurement, and the other way
    assert config.model_thresholds["lenet"]["clean_accuracy"] == 0.99
    on_fashion = config.threshold("lenet", "clean_accuracy", "clean_accuracy", "fashion_mnist")
    assert on_fashion.value == 0.8991
    assert on_fashion.source.endswith(
        "models.lenet.datasets.fashion_mnist.thresholds.clean_accuracy"
    )
    assert config.threshold("lenet", "clean_accuracy", "clean_accuracy", "my_defects").value == 0.7
    text = path.read_text()
    assert "[tool.safetycheck.models.lenet.datasets.fashion_mnist.thresholds]" in text
    assert "[tool.safetycheck.datasets" not in text  # the shared per-dataset tables are policy


@pytest.mark.parametrize(
    "setting",
    ['dataset = "fashion_mnist"', 'dataset = { name = "fashion_mnist" }'],
)
def test_the_files_own_dataset_goes_into_the_models_table(tmp_path, setting):
    path = write(tmp_path / "thresholds.toml", f"{setting}\n\n[models.cnn.thresholds]\n")
    fashion = record(model="cnn", check="clean_accuracy", value=0.9091, dataset="fashion_mnist")
    mnist = record(model="cnn", check="clean_accuracy", value=0.9931, dataset="mnist")
    changes = update_threshold_file(path, [fashion, mnist], margin=0.0, pyproject=False)
    assert [(c.dataset, c.new) for c in changes] == [(None, 0.9091), ("mnist", 0.9931)]
    data = tomllib.loads(path.read_text())
    assert data["models"]["cnn"]["thresholds"] == {"clean_accuracy": 0.9091}
    assert data["models"]["cnn"]["datasets"]["mnist"]["thresholds"] == {"clean_accuracy": 0.9931}


def test_a_user_dataset_path_in_the_file_is_named_as_its_records_are(tmp_path):
    path = write(tmp_path / "thresholds.toml", 'dataset = "data/My Defects.npz"\n')
    records = [record(check="clean_accuracy", value=0.8, dataset="my_defects")]
    changes = update_threshold_file(path, records, margin=0.0, pyproject=False)
    assert changes[0].dataset is None
    assert tomllib.loads(path.read_text())["models"]["lenet"]["thresholds"] == {
        "clean_accuracy": 0.8
    }


def test_an_existing_per_dataset_table_is_written_whatever_the_files_dataset(tmp_path):
    text = "[models.lenet.datasets.mnist.thresholds]\nclean_accuracy = 0.9  # by hand\n"
    path = write(tmp_path / "thresholds.toml", text)
    changes = update_threshold_file(
        path, [record(check="clean_accuracy", value=0.9927)], margin=0.01, pyproject=False
    )
    assert (changes[0].dataset, changes[0].old, changes[0].added) == ("mnist", 0.9, False)
    assert path.read_text() == text.replace("0.9  #", "0.9827  #")


def test_the_same_check_on_two_datasets_is_two_bounds(tmp_path):
    path = tmp_path / "thresholds.toml"
    records = [
        record(check="clean_accuracy", value=0.99, dataset="mnist"),
        record(check="clean_accuracy", value=0.91, dataset="kmnist"),
        record(check="clean_accuracy", value=0.93, dataset="kmnist"),  # worst of the two kept
    ]
    update_threshold_file(path, records, margin=0.0, pyproject=False)
    config = load_config(path)
    assert config.model_thresholds["lenet"] == {"clean_accuracy": 0.99}
    assert config.model_dataset_thresholds["lenet"] == {"kmnist": {"clean_accuracy": 0.91}}


# Reporting -------------------------------------------------------------------------------------


def test_describe_and_summary():
    change = ThresholdChange("lenet", "pgd_linf[eps=0.1]", 0.72, 0.756, 0.766, "min", 0.01)
    assert (
        change.describe()
        == "lenet pgd_linf[eps=0.1]: 0.7200 -> 0.7560 (measured 0.7660, margin 0.01)"
    )
    new = ThresholdChange("cnn", "clean_accuracy", None, 0.98, 0.99, "min", 0.01, added=True)
    assert (
        new.describe()
        == "cnn clean_accuracy: (none) -> 0.9800 (measured 0.9900, margin 0.01; new key)"
    )
    looser = ThresholdChange("lenet", "calibration[ece]", 0.005, 0.0118, 0.0018, "max", 0.01)
    summary = format_changes([change, new, looser], "pyproject.toml")
    assert summary.splitlines() == [
        "thresholds in pyproject.toml: 2 updated, 1 added, 1 loosened (review these)",
        "  " + change.describe(),
        "  " + new.describe(),
        "  " + looser.describe(),
    ]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
