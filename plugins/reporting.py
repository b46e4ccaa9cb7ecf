"""The terminal summary, the results document and the JUnit suite properties."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from safetycheck.run.results import results_document as build_document
from safetycheck.run.results import run_metadata
from safetycheck_pytest.settings import load_threshold_config, run_settings


def results_document(run) -> dict:
    """Every record of the run with its metadata: what the JSON file holds and the HTML shows."""
    return build_document(run.records, _metadata(run))


def _metadata(run) -> dict:
    # Under xdist the controller collects nothing: rebuild the settings from the same options, and
    # the models from the records the workers sent.
    settings = run_settings_of(run)
    models = run.models or [
        SimpleNamespace(
            name=name,
            source="(evaluated on an xdist worker)",
            randomized=any(r.get("randomized") for r in run.records if r["model"] == name),
        )
        for name in dict.fromkeys(r["model"] for r in run.records)
    ]
    metadata = run_metadata(settings, models)
    if run.shard.active:  # one process's results, computed in slices over the job's ranks
        metadata["ranks"] = {"world_size": run.shard.world_size, "backend": "gloo"}
    baseline = run.outputs.baseline if run.outputs is not None else None
    if baseline is not None:
        metadata["baseline"] = {
            "path": str(baseline.path),
            "created": baseline.metadata.get("created"),
        }
    return metadata


def run_settings_of(run):
    """The run's settings (rebuilt from the options on the xdist controller, which collects
    nothing)."""
    return run.settings or run_settings(run.config, load_threshold_config(run.config))


def progress_writer(config):
    """Announce each shared computation (an attack sweep, a corrupted set, the OOD detectors) on the
    terminal as it starts and ends, so a minute-long sweep is not a silent terminal. Quiet under
    ``-q``, and on xdist workers (they have no terminal)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or config.get_verbosity() < 0 or hasattr(config, "workerinput"):
        return None

    def report(what: str, seconds: float | None) -> None:
        # Checks run with output captured; step outside it, as pytest's live logging does.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if seconds is None:
                reporter.write(f" [{what} ...", cyan=True)
            else:
                reporter.write(f" {seconds:.1f} s]", cyan=True)
            reporter.flush()

    return report


def _ok(record: dict) -> bool:
    return record["passed"] and not (record.get("baseline") or {}).get("regressed", False)


def _single_model_lines(write, measured: list[dict]) -> None:
    width = max((len(r["check"]) for r in measured), default=10)
    for r in measured:
        relation = ">=" if r["bound"] == "min" else "<="
        value = "nan" if r["value"] is None else f"{r['value']:.4f}"
        base = r.get("baseline") or {}
        note = ""
        if base.get("value") is not None:
            note = f"  baseline {base['value']:.4f}{' REGRESSED' if base.get('regressed') else ''}"
        ok = _ok(r)
        write(
            f"  {'PASS' if ok else 'FAIL'}  {r['check']:<{width}}  {value} (need {relation} "
            f"{r['threshold']:.4f})  n={r['n']}{note}",
            red=not ok,
            green=ok,
        )


def _matrix_lines(write, records: list[dict], models: list[str]) -> None:
    """Checks down, models across; each cell the measured value, marked where it fails (x) or
    was skipped (-)."""
    cells = {(r["model"], r["check"]): r for r in records}
    checks = list(dict.fromkeys(r["check"] for r in records))
    width = max(len(c) for c in checks)
    columns = [max(len(m), 7) for m in models]
    write(
        "  "
        + " " * width
        + "  "
        + "  ".join(f"{m:>{w}} " for m, w in zip(models, columns, strict=True))
    )
    for check in checks:
        row, failing = [], False
        for model, column in zip(models, columns, strict=True):
            r = cells.get((model, check))
            value, mark = "", " "
            if r is not None and r.get("skipped"):
                value = "-"
            elif r is not None:
                failing |= not _ok(r)
                value, mark = (
                    ("nan" if r["value"] is None else f"{r['value']:.4f}"),
                    (" " if _ok(r) else "x"),
                )
            row.append(f"{value:>{column}}{mark}")
        write(f"  {check:<{width}}  " + "  ".join(row), red=failing)
    write("  (x: below its threshold or regressed; -: skipped)")


def terminal_summary(terminalreporter, run) -> None:
    write = terminalreporter.write_line
    terminalreporter.section("safetycheck results")
    measured = [r for r in run.records if not r.get("skipped")]
    settings = run_settings_of(run)
    title = settings.dataset.title
    if settings.dataset.name != "mnist":
        shape = "x".join(map(str, settings.dataset.input_shape))
        write(f"dataset: {title} ({shape}, {settings.dataset.num_classes} classes)")
    if settings.samples is not None:
        write(
            f"QUICK MODE: every family saw a stratified subset of {settings.samples} {title} test "
            "images (--safety-samples); the full gate runs without it.",
            yellow=True,
        )
    baseline = run.outputs.baseline if run.outputs is not None else None
    if baseline is not None:
        from safetycheck.gate.baseline import settings_mismatch

        for warning in settings_mismatch(_metadata(run), baseline.metadata):
            write(f"BASELINE: {warning}", yellow=True)
    models = list(dict.fromkeys(r["model"] for r in run.records))
    for model in models:
        records = [r for r in measured if r["model"] == model]
        failed = sum(not _ok(r) for r in records)
        skipped = sum(1 for r in run.records if r["model"] == model and r.get("skipped"))
        randomized = (
            " (RANDOMISED MODEL: attack results may overstate robustness)"
            if any(r.get("randomized") for r in records)
            else ""
        )
        write(
            f"{model}: {len(records) - failed} passed, {failed} failed, {skipped} "
            f"skipped{randomized}"
        )
    if len(models) == 1:
        _single_model_lines(write, measured)
    else:
        _matrix_lines(write, run.records, models)
    for record in getattr(run, "holm_flagged", ()):
        write(
            f"REGRESSED {record['model']} {record['check']}: {record['baseline']['message']}",
            red=True,
        )
    outputs = run.outputs
    if outputs is not None and outputs.update_target:
        from safetycheck.gate.update import format_changes

        write("")
        write(
            f"thresholds updated in {outputs.update_target} (margin {outputs.margin:g}):", bold=True
        )
        for line in format_changes(outputs.changes).splitlines():
            write(f"  {line}")
    for what, path in outputs.written if outputs is not None else ():
        write(f"{what}: {path}")
