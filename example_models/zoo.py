"""The model zoo, every trained member as one dict of named models:

    pytest --safety-model=example_models/zoo.py        # the whole suite on every trained model
    safetycheck study example_models/zoo.py --out study/

Models whose weights are not trained yet are left out (``python -m example_models.train --all``
trains them); the ensembles appear once all their members are trained. Each model carries its
``family`` (baseline, larger, ensemble, augmentation, adversarial training, ordering), which the
study uses to colour its plots. The ensemble members ``lenet_seed1``..``lenet_seed4`` are not
tested on their own; load one with :func:`load`.
"""

from pathlib import Path

import torch
from torch import nn

try:
    from example_models.lenet import LeNet5
    from example_models.recipes import ENSEMBLES, ZOO
    from example_models.small_cnn import SmallCNN
except ImportError:  # loaded by file path: safetycheck puts this folder on sys.path
    from lenet import LeNet5
    from recipes import ENSEMBLES, ZOO
    from small_cnn import SmallCNN

from safetycheck.io.models import Ensemble

WEIGHTS = Path(__file__).with_name("weights")
TESTED = (
    "lenet",
    "lenet_wide",
    "ensemble3",
    "ensemble5",
    "cutout",
    "mixup",
    "fgsm_at_0.1",
    "fgsm_at_0.3",
    "pgd_at_0.1",
    "pgd_at_0.3",
    "mixup_then_pgd_at",
    "pgd_at_then_mixup",
    "ibp_small_cnn",
)


def trained(name: str) -> bool:
    members = ENSEMBLES.get(name, [name])
    return all((WEIGHTS / f"{member}.pt").is_file() for member in members)


def load(name: str) -> nn.Module:
    """The trained zoo model ``name`` (an :class:`Ensemble` for ``ensemble3``/``ensemble5``), in
    eval mode."""
    if name in ENSEMBLES:
        model = Ensemble([load(member) for member in ENSEMBLES[name]])
        model.family = "ensemble"
    else:
        recipe = ZOO[name]
        model = SmallCNN() if recipe.architecture == "small_cnn" else LeNet5(width=recipe.width)
        model.load_state_dict(
            torch.load(WEIGHTS / f"{name}.pt", map_location="cpu", weights_only=True)
        )
        model.family = recipe.family
    model.name = name
    return model.eval()


def safety_model() -> dict[str, nn.Module]:
    return {name: load(name) for name in TESTED if trained(name)}
