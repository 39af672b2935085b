"""Command line: argv -> spec -> one call. Our errors print one line and exit 2.

Heavy libraries are imported inside the commands, so `workbench --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.cli.cluster import add_cluster_commands
from workbench.core.console import configure_output
from workbench.core.errors import WorkbenchError, exit_status

DESCRIPTION = """Hyperparameter studies for Hugging Face transformers models, tracked in MLflow.

  workbench study run studies/demo.yaml      run (or resume) a study: Optuna samples, Trainer trains
  workbench study show demo                  its trials, the best one, the registered model
  workbench ui                               the MLflow UI on this folder's stores
  workbench promote demo-classifier          @challenger -> @champion, if better and not by chance
  workbench predict demo-classifier --text "a charming film"

Stores: mlruns/mlflow.db (MLflow) and mlruns/optuna.db (Optuna) in the current folder, unless
--tracking-uri / --storage say otherwise. Exit codes: 0 done, 1 refused (a gate, a mismatch),
2 bad input, 130 interrupted."""
MODEL_HELP = "NAME (its @champion), NAME@ALIAS, NAME/VERSION, models:/..., or a model folder"


def _global_options(storage: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (SUPPRESS: an option not given never hides one given earlier)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs"
    )
    options.add_argument(
        "--tracking-uri",
        default=argparse.SUPPRESS,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    if storage:
        options.add_argument(
            "--storage",
            default=argparse.SUPPRESS,
            help="Optuna storage URL, or journal:PATH (default: $WORKBENCH_STORAGE or sqlite:///mlruns/optuna.db)",
        )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description=DESCRIPTION,
        parents=[_global_options(storage=True)],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(debug=False, tracking_uri=None, storage=None)
    common, with_storage = [_global_options(storage=False)], [_global_options(storage=True)]
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    study = commands.add_parser("study", help="run, list or show hyperparameter studies").add_subparsers(
        dest="action", required=True
    )
    run = study.add_parser(
        "run", parents=with_storage, help="run a study file until its n_trials target is met (resumes)"
    )
    run.add_argument("study_file", type=Path)
    run.add_argument("--trials", type=int, help="run this many more trials, beyond what the study holds")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a study-file value, e.g. training.num_train_epochs=2",
    )
    run.add_argument("--no-register", action="store_true", help="do not register the best model")
    run.add_argument(
        "--warm-start",
        action="append",
        default=[],
        metavar="STUDY",
        help="a new study's first trials: the best of STUDY, an earlier study in the same storage (repeatable; "
        "replaces study.warm_start.from)",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="run N worker processes on this machine that share the study (spread over visible GPUs)",
    )
    run.add_argument("--quiet", action="store_true", help="print only failed trials, errors and the final summary")
    run.add_argument(
        "--workers-per-gpu",
        type=int,
        metavar="K",
        help="pack K workers on each visible GPU (default --workers: K x GPUs)",
    )
    run.set_defaults(handler=cmd_study_run)
    conclude = study.add_parser(
        "conclude",
        parents=with_storage,
        help="after workers anywhere have run a study's trials: summary, plots, registration (once)",
    )
    conclude.add_argument("study_file", type=Path)
    conclude.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a study-file value, as for run"
    )
    conclude.add_argument("--no-register", action="store_true", help="do not register the best model")
    conclude.set_defaults(handler=cmd_study_conclude)
    listing = study.add_parser(
        "list", parents=with_storage, help="the studies in the store: trials by state, best value, last activity"
    )
    _format_options(listing)
    listing.set_defaults(handler=cmd_study_list)
    show = study.add_parser(
        "show",
        parents=with_storage,
        help="one study's trials: state, score, evaluations, parameters, MLflow run; the registry",
    )
    show.add_argument("name", help="the study's name (study.name in its file)")
    _format_options(show)
    show.set_defaults(handler=cmd_study_show)

    server = commands.add_parser(
        "server", parents=common, help="start an mlflow server that many workers and machines can share"
    )
    server.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for all)"
    )
    server.add_argument("--port", type=int, default=5000, help="port to listen on (default: 5000)")
    server.add_argument(
        "--backend-store-uri",
        help="database for runs and models (default: $MLFLOW_BACKEND_STORE_URI or sqlite:///mlruns/mlflow.db)",
    )
    server.add_argument(
        "--artifacts-destination", help="where proxied artifacts are stored (default: mlruns/artifacts)"
    )
    server.add_argument(
        "--workers", type=int, default=1, help="server worker processes (default: 1, enough on small machines)"
    )
    server.add_argument(
        "--allowed-hosts", help="extra Host headers to accept when --host is not loopback, e.g. trainhost:5000"
    )
    server.set_defaults(handler=cmd_server)

    ui = commands.add_parser(
        "ui", parents=common, help="the MLflow UI on this folder's stores, at http://127.0.0.1:PORT"
    )
    ui.add_argument("--port", type=int, default=5000, help="port to listen on, on 127.0.0.1 only (default: 5000)")
    ui.set_defaults(handler=cmd_ui)

    promote = commands.add_parser(
        "promote", parents=common, help="move @champion to a candidate that is better, and not by chance"
    )
    promote.add_argument("model_name")
    promote.add_argument(
        "--candidate", default="challenger", help="alias or version number to promote (default: challenger)"
    )
    promote.add_argument(
        "--data",
        help="evaluation data: a csv/tsv/jsonl/parquet file with text and label, or a study file "
        "(default: the candidate's test data, else its validation data)",
    )
    promote.add_argument(
        "--min-delta",
        type=float,
        default=0.0,
        help="the smallest improvement of the study metric that counts (default: 0)",
    )
    promote.add_argument(
        "--alpha", type=float, default=0.05, help="significance level of the paired test (default: 0.05)"
    )
    promote.add_argument("--dry-run", action="store_true", help="show the decision, change nothing")
    promote.add_argument("--force", action="store_true", help="promote even if the gate refuses; recorded as forced")
    promote.set_defaults(handler=cmd_promote)

    rollback = commands.add_parser("rollback", parents=common, help="move @champion back to @previous-champion")
    rollback.add_argument("model_name")
    rollback.set_defaults(handler=cmd_rollback)

    evaluate = commands.add_parser(
        "evaluate", parents=common, help="metrics and pictures of a model on labelled data, logged to MLflow"
    )
    evaluate.add_argument("model", help=MODEL_HELP)
    evaluate.add_argument(
        "--data",
        help="a csv/tsv/jsonl/parquet file with text and label, or a study file "
        "(default: the version's test data, else its validation data)",
    )
    evaluate.set_defaults(handler=cmd_evaluate)

    reproduce = commands.add_parser(
        "reproduce", parents=common, help="re-run a trial from its MLflow run's record and compare its metric"
    )
    reproduce.add_argument(
        "run",
        metavar="RUN_ID|STUDY:TRIAL",
        help="a trial's MLflow run id, or the study name and trial number, e.g. demo:7",
    )
    reproduce.set_defaults(handler=cmd_reproduce)

    predict = commands.add_parser(
        "predict", parents=common, help="predict labels for raw texts with a registered model"
    )
    predict.add_argument("model", help=MODEL_HELP)
    predict.add_argument("--text", action="append", default=[], help="a text to classify (repeatable)")
    predict.add_argument(
        "--input",
        type=Path,
        help="a file of texts: .txt (one per line), or csv/tsv/jsonl/parquet with a `text` column "
        "(other columns are kept)",
    )
    predict.add_argument(
        "--output", type=Path, help="write predictions here (.csv, .jsonl or .parquet) instead of printing"
    )
    predict.set_defaults(handler=cmd_predict)
    add_cluster_commands(commands, with_storage, _parse_sets)
    return parser


def _format_options(command: argparse.ArgumentParser) -> None:
    formats = command.add_mutually_exclusive_group()
    formats.add_argument("--json", dest="format", action="store_const", const="json", help="print JSON")
    formats.add_argument("--csv", dest="format", action="store_const", const="csv", help="print CSV")
    command.set_defaults(format="table")


def run() -> None:
    """The `workbench` command: main(), then a fast exit.

    At exit Python's garbage collector walks every object torch, transformers and mlflow
    created: seconds per process, paid again by every worker. Frozen objects are skipped;
    atexit handlers and stream flushing still run.
    """
    import gc

    from workbench.core import distributed

    code = main()
    gc.freeze()
    distributed.exit_now_if_left_waiting(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_output(args.debug)
    try:
        return args.handler(args) or 0
    except (Exception, KeyboardInterrupt) as e:  # ours: one line; a bug: one line, the traceback behind --debug
        if args.debug and not isinstance(e, KeyboardInterrupt):
            raise
        message, code = exit_status(e)
        print(message, file=sys.stderr)
        return code


def _parse_sets(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise WorkbenchError(f"--set {pair!r}: expected KEY=VALUE, e.g. training.num_train_epochs=2")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_study_run(args) -> int:
    with_workers = args.workers is not None or args.workers_per_gpu is not None
    if with_workers:
        from workbench.study.forked import start_fork_server

        start_fork_server()  # first: it imports the libraries while this process does the same
    from workbench.api import result_of, run_study
    from workbench.config.study_file import load_study_file
    from workbench.core import distributed

    warm = {"study.warm_start.from": args.warm_start} if args.warm_start else {}
    spec = load_study_file(args.study_file, {**_parse_sets(args.set), **warm})
    show = _study_progress(args.quiet)
    distributed.install_interrupt_handler()
    distributed.install_preemption_handler()
    if args.trials is not None and args.trials < 0:
        raise WorkbenchError(f"--trials {args.trials}: must be 0 or more")
    if with_workers:
        from workbench.study.session import RunOptions
        from workbench.study.workers import plan_workers, run_workers, visible_gpus

        options = RunOptions(
            storage=args.storage, tracking_uri=args.tracking_uri, add_trials=args.trials, register=not args.no_register
        )
        plans = plan_workers(args.workers, args.workers_per_gpu, visible_gpus())
        outcome = run_workers(spec, options, plans, debug=args.debug, progress=show)
        result = result_of(spec, outcome, args.storage)
    else:
        result = run_study(
            spec,
            trials=args.trials,
            storage=args.storage,
            tracking_uri=args.tracking_uri,
            register=not args.no_register,
            progress=show,
        )
    if distributed.is_main():
        states = result.trials["state"].value_counts() if len(result.trials) else {}
        summary = ", ".join(f"{n} {state.lower()}" for state, n in sorted(dict(states).items()))
        print(
            f"study {result.study_name}: ran {result.trials_run} trials" + (f"; in total {summary}" if summary else "")
        )
    if distributed.is_main():
        _print_result(result, spec.registry.model_name)
    return 0


def cmd_study_conclude(args) -> int:
    from workbench.api import conclude_study
    from workbench.config.study_file import load_study_file

    spec = load_study_file(args.study_file, _parse_sets(args.set))
    result = conclude_study(
        spec, storage=args.storage, tracking_uri=args.tracking_uri, register=not args.no_register, progress=print
    )
    _print_result(result, spec.registry.model_name)
    return 0


def _print_result(result, model_name: str | None) -> None:
    """The study's best trial and the version registered, as the last lines of `study run` and `study conclude`."""
    if result.best_trial is not None:
        print(f"best: trial {result.best_trial.number}, {result.metric}={result.best_value:.4f}")
    if result.registered:
        print(f"registered {result.registered} as @challenger; next: workbench promote {model_name}")


