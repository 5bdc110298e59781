"""Real alert batches in a store, as ingest writes them, for the app's tests (decoded from tests/data packets)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from skysift.alerts.decode import decode_packets
from skysift.store import keys

ALERTS = Path(__file__).parent / "data" / "alerts"
APP = Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py"
# Fink's distribution files: recent ZTF alerts (drb, histories in g and r) with all three stamps.
ZTF_AVRO = sorted((ALERTS / "ztf" / "avro" / "fink-broker_distribute").glob("*.avro"))
# Fink-distributed ZTF alerts with SIMBAD cross-matches: the oracle labels them galactic / extragalactic.
FINK_LABELED = sorted((ALERTS / "ztf" / "fink_labeled" / "avro").rglob("*.avro"))
RUBIN_PARQUET = sorted((ALERTS / "lsst" / "real" / "fink-tutorials_ftransfer_2026-03-27").glob("*.parquet"))


def ztf_packets(n: int) -> list[bytes]:
    return [p.read_bytes() for p in ZTF_AVRO[:n]]


def fink_labeled_packets() -> list[bytes]:
    return [p.read_bytes() for p in FINK_LABELED]


def rubin_packets(n_files: int = 1) -> list[bytes]:
    return [p.read_bytes() for p in RUBIN_PARQUET[:n_files]]


def write_batch(store, packets: list[bytes], when: datetime | None = None, cutouts: bool = True) -> tuple[str, pa.Table]:
    """Decode ``packets`` (one survey) and write the alerts (and cutouts) batch; return the alerts key and table."""
    result = decode_packets(packets, keep_cutouts=cutouts)
    assert not result.dead_letters, result.dead_letters[:1]
    (survey, table), = result.alerts.items()
    batch = keys.new_batch("alerts", survey, when or datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    store.write_table(str(batch), table)
    if cutouts:
        store.write_table(str(batch.sibling("cutouts")), result.cutouts[survey])
    return str(batch), table


def labelling_batch(store, settings, packets: list[bytes] | None = None, when: datetime | None = None) -> tuple[str, pa.Table]:
    """A real alerts batch with its stamps and features, so the trainer can queue its alerts."""
    from skysift.features.stage import FeaturesStage

    key, table = write_batch(store, packets if packets is not None else fink_labeled_packets(), when)
    FeaturesStage(settings, store).process(key)
    return key, table


def oracle_labels(table: pa.Table) -> dict[int, str]:
    """Labels from the alerts' own SIMBAD cross-match (galactic / extragalactic), where it says which."""
    from skysift.trainer.oracle import classify

    out = {}
    for candid, xmatch in zip(table["candid"].to_pylist(), table["cdsxmatch"].to_pylist()):
        label = classify(xmatch)
        if label:
            out[candid] = label
    return out


def label_queue(client, experiment: str, oracle: dict[int, str]) -> int:
    """Answer the latest queue of ``experiment`` as the oracle would (alerts it has no label for stay open)."""
    from skysift.app.trainer import Label

    items = client.queue(experiment).items
    labels = [Label(candid=i.candid, label=oracle[i.candid], user="oracle", source="oracle", object_id=i.object_id,
                    experiment=experiment) for i in items if i.candid in oracle]
    if labels:
        client.submit(labels)
    return len(labels)


def start_trainer(workdir: Path, env: dict):
    """`skysift serve trainer` as its own process, serving once it answers health checks."""
    from skysift.rpc.channels import wait_serving
    from tests import servers

    proc = servers.start_service("trainer", env, workdir)
    wait_serving(f"127.0.0.1:{proc.port}", timeout=60)
    return proc


def run_round(address: str, experiment: str, strategy: str = "random", initial: int = 5, batch: int = 5,
              model_tag: str = "galactic", seed: int = 1):
    """One RunRound call through the trainer's gRPC API."""
    from skysift.rpc.channels import channel
    from skysift.rpc.errors import call
    from skysift.v1 import trainer_pb2, trainer_pb2_grpc

    with channel(address) as ch:
        return call(trainer_pb2_grpc.TrainerStub(ch).RunRound, trainer_pb2.RunRoundRequest(
            experiment=experiment, model_tag=model_tag, strategy=strategy, batch_size=batch,
            initial_batch_size=initial, seed=seed))
