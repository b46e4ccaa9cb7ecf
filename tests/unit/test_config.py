"""Threshold files: precedence, and a usage error for every typo, wrong type or impossible bound."""

import pytest

from safetycheck.checks import check_id, families, plan_checks
from safetycheck.checks.evaluation import RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.gate.thresholds import DEFAULT_PROFILE, SafetyConfig, load_config, parse_check_key


def config_from(tmp_path, text: str) -> SafetyConfig:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return load_config(path)


def test_every_default_check_has_a_built_in_threshold_in_range():
    for planned in plan_checks(RunSettings()):
        threshold = SafetyConfig().threshold("any", planned.family.name, planned.id)
        low, high = planned.family.value_range
        assert low <= threshold.value <= high, planned.id


def test_built_in_profile_keys_are_valid():
    for key in DEFAULT_PROFILE:
        family, canonical = parse_check_key(key, "DEFAULT_PROFILE", key)
        assert canonical == key and family in families()


def test_precedence_from_most_to_least_specific(tmp_path):
    config = config_from(
        tmp_path,
        """
        [thresholds]
        pgd_linf = 0.4
        "pgd_linf[eps=0.1]" = 0.6
        [models.lenet.thresholds]
        "pgd_linf[eps=0.1]" = 0.7
        [models.other.thresholds]
        pgd_linf = 0.2
    """,
    )
    assert config.threshold("lenet", "pgd_linf", "pgd_linf[eps=0.1]").value == 0.7
    assert config.threshold("other", "pgd_linf", "pgd_linf[eps=0.1]").value == 0.2
    assert config.threshold("third", "pgd_linf", "pgd_linf[eps=0.1]").value == 0.6
    assert config.threshold("third", "pgd_linf", "pgd_linf[eps=0.3]").value == 0.4
    fallback = config.threshold("third", "clean_accuracy", "clean_accuracy")
    assert (fallback.value, fallback.source) == (
        DEFAULT_PROFILE["clean_accuracy"],
        "built-in default",
    )
    assert (
        config.threshold("lenet", "pgd_linf", "pgd_linf[eps=0.1]").source
        == "thresholds.toml: models.lenet.thresholds.pgd_linf[eps=0.1]"
    )