def _study_progress(quiet: bool):
    """--quiet: failures only; a terminal: the live display; a pipe or a file: one plain line per trial."""
    from workbench.core.progress import LiveProgress, QuietProgress, StudyProgress

    write = lambda line: print(line, flush=True)  # noqa: E731
    if quiet:
        return QuietProgress(write)
    return LiveProgress() if sys.stdout.isatty() else StudyProgress(write)


def cmd_study_list(args) -> int:
    from workbench.lifecycle.views import list_studies, render_list

    print(render_list(list_studies(args.storage), args.format))
    return 0


def cmd_study_show(args) -> int:
    from workbench.lifecycle.views import render_show, show_study

    print(render_show(show_study(args.name, args.storage, args.tracking_uri), args.format))
    return 0


def cmd_ui(args) -> int:
    from workbench.lifecycle.views import run_ui
    from workbench.stores.tracking import adopt_moved_store, resolve_existing_tracking_uri

    uri = resolve_existing_tracking_uri(args.tracking_uri)
    adopt_moved_store(uri)  # the UI shows this folder's artifacts, not a moved store's original
    return run_ui(uri, args.port, on_start=lambda line: print(line, flush=True))


def cmd_server(args) -> int:
    from workbench.lifecycle.server import ServerSpec, run_server

    spec = ServerSpec(
        args.host, args.port, args.backend_store_uri, args.artifacts_destination, args.workers, args.allowed_hosts
    )
    return run_server(spec)


