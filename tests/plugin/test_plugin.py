"""The pytest plugin, run through pytester: generated items, pass/fail by threshold, exit codes,
JSON results, fixture-provided models, and a one-line usage error for every bad input."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USAGE_ERROR = pytest.ExitCode.USAGE_ERROR

TINY_MODEL = """
import torch
from torch import nn

def safety_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""

# The plugin is imported before pytester's inner runs, so they cannot assertion-rewrite it.
QUIET = ("-p", "no:randomly", "-W", "ignore::pytest.PytestAssertRewriteWarning")
FAST = (
    "--safety-checks=clean_accuracy,pgd_linf",
    "--safety-eps=0.1,0.3",
    "--safety-attack-samples=20",
    *QUIET,
)


@pytest.fixture
def tiny(pytester, data_root):
    pytester.makepyfile(tiny=TINY_MODEL)
    return "--safety-model=tiny.py"


def run(pytester, *args):
    return pytester.runpytest(*args, *FAST)


def usage_error(pytester, *args) -> str:
    """Run, expect pytest's usage-error exit, and return the single error line."""
    result = pytester.runpytest(*args, *QUIET)
    assert result.ret == USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    return errors[0]


def test_generated_test_ids(pytester, tiny):
    result = run(pytester, tiny, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "safety[[]tiny[]]::clean_accuracy",
            "safety[[]tiny[]]::pgd_linf[[]eps=0.1[]]",
            "safety[[]tiny[]]::pgd_linf[[]eps=0.3[]]",
            "3 tests collected*",
        ]
    )


def test_pass_and_fail_follow_the_thresholds_and_json_records_them(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 1.0\n")
    result = run(pytester, tiny, "--safety-thresholds=gate.toml", "--safety-json=out/r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*tiny pgd_linf[[]eps=0.1[]]: measured robust accuracy 0.* < required at least 1.0000 "
            "(PGD-Linf eps=0.1, 40 steps of 0.01, 1 restart(s), random start, seed 0; *n=20; "
            "threshold from gate.toml: thresholds.pgd_linf)",
            "*safetycheck results*",
            "tiny: 1 passed, 2 failed, 0 skipped",
        ]
    )
    document = json.loads((pytester.path / "out" / "r.json").read_text())
    assert document["format"] == "safetycheck-results"
    assert {"torch", "device", "seed", "models"} <= set(document["metadata"])
    records = {r["check"]: r for r in document["results"]}
    assert set(records) == {"clean_accuracy", "pgd_linf[eps=0.1]", "pgd_linf[eps=0.3]"}
    for record in records.values():
        assert {"model", "check", "params", "value", "threshold", "passed", "n"} <= set(record)
        assert record["model"] == "tiny"
    assert records["clean_accuracy"]["passed"] and records["clean_accuracy"]["n"] == 10_000
    # The threat model is in the params beside the id's eps: the attacks, budget and device.
    assert records["pgd_linf[eps=0.1]"]["params"] == {
        "eps": 0.1,
        "attacks": "pgd_linf",
        "budget": "fixed",
        "device": "cpu",
    }
    assert not records["pgd_linf[eps=0.1]"]["passed"]
    attacks = document["metadata"]["threat_models"]["pgd_linf"]["attacks"]
    assert attacks[0]["attack"] == "PGD" and attacks[0]["steps"] == 40
    # Robust accuracy is a per-sample worst case over an ascending sweep: monotone, below clean.
    assert records["pgd_linf[eps=0.3]"]["value"] <= records["pgd_linf[eps=0.1]"]["value"] <= 1.0


def test_keyword_selection_runs_only_the_selected_checks(pytester, tiny):
    result = run(pytester, tiny, "-k", "clean_accuracy")
    # An untrained model fails the built-in clean-accuracy floor; the attacks are deselected.
    result.assert_outcomes(failed=1, deselected=2)


def test_inert_without_models(pytester):
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "safetycheck results" not in result.stdout.str()


