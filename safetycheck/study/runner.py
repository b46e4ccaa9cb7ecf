"""``safetycheck study``: the whole suite over a family of models, and the tradeoff study report.

Each model is evaluated through the same path as the pytest plugin
(:func:`safetycheck.run.runner.run_check` on a
:class:`~safetycheck.checks.evaluation.ModelEvaluation`), so the study's numbers are the gate's
numbers. Its records are saved per model (``<out>/models/<name>.json``) as soon as the model is
done, with a fingerprint of the settings and of the model's weights; a rerun after an interruption
reuses every saved model whose fingerprint still matches and evaluates only the rest. At the end it
writes, into ``<out>``: ``results.json`` (the plugin's JSON), ``report.html`` (the plugin's HTML
report), and the study report of :mod:`safetycheck.study.report` (``study.md``, ``tradeoffs.html``,
``plots/*.svg``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from safetycheck import __version__
from safetycheck.checks import plan_checks
from safetycheck.checks.evaluation import ModelEvaluation, RunSettings
from safetycheck.core.files import write_atomic
from safetycheck.gate.thresholds import SafetyConfig
from safetycheck.io.models import ModelUnderTest, check_contract
from safetycheck.io.profiles import DEFAULT_PROFILE
from safetycheck.run.results import add_gallery, results_document, run_metadata, write_document
from safetycheck.run.runner import run_check

Progress = Callable[[str], None]


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, shapes, bytes): the same weights
    give the same fingerprint, any retraining a different one."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def settings_fingerprint(
    settings: RunSettings, check_ids: list[str], file_config: SafetyConfig
) -> str:
    """What makes two runs' numbers comparable: every setting but the data root's location and a
    default (inactive) attack acceleration, the planned checks with every attack family's threat
    model (cascade, budget, attack parameters) and the device they ran on, the thresholds and the
    safetycheck version."""
    from safetycheck.checks.attacks import threat_models

    described = {
        "version": __version__,
        "checks": check_ids,
        "threat_models": threat_models(settings),
        "device": str(settings.device),
        "settings": {
            f.name: repr(getattr(settings, f.name))
            for f in dataclasses.fields(settings)
            if f.name not in ("device", "data_root", "download")
            # plain fp32 attacks are what every run before the option measured
            and not (f.name == "acceleration" and not settings.acceleration.active)
            # MNIST is what every run before datasets measured: its keys stay as they were
            and not (f.name == "dataset" and settings.dataset == DEFAULT_PROFILE)
            and not (f.name == "corruption_baseline" and settings.corruption_baseline is None)
        },
        "thresholds": repr(
            (file_config.thresholds, file_config.model_thresholds)
            + ((file_config.dataset_thresholds,) if file_config.dataset_thresholds else ())
            + (
                (file_config.model_dataset_thresholds,)
                if file_config.model_dataset_thresholds
                else ()
            )
        ),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def model_group(model: ModelUnderTest) -> str:
    """The model's family for the study's colours: its ``family`` attribute, else "user model"."""
    family = getattr(model.module, "family", None)
    return family if isinstance(family, str) else "user model"


def run_study(
    models: list[ModelUnderTest],
    settings: RunSettings,
    file_config: SafetyConfig,
    out_dir: Path,
    progress: Progress = print,
    manifest: dict | None = None,
) -> dict:
    """Evaluate every model (resuming saved ones), then write the study's files; returns the
    results document. ``manifest``: the zoo's training manifest, for the study's training table."""
    out_dir = Path(out_dir)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    planned = plan_checks(settings)
    fingerprint = settings_fingerprint(settings, [p.id for p in planned], file_config)
    records: list[dict] = []
    for index, model in enumerate(models, start=1):

        def say(text: str, index: int = index, model: ModelUnderTest = model) -> None:
            progress(f"[{index}/{len(models)}] {model.name}: {text}")

        records.extend(
            _model_records(model, settings, file_config, planned, fingerprint, out_dir, say)
        )
    document = results_document(records, run_metadata(settings, models))
    document["metadata"]["study"] = {"groups": {m.name: model_group(m) for m in models}}
    _write_reports(out_dir, document, settings, {m.name: model_group(m) for m in models}, manifest)
    progress(f"study written to {out_dir}: study.md, tradeoffs.html, report.html, results.json")
    return document


def _model_records(
    model: ModelUnderTest,
    settings: RunSettings,
    file_config: SafetyConfig,
    planned: list,
    fingerprint: str,
    out_dir: Path,
    say: Progress,
) -> list[dict]:
    saved = out_dir / "models" / f"{model.name}.json"
    weights = model_fingerprint(model.module)
    if saved.is_file():
        stored = json.loads(saved.read_text())
        if (
            stored.get("settings_fingerprint") == fingerprint
            and stored.get("model_fingerprint") == weights
        ):
            say(f"resumed {len(stored['records'])} saved checks from {saved}")
            return stored["records"]
        say("saved results are from other settings or weights; evaluating again")
    check_contract(
        model,
        settings.device,
        allow_randomized=settings.allow_randomized,
        profile=settings.dataset,
    )
    started = time.perf_counter()
    evaluation = ModelEvaluation(model, settings, progress=_timing(say))
    records = [run_check(evaluation, check, file_config).record() for check in planned]
    seconds = time.perf_counter() - started
    failed = sum(not r["passed"] for r in records if not r.get("skipped"))
    say(f"{len(records)} checks in {seconds:.0f} s ({failed} below threshold)")
    write_atomic(
        saved,
        json.dumps(
            {
                "settings_fingerprint": fingerprint,
                "model_fingerprint": weights,
                "seconds": round(seconds, 1),
                "records": records,
            },
            allow_nan=False,
        ),
    )
    return records


def _timing(say: Progress):
    def report(what: str, seconds: float | None) -> None:
        if seconds is not None:
            say(f"{what.split(': ', 1)[-1]} {seconds:.1f} s")

    return report


def _write_reports(
    out_dir: Path, document: dict, settings: RunSettings, groups: dict, manifest: dict | None
) -> None:
    from safetycheck.report.html import write_html
    from safetycheck.study.report import write_study

    gallery = add_gallery(
        document,
        settings.data_root,
        seed=settings.seed,
        download=settings.download,
        dataset=settings.dataset,
    )
    write_document(out_dir / "results.json", document)
    write_html(out_dir / "report.html", document, gallery=gallery)
    write_study(out_dir, document, groups, manifest)