def _existing_store(args) -> str:
    """The tracking store of a command that reads what a study made: never created when missing; a moved one adopted."""
    from workbench.stores.tracking import adopt_moved_store, configure_mlflow, resolve_existing_tracking_uri

    uri = resolve_existing_tracking_uri(args.tracking_uri)
    adopt_moved_store(uri)
    configure_mlflow(uri)
    return uri


def cmd_promote(args) -> int:
    from workbench.core.errors import PromotionRefused
    from workbench.lifecycle.promotion import promote

    uri = _existing_store(args)
    decision = promote(
        args.model_name, uri, args.candidate, args.data, args.min_delta, args.alpha, args.dry_run, args.force
    )
    print(decision.table())
    if not decision.promoted and not args.dry_run:
        raise PromotionRefused(
            f"{args.model_name}: v{decision.candidate} not promoted: {decision.reason}; "
            f"@champion stays v{decision.champion}"
        )
    return 0


def cmd_rollback(args) -> int:
    from workbench.lifecycle.promotion import rollback

    print(rollback(args.model_name, _existing_store(args)))
    return 0


def cmd_evaluate(args) -> int:
    from workbench.lifecycle.evaluation import evaluate
    from workbench.model.inference import model_uri

    uri = _existing_store(args)
    print(evaluate(model_uri(args.model), args.data, uri).table())
    return 0


