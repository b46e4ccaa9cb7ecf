"""Any dataset, end to end: a CIFAR-10-format and an SVHN-format data root, and a user's own npz of
8x8 grayscale images (scikit-learn's real handwritten digits) and of 32x32 RGB patches (the real
photographs that ship with scikit-learn), each run through every family by the plugin. Every
record names the dataset; the MNIST-C families are skipped as not applicable where they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from official_formats import write_cifar10, write_svhn

# A permissive gate: this test is about every family running on every dataset, not about the
# (untrained or briefly trained) models' numbers.
PERMISSIVE = """
[thresholds]
clean_accuracy = 0.0
pgd_linf = 0.0
fgsm = 0.0
calibration = 1000.0
mnist_c_mean = 0.0
mnist_c = 0.0
mnist_c_drop = 1.0
corruptions_mean = 0.0
corruptions = 0.0
corruptions_drop = 1.0
ood_auroc = 0.0
ood_fpr95 = 1.0
attack_trust = 0.0
attack_invariants = 0.0
"""

RGB_MODEL = """
import torch
from torch import nn

def safety_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 15 * 15, {classes})
    )
    return model.eval()
"""

# Trained in the model file itself, in well under a second, on the user's own npz.
TRAINED_MODEL = """
import numpy as np
import torch
from torch import nn

def safety_model():
    data = np.load({path!r})
    x = torch.from_numpy(data["x"]).float() / 255.0
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    y = torch.from_numpy(data["y"]).long()
    torch.manual_seed(0)
    channels, size = x.shape[1], x.shape[2]
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 32), nn.ReLU(),
                          nn.Linear(32, {classes}))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()
