"""The sharding rules of a torchrun job (safetycheck.core.distributed), as invariants: slices cover
every item once, in order; joining slice results gives the whole; a one-process Shard is a no-op.
The multi-process behaviour itself is tested end to end with torchrun in
tests/plugin/test_torchrun.py and tests/real_data/test_torchrun_mnist.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from safetycheck.core.distributed import Shard, slices, torchrun_environment, weights_digest
from safetycheck.core.errors import ConfigError
from safetycheck.measures.attacks.pgd import PGD
from safetycheck.measures.ood_scores import join_outputs, model_outputs
from safetycheck.measures.robustness import _Pass, _sweep_images


@given(n=st.integers(0, 5000), world=st.integers(1, 64), align=st.integers(1, 700))
def test_the_slices_cover_every_item_once_in_order_in_whole_batches(n, world, align):
    bounds = slices(n, world, align)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(start % align == 0 or start == n for start, _ in bounds)
    batches = [-(-(stop - start) // align) for start, stop in bounds]
    assert max(batches) - min(batches) <= 1  # the batches are shared out evenly
    if align == 1:
        assert sum(stop - start for start, stop in bounds) == n


def test_more_ranks_than_items_leaves_some_ranks_without_any():
    assert [Shard(r, 5).part(2) for r in range(5)] == [
        slice(0, 0), slice(0, 0), slice(0, 1), slice(1, 1), slice(1, 2)
    ]  # fmt: skip


def test_a_single_process_shard_just_computes():
    shard = Shard()
    assert not shard.active and shard.reports
    assert shard.run("x", lambda: 3) == [3]
    assert torch.equal(shard.cat("x", 4, lambda rows: torch.arange(4)[rows]), torch.arange(4))
    shard.agree("x", {"a": "1"})  # nothing to compare with
    assert shard.all_max(2) == 2
    with pytest.raises(ValueError, match="boom"):  # one process: the error itself, unchanged
        shard.run("x", lambda: (_ for _ in ()).throw(ValueError("boom")))


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"RANK": "0", "WORLD_SIZE": "1"}, None),
        (
            {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
             "MASTER_PORT": "1"},
            {"rank": 1, "world_size": 2, "local_rank": 1},
        ),
    ],
)  # fmt: skip
def test_the_torchrun_environment_is_read(env, expected):
    assert torchrun_environment(env) == expected


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "x", "WORLD_SIZE": "2"}, "not numbers"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "inconsistent"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, "MASTER_ADDR, MASTER_PORT is not set"),
    ],
)
def test_a_broken_torchrun_environment_is_one_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        torchrun_environment(env)


def test_the_weights_digest_sees_one_changed_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = weights_digest(model)
    assert weights_digest(model) == before
    with torch.no_grad():
        model[0].weight[0, 0] += 1e-7
    assert weights_digest(model) != before


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


@given(world=st.integers(1, 5), n=st.integers(1, 12))
def test_joined_slices_of_model_outputs_are_the_whole_sets(world, n):
    torch.manual_seed(1)
    model, images = _Net().eval(), torch.rand(n, 1, 4, 4)
    whole_logits, (whole,) = model_outputs(model, images)
    parts = [
        model_outputs(model, images[Shard(r, world).part(n)])
        for r in range(world)
        if Shard(r, world).part(n).start < Shard(r, world).part(n).stop
    ]
    logits, (joined,) = join_outputs(parts)
    assert torch.allclose(logits, whole_logits, atol=1e-6)
    assert whole.features is not None and joined.features is not None
    assert torch.allclose(joined.features, whole.features, atol=1e-6)
    assert joined.head is not None and whole.head is not None
    assert all(torch.equal(a, b) for a, b in zip(joined.head, whole.head, strict=True))


def test_a_sweep_over_slices_joins_to_the_sweep_over_all():
    """Per-image seeding makes an attacked image's verdict independent of its neighbours, so the
    sweep's slices, joined, are the whole sweep: verdicts, counts and passes."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    images, labels = torch.rand(11, 1, 4, 4), torch.randint(0, 3, (11,))
    correct = model(images).argmax(1) == labels
    attacks = [("pgd", lambda eps: PGD(eps=eps, norm="Linf", seed=0, steps=5))]
    whole = _sweep_images(model, images, labels, correct, attacks, [0.05, 0.2], 4)
    parts = [
        _sweep_images(model, images[p], labels[p], correct[p], attacks, [0.05, 0.2], 4)
        for p in (slice(0, 4), slice(4, 7), slice(7, 11))
    ]
    joined = _Pass.join(parts)
    assert joined.broken_by == whole.broken_by
    assert joined.forward_passes == whole.forward_passes
    assert all(torch.equal(joined.robust[e], whole.robust[e]) for e in (0.05, 0.2))


def test_a_corrupted_set_made_in_slices_is_the_set_made_whole():
    """A torchrun job's ranks each corrupt their slice of the test set (and its batches start
    elsewhere than one process's): every corruption must make each image from its own seed and
    index alone, whatever else is in its batch."""
    from sklearn.datasets import load_sample_images

    from safetycheck.measures.common_corruptions import NAMES
    from safetycheck.measures.common_corruptions.dataset import generate

    photo = load_sample_images().images[0]
    images = torch.stack(
        [torch.from_numpy(photo[i : i + 32, j : j + 32].copy()) for i, j in
         [(0, 0), (40, 70), (100, 200), (200, 5), (300, 400), (150, 300), (50, 500)]]
    ).permute(0, 3, 1, 2).float() / 255.0  # fmt: skip
    indices = torch.tensor([3, 8, 13, 21, 34, 55, 89])
    for name in NAMES:
        whole = generate(images, name, 3, seed=0, params="cifar", indices=indices)
        parts = [
            generate(images[p], name, 3, seed=0, params="cifar", indices=indices[p])
            for p in (slice(0, 2), slice(2, 3), slice(3, 7))
        ]
        assert torch.equal(torch.cat(parts), whole), name
