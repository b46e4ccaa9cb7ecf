"""The pytest plugin: thin hooks that delegate to the engine and to this package's modules.

Registered through the ``pytest11`` entry point, so installing safetycheck is all it takes. It is
inert unless a run names models (``--safety-model``) or a ``safety_model`` fixture exists.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from safetycheck.core.errors import SafetyCheckError
from safetycheck_pytest import distributed, junit
from safetycheck_pytest.options import add_options
from safetycheck_pytest.outputs import Outputs

# The engine (torch, scikit-learn) is imported inside the hooks that need it, so that installing
# safetycheck costs nothing in pytest runs that test no model.

STATE = pytest.StashKey["SafetyRun"]()


class SafetyRun:
    """One pytest run's safety tests: models and settings (where collected) and, on the
    controller, the records every check reported (they travel in reports, so xdist works)."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.settings = None
        self.models = []
        self.records: list[dict] = []
        self.holm_flagged: list[dict] = []  # regressions found by Holm's later steps, at the end
        self.teardowns: list = []
        self.torch_threads: int | None = (
            None  # torch's intra-op threads in this process, once models are set
        )
        self.outputs: Outputs | None = (
            None  # validated report paths, baseline, threshold update target
        )
        # This process's place in a torchrun job (rank 0 of 1 outside one).
        self.shard = distributed.join(config)
        self.rank_failure: str | None = None  # a rank failed or left: no report files
        # The JUnit file pytest writes (--junitxml), where the records go as suite properties.
        self.junit_path: str | None = junit.report_path(config)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        report = yield
        from safetycheck.core.distributed import RankFailed

        if call.excinfo is not None and isinstance(call.excinfo.value, RankFailed):
            self.rank_failure = self.rank_failure or str(call.excinfo.value)
        record = getattr(item, "safety_record", None)
        if call.when == "call" and record is not None:
            # A plain attribute travels with the report to the xdist controller (as JSON text).
            report.safetycheck_record = json.dumps(record)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and getattr(report, "safetycheck_record", None):
            self.records.append(json.loads(report.safetycheck_record))

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        distributed.silence(self.config, self.shard)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.models:  # after every plugin's reordering (pytest-randomly's included)
            distributed.agree(session, self.shard, self.models, self.settings)

    @pytest.hookimpl(trylast=True)  # after pytest's JUnit writer has written its file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for teardown in self.teardowns:
            teardown()
        if (
            self.records
            and self.outputs is not None
            and self.outputs.baseline is not None
            and not hasattr(self.config, "workerinput")
        ):
            from safetycheck.gate.baseline import holm_on_records

            # Each paired check was judged at Holm's first step when measured; the rest of the
            # step-down needs every p-value, so it runs now and can still fail the run.
            self.holm_flagged = holm_on_records(self.records)
            if self.holm_flagged:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.shard.active:
            session.exitstatus = distributed.exit_status(self.shard, session.exitstatus)
            if not self.shard.reports:
                return  # rank 0 reports for the job
            if self.rank_failure:
                return  # a report of part of the images must not look complete
        if self.records and self.junit_path:
            junit.add_suite_properties(
                self.junit_path, [junit.suite_property(record) for record in self.records]
            )
        if self.records and self.outputs is not None and not hasattr(self.config, "workerinput"):
            self.outputs.write(self)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.shard.active:
            from safetycheck.core.distributed import leave

            # torchrun stops every rank as soon as one exits with a failure status, so no rank
            # leaves before rank 0 has written the reports.
            distributed.finish(self.shard)
            leave()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.rank_failure:
            terminalreporter.write_line(
                f"safetycheck: no report written: {self.rank_failure}", red=True
            )
        if self.records:
            from safetycheck_pytest import reporting

            reporting.terminal_summary(terminalreporter, self)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)  # under torchrun, before pytest's JUnit plugin reads its path
def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = run = SafetyRun(config)
    config.pluginmanager.register(run, "safetycheck-run")
    config.addinivalue_line("markers", "safetycheck: a generated safety test (added automatically)")
    # Report paths, the baseline and the threshold file to update are checked here, on the
    # controller and on every worker (and every torchrun rank), before any model is loaded.
    error = None
    try:
        run.outputs = Outputs.from_config(config)
    except SafetyCheckError as exc:
        error = str(exc)
    distributed.share_errors(run.shard, error)


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection sees the item list
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list
) -> None:
    run = config.stash[STATE]
    collected = _collect(session, config, run)
    if collected is None:
        return
    models, settings, file_config, planned = collected
    from safetycheck.checks.evaluation import ModelEvaluation
    from safetycheck_pytest import reporting
    from safetycheck_pytest.items import SafetyCheckItem, SafetySuite

    loadgroup = bool(config.getoption("loadgroup", False))  # what xdist itself reads on its workers
    for model in models:
        evaluation = ModelEvaluation(
            model, settings, progress=reporting.progress_writer(config), shard=run.shard
        )
        suite_id = f"safety[{model.name}]"
        suite = SafetySuite.from_parent(
            session, name=suite_id, nodeid=suite_id, path=_source_path(model, config)
        )
        generated = []
        for check in planned:
            # Under `pytest -n N --dist loadgroup` a model's checks share one worker and its cache:
            # xdist's scheduler groups by the `@<group>` suffix of the node id. xdist appends it for
            # `xdist_group` marks by assigning a private attribute that newer pytest (9.2) no longer
            # reads, so the group goes into the id here, through the public constructor.
            grouped = {"nodeid": f"{suite_id}::{check.id}@{model.name}"} if loadgroup else {}
            item = SafetyCheckItem.from_parent(
                suite,
                name=check.id,
                planned=check,
                evaluation=evaluation,
                file_config=file_config,
                baseline=run.outputs.baseline,
                **grouped,
            )
            item.add_marker("safetycheck")
            if not loadgroup:
                item.add_marker(pytest.mark.xdist_group(model.name))  # for readers of the mark
            generated.append(item)
        # Report the generated items like collected ones, so "collected N items" counts them.
        config.hook.pytest_collectreport(
            report=pytest.CollectReport(suite_id, "passed", None, generated)
        )
        items.extend(generated)


