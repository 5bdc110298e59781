"""`skysift round`, `skysift experiment`, `skysift label import|export` and `skysift dataset collect|list|show`,
registered on the main app.

Imported when the CLI starts, so everything heavy (MLflow, scikit-learn, gRPC stubs) is imported inside commands;
the survey registry is not, as ``--survey``'s help lists its names.
"""

from __future__ import annotations

from pathlib import Path

import typer

from skysift.alerts import surveys
from skysift.cliutil import exit_code, fail, load_settings
from skysift.modeltags import DEFAULT_EXPERIMENT, default_tag

label_app = typer.Typer(help="Import or export labels (the prototype's labels.csv columns).", no_args_is_help=True)
dataset_app = typer.Typer(help="Collect, list and inspect training datasets (alerts of a time window with labels, "
                               "quality-checked); `skysift round --dataset ID` trains on one.", no_args_is_help=True)


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            fail(f"--param expects name=value, got {item!r}")
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def _csv(text: str, cast=str) -> list:
    try:
        return [cast(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"cannot read {text!r} as a comma-separated list of {cast.__name__}")


def round_command(
    experiment: str = typer.Option(DEFAULT_EXPERIMENT, help="Experiment name: rounds/<experiment>/ and the MLflow "
                                                            "experiment."),
    model_tag: str = typer.Option("", help="Model tag of the taxonomy file (SKYSIFT_TAXONOMY_FILE); default: its "
                                           "default_tag (galactic in the packaged file)."),
    strategy: str | None = typer.Option(None, help="default, random, uncertainty, margin, entropy, committee, "
                                                      "diverse, diverse_uncertainty, balanced or density "
                                                      "(default SKYSIFT_TRAINER_STRATEGY)."),
    batch_size: int | None = typer.Option(None, help="Alerts queued per round (default 10)."),
    initial_batch_size: int | None = typer.Option(None, help="Random alerts queued while no model exists (default 30)."),
    seed: int = typer.Option(0, help="Seed of the random choices (initial batch, ties, held-out split)."),
    param: list[str] = typer.Option([], "--param", help="Model parameter name=value (learning_rate, max_iter, l2, "
                                                        "class_weight=balanced, min_samples_leaf); repeatable."),
    force: bool = typer.Option(False, help="Run even when no label changed since the last round (or on a dataset "
                                           "that failed its quality checks)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Train on this collected dataset id instead of the "
                                                                "label events."),
    pool_survey: str | None = typer.Option(None, help="Queue only this survey's alerts (default "
                                                      "SKYSIFT_TRAINER_POOL_SURVEY)."),
    pool_band: str | None = typer.Option(None, help="Queue only alerts with light-curve features in this band: u, g, "
                                                    "r, i, z or y (default SKYSIFT_TRAINER_POOL_BAND)."),
    pool_min_detections: int | None = typer.Option(None, help="Queue only alerts with at least this many detections "
                                                              "(default SKYSIFT_TRAINER_POOL_MIN_DETECTIONS)."),
    in_process: bool = typer.Option(False, "--in-process", help="Run here instead of calling the trainer service "
                                                                 "at SKYSIFT_TRAINER_ADDRESS."),
) -> None:
    """Run one active-learning round: train, evaluate, register, and queue the next alerts to label.

    Idempotent: without new labels it reports the last round instead of making another.
    """
    from skysift import config, errors
    from skysift.trainer.settings import TrainerSettings

    settings = load_settings()
    ts = config.load(TrainerSettings)
    kwargs = {"strategy": strategy or ts.strategy, "batch_size": batch_size or ts.batch_size,
              "initial_batch_size": initial_batch_size or ts.initial_batch_size, "seed": seed,
              "params": _params(param), "force": force, "dataset_id": dataset, "pool_survey": pool_survey,
              "pool_band": pool_band, "pool_min_detections": pool_min_detections}
    try:
        model_tag = model_tag or default_tag()  # a bad taxonomy file: its error, exit code and line
        if in_process:
            from skysift.store import open_store
            from skysift.trainer.rounds import Trainer

            result = Trainer(settings, open_store(settings=settings), ts).run_round(experiment, model_tag, **kwargs)
            lines = _round_lines(result.created, result.round, result.strategy, result.n_train, result.n_holdout,
                                 result.n_pool, result.queue_size, result.queue_key, result.model_version,
                                 result.champion_moved, result.metrics, result.message, result.quality_issues)
        else:
            lines = _round_via_grpc(settings, experiment, model_tag, kwargs)
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))
    for line in lines:
        typer.echo(line)


