"""Train the example models on the real MNIST training set, seeded and reproducible.

    SAFETYCHECK_DATA=../shared/data python -m example_models.train --model lenet

writes ``example_models/weights/<model>.pt`` (a state_dict) and records the hyperparameters,
the training time and the test accuracy in ``example_models/weights/manifest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from example_models.lenet import LeNet5
from safetycheck.data import load_split

WEIGHTS_DIR = Path(__file__).with_name("weights")
ARCHITECTURES = {
    "lenet": lambda: LeNet5(width=1),
}


def train(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int,
          batch_size: int, lr: float, seed: int) -> list[float]:
    """Adam with a cosine learning-rate decay; returns the mean training loss per epoch."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = (len(labels) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    losses = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(labels), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(labels))
        print(f"epoch {epoch + 1}/{epochs}: train loss {losses[-1]:.4f}", flush=True)
    return losses


@torch.inference_mode()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        (model(images[i:i + 1000]).argmax(1) == labels[i:i + 1000]).sum().item()
        for i in range(0, len(labels), 1000)
    )
    return correct / len(labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="lenet")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads; fixed for reproducibility")
    parser.add_argument("--data", default=None, help="data root (default: $SAFETYCHECK_DATA)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_set = load_split("mnist", "train", root=args.data)
    test_set = load_split("mnist", "test", root=args.data)
    model = ARCHITECTURES[args.model]()

    started = time.perf_counter()
    losses = train(model, train_set.images, train_set.labels, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, test_set.images, test_set.labels)
    print(f"{args.model}: test accuracy {test_accuracy:.4f} after {seconds:.0f} s", flush=True)

    out = args.out or WEIGHTS_DIR / f"{args.model}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    manifest_path = out.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[args.model] = {
        "weights": out.name,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "hyperparameters": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "threads")},
        "optimiser": "Adam, cosine learning-rate decay to 0, cross-entropy, no augmentation",
        "train_loss_per_epoch": [round(x, 5) for x in losses],
        "training_seconds": round(seconds, 1),
        "mnist_test_accuracy": test_accuracy,
        "trained_on": f"{platform.machine()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        "command": f"python -m example_models.train --model {args.model} --epochs {args.epochs} --seed {args.seed}",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
