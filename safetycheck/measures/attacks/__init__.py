"""Adversarial attacks on image classifiers, each a frozen dataclass whose fields are its threat
model, called as ``attack(model, images, labels) -> AttackResult``.

- :class:`FGSM`: one signed gradient step (Linf);
- :class:`PGD`: projected gradient descent with random starts and restarts (Linf, L2);
- :class:`APGD`: Auto-PGD with the CE or DLR loss, untargeted or targeted (Linf, L2);
- :class:`FAB`: the fast adaptive boundary attack, minimal perturbations, targeted (FAB-T) or
  untargeted (Linf, L2);
- :class:`Square`: the gradient-free Square attack (Linf).

Named cascades of them for robust-accuracy sweeps live in
:mod:`safetycheck.measures.attacks.cascades`, and the trustworthiness diagnostics in
:mod:`safetycheck.measures.attacks.diagnostics`.
"""

from safetycheck.measures.attacks.apgd import APGD
from safetycheck.measures.attacks.base import AttackResult
from safetycheck.measures.attacks.fab import FAB
from safetycheck.measures.attacks.fgsm import FGSM
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.attacks.square import Square

__all__ = ["APGD", "AttackResult", "FAB", "FGSM", "PGD", "Square"]