def _round_via_grpc(settings, experiment, model_tag, kw) -> list[str]:
    from skysift.rpc.channels import channel
    from skysift.rpc.errors import call
    from skysift.trainer.rounds import POOL_FIELDS
    from skysift.v1 import trainer_pb2, trainer_pb2_grpc

    address = settings.trainer_address
    with channel(address, settings) as ch:
        r = call(trainer_pb2_grpc.TrainerStub(ch).RunRound, trainer_pb2.RunRoundRequest(
            experiment=experiment, model_tag=model_tag, strategy=kw["strategy"], batch_size=kw["batch_size"],
            initial_batch_size=kw["initial_batch_size"], seed=kw["seed"], params=kw["params"], force=kw["force"],
            dataset_id=kw["dataset_id"] or "", **{f: kw[f] for f in POOL_FIELDS if kw[f] is not None}),
            timeout=1800)
    return _round_lines(r.created, r.round, r.strategy, r.n_train, r.n_holdout, r.n_pool, r.queue_size, r.queue_key,
                        r.model_version, r.champion_moved, dict(r.metrics), r.message, list(r.quality_issues))


def _round_lines(created, number, strategy, n_train, n_holdout, n_pool, queue_size, queue_key, version, moved,
                 metrics, message, issues) -> list[str]:
    lines = [f"round {number} {'created' if created else 'unchanged'} ({strategy}): {message}"]
    if created:
        lines.append(f"  trained on {n_train}, held out {n_holdout}, scored {n_pool} unlabelled alerts")
    held = {k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_") and isinstance(v, float)}
    if held:
        lines.append("  held-out: " + ", ".join(f"{k} {held[k]:.3f}" for k in ("accuracy", "precision", "recall", "f1",
                                                                            "roc_auc") if k in held))
    if version:
        lines.append(f"  model version {version}{' (champion)' if moved else ''}")
    lines.append(f"  queue: {queue_size} alerts in {queue_key}")
    lines.extend(f"  quality: {issue}" for issue in issues)
    return lines


def experiment_command(
    alerts: list[Path] = typer.Option([], "--alerts", help="Alert files or directories (Avro/parquet) to replay; "
                                                            "needs --oracle. Repeatable."),
    oracle: Path | None = typer.Option(None, help="CSV with candid, objectId, cdsxmatch[, tns]: Fink's SIMBAD "
                                                      "types mapped to galactic/extragalactic."),
    table: Path | None = typer.Option(None, help="A labelled feature table (CSV/parquet) instead of alerts: every "
                                                     "numeric or boolean column is a feature."),
    label_column: str = typer.Option("label", help="0/1 (or true/false) label column of --table."),
    id_column: str | None = typer.Option(None, help="Identifier column of --table (left out of the features)."),
    model_tag: str = typer.Option("galactic", help="Model tag (alerts and store labels)."),
    strategies: str = typer.Option("random,default,uncertainty,committee,diverse_uncertainty,balanced,density",
                                   help="Comma-separated strategies (`default` is what rounds use)."),
    seeds: int = typer.Option(5, min=1, help="Number of seeds (0..n-1): each a different split and first batch."),
    initial_batch_size: str = typer.Option("30", help="Comma-separated first-batch sizes."),
    initial: str = typer.Option("random", help="Comma-separated first-batch rules: random, diverse (k-centre)."),
    batch_size: str = typer.Option("10", help="Comma-separated per-round batch sizes."),
    learning_rate: str = typer.Option("0.1", help="Comma-separated learning rates."),
    class_weight: str = typer.Option("balanced", help="Comma-separated class weights: balanced (as rounds), auto "
                                                      "(balanced only while a class is under 20 % of the labels), none."),
    batch_growth: float = typer.Option(0.0, min=0.0, max=1.0, help="Query max(batch size, this share of the "
                                                                   "labels so far) a round: long curves in fewer rounds."),
    threshold: str = typer.Option("0.5", help="Comma-separated decision thresholds: 0.5, cv (chosen for F1 by "
                                              "cross-validation on the training labels)."),
    max_labels: int = typer.Option(150, min=2, help="Stop each curve at this many training labels (clamped to "
                                                    "the pool)."),
    budget: int = typer.Option(100, min=1, help="Report the F1 ratio to random at this many labels."),
    holdout_fraction: float = typer.Option(0.3, min=0.05, max=0.8, help="Held-out share of the labelled set."),
    name: str = typer.Option("compare", help="Name: output files and the MLflow experiment."),
    out: Path = typer.Option(Path("results/experiments"), help="Directory for the plot and CSVs."),
    mlflow: bool = typer.Option(True, help="Log the curves to MLflow (SKYSIFT_MLFLOW_TRACKING_URI)."),
) -> None:
    """Replay a labelled set with an oracle labeller and compare learning curves over several seeds, paired
    by seed against random sampling.

    The labelled set is alerts with Fink's SIMBAD types (--alerts + --oracle), a labelled feature table
    (--table), or, with neither, the store's own labels on its features. Points are saved as each curve ends.
    """
    from tqdm import tqdm

    from skysift import errors
    from skysift.trainer import comparison
    from skysift.trainer import experiments as ex

    settings = load_settings()
    try:
        if table is not None:
            data = ex.from_table(table, label_column, id_column)
        elif alerts:
            if oracle is None:
                fail("--alerts needs --oracle (the labels CSV)")
            data = ex.from_alerts(alerts, oracle, model_tag)
        else:
            from skysift.store import open_store

            data = ex.from_store(open_store(settings=settings), model_tag)
        configs = ex.grid(_csv(strategies), _csv(initial_batch_size, int), _csv(batch_size, int),
                          _csv(learning_rate, float), _csv(class_weight), _csv(initial), _csv(threshold), batch_growth)
        typer.echo(data.describe())
        typer.echo(f"{len(configs)} configurations x {seeds} seeds, up to {max_labels} labels, "
                   f"{holdout_fraction:.0%} held out")
        out.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(configs) * seeds, desc="learning curves", unit="curve") as bar:
            results = ex.run(data, configs, list(range(seeds)), max_labels, holdout_fraction, progress=bar.update,
                             checkpoint=out / f"{name}_points.csv")
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))
    points = results.points
    for note in results.notes + comparison.dropped_seeds(points):
        typer.echo(f"note: {note}")
    summary = comparison.summarise(points)
    report = comparison.report(points, results.ceiling, budget)
    verdict = comparison.verdict(report, points, results.ceiling)
    png = comparison.plot(points, results.ceiling, f"{name}: {data.describe()}")
    summary.to_csv(out / f"{name}_curves.csv", index=False)
    report.to_csv(out / f"{name}_report.csv", index=False)
    results.ceiling.to_csv(out / f"{name}_ceiling.csv", index=False)
    (out / f"{name}_curves.png").write_bytes(png)
    (out / f"{name}_verdict.txt").write_text(verdict + "\n")
    shown = ["config", "mean_f1", "final_f1", "final_f1_negative", "final_f1_macro", "final_pr_auc",
             "labels_to_target", "share_of_random_labels", "f1_ratio_at_budget", "wins", "seeds", "p_value"]
    typer.echo(report[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(verdict)
    typer.echo(f"saved {out / (name + '_curves.png')} and CSVs in {out}")
    if mlflow:
        from skysift import config
        from skysift.trainer import tracking
        from skysift.trainer.settings import TrainerSettings

        params = {"data": data.name, "n_labelled": len(data.y), "strategies": strategies, "seeds": seeds,
                  "initial_batch_size": initial_batch_size, "initial": initial, "batch_size": batch_size,
                  "batch_growth": batch_growth, "learning_rate": learning_rate, "class_weight": class_weight, "threshold": threshold,
                  "max_labels": results.max_labels, "holdout_fraction": holdout_fraction,
                  "feature_set_version": data.feature_set_version or "table"}
        try:
            run_id = tracking.log_experiment(settings.mlflow_tracking_uri, config.load(TrainerSettings).mlflow_experiment_prefix,
                                             model_tag, name, params, points, summary, report, png, verdict)
        except errors.SkysiftError as exc:
            fail(f"{exc} (the results above are saved in {out}; use --no-mlflow to skip MLflow)", code=exit_code(exc))
        typer.echo(f"logged to MLflow run {run_id}")


@label_app.command("import")
def label_import(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV with candid, objectId, label, timestamp "
                                                                        "and optionally user (as label export writes)."),
    user: str | None = typer.Option(None, help="Who labelled the rows without a user (a row's own user is kept); "
                                               "needed when a row has none."),
    source: str = typer.Option("import", help="Source of the rows without one: human, import or oracle (an export's rows keep their own)."),
) -> None:
    """Append the CSV's labels as events, each under its row's user or --user; rows are all checked first, and a
    re-import adds nothing."""
    from skysift import errors
    from skysift.store import open_store
    from skysift.trainer.labels import LabelStore

    try:
        ids = LabelStore(open_store(settings=load_settings())).import_csv(path, user=user, source=source)
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))
    typer.echo(f"imported {len(ids)} labels from {path}")


