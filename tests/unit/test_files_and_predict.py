"""The one atomic file writer (safetycheck.core.files) and the one batched forward pass
(safetycheck.io.predict)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

from safetycheck.core.files import atomic_writer, write_atomic
from safetycheck.io.predict import predict

# ---- write_atomic / atomic_writer -------------------------------------------------------------


def test_write_atomic_writes_text_and_bytes_and_replaces(tmp_path):
    path = tmp_path / "out.json"
    write_atomic(path, "first\n")
    assert path.read_bytes() == b"first\n"
    write_atomic(path, "zweite \u00fcbung\r\n")  # newlines are written as they are
    assert path.read_bytes() == "zweite \u00fcbung\r\n".encode()
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_atomic_replaces_by_rename(tmp_path):
    """A reader holding the old file keeps reading the old contents: the new file is a new inode
    renamed into place, never the old file truncated and rewritten."""
    path = tmp_path / "out.txt"
    path.write_text("old contents", encoding="utf-8")
    with path.open("rb") as reader:
        write_atomic(path, "new")
        assert reader.read() == b"old contents"
    assert path.read_text(encoding="utf-8") == "new"


def test_failure_leaves_the_file_and_no_temporary(tmp_path):
    path = tmp_path / "cache.npy"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_writer(path) as stream:
            stream.write(b"half a fi")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.npy"]
    assert not list(tmp_path.glob("*.tmp"))


def test_failure_on_a_new_file_creates_nothing(tmp_path):
    path = tmp_path / "new.json"
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_an_error_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "out.json", "{}")
    assert not (tmp_path / "missing").exists()


def test_streaming_np_save(tmp_path):
    path = tmp_path / "array.npy"
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with atomic_writer(path) as stream:
        np.save(stream, array, allow_pickle=False)
    assert np.array_equal(np.load(path), array)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_permissions_kept_or_from_umask(tmp_path):
    existing = tmp_path / "thresholds.toml"
    existing.write_text("a = 1\n")
    existing.chmod(0o640)
    write_atomic(existing, "a = 2\n")
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    fresh, plain = tmp_path / "fresh.txt", tmp_path / "plain.txt"
    write_atomic(fresh, "x")
    plain.write_text("x")  # what open() gives a new file
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


# ---- predict ----------------------------------------------------------------------------------


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),  # eval mode matters: running statistics, not the batch's
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 26 * 26, 10),
    )


def _images(n: int = 23) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("batch_size", [1, 7, 23])
def test_predict_equals_one_plain_forward_pass(batch_size):
    model, images = _model().eval(), _images()
    with torch.no_grad():
        expected = model(images)
    got = predict(model, images, batch_size=batch_size)
    assert got.device.type == "cpu" and got.dtype == expected.dtype and got.shape == (23, 10)
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)
    # batches are independent in eval mode, so each batch is exactly the plain pass on it
    for start in range(0, len(images), batch_size):
        with torch.no_grad():
            batch = model(images[start : start + batch_size])
        assert torch.equal(got[start : start + batch_size], batch)


def test_predict_transform_and_device():
    model, images = _model().eval(), _images()
    with torch.no_grad():
        expected = model(images).argmax(dim=1)
    got = predict(model, images, batch_size=7, device="cpu", transform=lambda o: o.argmax(dim=1))
    assert got.dtype == torch.int64 and torch.equal(got, expected)


@pytest.mark.parametrize("inference", [True, False])
def test_predict_runs_in_eval_mode_and_restores_train_mode(inference):
    model, images = _model(), _images()
    model.train()
    model[3].eval()  # a partly-eval model comes back partly eval
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():
        expected = model.eval()(images)
    model.train()
    model[3].eval()
    first = predict(model, images, batch_size=7, inference=inference)
    second = predict(model, images, batch_size=7, inference=inference)
    assert torch.equal(first, second), "dropout or batch statistics were active"
    assert torch.allclose(first, expected, rtol=0, atol=1e-6)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert first.is_inference() is inference and not first.requires_grad


def test_predict_restores_modes_when_the_model_raises():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, x):
            raise ValueError("broken model")

    model = Broken().train()
    with pytest.raises(ValueError, match="broken model"):
        predict(model, _images(), batch_size=7)
    assert model.training and model.linear.training and model.linear.weight.requires_grad