def cmd_reproduce(args) -> int:
    from workbench.lifecycle.reproduce import reproduce

    print(reproduce(args.run, _existing_store(args), progress=lambda line: print(line, flush=True)).summary())
    return 0


def cmd_predict(args) -> int:
    import shutil

    import pandas as pd

    from workbench.core.tables import write_table
    from workbench.model.inference import TEXT_COLUMN, format_predictions, load_model, model_uri, read_inputs

    frames = ([pd.DataFrame({TEXT_COLUMN: args.text})] if args.text else []) + (
        [read_inputs(args.input)] if args.input else []
    )
    if not frames:
        raise WorkbenchError("predict: give --text TEXT (repeatable) or --input FILE")
    uri = model_uri(args.model)
    if uri.startswith(("models:/", "runs:/")):
        _existing_store(args)
    rows = pd.concat(frames, ignore_index=True)
    predictions = pd.DataFrame(load_model(uri).predict(rows[[TEXT_COLUMN]]))  # pyfunc: a DataFrame, typed loosely
    frame = pd.concat([rows, predictions.reset_index(drop=True)], axis=1)
    if args.output:
        write_table(frame, args.output, "--output")
        print(f"wrote {len(frame)} predictions to {args.output}")
    else:
        print(format_predictions(frame, shutil.get_terminal_size().columns))
    return 0
