"""Speed and memory of the dataset-file loaders (safetycheck/io/formats.py, issue #18), with the
peers measured in the same run (pytest-benchmark):

    pytest benchmarks/test_dataset_loading.py -p no:randomly -s

Target (issue #18): a 10,000 x 3 x 32 x 32 npz or CIFAR-10 batch loads in under 2 s holding at
most two copies of the images (a copy: the returned float32 tensor's bytes); an ImageFolder of
10,000 small PNGs loads in parallel workers. The files are written here, in the official formats
(tests/unit/official_formats.py), from seeded random pixels: no download. Peers: torchvision's own
``CIFAR10`` dataset plus ``ToTensor`` on the same batch (its MD5 check of the official file
switched off), ``np.load`` alone for the npz, and torchvision's ``ImageFolder`` plus ``ToTensor``
iterated in this process for the PNG folder. Peak memory is tracemalloc's peak (numpy's
allocations are traced; every large buffer of these two loaders is numpy's or Python's).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from safetycheck.io.formats import default_workers, load_cifar10, load_image_folder, load_npz

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "unit"))
from official_formats import random_images, write_cifar10

FULL_IMAGES = 10_000
QUICK_IMAGES = 2_000
FULL_PNGS = 10_000
QUICK_PNGS = 1_200  # above PARALLEL_MIN_IMAGES, so the quick run uses the workers too
TIME_LIMIT_S = 2.0
COPIES_LIMIT = 2.0
FIGURES: dict = {}


def _count(quick: bool) -> int:
    return QUICK_IMAGES if quick else FULL_IMAGES


@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    import torchvision  # noqa: F401  (imported once here, not inside the first timed call)

    quick = bool(request.config.getoption("benchmark_disable", False))
    root = tmp_path_factory.mktemp("formats")
    count = _count(quick)
    images = random_images(count, seed=0)
    labels = np.arange(count) % 10
    write_cifar10(root, images, labels, split="test")
    np.savez(root / "images.npz", x=images, y=labels)
    folder = root / "pngs"
    pngs = QUICK_PNGS if quick else FULL_PNGS
    for name in ("a", "b", "c", "d"):
        (folder / name).mkdir(parents=True)
    for k in range(pngs):
        Image.fromarray(images[k % count].transpose(1, 2, 0)).save(
            folder / "abcd"[k % 4] / f"{k:05d}.png", compress_level=1
        )
    return {"root": root, "npz": root / "images.npz", "folder": folder, "pngs": pngs}


def _peak_copies(load, image_bytes: int) -> float:
    tracemalloc.start()
    try:
        result = load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak / image_bytes


def _best_of(function, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _torchvision_cifar10(root: Path):
    import torchvision.datasets as tv
    from torchvision.transforms import ToTensor

    with (
        mock.patch.object(tv.CIFAR10, "_check_integrity", lambda self: True),
        mock.patch("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True),
    ):
        dataset = tv.CIFAR10(str(root), train=False, download=False, transform=ToTensor())
    images = torch.stack([dataset[k][0] for k in range(len(dataset))])
    return images, torch.tensor(dataset.targets)


def test_cifar10_batch(benchmark, files, quick, capsys):
    count = _count(quick)
    result = benchmark.pedantic(lambda: load_cifar10(files["root"]), rounds=1 if quick else 5)
    assert tuple(result.images.shape) == (count, 3, 32, 32)
    ours = _best_of(lambda: load_cifar10(files["root"]), 1 if quick else 5)
    theirs_start = time.perf_counter()
    theirs, _ = _torchvision_cifar10(files["root"])
    theirs_s = time.perf_counter() - theirs_start
    assert torch.equal(theirs, result.images)
    copies = _peak_copies(lambda: load_cifar10(files["root"]), result.images.nbytes)
    benchmark.extra_info.update(
        {"images": count, "ours_s": round(ours, 4), "torchvision_s": round(theirs_s, 3)}
    )
    benchmark.extra_info["peak_copies"] = round(copies, 2)
    FIGURES["cifar10"] = (ours, theirs_s, copies)
    with capsys.disabled():
        print(
            f"\ndataset loading, CIFAR-10 batch of {count}: ours {ours:.3f} s, peak "
            f"{copies:.2f} copies of the images; torchvision CIFAR10 + ToTensor {theirs_s:.2f} s "
            f"({theirs_s / ours:.0f}x ours)"
        )
    assert copies <= COPIES_LIMIT, f"CIFAR-10 load held {copies:.2f} copies of the images"
    if not quick:
        assert ours < TIME_LIMIT_S, f"CIFAR-10 batch took {ours:.2f} s (target {TIME_LIMIT_S} s)"


def test_npz(benchmark, files, quick, capsys):
    count = _count(quick)
    result = benchmark.pedantic(lambda: load_npz(files["npz"]), rounds=1 if quick else 5)
    assert tuple(result.images.shape) == (count, 3, 32, 32)

    def read_only():
        with np.load(files["npz"], allow_pickle=False) as archive:
            return archive["x"], archive["y"]

    ours = _best_of(lambda: load_npz(files["npz"]), 1 if quick else 5)
    peer = _best_of(read_only, 1 if quick else 5)
    copies = _peak_copies(lambda: load_npz(files["npz"]), result.images.nbytes)
    benchmark.extra_info.update(
        {"images": count, "ours_s": round(ours, 4), "np_load_s": round(peer, 4)}
    )
    benchmark.extra_info["peak_copies"] = round(copies, 2)
    FIGURES["npz"] = (ours, peer, copies)
    with capsys.disabled():
        print(
            f"\ndataset loading, uint8 npz of {count}: ours {ours:.3f} s, peak {copies:.2f} "
            f"copies of the images; np.load alone {peer:.3f} s (ours = {ours / peer:.1f}x: "
            "validation and the float32 conversion)"
        )
    assert copies <= COPIES_LIMIT, f"npz load held {copies:.2f} copies of the images"
    if not quick:
        assert ours < TIME_LIMIT_S, f"npz took {ours:.2f} s (target {TIME_LIMIT_S} s)"


def test_image_folder(benchmark, files, quick, capsys):
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    workers = default_workers(files["pngs"])
    result = benchmark.pedantic(lambda: load_image_folder(files["folder"]), rounds=1)
    ours = _best_of(lambda: load_image_folder(files["folder"]), 1 if quick else 3)
    serial = _best_of(lambda: load_image_folder(files["folder"], workers=0), 1)

    def torchvision_serial():
        dataset = ImageFolder(str(files["folder"]), transform=ToTensor())
        return torch.stack([dataset[k][0] for k in range(len(dataset))])

    start = time.perf_counter()
    theirs = torchvision_serial()
    theirs_s = time.perf_counter() - start
    assert torch.equal(theirs, result.images)
    benchmark.extra_info.update(
        {
            "images": files["pngs"],
            "workers": workers,
            "ours_s": round(ours, 3),
            "ours_workers_0_s": round(serial, 3),
            "torchvision_serial_s": round(theirs_s, 3),
        }
    )
    with capsys.disabled():
        print(
            f"\ndataset loading, ImageFolder of {files['pngs']} 32x32 PNGs: ours {ours:.2f} s "
            f"({workers} workers), ours in-process {serial:.2f} s; torchvision ImageFolder + "
            f"ToTensor in-process {theirs_s:.2f} s ({theirs_s / ours:.1f}x ours)"
        )
    assert workers >= 2 or default_workers(10**6) == 0  # parallel wherever there are 2+ CPUs
