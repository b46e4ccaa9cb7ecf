"""Release gating through the plugin: threshold updates, baselines, quick stratified runs, JUnit
properties, the HTML report, and a clear usage error for every bad gate input before any work."""

import json
import xml.etree.ElementTree as ET

import pytest
from test_plugin import FAST, QUIET, TINY_MODEL, run, usage_error

COMMENTED_GATE = """\
# The release gate for the tiny model: reviewed by the ML team.
seed = 0  # keep runs comparable

[thresholds]
clean_accuracy = 0.95  # far above what an untrained model reaches
pgd_linf = 0.0
"""


@pytest.fixture
def tiny(pytester, data_root):
    pytester.makepyfile(tiny=TINY_MODEL)
    return "--safety-model=tiny.py"


def records_of(path) -> dict:
    return {r["check"]: r for r in json.loads(path.read_text())["results"]}


def test_update_thresholds_keeps_comments_and_the_next_run_passes(pytester, tiny):
    gate = pytester.path / "gate.toml"
    gate.write_text(COMMENTED_GATE)
    first = run(
        pytester,
        tiny,
        "--safety-thresholds=gate.toml",
        "--safety-update-thresholds",
        "--safety-threshold-margin=0.02",
        "--safety-json=r.json",
    )
    first.assert_outcomes(passed=2, failed=1)  # judged by the thresholds in force when it ran
    first.stdout.fnmatch_lines(
        ["*thresholds updated in gate.toml (margin 0.02)*", "*tiny clean_accuracy: *"]
    )
    text = gate.read_text()
    assert text.startswith(
        COMMENTED_GATE.splitlines()[0]
    )  # the user's comments and settings survive
    assert (
        "# far above what an untrained model reaches" in text
        and "seed = 0  # keep runs comparable" in text
    )
    measured = records_of(pytester.path / "r.json")["clean_accuracy"]["value"]
    second = run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-json=r2.json")
    second.assert_outcomes(passed=3)
    record = records_of(pytester.path / "r2.json")["clean_accuracy"]
    assert record["threshold"] == pytest.approx(max(0.0, measured - 0.02), abs=1e-4)
    assert record["threshold_source"] == "gate.toml: models.tiny.thresholds.clean_accuracy"


def test_update_creates_a_missing_threshold_file(pytester, tiny):
    run(pytester, tiny, "--safety-thresholds=new-gate.toml", "--safety-update-thresholds")
    assert "[models.tiny.thresholds]" in (pytester.path / "new-gate.toml").read_text()
    run(pytester, tiny, "--safety-thresholds=new-gate.toml").assert_outcomes(passed=3)


def test_baseline_regression_fails_with_both_values(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-json=base.json").assert_outcomes(
        passed=3
    )
    same = run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-baseline=base.json")
    same.assert_outcomes(passed=3)  # the same seed and data give the same values: no regression

    document = json.loads((pytester.path / "base.json").read_text())
    for record in document["results"]:
        if record["check"] == "clean_accuracy":
            record["value"], record["ci"] = 0.9, [0.894, 0.906]  # a much better past model
            # Its images' verdicts would contradict that value (a damaged file: refused); as a
            # record of the older format, without them, it is compared by the unpaired rule.
            del record["per_example"]
    (pytester.path / "base.json").write_text(json.dumps(document))
    result = run(
        pytester,
        tiny,
        "--safety-thresholds=gate.toml",
        "--safety-baseline=base.json",
        "--safety-json=r.json",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*tiny clean_accuracy: regression vs baseline: 0.* < 0.9000 by 0.* (noise 0.*"]
    )
    record = records_of(pytester.path / "r.json")["clean_accuracy"]
    assert (
        record["passed"] and record["baseline"]["regressed"] and record["baseline"]["value"] == 0.9
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (
            '{"format": "safetycheck-results", "format_version": 99, "metadata": {}, '
            '"results": []}',
            "format_version",
        ),
        ('{"format": "something-else"}', "safetycheck-results"),
        (
            '{"format": "safetycheck-results", "format_version": 2, "metadata": {}, "results": '
            '[{"model": "other", "check": "clean_accuracy", "value": 0.9, "n": 10, '
            '"bound": "min", "family": "clean_accuracy"}]}',
            "has results for the models other and this run tests tiny",
        ),
    ],
)
def test_incompatible_baseline_is_a_usage_error_before_any_work(pytester, tiny, content, message):
    (pytester.path / "base.json").write_text(content)
    line = usage_error(pytester, tiny, "--safety-baseline=base.json", *FAST)
    assert "base.json" in line and message in line


