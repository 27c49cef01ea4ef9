"""``automl zoo build|list|request|finetune`` and ``automl serve``: argparse wiring for the zoo.

:func:`add_zoo_command` and :func:`add_serve_command` (entry points of ``automl.commands``) add the
subcommands to automl's subparsers; each sets ``handler`` (the function to run) on the parsed
namespace, which ``automl.cli.main`` calls. Heavy imports (torch,
FastAPI) happen inside the commands, so ``automl --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from automl.cli_types import int_at_least, key_value

DEFAULT_ZOO = Path("automl-runs/zoo")
DEFAULT_STORAGE = "sqlite:///automl-runs/zoo-experience.db"
DEFAULT_URL = "http://127.0.0.1:8000"


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the time budget must be positive, got {value}")
    return value


_body_bytes = int_at_least(1, "number of bytes", most=1 << 30)
_workers = int_at_least(1, "number of worker processes", most=256)
_in_flight = int_at_least(1, "number of requests", most=1 << 20)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 1,8,8), got {text!r}") from None
    return c, h, w


def add_zoo_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``zoo`` (build, list, request, finetune) to automl's subcommands (entry point ``automl.commands``)."""
    zoo = sub.add_parser("zoo", help="NASOA model zoo: build, list, request a schedule, fine-tune")
    zsub = zoo.add_subparsers(dest="zoo_action", required=True)

    build = zsub.add_parser("build", help="search the nasoa space, pre-train the Pareto front, write a zoo")
    build.add_argument("--out", type=Path, default=DEFAULT_ZOO, help=f"zoo directory (default {DEFAULT_ZOO})")
    build.add_argument("--space", default="nasoa", help="space name or YAML path (default nasoa)")
    build.add_argument("--strategy", default="morphism-evolution",
                       help="multi-objective strategy: morphism-evolution (default; the paper's mutations), "
                            "evolution or nsga2")
    build.add_argument("--trials", type=int, default=30, help="search trials (default 30)")
    build.add_argument("--models", type=int, default=6, help="models in the zoo (default 6)")
    build.add_argument("--pretrain-epochs", type=int, default=15, help="source-task epochs per model (default 15)")
    build.add_argument("--seed-tasks", type=int, default=8, help="target tasks of seed experience (default 8)")
    build.add_argument("--seed-schedules", type=int, default=12, help="random schedules per seed task (default 12)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--overwrite", action="store_true", help="replace a zoo already in --out")
    build.set_defaults(handler=cmd_build)

    lst = zsub.add_parser("list", help="the models of a zoo (a directory, or a running service with --url)")
    lst.add_argument("--zoo", type=Path, default=DEFAULT_ZOO, help=f"zoo directory (default {DEFAULT_ZOO})")
    lst.add_argument("--url", help="list the zoo of a running service instead")
    lst.set_defaults(handler=cmd_list)

    for name, help_, fn in (("request", "ask a running service for a fine-tuning schedule", cmd_request),
                            ("finetune", "request a schedule, run it here, report the outcome", cmd_finetune)):
        p = zsub.add_parser(name, help=help_)
        p.add_argument("--url", default=DEFAULT_URL, help=f"service URL (default {DEFAULT_URL})")
        p.add_argument("--budget", type=_budget, required=True, help="fine-tuning time budget in seconds")
        p.add_argument("--task", help="a registered task to describe (e.g. digits-transfer)")
        p.add_argument("--task-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="a task option, e.g. rotation=30 or classes=[5,7,9] (repeatable)")
        p.add_argument("--zoo", type=Path, help="a local copy of the zoo for probes and weights (default: "
                       "download it from the service into automl-runs/zoo-cache/)")
        p.add_argument("--no-probe", action="store_true", help="send no linear-probe scores (faster, less informed)")
        p.add_argument("--json", action="store_true", help="print the service's JSON answer")
        p.add_argument("--seed", type=int, default=0)
        if name == "request":
            p.add_argument("--classes", type=int, help="without --task: number of classes")
            p.add_argument("--samples", type=int, help="without --task: number of training samples")
            p.add_argument("--input-shape", type=_shape, help="without --task: C,H,W of one input")
        else:
            p.add_argument("--no-report", action="store_true", help="do not report the outcome to the service")
        p.set_defaults(handler=fn)


def add_serve_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to automl's subcommands (entry point ``automl.commands``)."""
    serve = sub.add_parser("serve", help="run the fine-tuning schedule service (HTTP, OpenAPI at /docs)")
    serve.add_argument("--zoo", type=Path, required=True, help="zoo directory (from automl zoo build)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--storage", default=DEFAULT_STORAGE,
                       help=f"experience database URL (default {DEFAULT_STORAGE}; PostgreSQL: "
                            "postgresql+psycopg://user:pass@host/db)")
    serve.add_argument("--max-body-bytes", type=_body_bytes, default=None, metavar="N",
                       help="refuse request bodies larger than N bytes with 413, before parsing (default 65536: "
                            "four times the largest legitimate request)")
    serve.add_argument("--workers", type=_workers, default=1, metavar="N",
                       help="server processes sharing the port and the database (default 1; one per core is "
                            "the usual choice)")
    serve.add_argument("--max-in-flight", type=_in_flight, default=None, metavar="N",
                       help="requests one process answers at once; beyond, 503 with Retry-After (default 256)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text (default) or json: one JSON object per line, for log collectors")
    serve.add_argument("--access-log", action="store_true",
                       help="log every request (off by default: /metrics counts them at no cost)")
    serve.set_defaults(handler=cmd_serve)


def _console() -> Any:
    from rich.console import Console

    return Console()


def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)  # small models: one thread avoids oversubscription on shared machines