def test_safety_model_fixture_dict_gives_named_models_and_restores_them(pytester, data_root):
    pytester.makeconftest("""
        import json, pytest, torch
        from torch import nn

        torch.manual_seed(0)
        MODELS = {"first": nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                  "second": nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(784, 10))}
        MODELS["second"].train()
        MODELS["second"][2].bias.requires_grad_(False)

        @pytest.fixture(scope="session")
        def safety_model():
            return MODELS

        def pytest_unconfigure(config):
            state = {
                name: [
                    [m.training for m in model.modules()],
                    [p.requires_grad for p in model.parameters()],
                ]
                for name, model in MODELS.items()
            }
            open("state.json", "w").write(json.dumps(state))
    """)
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = run(pytester, "--safety-thresholds=gate.toml")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["first: 3 passed, 0 failed*", "second: 3 passed, 0 failed*"])
    state = json.loads((pytester.path / "state.json").read_text())
    assert state["first"] == [[True, True, True], [True, True]]
    assert state["second"] == [[True, True, True, True], [True, False]]


def test_randomised_model_runs_only_when_allowed_and_is_flagged(pytester, data_root):
    pytester.makepyfile(
        noisy="""
        import torch
        from torch import nn

        class Noisy(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

            def forward(self, x):
                return self.net(x) + torch.randn(len(x), 10)

        model = Noisy()
    """
    )
    assert "model 'noisy' is randomised" in usage_error(pytester, "--safety-model=noisy.py")
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = run(
        pytester,
        "--safety-model=noisy.py",
        "--safety-allow-randomized",
        "--safety-thresholds=gate.toml",
        "--safety-json=r.json",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["noisy: 3 passed, 0 failed, 0 skipped (RANDOMISED MODEL*"])
    document = json.loads((pytester.path / "r.json").read_text())
    assert document["metadata"]["models"][0]["randomized"] is True
    assert all(record["randomized"] for record in document["results"])


BAD_MODELS = {
    "probabilities": (
        "model = __import__('torch').nn.Sequential(__import__('torch').nn.Flatten(), "
        "__import__('torch').nn.Linear(784, 10), __import__('torch').nn.Softmax(dim=1))",
        "returns probabilities",
    ),
    "nans": (
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        "        return torch.full((len(x), 10), float('nan'))\nmodel = M()",
        "returns non-finite values",
    ),
    "shape": (
        "import torch\nmodel = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 7))",
        "returns shape (8, 7) for a batch of 8; expected (8, 10) logits",
    ),
    "pair": (
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
        "        return x.flatten(1)[:, :10], x\nmodel = M()",
        "returns a tuple of 2 items",
    ),
    "nofactory": (
        "x = 1",
        "defines none of safety_model(), build_model() or a module-level `model`",
    ),
    "lazyleft": (
        "import torch\nclass M(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.head = torch.nn.Linear(784, 10)\n"
        "        self.spare = torch.nn.LazyLinear(3)\n    def forward(self, x):\n"
        "        return self.head(x.flatten(1))\nmodel = M()",
        "still has uninitialised lazy parameters after a call on a probe batch (spare.weight",
    ),
}


def test_a_lazy_model_is_initialised_by_the_probe_and_runs(pytester, data_root):
    pytester.makepyfile(
        lazy="import torch\nfrom torch import nn\ndef safety_model():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(10))\n"
    )
    result = run(pytester, "--safety-model=lazy.py")
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "uninitialized" not in output
    assert result.parseoutcomes().get("passed", 0) + result.parseoutcomes().get("failed", 0) >= 3


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_bad_models_give_one_usage_error(pytester, name):
    source, expected = BAD_MODELS[name]
    pytester.makepyfile(**{name: source})
    assert expected in usage_error(pytester, f"--safety-model={name}.py")


