"""The ``safetycheck`` command: ``safetycheck study MODEL_FILE... --out DIR``.

    safetycheck study example_models/zoo.py --out study/ --samples 2000 --checks default,apgd

Runs the whole suite over every model the files provide (a zoo file gives a dict of named
models), shows progress, resumes from the per-model results already saved in ``DIR`` after an
interruption, and writes the tradeoff study (see :mod:`safetycheck.study.runner`). Exit status: \
0 when the
study was written, 2 for a usage error (bad option, missing file or data), with one line saying
what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetycheck.core.errors import SafetyCheckError
from safetycheck.core.options import CLI, PREFIXES, engine_values, options_for


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="safetycheck", description="Safety tests for image classifiers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser(
        "study",
        help="run the suite over several models and write the tradeoff study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    study.add_argument(
        "models", nargs="+", metavar="MODEL_FILE", help="model files (.py or TorchScript)"
    )
    for option in options_for(CLI):  # shared with the pytest plugin: safetycheck.core.options
        study.add_argument(option.flag_name(CLI), **option.add_arguments(CLI))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _study(args)
    except SafetyCheckError as exc:
        print(f"safetycheck: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nsafetycheck: interrupted; models already done are saved in {args.out}/models and "
            "the next run resumes from them.",
            file=sys.stderr,
        )
        return 130


def _study(args) -> int:
    from safetycheck.checks import default_families
    from safetycheck.gate.thresholds import load_config
    from safetycheck.io.models import load_model_file
    from safetycheck.run.settings import Options, build_settings
    from safetycheck.study.runner import run_study

    file_config = load_config(args.thresholds)
    checks = args.checks
    if checks:
        names = [part.strip() for part in checks.split(",") if part.strip()]
        expanded = [
            n for name in names for n in (default_families() if name == "default" else [name])
        ]
        checks = ",".join(dict.fromkeys(expanded))
    values = engine_values(CLI, lambda dest: getattr(args, dest))
    settings = build_settings(
        # A study compares values, not verdicts: no early stopping (it needs thresholds).
        Options(**{**values, "checks": checks, "early_stop": "off"}),
        file_config,
        prefix=PREFIXES[CLI],
    )
    models = [model for path in args.models for model in load_model_file(path)]
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {m.name for m in models})
        if unknown:
            raise SafetyCheckError(
                f"--only names {', '.join(unknown)}, which the model files do not provide; "
                f"they provide {', '.join(m.name for m in models)}."
            )
        models = [m for m in models if m.name in wanted]
    manifest_path = (
        args.manifest or Path(args.models[0]).resolve().parent / "weights" / "manifest.json"
    )
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    print(f"safetycheck study: {len(models)} model(s) -> {args.out}", flush=True)
    run_study(
        models,
        settings,
        file_config,
        args.out,
        progress=lambda text: print(text, flush=True),
        manifest=manifest,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