def test_gate_inputs_fail_before_any_work(pytester, tiny):
    pytester.makefile(".toml", broken="[thresholds]\nclean_accuracy = = 0.9\n")
    assert "not valid TOML" in usage_error(pytester, "--safety-thresholds=broken.toml")
    assert "threshold file missing.toml not found" in usage_error(
        pytester, "--safety-thresholds=missing.toml"
    )
    (pytester.path / "a-folder").mkdir()
    assert "is a folder" in usage_error(pytester, tiny, "--safety-report=a-folder")
    assert "cannot create its folder" in usage_error(
        pytester, tiny, "--safety-report=/proc/no/report.html"
    )
    assert "--safety-threshold-margin" in usage_error(
        pytester,
        tiny,
        "--safety-update-thresholds",
        "--safety-thresholds=g.toml",
        "--safety-threshold-margin=-1",
    )
    # Without a file to write, the update has nowhere to go (pytester's folder has no
    # pyproject.toml).
    assert "needs a file to write" in usage_error(pytester, tiny, "--safety-update-thresholds")
    assert not (pytester.path / "g.toml").exists()


CONV_ONLY_MODEL = """
import torch
from torch import nn

def safety_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 10, 28), nn.Flatten())  # no Linear layer: no features to hook
"""


def test_quick_mode_evaluates_a_stratified_subset_and_says_so(pytester, data_root):
    pytester.makepyfile(conv=CONV_ONLY_MODEL)
    pytester.makefile(
        ".toml", gate="[thresholds]\nclean_accuracy = 0.0\ncalibration = 100.0\nood_auroc = 0.0\n"
    )
    result = pytester.runpytest(
        "--safety-model=conv.py",
        "--safety-thresholds=gate.toml",
        "--safety-samples=200",
        "--safety-json=r.json",
        "--safety-checks=clean_accuracy,calibration,ood_auroc",
        *QUIET,
    )
    result.stdout.fnmatch_lines(
        ["*QUICK MODE: every family saw a stratified subset of 200 MNIST test images*"]
    )
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["metadata"]["samples"] == 200
    records = {r["check"]: r for r in document["results"]}
    assert (
        records["clean_accuracy"]["n"] == 200
        and "stratified subset of 200" in records["clean_accuracy"]["details"]
    )
    assert records["calibration[ece]"]["n"] == 200
    assert records["ood_auroc[fmnist-msp]"]["n"] == 400  # 200 MNIST against 200 Fashion-MNIST
    # Without a feature layer, feature-based scores are skipped, and the record says why.
    assert "feature" in records["ood_auroc[fmnist-mahalanobis]"]["skipped"]
    assert records["ood_auroc[fmnist-mahalanobis]"]["value"] is None