def test_other_bad_inputs_give_one_usage_error(pytester, tiny, tmp_path):
    import torch

    torch.save(torch.nn.Linear(784, 10).state_dict(), pytester.path / "weights.pt")
    assert "bare state_dict" in usage_error(pytester, "--safety-model=weights.pt")
    assert "model file missing.py not found" in usage_error(pytester, "--safety-model=missing.py")
    message = usage_error(pytester, tiny, f"--safety-data={tmp_path}")
    assert (
        "MNIST data not found" in message
        and "--safety-download" in message
        and str(tmp_path) in message
    )
    pytester.makefile(".toml", typo="[thresholds]\nclean_acuracy = 0.9\n")
    assert "did you mean 'clean_accuracy'" in usage_error(
        pytester, tiny, "--safety-thresholds=typo.toml"
    )
    assert "Linf epsilons lie in (0, 1]" in usage_error(
        pytester, tiny, "--safety-samples=5", "--safety-eps=0.1,3"
    )
    assert "--safety-device 'tpu'" in usage_error(pytester, tiny, "--safety-device=tpu")
    assert "two models are named 'tiny'" in usage_error(pytester, tiny, tiny)
    assert "did you mean 'pgd_linf'" in usage_error(
        pytester, tiny, "--safety-checks=clean_accuracy,pgd_lnf"
    )
    (pytester.path / "a_file").write_text("")
    assert "cannot create its folder" in usage_error(pytester, tiny, "--safety-json=a_file/r.json")
    assert "is a folder" in usage_error(pytester, tiny, f"--safety-json={pytester.path}")