def test_check_keys_are_canonicalised():
    assert parse_check_key("pgd_linf[eps=0.10]", "f", "k") == ("pgd_linf", "pgd_linf[eps=0.1]")
    assert check_id("pgd_linf", {"eps": 0.3}) == "pgd_linf[eps=0.3]"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "[thresholds]\nclean_acuracy = 0.9",
            "unknown key 'thresholds.clean_acuracy'; did you mean 'clean_accuracy'?",
        ),
        (
            "[tresholds]\nclean_accuracy = 0.9",
            "unknown key 'tresholds'; did you mean 'thresholds'?",
        ),
        ('[thresholds]\n"pgd_linf[epsilon=0.1]" = 0.5', "did you mean 'eps'?"),
        ('[thresholds]\n"pgd_linf[eps=abc]" = 0.5', "eps='abc' is not a number"),
        (
            "[thresholds]\nclean_accuracy = 1.5",
            "clean_accuracy = 1.5 is impossible: a clean accuracy lies in [0.0, 1.0]",
        ),
        ("[thresholds]\nclean_accuracy = '0.9'", "must be a number, not '0.9'"),
        ("[thresholds]\nclean_accuracy = true", "must be a number, not True"),
        (
            "[models.lenet]\nthreshold = {clean_accuracy = 0.9}",
            "unknown key 'models.lenet.threshold'; did you mean 'thresholds'?",
        ),
        ("samples = 0", "samples must be at least 1"),
        ("samples = 1.5", "samples must be an integer"),
        ("epsilons = [0.1, 2]", "Linf epsilons lie in (0, 1]"),
        ("epsilons = []", "must be a non-empty list of numbers"),
        ("this is not toml", "is not valid TOML"),
        (
            "[tool.safetycheck.thresholds]\nclean_acc = 0.9\n",
            "unknown key 'tool.safetycheck.thresholds.clean_acc'",
        ),
        (
            "[thresholds]\nfgsm = 0.5\n[tool.safetycheck.thresholds]\nfgsm = 0.5\n",
            "both [tool.safetycheck] and top-level safetycheck keys (thresholds)",
        ),
        (
            "[tool.ruff]\nline-length = 1\n",
            "has a [tool] table (tool.ruff) but no [tool.safetycheck]",
        ),
        ("[tool]\nsafetycheck = 3\n", "tool.safetycheck must be a table"),
    ],
)
def test_typos_and_impossible_values_are_usage_errors(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        config_from(tmp_path, text)
    assert expected in str(info.value) and "thresholds.toml" in str(info.value)


def test_ood_table_selects_sets_scores_and_user_sets(tmp_path):
    config = config_from(
        tmp_path,
        """
        [ood]
        sets = ["kmnist"]
        scores = ["msp", "energy"]
        user_sets = { letters = "letters.npy" }
    """,
    )
    assert config.ood == {
        "sets": ("kmnist",),
        "scores": ("msp", "energy"),
        "user_sets": (("letters", str((tmp_path / "letters.npy").resolve())),),
    }


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ood]\nscores = ['msp', 'enrgy']", "unknown OOD score 'enrgy'"),
        ("[ood]\nsets = ['cifar']", "unknown OOD set 'cifar'"),
        ("[ood]\nset = ['fmnist']", "did you mean 'sets'?"),
        ("[ood]\nuser_sets = { fmnist = 'x.npy' }", "OOD set name 'fmnist' is taken"),
    ],
)
def test_ood_table_errors(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        config_from(tmp_path, text)
    assert expected in str(info.value) and "thresholds.toml" in str(info.value)


def test_pyproject_table_is_read_and_prefixed(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.safetycheck.thresholds]\nclean_acc = 0.9\n")
    with pytest.raises(ConfigError, match="unknown key 'tool.safetycheck.thresholds.clean_acc'"):
        load_config(pyproject=pyproject)
    pyproject.write_text("[project]\nname = 'x'\n")
    assert load_config(pyproject=pyproject).thresholds == {}


def test_standalone_file_may_hold_a_tool_safetycheck_table(tmp_path):
    """A table copied from a pyproject.toml (or the pyproject itself) reads as the same keys at the
    top level."""
    top = config_from(
        tmp_path,
        "seed = 3\n[thresholds]\nclean_accuracy = 0.9\n[models.a.thresholds]\nfgsm = 0.5\n",
    )
    copied = config_from(
        tmp_path,
        "[project]\nname = 'x'\n[tool.ruff]\nline-length = 1\n[tool.safetycheck]\n"
        "seed = 3\n[tool.safetycheck.thresholds]\nclean_accuracy = 0.9\n"
        "[tool.safetycheck.models.a.thresholds]\nfgsm = 0.5\n",
    )
    assert (copied.settings, copied.thresholds, copied.model_thresholds) == (
        top.settings,
        top.thresholds,
        top.model_thresholds,
    )
    assert (
        copied.threshold("a", "fgsm", "fgsm[eps=0.1]").source
        == "thresholds.toml: models.a.thresholds.fgsm"
    )


def test_missing_threshold_file(tmp_path):
    with pytest.raises(ConfigError, match="threshold file .* not found"):
        load_config(tmp_path / "nope.toml")


def test_common_corruption_keys_take_a_corruption_and_an_optional_severity():
    assert parse_check_key("corruptions[fog]", "t.toml", "k") == ("corruptions", "corruptions[fog]")
    for spelled in ("corruptions[fog,severity=5]", "corruptions[fog, severity=5.0]"):
        assert parse_check_key(spelled, "t.toml", "k") == (
            "corruptions",
            "corruptions[fog,severity=5]",
        )
    assert check_id("corruptions", {"corruption": "fog", "severity": 5}) == (
        "corruptions[fog,severity=5]"
    )
    with pytest.raises(ConfigError, match="did you mean 'fog'"):
        parse_check_key("corruptions[fgo]", "t.toml", "k")
    with pytest.raises(ConfigError, match="valid keys here: severity"):
        parse_check_key("corruptions[fog,level=5]", "t.toml", "k")
    with pytest.raises(ConfigError, match="valid keys here: 1, 2, 3, 4, 5"):
        parse_check_key("corruptions[fog,severity=6]", "t.toml", "k")