@label_app.command("export")
def label_export(
    path: Path = typer.Argument(..., dir_okay=False, help="Where to write labels.csv."),
    all_events: bool = typer.Option(False, "--all-events", help="Every label event in the order they count (relabels, "
                                    "undos, each labeller's label), with model_tag, experiment, round, comment and "
                                    "event_id too; default: the current label of each candid."),
) -> None:
    """Write the current label of every candid as candid, objectId, label, timestamp, user, source (the prototype's
    labels.csv columns first); --all-events writes every event."""
    from skysift import errors
    from skysift.store import open_store
    from skysift.trainer.labels import LabelStore

    try:
        n = LabelStore(open_store(settings=load_settings())).export_csv(path, every_event=all_events)
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))
    typer.echo(f"exported {n} {'label events' if all_events else 'labels'} to {path}")


def _on_datasets(call):
    """``call`` on the configured store's datasets; a skysift error (store down, unknown id) is the command's
    one-line failure, as in ``skysift round``."""
    from skysift import errors
    from skysift.store import open_store
    from skysift.trainer.datasets import Datasets

    settings = load_settings()
    try:
        return call(Datasets(settings, open_store(settings=settings)))
    except errors.SkysiftError as exc:
        fail(str(exc), code=exit_code(exc))


def _dataset_lines(d) -> list[str]:
    balance = ", ".join(f"{k} {v}" for k, v in sorted(d.class_counts.items()))
    verdict = "passed" if d.manifest.get("passed", not d.quality_issues) else "FAILED: rounds refuse it without --force"
    lines = [f"{d.dataset_id}  {d.n_samples} samples ({balance}), quality {d.quality_score:.2f} {verdict}"]
    lines.extend(f"  quality: {issue}" for issue in d.quality_issues)
    return lines


