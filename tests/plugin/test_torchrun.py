"""The plugin under torchrun (issue #22), end to end with real processes: ``torchrun
--nproc-per-node=N -m pytest`` with Gloo on this machine's CPU gives the results of one process,
bit for bit, reported once by rank 0; bad jobs fail on every rank with one message naming the rank,
and write nothing that looks like a complete report.

The images are real photographs (scikit-learn's two sample images, cut into 32x32 RGB patches), so
that the common corruptions run too; tests/real_data/test_torchrun_mnist.py does the same on MNIST.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

MODEL = """
import os
import numpy as np
import torch
from torch import nn

def safety_model():
    data = np.load({path!r})
    x = torch.from_numpy(data["x"]).float().permute(0, 3, 1, 2) / 255.0
    y = torch.from_numpy(data["y"]).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 15 * 15, 2))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    {tamper}
    return model.eval()
"""

GATE = """
[thresholds]
clean_accuracy = 0.0
pgd_linf = 0.0
fgsm = 0.0
calibration = 1000.0
corruptions_mean = 0.0
corruptions = 0.0
corruptions_drop = 1.0
"""

CHECKS = "--safety-checks=clean_accuracy,fgsm,pgd_linf,calibration,corruptions_mean"


def write_job(tmp_path: Path, tamper: str = "") -> None:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    patches, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        for _ in range(12):
            i, j = rng.integers(0, photo.shape[0] - 32), rng.integers(0, photo.shape[1] - 32)
            patches.append(photo[i : i + 32, j : j + 32])
            labels.append(label)
    np.savez(tmp_path / "photos.npz", x=np.stack(patches), y=np.array(labels),
             classes=np.array(["temple", "flower"]))  # fmt: skip
    path = str(tmp_path / "photos.npz")
    (tmp_path / "model.py").write_text(MODEL.format(path=path, tamper=tamper))
    (tmp_path / "gate.toml").write_text(GATE)


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RANK", "WORLD"))}
    env.pop("LOCAL_RANK", None)
    return env


PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--safety-model=model.py",
               "--safety-dataset=photos.npz", "--safety-thresholds=gate.toml", CHECKS]  # fmt: skip


def serial(tmp_path: Path, *args: str, threads: str | None = None) -> subprocess.CompletedProcess:
    env = environment() | ({"OMP_NUM_THREADS": threads} if threads else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", *PYTEST_ARGS, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def torchrun(tmp_path: Path, ranks: int, *args: str, launch: list[str] | None = None
             ) -> subprocess.CompletedProcess:  # fmt: skip
    """``torchrun --standalone --nproc-per-node=ranks -m pytest ...`` (or ``launch`` instead of
    ``-m pytest`` and its arguments)."""
    command = launch or ["-m", "pytest", *PYTEST_ARGS, *args]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={ranks}", *command],
        cwd=tmp_path, env=environment(), capture_output=True, text=True, check=False,
        timeout=600,
    )  # fmt: skip


def results(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


def test_three_ranks_give_one_processs_results_reported_once(tmp_path):
    write_job(tmp_path)
    # Two attacked images over three ranks: one rank attacks none, and the counts still add up.
    options = ("--safety-attack-samples=2",)
    # The same settings: torchrun gives each rank one intra-op thread (OMP_NUM_THREADS=1), and a
    # thread count is part of what a float sum rounds to (in the model file's training, too).
    one = serial(tmp_path, *options, "--safety-json=serial.json", threads="1")
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    job = torchrun(tmp_path, 3, *options, "--safety-json=job.json", "--junitxml=job.xml",
                   "--safety-report=job.html")  # fmt: skip
    output = job.stdout + job.stderr
    assert job.returncode == 0, output[-4000:]
    assert results(tmp_path / "job.json") == results(tmp_path / "serial.json")
    metadata = json.loads((tmp_path / "job.json").read_text())["metadata"]
    assert metadata["ranks"] == {"world_size": 3, "backend": "gloo"}
    attacked = [r for r in results(tmp_path / "job.json") if r["family"] == "pgd_linf"]
    assert attacked and all(r["n"] == 2 for r in attacked)
    assert any(
        r["family"] == "corruptions_mean" and r["n"] > 0 for r in results(tmp_path / "job.json")
    )
    # One report: rank 0's terminal summary and files, nothing from the other ranks.
    assert output.count("safetycheck results") == 1, output[-4000:]
    assert output.count(" passed in ") == 1, output[-4000:]
    assert (tmp_path / "job.xml").read_text().count("<testcase") == len(
        results(tmp_path / "job.json")
    )
    assert (tmp_path / "job.html").is_file()


def test_a_failing_gate_fails_the_job_after_rank_0_has_reported(tmp_path):
    write_job(tmp_path)
    (tmp_path / "gate.toml").write_text(GATE.replace("calibration = 1000.0", "calibration = 0.0"))
    job = torchrun(tmp_path, 2, "--safety-json=job.json")
    assert job.returncode != 0
    assert (tmp_path / "job.json").is_file()  # torchrun did not stop rank 0 before it wrote
    assert any(not r["passed"] for r in results(tmp_path / "job.json"))


def test_a_rank_with_other_weights_is_refused_before_any_attack(tmp_path):
    write_job(tmp_path, tamper=(
        "if os.environ.get('RANK') == '1':\n"
        "        torch.nn.init.zeros_(model[0].bias)"
    ))  # fmt: skip
    job = torchrun(tmp_path, 2, "--safety-json=job.json")
    output = job.stdout + job.stderr
    assert job.returncode != 0
    assert "rank 1 differs from rank 0 in the weights of model model" in output, output[-3000:]
    assert output.count("differs from rank 0") == 1
    assert "[pgd_linf" not in output and not (tmp_path / "job.json").exists()


def test_a_rank_with_other_options_is_refused_naming_the_option(tmp_path):
    write_job(tmp_path)
    command = " ".join([sys.executable, "-m", "pytest", *PYTEST_ARGS, "--safety-json=job.json"])
    script = f'exec {command} $( [ "$RANK" = 1 ] && echo --safety-seed=7 )'
    job = torchrun(tmp_path, 2, launch=["--no-python", "bash", "-c", script])
    output = job.stdout + job.stderr
    assert job.returncode != 0
    assert "rank 1 differs from rank 0 in --safety-seed: 7 != None" in output, output[-3000:]
    assert output.count("differs from rank 0") == 1 and not (tmp_path / "job.json").exists()


def test_a_rank_that_fails_mid_run_fails_the_job_and_no_report_is_written(tmp_path):
    write_job(tmp_path, tamper=(
        "if os.environ.get('RANK') == '1':\n"
        "        forward = model.forward\n"
        "        def broken(x):\n"
        "            if x.requires_grad:\n"
        "                raise RuntimeError('the attack broke on this rank')\n"
        "            return forward(x)\n"
        "        model.forward = broken"
    ))  # fmt: skip
    job = torchrun(tmp_path, 2, "--safety-json=job.json", "--safety-report=job.html")
    output = job.stdout + job.stderr
    assert job.returncode != 0
    assert "failed on rank 1 of 2: RuntimeError: the attack broke on this rank" in output, output[
        -3000:
    ]
    assert "no report written" in output
    assert not (tmp_path / "job.json").exists() and not (tmp_path / "job.html").exists()


def test_a_killed_rank_fails_the_job_and_no_report_is_written(tmp_path):
    write_job(tmp_path, tamper=(
        "if os.environ.get('RANK') == '1':\n"
        "        import signal\n"
        "        forward = model.forward\n"
        "        def killed(x):\n"
        "            if x.requires_grad:\n"
        "                os.kill(os.getpid(), signal.SIGKILL)\n"
        "            return forward(x)\n"
        "        model.forward = killed"
    ))  # fmt: skip
    job = torchrun(tmp_path, 2, "--safety-json=job.json", "--safety-dist-timeout=60")
    assert job.returncode != 0
    assert "Signals.SIGKILL" in job.stderr or "SIGKILL" in job.stderr, job.stderr[-3000:]
    assert not (tmp_path / "job.json").exists()


def test_cuda_on_ranks_without_a_gpu_is_one_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: every rank has one")
    write_job(tmp_path)
    job = torchrun(tmp_path, 2, "--safety-device=cuda", "--safety-json=job.json")
    output = job.stdout + job.stderr
    assert job.returncode != 0
    assert output.count("sees no GPU here") == 1, output[-3000:]
    assert "rank 1 of 2 stopped with the job; rank 0 prints why" in output
    assert not (tmp_path / "job.json").exists()


def test_a_safety_model_fixture_joins_the_job_at_collection(tmp_path):
    write_job(tmp_path)
    (tmp_path / "conftest.py").write_text(
        "import pytest\nfrom model import safety_model as build\n\n"
        "@pytest.fixture(scope='session')\ndef safety_model():\n    return build()\n"
    )
    args = [a for a in PYTEST_ARGS if a != "--safety-model=model.py"]
    job = torchrun(
        tmp_path, 2,
        launch=["-m", "pytest", *args, "--safety-json=job.json", "--junitxml=job.xml"],
    )  # fmt: skip
    output = job.stdout + job.stderr
    assert job.returncode == 0, output[-4000:]
    assert json.loads((tmp_path / "job.json").read_text())["metadata"]["ranks"]["world_size"] == 2
    assert output.count("safetycheck results") == 1 and output.count(" passed in ") == 1
    assert (tmp_path / "job.xml").read_text().count("<testcase") == len(
        results(tmp_path / "job.json")
    )


def test_a_run_without_models_stays_out_of_the_process_group(tmp_path):
    """A project's own tests under torchrun (a DDP test, say) build their own process group; the
    plugin, installed everywhere, must not have joined one first."""
    (tmp_path / "test_ddp.py").write_text(
        "import torch.distributed as dist\n\n"
        "def test_the_process_group_is_mine():\n"
        "    assert not dist.is_initialized()\n"
        "    dist.init_process_group('gloo')\n"
        "    dist.barrier()\n"
        "    dist.destroy_process_group()\n"
    )
    job = torchrun(tmp_path, 2, launch=["-m", "pytest", "-q", "-p", "no:cacheprovider"])
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
