"""`skysift kafka offsets|reset`: where the ingest consumer group stands on its topics, and moving it; `skysift
status`: what the store holds at each stage, what is behind, the dead letters and the Kafka lag; `skysift ingest
reset-cursor`: read a replay path again; `skysift dlq list|replay`: the dead letters, and re-driving them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from skysift import config, errors
from skysift.cliutil import exit_code, fail, load_settings

kafka_app = typer.Typer(help="The ingest consumer group's offsets on its topics (SKYSIFT_KAFKA_*).", no_args_is_help=True)


def _settings():
    from skysift.ingest.settings import KafkaSettings

    return config.load(KafkaSettings)


def _table(title: str, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in ("topic", "partition", "committed", "high watermark", "lag"):
        table.add_column(name, justify="left" if name == "topic" else "right")
    for r in rows:
        table.add_row(r.topic, str(r.partition), "-" if r.committed is None else str(r.committed), str(r.high), str(r.lag))
    Console().print(table)
    typer.echo(f"total lag: {sum(r.lag for r in rows)}")


def _run(fn):
    try:
        return fn()
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))


@kafka_app.command("offsets")
def offsets(topic: Optional[str] = typer.Option(None, help="Only this topic (default: every SKYSIFT_KAFKA_TOPICS).")) -> None:
    """Per topic and partition: the group's committed offset ('-' if none), the high watermark and the lag."""
    from skysift.ingest import offsets as core

    settings = _run(_settings)
    _table(f"group {settings.group_id}", _run(lambda: core.group_offsets(settings, topic)))


@kafka_app.command("reset")
def reset(
    to: str = typer.Option(..., "--to", help="earliest (re-read what the topic holds), latest (skip the backlog) or "
                                             "an offset, applied to every partition and clamped to what each holds."),
    topic: Optional[str] = typer.Option(None, help="Only this topic (default: every SKYSIFT_KAFKA_TOPICS)."),
) -> None:
    """Move the group's committed offsets. Refused while the group has live members (stop the pollers first).
    Re-read alerts are deduplicated by candid, so a reset to earliest adds no alert twice to the store."""
    from skysift.ingest import offsets as core

    settings = _run(_settings)
    _table(f"group {settings.group_id} reset to {to}", _run(lambda: core.reset_offsets(settings, to, topic)))


def status(days: float = typer.Option(30.0, help="Batches written by the polls of this many past days.")) -> None:
    """Per survey and observing night: alerts, enriched, features and predictions batches written in the window, and
    how many alerts batches lack a later stage (the next polls bring them up to date); then the dead letters and,
    with a Kafka source, the consumer group's lag."""
    from datetime import datetime, timedelta, timezone

    from rich.console import Console
    from rich.table import Table

    from skysift import backlog
    from skysift.ingest import offsets as core
    from skysift.ingest.settings import IngestSettings
    from skysift.store import open_store

    settings = load_settings()
    store = open_store(settings=settings)
    now, window = datetime.now(timezone.utc), timedelta(days=days)
    listing = _run(lambda: backlog.list_stages(store))
    scored, champions_unknown = None, ""
    try:
        scored = backlog.list_scored(store, _champion_versions(settings), listing["alerts"], now, window)
    except errors.SkysiftError as exc:
        champions_unknown = str(exc)
    rows = backlog.night_status(listing, now, window, scored)
    table = Table(title=f"batches written in the last {days:g} days ({store.url})")
    for name in ("survey", "night", *listing, "behind", "rescore"):
        table.add_column(name, justify="left" if name in ("survey", "night") else "right")
    for r in rows:
        table.add_row(r.survey, r.night, *(str(r.batches[s]) for s in listing), str(r.behind),
                      "?" if scored is None else str(r.rescore))
    Console(width=120).print(table)
    behind = sum(r.behind for r in rows)
    typer.echo(f"behind: {behind} alerts batches" + (" (each poll brings the oldest up to date)" if behind else ""))
    if scored is None:
        typer.echo(f"re-scoring: unknown (the current champions could not be read: {champions_unknown})")
    else:
        rescore = sum(r.rescore for r in rows)
        typer.echo(f"re-scoring: {rescore} alerts batches not yet scored by the current champions "
                   f"({', '.join(f'{n} v{v}' for n, v in scored) or 'none yet'})")
    dead = _run(lambda: store.list_keys("dlq/"))
    typer.echo(f"dead letters: {len(dead)} files under dlq/" + (f", newest {max(dead)}" if dead else ""))
    if _run(lambda: config.load(IngestSettings)).source == "kafka":
        try:
            lag = sum(r.lag for r in core.group_offsets(_settings()))
            typer.echo(f"kafka lag: {lag} messages")
        except errors.SkysiftError as exc:
            typer.echo(f"kafka lag: unknown ({exc})")
    else:
        typer.echo("kafka lag: - (the ingest source is a replay)")


