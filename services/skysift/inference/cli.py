"""`skysift score`: score a features batch, candids or raw alert files, through the Inference service (default)
or in this process (``--in-process``), and print one line (or one JSON object) per prediction.

The gRPC path uses :mod:`skysift.client`, the same small client users can copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from skysift.cliutil import fail


def score(
    packets: list[Path] | None = typer.Argument(None, help="Alert packet files (Avro containers, Confluent-framed "
                                                              "Rubin, Fink schemaless with --schema)."),
    key: str | None = typer.Option(None, "--key", help="A features/ batch key to score."),
    candid: list[int] | None = typer.Option(None, "--candid", help="A candid already through the features stage "
                                                                      "(repeat for several)."),
    model_tag: list[str] | None = typer.Option(None, "--model-tag", help="Only this model tag (repeatable; "
                                                                            "default: every served tag)."),
    packet_format: str = typer.Option("auto", "--format", help="auto, avro (container files), confluent (Rubin wire format), schemaless (Fink; needs the schema), parquet."),
    schema: Path | None = typer.Option(None, "--schema", help="Writer schema JSON of schemaless (Fink) packets."),
    enrich: bool = typer.Option(False, "--enrich", help="Enrich raw packets (Sherlock, E(B-V)) before features."),
    write: bool = typer.Option(False, "--write/--no-write", help="With --key: write predictions/ and run the sinks."),
    address: str | None = typer.Option(None, help="Inference service (default: SKYSIFT_INFERENCE_ADDRESS)."),
    in_process: bool = typer.Option(False, "--in-process", help="Score in this process, without the service."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Score alerts with the champion models and print their class probabilities.

    Give exactly one of --key, --candid or packet files.
    """
    from skysift import config, errors

    chosen = [bool(key), bool(candid), bool(packets)]
    if sum(chosen) != 1:
        fail("give exactly one of --key, --candid or packet files")
    tags = list(model_tag or [])
    try:
        settings = config.load()
        raw = [p.read_bytes() for p in packets or []]
        schema_json = schema.read_text() if schema else ""
        if in_process:
            predictions, message = _in_process(settings, key, candid, raw, packet_format, schema_json, tags, enrich, write)
        else:
            predictions, message = _remote(address or settings.inference_address, key, candid, raw, packet_format,
                                           schema_json, tags, enrich, write)
    except OSError as exc:
        fail(f"cannot read input: {exc}")
    except errors.SkysiftError as exc:
        fail(str(exc), code=1)
    for p in predictions:
        typer.echo(json.dumps(p) if as_json else _line(p))
    if message:
        typer.secho(message, fg=typer.colors.YELLOW, err=True)


def _line(p: dict) -> str:
    probs = " ".join(f"{label}={value:.4f}" for label, value in p["probabilities"].items())
    model = f"{p['model_name']} v{p['model_version']} (features v{p['feature_set_version']})"
    return f"{p['candid']} {p['objectId']} {model}: {probs}"


def _remote(address, key, candids, raw, packet_format, schema_json, tags, enrich, write) -> tuple[list[dict], str]:
    import grpc

    from skysift.client import InferenceClient
    from skysift.errors import SkysiftError

    with InferenceClient(address) as client:
        try:
            if key:
                return client.score_key(key, tags, write=write), ""
            if candids:
                return client.score_candids(candids, tags), ""
            return client.score_packets(raw, packet_format, schema_json, tags, enrich), ""
        except grpc.RpcError as exc:
            raise SkysiftError(f"{exc.code().name} from {address}: {exc.details()}") from None


def _in_process(settings, key, candids, raw, packet_format, schema_json, tags, enrich, write) -> tuple[list[dict], str]:
    from skysift.client import response_dicts
    from skysift.inference.core import InferenceStage
    from skysift.inference.service import response
    from skysift.store import open_store

    stage = InferenceStage(settings, open_store(settings=settings))
    if key:
        result = stage.score_batch(key, tags, write=write)
    elif candids:
        result = stage.score_candids(candids, tags)
    else:
        result = stage.score_alerts(raw, packet_format, schema_json or None, tags, enrich)
    return response_dicts(response(result, packed_form=True)), result.message
