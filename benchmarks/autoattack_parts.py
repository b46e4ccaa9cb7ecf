"""Add up the parts of the 1,000-image AutoAttack benchmark (``test_autoattack_speed.py``).

    python benchmarks/autoattack_parts.py [benchmarks/records/autoattack]

Each part attacked images [start, stop) of the 1,000 with ours and with the reference in one run.
Robust images and model passes add up exactly; seconds add up as the time the whole table took on
this machine, and the ratio reference/ours is reported per part as well, since only a ratio taken
in one run is free of the other jobs that shared the machine. Images not yet covered are listed.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ATTACKED = 1000
SIDES = ("ours", "reference_side")


def load_parts(folder: Path) -> dict[str, list[dict]]:
    """The records of ``folder`` by model, sorted by first image; overlapping parts are refused."""
    parts: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        record["file"] = path.name
        parts[record["model"]].append(record)
    for model, records in parts.items():
        records.sort(key=lambda record: record["start"])
        for before, after in zip(records, records[1:], strict=False):
            if after["start"] < before["stop"]:
                raise SystemExit(
                    f"{model}: {before['file']} and {after['file']} attack the same images"
                )
    return parts


def missing(records: list[dict]) -> list[tuple[int, int]]:
    """The image ranges of the 1,000 no record covers."""
    gaps, covered = [], 0
    for record in records:
        if record["start"] > covered:
            gaps.append((covered, record["start"]))
        covered = max(covered, record["stop"])
    if covered < ATTACKED:
        gaps.append((covered, ATTACKED))
    return gaps


def summary(records: list[dict]) -> dict:
    """Totals over the parts: images, robust accuracy, passes per image, seconds, per side."""
    images = sum(record["stop"] - record["start"] for record in records)
    totals = {}
    for side in SIDES:
        seconds = sum(record[side]["seconds"] for record in records)
        totals[side] = {
            "seconds": seconds,
            "robust": sum(record[side]["robust_images"] for record in records) / images,
            "passes_per_image": sum(record[side]["forward_images"] for record in records) / images,
            "gradient_passes_per_image": sum(record[side]["gradient_images"] for record in records)
            / images,
        }
    broken_by: dict[str, int] = defaultdict(int)
    for record in records:
        for attack, count in record["ours"]["broken_by"].items():
            broken_by[attack] += count
    totals["ours"]["broken_by"] = dict(broken_by)
    totals["images"] = images
    totals["ratios"] = [
        round(record["reference_side"]["seconds"] / record["ours"]["seconds"], 2)
        for record in records
    ]
    # CPU time (process, all threads) where the part recorded it: less disturbed by other jobs.
    totals["cpu_ratios"] = [
        round(record["reference_side"]["cpu_seconds"] / record["ours"]["cpu_seconds"], 2)
        for record in records
        if "cpu_seconds" in record["ours"]
    ]
    return totals


def main(folder: str = "benchmarks/records/autoattack") -> None:
    for model, records in sorted(load_parts(Path(folder)).items()):
        totals = summary(records)
        ours, theirs = totals["ours"], totals["reference_side"]
        print(
            f"{model} at eps {records[0]['eps']:g}, {totals['images']} images in "
            f"{len(records)} parts ({records[0]['reference']}):\n"
            f"  ours      {ours['seconds']:9.1f} s, {ours['passes_per_image']:7.0f} passes/image "
            f"({ours['gradient_passes_per_image']:.0f} with a gradient), robust "
            f"{ours['robust']:.3f}, broken by {ours['broken_by']}\n"
            f"  reference {theirs['seconds']:9.1f} s, {theirs['passes_per_image']:7.0f} "
            f"passes/image ({theirs['gradient_passes_per_image']:.0f} with a gradient), robust "
            f"{theirs['robust']:.3f}\n"
            f"  time reference/ours per part: wall {totals['ratios']}, CPU {totals['cpu_ratios']}"
        )
        gaps = missing(records)
        if gaps:
            print(f"  still missing: {', '.join(f'{a}:{b}' for a, b in gaps)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