def _champion_versions(settings) -> list[tuple[str, str]]:
    """The versions the inference service's alias points to, read from the registry as the service reads them."""
    from skysift.inference.registry import ChampionRegistry
    from skysift.inference.settings import InferenceSettings

    inference = config.load(InferenceSettings)
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []  # no registry yet (and asking would create its database)
    registry = ChampionRegistry(settings.mlflow_tracking_uri, inference.model_tags, inference.alias,
                                model_prefix=settings.mlflow_model_prefix)
    return registry.champion_versions()


ingest_app = typer.Typer(help="The ingest stage's replay sources.", no_args_is_help=True)


@ingest_app.command("reset-cursor")
def reset_cursor(path: str = typer.Argument(..., help="The replay path as given to `skysift poll --from` (a file or "
                                                       "directory, store://PREFIX or s3://BUCKET/PREFIX).")) -> None:
    """Forget which files of a replay path were read, so the next `skysift poll --from PATH` reads it from its start
    (e.g. again with --keep-cutouts). Alerts already in the store are skipped as duplicates by candid."""
    from skysift.ingest.replay import open_replay
    from skysift.store import open_store

    settings = load_settings()
    source = _run(lambda: open_replay(path, open_store(settings=settings), settings))
    read = _run(source.reset)
    typer.echo(f"replay cursor of {source.where} reset: {read} of its {len(source.names)} files had been read; "
               "the next poll of it reads them all again")


dlq_app = typer.Typer(help="The ingest stage's dead letters (dlq/ingest/): packets a poll could not decode.",
                      no_args_is_help=True)
NIGHT_HELP = "Only the dead letters written on this night (YYYYMMDD, UTC)."
EVERY_LETTER = 2**31 - 1  # one replay takes every letter: a bound would leave the rest for a second replay


@dlq_app.command("list")
def dlq_list(night: Optional[str] = typer.Option(None, help=NIGHT_HELP)) -> None:
    """Dead letters by night written, topic (or replay path) and reason, with how many of each."""
    from rich.console import Console
    from rich.table import Table

    from skysift.ingest import deadletters
    from skysift.store import open_store

    store = open_store(settings=load_settings())
    groups = _run(lambda: deadletters.summary(store, deadletters.night_prefix(night)))
    table = Table(title=f"dead letters under {deadletters.night_prefix(night)} ({store.url})")
    for name in ("night", "topic", "reason", "letters"):
        table.add_column(name, justify="right" if name == "letters" else "left", overflow="fold")
    for g in groups:
        table.add_row(g.night, g.topic, g.reason, str(g.count))
    Console(width=160).print(table)
    typer.echo(f"total: {sum(g.count for g in groups)} dead letters")


@dlq_app.command("replay")
def dlq_replay(night: Optional[str] = typer.Option(None, help=NIGHT_HELP)) -> None:
    """Re-drive the dead letters, once their cause is fixed (a setting, a schema, a new release), through a poll
    in this process: decoded with the current settings (a Kafka letter with its kept key and headers), deduplicated
    by candid against the store (an alert stored meanwhile is not stored twice), then enriched, featurised and
    scored. A letter that fails again is written anew with its new error; the others leave dlq/."""
    from skysift import pipeline
    from skysift.ingest import deadletters

    settings = load_settings()
    path = deadletters.SCHEME + _run(lambda: deadletters.night_prefix(night)).removeprefix("dlq/")
    stages = pipeline.InProcessStages(settings)
    report = _run(lambda: pipeline.run_poll(stages, replay_path=path, max_alerts=EVERY_LETTER))
    for line in report.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(kafka_app, name="kafka")
    app.command("status")(status)
    app.add_typer(ingest_app, name="ingest")
