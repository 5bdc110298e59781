"""The `skysift` command: serve a stage, poll, run a round, label, score, dev, bench, experiment.

Heavy libraries (MLflow, scikit-learn) are imported inside commands, so `--help` and `serve` stay fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Optional

import typer

from skysift import config, errors
from skysift.cliutil import exit_code, fail, load_settings

app = typer.Typer(
    help="skysift: active learning on astronomical alert streams (ZTF, Rubin/LSST).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def serve(
    service: str = typer.Argument(..., help=f"One of: {', '.join(config.SERVICES)}."),
    port: Optional[int] = typer.Option(None, help="gRPC port (default: the port of SKYSIFT_<SERVICE>_ADDRESS)."),
    metrics_port: Optional[int] = typer.Option(None, help="Prometheus /metrics port (default: gRPC port + 1000; 0 picks a free port)."),
) -> None:
    """Run one gRPC service until SIGTERM (health, reflection and metrics included)."""
    from skysift import logs, modeltags
    from skysift.rpc import server

    if service not in config.SERVICES:
        fail(f"unknown service {service!r}; expected one of {', '.join(config.SERVICES)}")
    settings = load_settings()
    logs.setup(settings.log_level, settings.log_json)
    port = port if port is not None else int(settings.address(service).rsplit(":", 1)[1])
    metrics_port = metrics_port if metrics_port is not None else port + 1000
    module = importlib.import_module(f"skysift.{service}.service")
    try:
        modeltags.vocabulary()  # every service reads the taxonomy file: a bad one stops start-up, naming its line
        running = server.start(service, lambda s: module.register(s, settings), settings, port, metrics_port)
    except (errors.SkysiftError, OSError) as exc:  # a port taken (OSError) is a runtime failure, not bad input
        fail(f"{service} failed to start: {exc}", code=exit_code(exc) if isinstance(exc, errors.SkysiftError) else 1)
    server.serve_forever(running, settings.shutdown_grace_seconds)
    getattr(module, "close", lambda: None)()  # a service holding a connection (ingest's consumer) lets go of it


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"not a duration: {text!r} (use e.g. 60s, 5m, 1h)") from None


@app.command()
def poll(
    max_alerts: Optional[int] = typer.Option(None, help="Stop at the message (Kafka message, replayed file) that brings the alerts to this many, taken whole: a multi-alert container crossing the bound is finished, never split; the rest waits for the next poll (default: SKYSIFT_INGEST_MAX_ALERTS, 1000)."),
    timeout: Optional[str] = typer.Option(None, help="Stop after this long, e.g. 60s or 5m (default: SKYSIFT_INGEST_TIMEOUT_S)."),
    from_path: Optional[str] = typer.Option(None, "--from", help="Replay instead of Kafka: a file or directory of alert packets; store://PREFIX, keys of the configured store (e.g. store://alerts/survey=ztf/night=20250101/: that night's alerts batches go through enrichment, features and inference again, not rewritten); or s3://BUCKET/PREFIX, another bucket of the same endpoint (copied in, deduplicated)."),
    in_process: bool = typer.Option(False, "--in-process", help="Run the stages in this process, without the gRPC services."),
    keep_cutouts: Optional[bool] = typer.Option(None, "--keep-cutouts/--no-cutouts", help="Keep image stamps in cutouts/."),
    filter_name: Optional[str] = typer.Option(None, "--filter", help="Filter preset, e.g. fink_vra."),
    every: Optional[str] = typer.Option(None, help="Keep polling, one poll per interval (e.g. 0s, 5m), until SIGTERM: the long-lived consumer mode."),
    drain: bool = typer.Option(False, help="Keep polling until a poll finds no message (the --from path read to its end, or the topic caught up), then exit: a backfill. Implies --every 0s."),
) -> None:
    """Poll once through every stage (ingest, enrichment, features, inference) and print what was written where.

    Exits non-zero when the poll fails (store or broker down), so a CronJob retries; nothing is committed then.
    """
    import signal
    import threading
    import time

    from skysift import pipeline

    settings = load_settings()
    stages = pipeline.InProcessStages(settings) if in_process else pipeline.GrpcStages(settings)
    interval = parse_duration(every) if every is not None else (0.0 if drain else None)
    stop = threading.Event()
    if interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if not in_process:  # a poller started beside its ingest server must not fail its first poll
            from skysift.rpc.channels import wait_serving

            try:
                wait_serving(settings.ingest_address, timeout=120)
            except TimeoutError as exc:
                fail(f"poll failed: {exc}", code=1)
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = pipeline.run_poll(stages, max_alerts=max_alerts,
                                           timeout_s=parse_duration(timeout) if timeout else None, replay_path=from_path,
                                           keep_cutouts=keep_cutouts, filter_name=filter_name)
            except errors.SkysiftError as exc:
                fail(f"poll failed: {exc}", code=exit_code(exc))
            for line in report.lines():
                typer.echo(line)
            if interval is None or (drain and report.counts["messages"] == 0):
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if in_process:  # leave the consumer group on every way out, so the next poll gets its partitions at once
            stages.close()


@app.command()
def dev(
    once: bool = typer.Option(False, help="Stop everything after the first poll (smoke test)."),
    workdir: str = typer.Option(".skysift", help="Where the local store, MLflow database and logs go."),
    mlflow_port: int = typer.Option(5000, help="Port of the local MLflow server."),
    app_port: int = typer.Option(8501, help="Port of the Streamlit app."),
    demo: str = typer.Option("demo/alerts", help="Alert packets replayed by the first poll."),
) -> None:
    """Run the whole system on loopback: MLflow, the five services, one poll of the demo alerts (stamps kept),
    round 0 of the experiment the app opens on, Streamlit; then print how to reach it from another shell."""
    import os
    from pathlib import Path

    from skysift import devstack, pipeline
    from skysift.modeltags import DEFAULT_EXPERIMENT

    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SKYSIFT_STORE_URL": os.environ.get("SKYSIFT_STORE_URL", str(work / "store")),
           "SKYSIFT_LOG_JSON": os.environ.get("SKYSIFT_LOG_JSON", "true")}
    stack = devstack.Stack(work)
    try:
        token_file = devstack.local_token(work, env)
        typer.echo(f"starting MLflow on 127.0.0.1:{mlflow_port} (first start takes ~20 s, minutes on a busy machine) ...")
        env["SKYSIFT_MLFLOW_TRACKING_URI"] = devstack.start_mlflow(stack, mlflow_port, env)
        typer.echo("starting services ...")
        addresses = devstack.start_services(stack, env, load_settings())
        for service, address in addresses.items():
            typer.echo(f"  {service:<11} grpc://{address}  SERVING  (metrics http://{address.rsplit(':', 1)[0]}:{int(address.rsplit(':', 1)[1]) + 1000}/metrics)")
        os.environ.clear()  # this process polls as the stack's client: exactly its environment (and token)
        os.environ.update(env)
        settings = load_settings()
        typer.echo(f"polling the demo alerts in {demo} through gRPC, stamps kept ...")
        report = pipeline.run_poll(pipeline.GrpcStages(settings), replay_path=str(Path(demo).resolve()),
                                   keep_cutouts=True)
        for line in report.lines():
            typer.echo(line)
        typer.echo(devstack.first_round(settings))
        app_url = None if once else devstack.start_app(stack, app_port, env, Path.cwd())
        typer.echo(f"store:   {env['SKYSIFT_STORE_URL']}")
        typer.echo(f"MLflow:  {env['SKYSIFT_MLFLOW_TRACKING_URI']}")
        if app_url:
            typer.echo(f"app:     {app_url}  (opens on experiment {DEFAULT_EXPERIMENT!r})")
        typer.echo(f"logs:    {work}/*.log")
        typer.echo("in another shell, to use this stack (skysift round, poll, experiment, config check):")
        for line in devstack.export_lines(env, addresses):
            typer.echo(f"  {line}")
        if token_file:
            typer.echo(f"token:   {token_file} (identity dev, roles operator and app): every gRPC call but health "
                       "needs it (the export above names it)")
        if not once:
            typer.echo("serving; Ctrl-C to stop")
            import signal
            import threading

            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    except (errors.SkysiftError, RuntimeError, TimeoutError) as exc:
        fail(f"dev stack failed: {exc} (see {work}/*.log)", code=1)
    finally:
        typer.echo("stopping ...")
        stack.stop()


@app.command()
def bench(
    alerts: int = typer.Option(10_000, help="ZTF alerts per case (real alerts repeated with distinct candids)."),
    pools: str = typer.Option("10000,100000,1000000", help="Active-learning pool sizes, comma-separated."),
    sections: str = typer.Option(",".join(("ingest", "features", "al", "e2e", "inference", "store", "scaling")),
                                 help="What to measure, comma-separated."),
    out: str = typer.Option("bench/results.json", help="Where the JSON results go ('' for none)."),
    budget: float = typer.Option(250.0, help="Seconds; the largest pools are skipped (and said so) past this."),
    cpu: Optional[int] = typer.Option(None, help="CPU to pin the measuring process to (default: the last allowed)."),
    p99_runs: int = typer.Option(10, min=1, help="Runs of the one-alert gRPC scoring case, each with its own p99."),
) -> None:
    """Throughput, latency and memory of each stage on one core, beside the prototype's path and the decode floor.

    Runs from a checkout: the benchmark (``bench/``) and its alerts (``tests/data/``) are not installed."""
    from pathlib import Path

    checkout = Path.cwd()
    if not (checkout / "bench" / "runner.py").is_file():
        fail(f"skysift bench runs from a checkout of skysift (no bench/runner.py under {checkout})")
    sys.path.insert(0, str(checkout))
    from bench import runner  # sets nothing at import; threads are limited before the heavy imports

    runner.single_thread_env()
    options = runner.Options(n_alerts=alerts, pools=tuple(int(p) for p in pools.split(",") if p.strip()),
                             sections=tuple(s.strip() for s in sections.split(",") if s.strip()),
                             out=Path(out) if out else None, budget_s=budget, cpu=cpu, p99_runs=p99_runs)
    unknown = set(options.sections) - set(runner.SECTIONS)
    if unknown:
        fail(f"unknown section(s) {', '.join(sorted(unknown))}; expected some of {', '.join(runner.SECTIONS)}")
    report = runner.run(options)
    for line in report.lines():
        typer.echo(line)
    if out:
        typer.echo(f"results: {out}")


UNIT_SETTINGS = (
    "skysift.ingest.settings:IngestSettings",
    "skysift.ingest.settings:KafkaSettings",
    "skysift.enrichment.settings:EnrichmentSettings",
    "skysift.features.settings:FeaturesSettings",
    "skysift.inference.settings:InferenceSettings",
    "skysift.trainer.settings:TrainerSettings",
    "skysift.app.settings:AppSettings",
    "skysift.access:AuthSettings",
)


@config_app.command("check")
def config_check() -> None:
    """Validate the shared settings and every unit's (ingest, Kafka, enrichment, features, inference and its sinks,
    trainer, app, gRPC auth) against the environment, and print each by its environment variable, with secrets masked; the
    ones set in this environment are marked."""
    from pydantic import SecretStr
    from pydantic_settings import BaseSettings

    def show(model: BaseSettings) -> None:
        prefix = model.model_config.get("env_prefix", "")
        for name, value in model:
            if isinstance(value, BaseSettings):  # a unit's sink, with variables of its own
                show(value)
                continue
            env = f"{prefix}{name}".upper()
            shown = "***" if isinstance(value, SecretStr) else value
            typer.echo(f"{env} = {shown}{'  (set here)' if env in os.environ else ''}")

    show(load_settings())
    for path in UNIT_SETTINGS:
        module, cls = path.split(":")
        try:
            show(config.load(getattr(importlib.import_module(module), cls)))
        except errors.ConfigError as exc:
            fail(str(exc))
    typer.secho("configuration OK", fg=typer.colors.GREEN)


from skysift.inference.cli import score  # noqa: E402 - the command lives beside its unit

app.command("score")(score)

from skysift.trainer import cli as trainer_cli  # noqa: E402 - round, experiment, label import|export

trainer_cli.register(app)

from skysift.ingest import cli as ingest_cli  # noqa: E402 - kafka offsets|reset

ingest_cli.register(app)

from skysift.enrichment import cli as enrichment_cli  # noqa: E402 - catalogs install|show

enrichment_cli.register(app)


def main() -> None:
    """Console entry point: run the command, flush, then leave without the interpreter's native teardown.

    By the time a command returns, its work is durable (a poll commits offsets only after its parquet is written).
    Tearing down native thread pools at interpreter exit can still abort the process with SIGABRT ("terminate called
    without an active exception", apache/arrow#34314), intermittently; a CronJob would then count a finished poll as
    failed and run it again. ``os._exit`` after an explicit flush keeps the command's exit code.
    """
    from skysift import logs

    logs.setup_cli()
    try:
        app()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said to it
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
