"""Early stopping against the full quick run, on the zoo (issue #21): the same quick gate
(``--safety-samples 1000``: 500 attacked images) with ``--safety-early-stop=off`` and ``on``, each
in a fresh process, timed; then every check whose full-run value lies farther from its threshold
than its own 95% interval must get the same verdict with early stopping.

The checks are the attack sweeps (``pgd_linf`` and ``fgsm`` at the MNIST epsilons), which early
stopping acts on, and clean accuracy; the thresholds are the zoo's (the family defaults, and this
repository's pyproject.toml for the LeNet, whose bounds sit within 0.02 of its values and so
cannot stop early). Figures go to the terminal and ``.benchmarks/early_stop.json``;
docs/PERFORMANCE.md records them. Commands::

    # the tested zoo (12 models; about 25 minutes on 2 CPU cores):
    SAFETYCHECK_DATA=... pytest benchmarks/test_early_stop_speed.py -p no:randomly -s
    # quick mode (CI): two models, 400 images (200 attacked)
    SAFETYCHECK_DATA=... pytest benchmarks/test_early_stop_speed.py --benchmark-disable -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICK_MODELS = "lenet_wide or (mixup and not pgd)"  # two models


def run_gate(tmp_path: Path, early_stop: str, samples: int, select: str | None) -> dict:
    out = tmp_path / f"early_stop_{early_stop}.json"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        f"--safety-model={REPO / 'example_models' / 'zoo.py'}",
        f"--safety-samples={samples}", "--safety-checks=clean_accuracy,pgd_linf,fgsm",
        f"--safety-early-stop={early_stop}", f"--safety-json={out}",
        *(["-k", select] if select else []),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=os.environ)
    seconds = time.perf_counter() - started
    assert out.is_file(), result.stdout[-3000:] + result.stderr[-2000:]
    return {"seconds": seconds, "records": json.loads(out.read_text())["results"]}


def clear_of_threshold(record: dict) -> bool:
    """The full run's value is farther from its threshold than its own 95% interval reaches."""
    low, high = record["ci"]
    return record["threshold"] < low or record["threshold"] > high


def test_early_stopping_keeps_every_clear_verdict_in_less_time(quick, tmp_path):
    if not os.environ.get("SAFETYCHECK_DATA"):
        pytest.skip("real data unavailable: set SAFETYCHECK_DATA")
    samples, select = (400, QUICK_MODELS) if quick else (1000, None)
    full = run_gate(tmp_path, "off", samples, select)
    early = run_gate(tmp_path, "on", samples, select)
    by_id = {(r["model"], r["check"]): r for r in early["records"]}
    clear = [r for r in full["records"] if not r["skipped"] and clear_of_threshold(r)]
    flipped = [
        (r["model"], r["check"], r["value"], r["threshold"])
        for r in clear
        if by_id[(r["model"], r["check"])]["passed"] != r["passed"]
    ]
    attacked = [r for r in full["records"] if r["family"] != "clean_accuracy"]
    stopped = [r for r in early["records"] if "stopped early" in (r["details"] or "")]
    images_full = sum(r["n"] for r in attacked)
    images_early = sum(by_id[(r["model"], r["check"])]["n"] for r in attacked)
    figures = {
        "models": len({r["model"] for r in full["records"]}),
        "samples": samples,
        "checks": len(full["records"]),
        "clear_checks": len(clear),
        "verdicts_changed_among_clear": len(flipped),
        "attack_checks_stopped_early": len(stopped),
        "attacked_images_full": images_full,
        "attacked_images_early": images_early,
        "seconds_full": round(full["seconds"], 1),
        "seconds_early_stop": round(early["seconds"], 1),
        "time_ratio": round(early["seconds"] / full["seconds"], 3),
    }
    print(f"\nearly stopping on the zoo: {figures}")
    if not quick:
        path = REPO / ".benchmarks" / "early_stop.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(figures, indent=2) + "\n")
    assert not flipped, flipped
    assert stopped  # the default bounds are far from most zoo models' values
