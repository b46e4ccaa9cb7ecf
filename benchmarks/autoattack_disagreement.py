"""Which images of a part of the AutoAttack benchmark the two sides judge differently, and why.

    SAFETYCHECK_DATA=../shared/data python benchmarks/autoattack_disagreement.py lenet 600:900

Runs our ``autoattack`` and the official AutoAttack (``fra31/auto-attack``, installed by hand; this
script needs it) on images [start, stop) of the benchmark's 1,000 with the benchmark's seeds, and
prints: the official code's robust accuracy after each of its attacks (its own verbose log), ours
per attack, and every image one side broke and the other left robust. Each such image is then
attacked again by ours with seeds 1 to ``SEEDS`` (each seed a new random start for APGD and FAB
and new Square draws): an image some seed breaks was lost to a random start, not to a weaker
attack. Not a test: a diagnosis for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

# The benchmark beside this script (python puts its folder first on sys.path).
from test_autoattack_speed import CASES, _model, attacked_images, still_robust

from safetycheck.io.data import load_split, resolve_data_root
from safetycheck.measures.attacks.cascades import cascade
from safetycheck.measures.robustness import robust_accuracy_sweep

SEEDS = 4


def _ours(model, images, labels, eps, seed):
    sweep = robust_accuracy_sweep(model, images, labels, [eps], cascade("autoattack", seed=seed))
    return sweep.robust[eps], dict(sweep.broken_by[eps])


def main(name: str, part: str) -> None:
    from autoattack import AutoAttack

    # The zoo (example_models/) is imported from the project root, this script's parent folder.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    start, stop = (int(bound) for bound in part.split(":"))
    eps = CASES[name]
    images, labels = (
        tensor[start:stop]
        for tensor in attacked_images(load_split("mnist", "test", root=resolve_data_root()))
    )
    model = _model(name).eval()
    ours, broken_by = _ours(model, images, labels, eps, seed=0)
    print(f"ours: robust {ours.float().mean():.3f}, broken by {broken_by}")
    official = AutoAttack(model, norm="Linf", eps=eps, version="standard", device="cpu")
    official.seed = 0
    torch.manual_seed(0)
    print("official AutoAttack, its own log:")
    adversarial = official.run_standard_evaluation(images, labels, bs=500)
    theirs = still_robust(model, adversarial, images, labels, eps)
    print(f"official: robust {theirs.float().mean():.3f}")
    for index in torch.nonzero(ours != theirs).flatten().tolist():
        breaker = "official" if ours[index] else "ours"
        one = slice(index, index + 1)
        again = {
            seed: bool(_ours(model, images[one], labels[one], eps, seed)[0][0])
            for seed in range(1, SEEDS + 1)
        }
        print(
            f"image {start + index} (label {int(labels[index])}): broken only by {breaker}; "
            f"ours with seeds 1-{SEEDS} leaves it robust: {again}"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])