def _when(text: str | None, option: str, end_of_day: bool = False):
    """An ISO date or time, UTC unless it says otherwise; a bare date as an end bound means that whole day."""
    from datetime import UTC, datetime, time

    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} expects an ISO date or time (2025-06-01 or 2025-06-01T12:00:00+00:00), got {text!r}")
    if end_of_day and len(text.strip()) <= 10:  # a date without a time: 2025-06-30 or 20250630
        when = datetime.combine(when.date(), time.max)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataset_app.command("collect")
def dataset_collect(
    name: str = typer.Argument(..., help="A name for the dataset (its id is the name plus a short suffix)."),
    model_tag: str = typer.Option("galactic", help="Model tag whose labels and predictions are used."),
    survey: str = typer.Option("", help=f"Only this survey ({', '.join(surveys.names())}); default every survey."),
    start: str | None = typer.Option(None, help="First poll time to include, ISO (UTC when no zone is given)."),
    end: str | None = typer.Option(None, help="Last poll time to include, ISO (UTC when no zone is given); a date "
                                              "alone includes that whole day."),
    score_threshold: float = typer.Option(0.9, help="Confidence a champion prediction needs to fill in as a label."),
    prefer_validated: bool = typer.Option(True, help="Every human/oracle label goes in before any prediction."),
    max_samples: int = typer.Option(1000, min=1, help="Largest number of samples."),
    seed: int = typer.Option(0, help="Seed of the choice among equally ranked candidates (reproducible datasets)."),
) -> None:
    """Collect a dataset from the store (after AstrID's collector) and print its counts and quality report.

    A dataset that fails its quality checks is still stored, marked failed; rounds refuse it without --force.
    """
    from skysift.trainer.datasets import DatasetRequest

    req = DatasetRequest(name=name, model_tag=model_tag, survey=survey, start=_when(start, "--start"),
                         end=_when(end, "--end", end_of_day=True), score_threshold=score_threshold,
                         prefer_validated=prefer_validated, max_samples=max_samples, seed=seed)
    d = _on_datasets(lambda datasets: datasets.collect(req))
    for line in _dataset_lines(d):
        typer.echo(line)
    typer.echo(f"  samples in {d.samples_key}")


@dataset_app.command("list")
def dataset_list() -> None:
    """Every collected dataset with its sample count, class balance and quality."""
    found = _on_datasets(lambda datasets: datasets.list())
    if not found:
        typer.echo("no datasets yet: `skysift dataset collect NAME` makes one")
    for d in sorted(found, key=lambda d: d.dataset_id):
        for line in _dataset_lines(d):
            typer.echo(line)


@dataset_app.command("show")
def dataset_show(dataset_id: str = typer.Argument(..., help="The id printed by `skysift dataset list`.")) -> None:
    """A dataset's manifest: parameters, counts, class balance and the whole quality report, as JSON."""
    import json

    d = _on_datasets(lambda datasets: datasets.get(dataset_id))
    typer.echo(json.dumps(d.manifest, indent=2, sort_keys=True, default=str))


def register(app: typer.Typer) -> None:
    app.command("round")(round_command)
    app.command("experiment")(experiment_command)
    app.add_typer(label_app, name="label")
    app.add_typer(dataset_app, name="dataset")