def test_junit_carries_measured_values_under_the_default_family(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = run(
        pytester,
        tiny,
        "--safety-thresholds=gate.toml",
        "--junitxml=j.xml",
        "-W",
        "error::pytest.PytestWarning",
    )
    result.assert_outcomes(passed=3)
    root = ET.parse(pytester.path / "j.xml").getroot()
    suite_properties = {
        p.get("name"): p.get("value")
        for p in root.iter("testsuite")
        for p in p.findall("properties/property")
    }
    assert suite_properties["safety[tiny]::pgd_linf[eps=0.1]"].startswith("PASS: robust accuracy ")
    assert "need >= 0.0000; n=20; eps=0.1" in suite_properties["safety[tiny]::pgd_linf[eps=0.1]"]
    # pytest's JUnit writer names the case "clean_accuracy" (9.2) or by the whole node id (up to
    # 9.1).
    case = next(
        c
        for c in root.iter("testcase")
        if c.get("name") in ("clean_accuracy", "safety[tiny]::clean_accuracy")
    )
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(properties["safetycheck.value"]) == pytest.approx(0.1, abs=0.1)
    assert properties["safetycheck.threshold"] == "0.0" and properties["safetycheck.n"] == "10000"


def test_html_report_holds_the_matrix(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.5\npgd_linf = 0.0\n")
    result = run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-report=out/report.html")
    result.assert_outcomes(passed=2, failed=1)
    html = (pytester.path / "out" / "report.html").read_text()
    assert "pgd_linf[eps=0.3]" in html and "clean_accuracy" in html and "tiny" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    result.stdout.fnmatch_lines(["HTML report: out/report.html"])


def test_xdist_gives_the_same_results_as_a_serial_run(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-json=serial.json")
    pytester.runpytest_subprocess(
        tiny,
        *FAST,
        "--safety-thresholds=gate.toml",
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--safety-json=parallel.json",
        "--safety-report=parallel.html",
    )
    serial, parallel = (
        records_of(pytester.path / "serial.json"),
        records_of(pytester.path / "parallel.json"),
    )
    assert serial.keys() == parallel.keys()
    for check, record in serial.items():
        assert (record["value"], record["n"], record["passed"]) == (
            parallel[check]["value"],
            parallel[check]["n"],
            parallel[check]["passed"],
        )
    assert (pytester.path / "parallel.html").stat().st_size > 1000


def test_loading_the_plugin_does_not_import_the_engine():
    """pytest loads the plugin in every run where safetycheck is installed: a run that tests no
    model must not pay for importing torch and scikit-learn."""
    import subprocess
    import sys

    code = (
        "import sys, safetycheck_pytest.plugin, safetycheck_pytest.outputs; "
        "heavy = [m for m in ('torch', 'sklearn', 'torchvision') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terminal_summary_is_a_matrix_for_several_models(pytester, data_root):
    pytester.makepyfile(
        two=TINY_MODEL.replace(
            "return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))",
            "return {'alpha': nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "
            "'beta': nn.Sequential(nn.Flatten(), nn.Linear(784, 10))}",
        )
    )
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.052\npgd_linf = 0.0\n")
    result = run(pytester, "--safety-model=two.py", "--safety-thresholds=gate.toml")
    result.stdout.re_match_lines(
        [
            r"^\s+alpha\s+beta\s*$",
            r"^  clean_accuracy\s+0\.\d{4}[ x]\s+0\.\d{4}[ x]$",
            r"^  pgd_linf\[eps=0\.1\]\s+0\.\d{4} \s+0\.\d{4} $",
        ]
    )


def test_json_carries_the_gallery_the_html_shows(pytester, tiny):
    import base64

    pytester.makefile(".toml", gate="[thresholds]\nmnist_c_mean = 0.0\n")
    result = pytester.runpytest(
        tiny,
        "--safety-thresholds=gate.toml",
        "--safety-checks=mnist_c_mean",
        "--safety-samples=50",
        "--safety-json=r.json",
        "--safety-report=r.html",
        *QUIET,
    )
    result.assert_outcomes(passed=1)
    document = json.loads((pytester.path / "r.json").read_text())
    assert set(document["gallery"]) >= {"identity", "fog", "canny_edges"}
    assert base64.b64decode(document["gallery"]["fog"]).startswith(b"\x89PNG")
    assert (
        document["gallery"]["fog"] in (pytester.path / "r.html").read_text()
    )  # the same picture, inline
    assert set(document["results"][0]["artifacts"]["per_corruption"]) >= {"fog", "canny_edges"}


def test_an_accelerated_run_adds_the_acceleration_check_and_records_the_setting(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = pytester.runpytest(
        tiny,
        "--safety-thresholds=gate.toml",
        "--safety-channels-last",
        "--safety-json=r.json",
        "--safety-checks=clean_accuracy",
        "--safety-eps=0.1",
        "--safety-attack-samples=20",
        *QUIET,
    )
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["metadata"]["attack_acceleration"] == "fp32, channels_last"
    record = records_of(pytester.path / "r.json")["attack_acceleration"]
    assert (
        record["n"] == 20 and "channels_last" in record["details"] and record["threshold"] == 0.02
    )


def test_an_unknown_precision_is_a_usage_error(pytester, tiny):
    result = pytester.runpytest(tiny, "--safety-precision=bf8", *QUIET)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--safety-precision*invalid choice*bf8*"])


def early_stop_run(pytester, *args):
    return pytester.runpytest(
        "--safety-model=tiny.py",
        "--safety-checks=pgd_linf",
        "--safety-eps=0.1,0.3",
        "--safety-samples=600",
        "--safety-json=r.json",
        *args,
        *QUIET,
    )


def test_quick_mode_stops_a_sweep_once_every_verdict_is_known_and_says_where(pytester, tiny):
    """The untrained model's robust accuracy is near 0 against the default bounds of 0.5: after
    the first block of 100 of the 300 attacked images both verdicts are known (fail)."""
    result = early_stop_run(pytester)
    result.assert_outcomes(failed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["metadata"]["early_stop"] == {"alpha": 0.01, "block": 100}
    for record in document["results"]:
        assert record["n"] == 100 and not record["passed"]
        assert "stopped early after 100 of 300 images" in record["details"]
        assert (
            "99% confidence sequence" in record["details"]
            and "below the threshold 0.5" in (record["details"])
        )
        assert record["artifacts"]["early_stop"] == {"images": 100, "planned": 300}
        assert record["per_example"]["count"] == 100
    full = early_stop_run(pytester, "--safety-early-stop=off")
    full.assert_outcomes(failed=2)
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["metadata"]["early_stop"] is None
    assert all(r["n"] == 300 and "stopped" not in r["details"] for r in document["results"])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--safety-early-stop-alpha=0", "--safety-early-stop-alpha must be a number strictly"),
        ("--safety-early-stop-alpha=1.5", "--safety-early-stop-alpha must be a number strictly"),
    ],
)
def test_a_bad_early_stop_setting_is_a_usage_error(pytester, tiny, option, message):
    assert message in usage_error(pytester, tiny, option, "--safety-samples=100")
