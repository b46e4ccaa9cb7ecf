"""The adder of the AutoAttack benchmark's parts (``autoattack_parts.py``) on records written the
way ``test_autoattack_speed.py`` writes them: totals, coverage and refusal of overlapping parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from autoattack_parts import load_parts, missing, summary  # benchmarks/ is on sys.path (rootdir)


def part(folder: Path, start: int, stop: int, robust: int, seconds: float) -> None:
    side = {"seconds": seconds, "forward_images": 100 * (stop - start),
            "gradient_images": 25 * (stop - start), "robust_images": robust}  # fmt: skip
    record = {"model": "lenet", "eps": 0.1, "start": start, "stop": stop,
              "reference": "official", "ours": dict(side, broken_by={"apgd_ce": 3}),
              "reference_side": dict(side, seconds=2 * seconds)}  # fmt: skip
    (folder / f"lenet-{start:04d}-{stop:04d}.json").write_text(json.dumps(record))


def test_parts_add_up_and_the_missing_images_are_listed(tmp_path):
    part(tmp_path, 0, 300, robust=230, seconds=100.0)
    part(tmp_path, 500, 1000, robust=390, seconds=200.0)
    records = load_parts(tmp_path)["lenet"]
    assert missing(records) == [(300, 500)]
    totals = summary(records)
    assert totals["images"] == 800 and totals["ours"]["robust"] == pytest.approx(620 / 800)
    assert totals["ours"]["passes_per_image"] == 100 and totals["ours"]["broken_by"]["apgd_ce"] == 6
    assert totals["reference_side"]["seconds"] == 600.0 and totals["ratios"] == [2.0, 2.0]
    part(tmp_path, 300, 500, robust=150, seconds=50.0)
    assert missing(load_parts(tmp_path)["lenet"]) == []


def test_overlapping_parts_are_refused(tmp_path):
    part(tmp_path, 0, 300, robust=230, seconds=100.0)
    part(tmp_path, 200, 400, robust=150, seconds=50.0)
    with pytest.raises(SystemExit, match="attack the same images"):
        load_parts(tmp_path)