def cmd_build(args: argparse.Namespace) -> int:
    import logging

    from zoo.build import BuildConfig, build_zoo

    _torch_threads()
    logging.getLogger("optuna").setLevel(logging.WARNING)
    console = _console()
    config = _validated(BuildConfig, out=args.out, space=args.space, strategy=args.strategy, trials=args.trials,
                        models=args.models, pretrain_epochs=args.pretrain_epochs, seed_tasks=args.seed_tasks,
                        seed_schedules=args.seed_schedules, seed=args.seed, overwrite=args.overwrite)
    zoo = build_zoo(config, console)
    console.print(_zoo_table(list(zoo), f"Model zoo {zoo.root}"))
    build = zoo.manifest.build
    console.print(f"built in {build.get('total_seconds', 0):.0f} s (search {build.get('search_seconds', 0):.0f} s, "
                  f"pre-train {build.get('pretrain_seconds', 0):.0f} s, seed experience "
                  f"{build.get('seed_experience_seconds', 0):.0f} s: {len(zoo.seed_experience)} runs)\n"
                  f"serve it: automl serve --zoo {zoo.root}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    console = _console()
    if args.url:
        from zoo.client import ZooClient

        with ZooClient(args.url) as client:
            cards = client.models()
        console.print(_zoo_table(cards, f"Model zoo at {args.url}"))
        return 0
    from zoo.card import Zoo

    zoo = Zoo.load(args.zoo)
    console.print(_zoo_table(list(zoo), f"Model zoo {zoo.root} (source task {zoo.manifest.source_task})"))
    console.print(f"seed experience: {len(zoo.seed_experience)} fine-tuning runs")
    return 0


def _local_zoo(args: argparse.Namespace, client: Any) -> Any:
    from zoo.card import Zoo

    if args.zoo is not None:
        return Zoo.load(args.zoo)
    from urllib.parse import urlparse

    where = urlparse(client.url)
    return client.download_zoo(Path("automl-runs/zoo-cache") / f"{where.hostname}_{where.port or 80}")


def _task_request(args: argparse.Namespace, client: Any, need_data: bool) -> tuple[Any, Any, Any]:
    """(ScheduleRequest, task data or None, local zoo or None) from the command's arguments."""
    from zoo.errors import ZooError
    from zoo.schema import ScheduleRequest, TaskMeta

    if args.task is None:
        if need_data or None in (getattr(args, "classes", None), getattr(args, "samples", None),
                                 getattr(args, "input_shape", None)):
            raise ZooError("describe the task: --task NAME [--task-option K=V ...]" +
                           ("" if need_data else ", or --classes, --samples and --input-shape"))
        meta = _validated(TaskMeta, name="cli", num_classes=args.classes, num_samples=args.samples,
                          input_shape=args.input_shape)
        return _validated(ScheduleRequest, task=meta, time_budget_s=args.budget), None, None
    from zoo.features import task_meta
    from zoo.tasks import load_task

    _torch_threads()
    options = dict(args.task_option)
    try:
        data = load_task(args.task, options)
    except TypeError as exc:
        raise ZooError(f"task {args.task!r}: bad options {sorted(options)}: {exc}") from None
    zoo = None if args.no_probe and not need_data else _local_zoo(args, client)
    meta = task_meta(None if args.no_probe else zoo, data, name=args.task, seed=args.seed)
    return _validated(ScheduleRequest, task=meta, time_budget_s=args.budget), data, zoo


def cmd_request(args: argparse.Namespace) -> int:
    from zoo.client import ZooClient

    with ZooClient(args.url) as client:
        request, _, _ = _task_request(args, client, need_data=False)
        decision = client.schedule(request)
    if args.json:
        print(decision.model_dump_json(indent=2))
    else:
        _console().print(_decision_table(decision, request.time_budget_s))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from zoo.client import ZooClient
    from zoo.finetune import finetune
    from zoo.schema import OutcomeReport

    console = _console()
    with ZooClient(args.url) as client:
        request, data, zoo = _task_request(args, client, need_data=True)
        decision = client.schedule(request)
        s = decision.best.schedule
        if args.json:
            outcome = finetune(zoo, s, data, seed=args.seed)
        else:
            console.print(_decision_table(decision, request.time_budget_s))
            with console.status(f"fine-tuning {s.model_id} for {s.epochs} epochs at lr {s.lr:g} "
                                f"({s.frozen_stages} stages frozen)"):
                outcome = finetune(zoo, s, data, seed=args.seed)
        ack = None
        if not args.no_report:
            ack = client.report(OutcomeReport(request_id=decision.request_id, accuracy=outcome.accuracy,
                                              seconds=outcome.seconds))
    result = {"request_id": decision.request_id, "schedule": s.model_dump(), "accuracy": outcome.accuracy,
              "seconds": outcome.seconds, "predicted_accuracy": decision.best.predicted_accuracy,
              "predicted_seconds": decision.best.predicted_seconds, "reported": ack}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        console.print(f"accuracy {outcome.accuracy:.4f} (predicted {decision.best.predicted_accuracy:.4f}) in "
                      f"{outcome.seconds:.2f} s (predicted {decision.best.predicted_seconds:.2f} s, budget "
                      f"{request.time_budget_s:g} s)" + (f" · reported as outcome {ack['id']}, the service now "
                                                          f"learns from {ack['experience']} runs" if ack else ""))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import os
    import tempfile

    import uvicorn

    from zoo.card import Zoo
    from zoo.logs import configure_logging
    from zoo.middleware import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT
    from zoo.service import ENV_MAX_BODY, ENV_MAX_IN_FLIGHT, ENV_STORAGE, ENV_ZOO, create_app
    from zoo.store import Store, redacted

    _torch_threads()
    max_body = args.max_body_bytes or DEFAULT_MAX_BODY_BYTES
    max_in_flight = args.max_in_flight or DEFAULT_MAX_IN_FLIGHT
    log_config = configure_logging(args.log_format, args.log_level)
    logging.getLogger("zoo").setLevel(args.log_level.upper())
    where = f"http://{args.host}:{args.port}"
    settings: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level,
                                "log_config": log_config, "access_log": args.access_log,
                                "timeout_graceful_shutdown": 30}
    if args.workers == 1:
        app = create_app(args.zoo, args.storage, max_body_bytes=max_body, max_in_flight=max_in_flight)
        print(f"serving zoo {args.zoo} on {where} (docs: {where}/docs) · storage {redacted(args.storage)}",
              file=sys.stderr, flush=True)
        uvicorn.run(app, **settings)
        return 0
    Zoo.load(args.zoo)  # a bad zoo or storage URL is one message here, not one per worker
    Store(args.storage).close()
    with tempfile.TemporaryDirectory(prefix="automl-serve-metrics-") as metrics_dir:
        # each worker imports the app factory afresh and reads its settings (and the shared metrics
        # folder of prometheus_client's multiprocess mode) from the environment it inherits
        os.environ.update({ENV_ZOO: str(args.zoo), ENV_STORAGE: args.storage, ENV_MAX_BODY: str(max_body),
                           ENV_MAX_IN_FLIGHT: str(max_in_flight), "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
        print(f"serving zoo {args.zoo} on {where} with {args.workers} worker processes (docs: {where}/docs) · "
              f"storage {redacted(args.storage)}", file=sys.stderr, flush=True)
        uvicorn.run("zoo.service:app_from_environment", factory=True, workers=args.workers, **settings)
    return 0


def _validated(model: Any, **values: Any) -> Any:
    """``model(**values)``, with a validation failure turned into a one-line ZooError."""
    from pydantic import ValidationError

    from zoo.errors import ZooError

    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        raise ZooError(f"{where}: {err.get('msg')}" if where else str(err.get("msg"))) from None


def _zoo_table(cards: list[Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "architecture", "params", "MFLOPs", "train samples/s (frozen 0/1/2)", "source acc"):
        table.add_column(col, justify="left" if col in ("model", "architecture") else "right")
    for c in cards:
        tput = "/".join(f"{c.train_samples_per_s[k]:.0f}" for k in sorted(c.train_samples_per_s))
        table.add_row(c.id, c.arch, f"{c.params:,}", f"{c.flops / 1e6:.2f}", tput, f"{c.source_accuracy:.4f}")
    return table


def _decision_table(decision: Any, budget: float) -> Any:
    from rich.table import Table

    table = Table(title=f"Schedule for a {budget:g} s budget (predictor: {decision.predictor}, "
                        f"{decision.experience} runs of experience, {decision.candidates} candidates)")
    for col in ("", "model", "lr", "frozen stages", "epochs", "batch", "pred. accuracy", "pred. seconds"):
        table.add_column(col)
    for label, p in [("best", decision.best), *(("alt", a) for a in decision.alternatives)]:
        s = p.schedule
        table.add_row(label, s.model_id, f"{s.lr:g}", str(s.frozen_stages), str(s.epochs), str(s.batch_size),
                      f"{p.predicted_accuracy:.4f}", f"{p.predicted_seconds:.2f}")
    table.caption = f"request id {decision.request_id}"
    return table


