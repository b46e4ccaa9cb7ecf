"""Train the example models (the zoo) on the real MNIST training set, seeded and reproducible.

    SAFETYCHECK_DATA=../shared/data python -m example_models.train --model lenet
    SAFETYCHECK_DATA=../shared/data python -m example_models.train --all      # the whole zoo
    SAFETYCHECK_DATA=../shared/data python -m example_models.train --model fashion_mnist
    python -m example_models.train --list

Each recipe names its dataset (MNIST unless it says otherwise; ``fashion_mnist`` trains on
Fashion-MNIST) and is trained on that dataset's training split and scored on its test split.

writes ``example_models/weights/<model>.pt`` (a state_dict) and records the recipe, the
hyperparameters, the training time and the test accuracy in \
``example_models/weights/manifest.json``.
The recipes are in :mod:`example_models.recipes`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from example_models.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from example_models.lenet import MNIST_MEAN, MNIST_STD, LeNet5
from example_models.linear import LinearClassifier
from example_models.recipes import RECIPES, Phase, Recipe, batch_loss
from example_models.small_cnn import SmallCNN
from safetycheck.io.data import load_split

WEIGHTS_DIR = Path(__file__).with_name("weights")
# Each dataset's training-set pixel mean and standard deviation: the LeNet-5's input normalisation.
NORMALISATION = {
    "mnist": (MNIST_MEAN, MNIST_STD),
    "fashion_mnist": (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
}


def train(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    phases: tuple[Phase, ...] | None = None,
) -> list[float]:
    """Adam with a cosine learning-rate decay over all phases; returns the mean training loss per
    epoch. ``phases`` default to plain cross-entropy for ``epochs`` epochs."""
    phases = phases or (Phase("plain", epochs),)
    epochs = sum(phase.epochs for phase in phases)
    schedule_of_epochs = [phase for phase in phases for _ in range(phase.epochs)]
    epoch_within_phase = [k for phase in phases for k in range(phase.epochs)]
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = (len(labels) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    losses = []
    model.train()
    for epoch, phase in enumerate(schedule_of_epochs):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        epoch_of_phase = epoch_within_phase[epoch]
        ramp = phase.params.get("ramp_epochs", 1) * steps_per_epoch
        for step, start in enumerate(range(0, len(labels), batch_size)):
            batch = order[start : start + batch_size]
            # Adversarial phases ramp eps up over their first epoch (from a tenth of it), or
            # over ``ramp_epochs`` epochs where the phase says so.
            warmup = min(1.0, 0.1 + 0.9 * (epoch_of_phase * steps_per_epoch + step) / ramp)
            loss = batch_loss(model, phase, images[batch], labels[batch], generator, warmup)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(labels))
        print(f"epoch {epoch + 1}/{epochs} ({phase.kind}): train loss {losses[-1]:.4f}", flush=True)
    return losses


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        (model(images[i : i + 1000]).argmax(1) == labels[i : i + 1000]).sum().item()
        for i in range(0, len(labels), 1000)
    )
    return correct / len(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", action="append", choices=sorted(RECIPES), help="model to train; repeatable"
    )
    parser.add_argument(
        "--all", action="store_true", help="train every model that has no weights yet"
    )
    parser.add_argument("--list", action="store_true", help="list the zoo's recipes and exit")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads; fixed for reproducibility"
    )
    parser.add_argument("--data", default=None, help="data root (default: $SAFETYCHECK_DATA)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    if args.list:
        for name, recipe in RECIPES.items():
            print(
                f"{name:<20} {recipe.family:<22} {recipe.dataset}, width {recipe.width}, "
                f"seed {recipe.seed}: {recipe.describe()}"
            )
        return
    names = args.model or (
        [name for name in RECIPES if not (args.out_dir / f"{name}.pt").exists()] if args.all else []
    )
    if not names:
        parser.error("name a model with --model NAME, or give --all (see --list)")

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    for name in names:
        recipe = RECIPES[name]
        # load_split caches each split per process: a dataset is read once for all its recipes
        train_set = load_split(recipe.dataset, "train", root=args.data)
        test_set = load_split(recipe.dataset, "test", root=args.data)
        train_one(name, recipe, train_set, test_set, args)


def build_model(recipe: Recipe) -> torch.nn.Module:
    """The untrained model of ``recipe`` (built after seeding, so its initialisation is the
    seed's)."""
    if recipe.architecture == "linear":
        return LinearClassifier()
    if recipe.architecture == "small_cnn":
        return SmallCNN()
    mean, std = NORMALISATION[recipe.dataset]
    return LeNet5(width=recipe.width, mean=mean, std=std)


def architecture_name(recipe: Recipe, model: torch.nn.Module) -> str:
    """As the manifest names it: MNIST's LeNet5(width=1) as before; another dataset's LeNet-5 with
    its normalisation."""
    name = type(model).__name__
    if recipe.architecture != "lenet":
        return name
    if recipe.dataset == "mnist":
        return f"{name}(width={recipe.width})"
    mean, std = NORMALISATION[recipe.dataset]
    return f"{name}(width={recipe.width}, mean={mean}, std={std})"


def train_one(name: str, recipe: Recipe, train_set, test_set, args) -> None:
    torch.manual_seed(recipe.seed)
    model = build_model(recipe)
    print(f"{name}: {recipe.dataset}, {recipe.describe()}", flush=True)
    started = time.perf_counter()
    losses = train(
        model,
        train_set.images,
        train_set.labels,
        epochs=recipe.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=recipe.seed,
        phases=recipe.phases,
    )
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, test_set.images, test_set.labels)
    print(f"{name}: test accuracy {test_accuracy:.4f} after {seconds:.0f} s", flush=True)

    out = args.out_dir / f"{name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    manifest_path = out.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {
        "weights": out.name,
        "family": recipe.family,
        "dataset": recipe.dataset,
        "architecture": architecture_name(recipe, model),
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": recipe.describe(),
        "hyperparameters": {
            "epochs": recipe.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": recipe.seed,
            "threads": args.threads,
        },
        "optimiser": "Adam, cosine learning-rate decay to 0 over all epochs, cross-entropy",
        "train_loss_per_epoch": [round(x, 5) for x in losses],
        "training_seconds": round(seconds, 1),
        # "mnist_test_accuracy" for MNIST, as the study's training table reads it
        f"{recipe.dataset}_test_accuracy": test_accuracy,
        "trained_on": (
            f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch "
            f"{torch.__version__}"
        ),
        "command": f"python -m example_models.train --model {name}",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