def _collect(session: pytest.Session, config: pytest.Config, run):
    """(models, settings, threshold file, planned checks), None where no model is named; every
    bad input is one usage error (under torchrun, on every rank, naming the rank it came from)."""
    from safetycheck_pytest.models_source import collect_models

    error, collected = None, None
    try:
        models, run.teardowns = collect_models(session)
        if models:
            run.shard = distributed.join_late(config, run.shard)
            collected = _prepare(config, run, models)
    except SafetyCheckError as exc:
        error = str(exc)
    distributed.share_errors(run.shard, error)
    if collected is None:
        return None
    run.models = collected[0]
    return collected


def _prepare(config: pytest.Config, run, models: list):
    from safetycheck.checks import plan_checks
    from safetycheck.io.models import check_contract
    from safetycheck_pytest.settings import load_threshold_config, run_settings

    file_config = load_threshold_config(config)
    settings = run_settings(config, file_config, _fixture_dataset(config, run))
    if run.shard.active and settings.device.type == "cuda":
        settings = _rank_device(settings, run.shard)
    run.settings = settings
    if run.outputs is not None and run.outputs.baseline is not None:
        from safetycheck.gate.baseline import refuse_other_dataset, refuse_other_models

        refuse_other_dataset(run.outputs.baseline, settings.dataset.name)
        refuse_other_models(run.outputs.baseline, [model.name for model in models])
    for model in models:
        check_contract(
            model,
            settings.device,
            allow_randomized=settings.allow_randomized,
            profile=settings.dataset,
        )
    _check_data(settings)
    run.torch_threads = _share_threads(config)
    planned = plan_checks(settings)  # reads the families, third-party entry points included
    return models, settings, file_config, planned


def _rank_device(settings, shard):
    """Under torchrun, ``--safety-device=cuda`` means this rank's GPU, ``cuda:LOCAL_RANK``."""
    import torch

    from safetycheck.core.errors import ConfigError

    if settings.device.index is not None:
        raise ConfigError(
            f"--safety-device={settings.device} names one GPU for every rank of the torchrun job; "
            "use --safety-device=cuda, and each rank takes cuda:LOCAL_RANK."
        )
    if shard.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"rank {shard.rank} (local rank {shard.local_rank}) has no GPU of its own: this "
            f"machine shows {torch.cuda.device_count()}; start at most that many per node."
        )
    return dataclasses.replace(settings, device=torch.device("cuda", shard.local_rank))


def _share_threads(config: pytest.Config) -> int:
    """Each xdist worker, and each torchrun rank on a machine, takes its share of the cores (see
    ``share_cpu_threads``)."""
    import os

    from safetycheck.measures.acceleration import share_cpu_threads

    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    workers *= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return share_cpu_threads(workers, config.getoption("safety_threads"))


def _source_path(model, config: pytest.Config) -> Path:
    path = Path(model.source.split("[")[0])
    return path.resolve() if path.is_file() else Path(config.rootpath)


def _fixture_dataset(config: pytest.Config, run):
    """The profile of a ``safety_dataset`` fixture in the root conftest.py, or None."""
    from safetycheck_pytest.models_source import dataset_from_fixture

    data, teardowns, note = dataset_from_fixture(config)
    if data is None:
        return None
    from safetycheck.io.profiles import profile_from_data

    run.teardowns.extend(teardowns)
    profile = profile_from_data(data, "safety_dataset", data.name)
    return dataclasses.replace(profile, note=note) if note else profile


def _check_data(settings) -> None:
    """Fail at collection, once, when the dataset's test split is missing or unreadable, rather
    than in every test."""
    from safetycheck.io.data import DATASETS, check_files

    if settings.download:
        return
    if settings.dataset.name in DATASETS:  # the IDX sets: a cheap look at the files
        check_files(settings.dataset.name, settings.data_root)
    else:
        settings.dataset.load_test(settings.data_root, False)
