"""The terminal summary and the JSON results file, written on the controller."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from safetycheck.results import run_metadata, write_json

from .options import load_threshold_config, run_settings


def write_results_json(path: str, run) -> None:
    write_json(path, run.records, _metadata(run))


def _metadata(run) -> dict:
    # Under xdist the controller collects nothing: rebuild the settings from the same options, and
    # the models from the records the workers sent.
    settings = run.settings or run_settings(run.config, load_threshold_config(run.config))
    models = run.models or [
        SimpleNamespace(name=name, source="(evaluated on an xdist worker)",
                        randomized=any(r.get("randomized") for r in run.records if r["model"] == name))
        for name in dict.fromkeys(r["model"] for r in run.records)
    ]
    return run_metadata(settings, models)


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


def terminal_summary(terminalreporter, run) -> None:
    write = terminalreporter.write_line
    terminalreporter.section("safetycheck results")
    width = max(len(r["check"]) for r in run.records)
    for model in dict.fromkeys(r["model"] for r in run.records):
        records = [r for r in run.records if r["model"] == model]
        failed = sum(not r["passed"] for r in records)
        randomized = " (RANDOMISED MODEL: attack results may overstate robustness)" if records[0].get("randomized") else ""
        write(f"{model}: {len(records) - failed} passed, {failed} failed{randomized}")
        for r in records:
            relation = ">=" if r["bound"] == "min" else "<="
            value = "nan" if r["value"] is None else f"{r['value']:.4f}"
            status = "PASS" if r["passed"] else "FAIL"
            write(f"  {status}  {r['check']:<{width}}  {value} (need {relation} {r['threshold']:.4f})  n={r['n']}",
                  red=not r["passed"], green=r["passed"])