"""


def run_plugin(tmp_path: Path, *args: str, keep_gate: bool = False) -> tuple[int, str, dict | None]:
    if not keep_gate:
        (tmp_path / "gate.toml").write_text(PERMISSIVE)
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--safety-thresholds=gate.toml", f"--safety-json={out}", "--safety-report=report.html",
         *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    document = json.loads(out.read_text()) if out.is_file() else None
    return result.returncode, result.stdout + result.stderr, document


def photo_patches(per_photo: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) patches cut at seeded places from scikit-learn's two photographs
    (a temple in China, a flower); the label says which photograph."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        for _ in range(per_photo):
            i, j = rng.integers(0, photo.shape[0] - 32), rng.integers(0, photo.shape[1] - 32)
            patches.append(photo[i : i + 32, j : j + 32])
            labels.append(label)
    return np.stack(patches).astype(np.uint8), np.array(labels)


def assert_every_family_ran(document: dict, dataset: str, common_corruptions: bool) -> None:
    """Every family has records naming ``dataset``; MNIST-C is skipped as not applicable (these
    are not 28x28 grayscale sets), and the common corruptions ran (every corruption at every
    severity) or, on images too small for them, are skipped as not applicable too."""
    records = document["results"]
    assert document["metadata"]["dataset"]["name"] == dataset
    assert {r["dataset"] for r in records} == {dataset}
    families = {r["family"] for r in records}
    assert families >= {
        "clean_accuracy", "pgd_linf", "fgsm", "calibration", "mnist_c_mean", "mnist_c",
        "mnist_c_drop", "ood_auroc", "ood_fpr95", "attack_trust", "attack_invariants",
        "corruptions_mean", "corruptions", "corruptions_drop",
    }  # fmt: skip
    not_applicable = [r for r in records if r["family"].startswith("mnist_c")]
    common = [r for r in records if r["family"].startswith("corruptions")]
    if common_corruptions:
        assert not any(r["skipped"] for r in common), [r["skipped"] for r in common]
        # the mean, the drop, 19 corruptions and 19 x 5 (corruption, severity) checks
        assert len({r["check"] for r in common}) == 2 + 19 + 19 * 5
    else:
        not_applicable += common
    assert all("not applicable" in (r["skipped"] or "") for r in not_applicable)
    assert all(r["passed"] is False for r in not_applicable)  # a skip is never a pass
    measured = [r for r in records if r not in not_applicable and r not in common]
    assert all(r["skipped"] is None or "training" in r["skipped"] for r in measured), [
        (r["check"], r["skipped"]) for r in measured if r["skipped"]
    ]


def test_cifar10_and_svhn_format_files_run_every_family(tmp_path):
    images, labels = photo_patches(30)
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    root = tmp_path / "data"
    write_cifar10(root, nchw, labels, split="test")
    write_cifar10(root, nchw[::-1].copy(), labels[::-1], split="train")
    write_svhn(root / "svhn" / "test_32x32.mat", images, labels)
    write_svhn(root / "svhn" / "train_32x32.mat", images[::-1].copy(), labels[::-1])
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=10))
    for dataset, other in (("cifar10", "svhn"), ("svhn", "cifar10")):
        code, output, document = run_plugin(
            tmp_path,
            "--safety-model=model.py",
            f"--safety-dataset={dataset}",
            f"--safety-data={root}",
        )
        assert code == 0, output[-4000:]
        assert document is not None
        assert_every_family_ran(document, dataset, common_corruptions=True)
        sets = {r["params"]["set"] for r in document["results"] if r["family"] == "ood_auroc"}
        assert sets == {other, "uniform", "gaussian"}
        eps = sorted({r["params"]["eps"] for r in document["results"] if r["family"] == "pgd_linf"})
        assert eps == pytest.approx([1 / 255, 2 / 255, 4 / 255, 8 / 255])
        assert document["metadata"]["dataset"]["input_shape"] == [3, 32, 32]


@pytest.mark.parametrize("kind", ["digits_8x8", "photos_32x32_rgb"])
def test_a_users_own_npz_runs_every_family(tmp_path, kind):
    if kind == "digits_8x8":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 ink levels to 8 bits
        y, classes = digits.target, [str(d) for d in range(10)]
    else:
        x, y = photo_patches(100)
        classes = ["temple", "flower"]
    np.savez(tmp_path / "mine.npz", x=x, y=y, classes=np.array(classes))
    model = TRAINED_MODEL.format(path=str(tmp_path / "mine.npz"), classes=len(classes))
    (tmp_path / "model.py").write_text(model)
    code, output, document = run_plugin(
        tmp_path, "--safety-model=model.py", "--safety-dataset=mine.npz"
    )
    assert code == 0, output[-4000:]
    assert document is not None
    assert_every_family_ran(document, "mine", common_corruptions=kind != "digits_8x8")
    described = document["metadata"]["dataset"]
    assert described["classes"] == classes
    assert described["input_shape"] == ([1, 8, 8] if kind == "digits_8x8" else [3, 32, 32])
    clean = next(r for r in document["results"] if r["check"] == "clean_accuracy")
    assert clean["n"] == len(y) and clean["value"] > 0.9  # trained on these very images
    feature_scores = [r for r in document["results"] if r["family"] == "ood_auroc" and r["skipped"]]
    assert feature_scores and all("training" in r["skipped"] for r in feature_scores)
    assert described["note"] == "uint8 pixels divided by 255"
    page = (tmp_path / "report.html").read_text()
    assert "<th>dataset</th><td>mine.npz (npz) (mine)" in page


def test_an_image_folder_runs_every_family(tmp_path):
    from PIL import Image

    images, labels = photo_patches(20)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "photos" / ("temple" if label == 0 else "flower")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k:03d}.png")
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=2))
    code, output, document = run_plugin(
        tmp_path, "--safety-model=model.py", "--safety-dataset=photos"
    )
    assert code == 0, output[-4000:]
    assert document is not None
    assert_every_family_ran(document, "photos", common_corruptions=True)
    assert document["metadata"]["dataset"]["classes"] == ["flower", "temple"]  # ImageFolder's order


def test_updated_thresholds_of_a_users_dataset_land_in_the_models_table_for_it(tmp_path):
    """--safety-update-thresholds on a dataset other than the file's writes
    [models.<model>.datasets.<dataset>.thresholds]; the next run applies exactly those bounds."""
    import tomllib

    x, y = photo_patches(20)
    np.savez(tmp_path / "defects.npz", x=x, y=y, classes=np.array(["temple", "flower"]))
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=2))
    args = (
        "--safety-model=model.py",
        "--safety-dataset=defects.npz",
        "--safety-checks=clean_accuracy,fgsm",
    )
    code, output, first = run_plugin(tmp_path, *args, "--safety-update-thresholds")
    assert code == 0, output[-4000:]
    written = tomllib.loads((tmp_path / "gate.toml").read_text())
    bounds = written["models"]["model"]["datasets"]["defects"]["thresholds"]
    assert first is not None and set(bounds) == {r["check"] for r in first["results"]}
    assert "thresholds" not in written["models"]["model"]  # nothing leaks to the file's dataset
    assert "model on defects clean_accuracy: 0.0000 ->" in output  # the terminal names the table

    (tmp_path / "results.json").unlink()
    gate = (tmp_path / "gate.toml").read_text()
    code, output, second = run_plugin(tmp_path, *args, keep_gate=True)
    assert code == 0, output[-4000:]
    assert (tmp_path / "gate.toml").read_text() == gate
    assert second is not None
    for record in second["results"]:
        assert record["threshold"] == bounds[record["check"]]
        assert "models.model.datasets.defects.thresholds" in record["threshold_source"]


def test_a_model_for_another_number_of_classes_is_a_usage_error(tmp_path):
    x, y = photo_patches(10)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=10))
    code, output, _ = run_plugin(tmp_path, "--safety-model=model.py", "--safety-dataset=mine.npz")
    assert code == 4, output[-3000:]
    assert "expected (8, 2) logits" in output and "Traceback" not in output


def test_a_bad_npz_is_a_usage_error_naming_the_file(tmp_path):
    np.savez(
        tmp_path / "mine.npz",
        x=np.random.default_rng(0).random((20, 8, 8)) * 2,
        y=np.arange(20) % 2,
    )
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=2))
    code, output, _ = run_plugin(tmp_path, "--safety-model=model.py", "--safety-dataset=mine.npz")
    assert code == 4, output[-3000:]
    assert "mine.npz" in output and "[0, 1]" in output and "Traceback" not in output


def test_a_safety_dataset_fixture_gives_the_test_images(tmp_path):
    x, y = photo_patches(15)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    (tmp_path / "conftest.py").write_text(
        "import numpy as np\nimport pytest\nimport torch\n\n\n@pytest.fixture\n"
        "def safety_dataset():\n"
        f"    data = np.load({str(tmp_path / 'mine.npz')!r})\n"
        "    images = torch.from_numpy(data['x']).permute(0, 3, 1, 2).contiguous()\n"
        "    return images, torch.from_numpy(data['y'])\n"
    )
    (tmp_path / "model.py").write_text(RGB_MODEL.format(classes=2))
    code, output, document = run_plugin(
        tmp_path, "--safety-model=model.py", "--safety-checks=clean_accuracy,calibration,ood_auroc"
    )
    assert code == 0, output[-4000:]
    assert document is not None
    described = document["metadata"]["dataset"]
    assert described["name"] == "safety_dataset" and described["input_shape"] == [3, 32, 32]
    assert described["note"] == "uint8 pixels divided by 255"
    clean = next(r for r in document["results"] if r["check"] == "clean_accuracy")
    assert clean["n"] == 30 and clean["dataset"] == "safety_dataset"


def test_mce_against_a_baseline_model_and_bad_baselines(tmp_path):
    """A model measured against its own results has mCE and relative mCE 1; a baseline of another
    dataset, of no model or a file that is not results is one usage error before any model runs."""
    photos_patches_npz(tmp_path / "defects.npz")
    model = TRAINED_MODEL.format(path=str(tmp_path / "defects.npz"), classes=2)
    (tmp_path / "model.py").write_text(model)  # trained: the corruptions hurt it
    checks = "--safety-checks=clean_accuracy,corruptions_mean,corruptions,corruptions_drop"
    args = ("--safety-model=model.py", "--safety-dataset=defects.npz", checks)
    code, output, first = run_plugin(tmp_path, *args)
    assert code == 0, output[-4000:]
    (tmp_path / "base.json").write_text((tmp_path / "results.json").read_text())
    with_mce = checks + ",corruptions_mce,corruptions_relative_mce"
    code, output, second = run_plugin(
        tmp_path, args[0], args[1], with_mce, "--safety-corruption-baseline=base.json"
    )
    assert code == 0, output[-4000:]
    assert second is not None
    values = {r["check"]: r["value"] for r in second["results"]}
    assert values["corruptions_mce"] == pytest.approx(1.0)
    assert values["corruptions_relative_mce"] == pytest.approx(1.0)
    assert "against model" in next(
        r["details"] for r in second["results"] if r["check"] == "corruptions_mce"
    )
    (tmp_path / "bad.json").write_text("{}")
    for baseline, message in (
        ("bad.json", "not a readable results JSON"),
        ("missing.json", "not a readable results JSON"),
    ):
        code, output, _ = run_plugin(tmp_path, *args, f"--safety-corruption-baseline={baseline}")
        assert code != 0 and message in output, output[-3000:]
        assert "INTERNALERROR" not in output and "Traceback" not in output
    other = json.loads((tmp_path / "base.json").read_text())
    other["metadata"]["dataset"]["name"] = "cifar10"
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, output, _ = run_plugin(tmp_path, *args, "--safety-corruption-baseline=other.json")
    assert code != 0 and "measured on the cifar10 dataset and this run tests defects" in output


def photos_patches_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = photo_patches(20)
    np.savez(path, x=x, y=y, classes=np.array(["temple", "flower"]))
    return x, y
