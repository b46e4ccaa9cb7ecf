"""Every family reads one pass of the model over the evaluated test images: clean accuracy,
calibration and the OOD scores (logit- and feature-based) share it."""

import torch
from torch import nn

from safetycheck.checks import families
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.registry import PlannedCheck
from safetycheck.gate.thresholds import SafetyConfig
from safetycheck.io.models import ModelUnderTest
from safetycheck.measures.ood import OODSettings
from safetycheck.run.runner import run_check


class Counting(nn.Module):
    """A small model with a feature layer that counts the images it sees."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU())
        self.head = nn.Linear(16, 10)
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.head(self.body(x))


def test_one_pass_over_the_test_images_serves_every_family(data_root):
    model = Counting()
    settings = RunSettings(
        samples=300,
        data_root=data_root,
        ood=OODSettings(
            sets=("fmnist",),
            scores=("msp", "energy", "mahalanobis", "knn"),
            fit_samples=200,
            knn_bank=200,
            bootstrap=20,
        ),
    )
    evaluation = ModelEvaluation(ModelUnderTest("counting", model, "test"), settings)
    checks = [
        PlannedCheck(families()["clean_accuracy"], {}),
        PlannedCheck(families()["calibration"], {"metric": "ece"}),
    ]
    checks += [
        PlannedCheck(families()["ood_auroc"], {"set": "fmnist", "score": s})
        for s in settings.ood.scores
    ]
    records = [run_check(evaluation, check, SafetyConfig()).record() for check in checks]
    assert all(not r["skipped"] and r["value"] is not None for r in records), records
    # The 300 test images once, 300 Fashion-MNIST images once, and the training images the feature
    # detectors are fitted on (fit_samples, capped in quick mode at 10 per evaluated test image).
    fit = min(settings.ood.fit_samples, 10 * settings.samples)
    assert model.seen == 300 + 300 + fit
