"""The plugin under ``torchrun``: every rank runs the same session, rank 0 alone reports.

``torchrun --nproc-per-node=N -m pytest --safety-model=...`` starts N pytest processes. Each joins
the job's process group (:func:`safetycheck.core.distributed.join`), collects the same checks and
runs them in the same order; the engine splits every shared computation over the ranks and
gathers the results, so every rank judges every check alike. Here:

- ranks other than 0 write no JUnit, JSON, HTML or threshold update and print nothing (their
  terminal reporter is unregistered, as ``-p no:terminal`` would);
- before any model is attacked, every rank's options, model weights and checks (in order) are
  compared with rank 0's, and a difference is a usage error that names the rank;
- a rank's usage error becomes every rank's, and the exit status is the worst over the ranks;
- where a rank failed or left mid-run, rank 0 writes no report files: a report of part of the
  images must not look complete.
"""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from safetycheck.core.errors import SafetyCheckError


def join(config: pytest.Config):
    """This process's Shard, at configure time. Under torchrun, a run that names models with
    ``--safety-model`` joins the job's process group now, so that rank 0 alone keeps the JUnit
    file; any other run stays out of it (a project's own tests under torchrun may build their own
    process group), and joins at collection if a ``safety_model`` fixture yields models
    (:func:`join_late`)."""
    from safetycheck.core.distributed import Shard

    if not config.getoption("safety_model"):
        _check_timeout(config)
        return Shard()
    shard = _join(config)
    if shard.active and not shard.reports:
        config.option.xmlpath = None  # before pytest's JUnit plugin reads it (tryfirst)
    return shard


def join_late(config: pytest.Config, shard):
    """The Shard once a ``safety_model`` fixture has yielded models: under torchrun, join the
    job now; the ranks other than 0 then drop their terminal reporter and JUnit writer."""
    from safetycheck.core.distributed import torchrun_environment

    if shard.active or torchrun_environment() is None:
        return shard
    shard = _join(config)
    if shard.active and not shard.reports:
        silence(config, shard)
        # pytest's JUnit writer is already configured (it unregisters itself at the end): its
        # file goes nowhere on this rank.
        for plugin in config.pluginmanager.get_plugins():
            if type(plugin).__module__ == "_pytest.junitxml" and hasattr(plugin, "logfile"):
                plugin.logfile = os.devnull
    return shard


def _join(config: pytest.Config):
    from safetycheck.core.distributed import join as join_job

    try:
        return join_job(config.getoption("safety_dist_timeout"))
    except SafetyCheckError as exc:
        raise pytest.UsageError(str(exc)) from None


def _check_timeout(config: pytest.Config) -> None:
    from safetycheck.core.distributed import check_timeout

    try:
        check_timeout(config.getoption("safety_dist_timeout"))
    except SafetyCheckError as exc:
        raise pytest.UsageError(str(exc)) from None


def silence(config: pytest.Config, shard) -> None:
    """Ranks other than 0 print nothing: rank 0 prints the one terminal report."""
    if shard.active and not shard.reports:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            config.pluginmanager.unregister(reporter)


def share_errors(shard, error: str | None) -> None:
    """Raise a usage error on every rank when any rank's collection failed, naming the rank."""
    if not shard.active:
        if error is not None:
            raise pytest.UsageError(error)
        return
    from safetycheck.core.distributed import RankFailed

    try:
        errors = shard.gather_objects(error, "collecting the safety checks")
    except RankFailed as exc:
        raise pytest.UsageError(str(exc)) from None
    failed = [(rank, message) for rank, message in enumerate(errors) if message is not None]
    if not failed:
        return
    if not shard.reports:  # one copy of the message, from rank 0
        raise pytest.UsageError(
            f"rank {shard.rank} of {shard.world_size} stopped with the job; rank 0 prints why."
        )
    rank, message = failed[0]
    raise pytest.UsageError(
        message if rank == 0 else f"rank {rank} of {shard.world_size}: {message}"
    )


def agree(session: pytest.Session, shard, models, settings) -> None:
    """Refuse a job whose ranks differ in options, model weights or checks, before any attack."""
    if not shard.active:
        return
    from safetycheck.core.distributed import weights_digest

    config = session.config
    options = {
        "--" + name.replace("_", "-"): repr(value)
        for name, value in sorted(vars(config.option).items())
        if name.startswith("safety_")
    }
    facts = {
        **options,
        # The device differs by rank (cuda:LOCAL_RANK) and the data root may by machine; a
        # function's address (a dataset profile's loader) differs by process.
        "the run settings": re.sub(
            r" at 0x[0-9a-fA-F]+",
            "",
            repr(
                {
                    field: value
                    for field, value in vars(settings).items()
                    if field not in ("device", "data_root")
                }
            ),
        ),
        "the checks, in order": _digest(
            [item.nodeid for item in session.items if hasattr(item, "evaluation")]
        ),
        **{f"the weights of model {m.name}": weights_digest(m.module) for m in models},
    }
    try:
        shard.agree("the torchrun job's ranks", facts)
    except SafetyCheckError as exc:
        if not shard.reports:
            raise pytest.UsageError(
                f"rank {shard.rank} of {shard.world_size} stopped with the job; rank 0 prints why."
            ) from None
        raise pytest.UsageError(
            f"{exc} (a different test order comes from pytest-randomly: give every rank the same "
            "--randomly-seed, or -p no:randomly)"
            if "checks, in order" in str(exc)
            else str(exc)
        ) from None


def _digest(ids: list[str]) -> str:
    text = "\n".join(ids)
    return f"{len(ids)} checks, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}"


def exit_status(shard, status: int) -> int:
    """The worst exit status over the ranks, so that the job's status is right on every rank."""
    return shard.all_max(int(status)) if shard.active else int(status)


def finish(shard) -> None:
    """Wait for every rank (rank 0 has then written the reports); a rank already gone is no
    reason to fail here, its failure was reported."""
    from safetycheck.core.distributed import RankFailed

    try:
        shard.gather_objects(None, "the end of the run")
    except RankFailed:
        pass