def test_fixture_with_arguments_is_refused(pytester, data_root):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def safety_model(tmp_path):
            return None
    """)
    assert "requests tmp_path" in usage_error(pytester)


def test_xdist_controller_writes_every_record(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = pytester.runpytest_subprocess(
        tiny,
        *FAST,
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--safety-thresholds=gate.toml",
        "--safety-json=r.json",
    )
    result.assert_outcomes(passed=3)
    document = json.loads((pytester.path / "r.json").read_text())
    assert sorted(r["check"] for r in document["results"]) == [
        "clean_accuracy",
        "pgd_linf[eps=0.1]",
        "pgd_linf[eps=0.3]",
    ]


def _junit_properties(path: Path) -> list[dict[str, str]]:
    import xml.etree.ElementTree as ET

    return [
        {prop.get("name"): prop.get("value") for prop in case.iter("property")}
        for case in ET.parse(path).iter("testcase")
    ]


def _measured(path: Path) -> dict:
    return {
        (r["model"], r["check"]): (r["value"], r["n"], r["passed"])
        for r in json.loads(path.read_text())["results"]
    }


@pytest.mark.slow
def test_loadgroup_keeps_each_model_on_one_worker_and_matches_serial(pytester, data_root):
    """`-n 2 --dist loadgroup` with two real models: every check of a model ran on the same worker
    (so its attack sweep ran once), each worker took its share of the cores, and every value, n and
    verdict equals the serial run's."""
    from safetycheck.measures.acceleration import available_cores

    models = [
        f"--safety-model={REPO / 'example_models' / name}" for name in ("lenet.py", "linear.py")
    ]
    options = [
        "--safety-checks=clean_accuracy,fgsm,pgd_linf,calibration",
        "--safety-eps=0.1,0.3",
        "--safety-samples=200",
        *QUIET,
    ]
    parallel = pytester.runpytest_subprocess(
        *models,
        *options,
        "-n",
        "2",
        "--dist",
        "loadgroup",
        "--junitxml=parallel.xml",
        "--safety-json=parallel.json",
    )
    assert parallel.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), parallel.stdout.str()
    serial = pytester.runpytest_subprocess(*models, *options, "--safety-json=serial.json")
    assert serial.ret == parallel.ret
    cases = _junit_properties(pytester.path / "parallel.xml")
    assert len(cases) == len(_measured(pytester.path / "serial.json")) > 2 * 5
    workers: dict[str, set[str]] = {}
    for case in cases:
        workers.setdefault(case["safetycheck.model"], set()).add(case["safetycheck.worker"])
    assert set(workers) == {"lenet", "linear"}
    assert all(
        len(names) == 1 and next(iter(names)).startswith("gw") for names in workers.values()
    ), workers
    share = max(1, available_cores() // 2)
    assert {int(case["safetycheck.torch_threads"]) for case in cases} <= set(range(1, share + 1))
    measured, expected = (
        _measured(pytester.path / "parallel.json"),
        _measured(pytester.path / "serial.json"),
    )
    assert measured.keys() == expected.keys()
    for key, (value, n, passed) in measured.items():
        # Counts are exact; a sum of float32 probabilities may differ in its last bits, since a
        # worker's share of the threads reduces in another order than the serial run's threads.
        exact = not key[1].startswith("calibration")
        assert (value if exact else pytest.approx(value, rel=1e-5), n, passed) == expected[key], key


def test_main_job_on_the_trained_example_model(pytester, data_root):
    """The README's main job on real MNIST: lenet's clean accuracy is at least 0.990."""
    result = pytester.runpytest(
        f"--safety-model={REPO / 'example_models' / 'lenet.py'}",
        "--safety-eps=0.1",
        "--safety-checks=clean_accuracy,pgd_linf",
        "--safety-attack-samples=100",
        "--safety-json=r.json",
        *QUIET,
    )
    result.assert_outcomes(passed=2)
    records = {r["check"]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert records["clean_accuracy"]["model"] == "lenet"
    assert records["clean_accuracy"]["value"] >= 0.990
    assert 0.5 <= records["pgd_linf[eps=0.1]"]["value"] <= records["clean_accuracy"]["value"]


def test_gradient_masking_model_is_flagged_not_reported_robust(pytester, data_root):
    """A LeNet behind a hard input threshold looks robust to gradient attacks; the trust checks
    fail."""
    result = pytester.runpytest(
        f"--safety-model={REPO / 'example_models' / 'masked.py'}",
        "--safety-checks=pgd_linf,attack_trust",
        "--safety-eps=0.3",
        "--safety-attack-samples=50",
        "-k",
        "pgd_linf or gradients or large_eps",
        "--safety-json=r.json",
        *QUIET,
    )
    records = {r["check"]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert records["pgd_linf[eps=0.3]"]["value"] > 0.5  # the attack is blind to the masked model...
    assert not records["attack_trust[gradients]"]["passed"]  # ...and the trust checks say so
    assert not records["attack_trust[large_eps]"]["passed"]
    assert "zero on 100.0%" in records["attack_trust[gradients]"]["details"]
    result.assert_outcomes(
        passed=1, failed=2, deselected=3
    )  # the PGD check alone would have passed


def test_shared_computations_report_progress_unless_quiet(pytester, tiny):
    pytester.makefile(".toml", gate="[thresholds]\nclean_accuracy = 0.0\npgd_linf = 0.0\n")
    result = run(pytester, tiny, "--safety-thresholds=gate.toml")
    result.stdout.fnmatch_lines(["safety[[]tiny[]] *[[]tiny: sweep:pgd_linf ... *s[]]*"])
    quiet = run(pytester, tiny, "--safety-thresholds=gate.toml", "-q")
    assert "sweep:pgd_linf" not in quiet.stdout.str()


def test_certified_family_skips_an_unsupported_layer_with_its_name(pytester, data_root):
    pytester.makepyfile(
        tanh="import torch\nfrom torch import nn\ndef safety_model():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Tanh(), nn.Linear(8, 10))\n"
    )
    result = pytester.runpytest(
        "--safety-model=tanh.py",
        "--safety-checks=certified",
        "--safety-eps=0.1",
        "--safety-attack-samples=10",
        "-rs",
        *QUIET,
    )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*not certifiable: 2 (Tanh)*"])


def test_attack_names_carry_their_budget_and_a_typo_gets_the_nearest(pytester, tiny):
    assert "did you mean 'autoattack_fast'" in usage_error(
        pytester, tiny, "--safety-checks=autoattack_fats"
    )
    assert "did you mean 'apgd_fast'" in usage_error(pytester, tiny, "--safety-checks=apgd_fst")
