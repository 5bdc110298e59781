"""The current champion's view of a queue: its uncertainty about each alert, for the "retrained model" order.

A round's queue is ranked by the model trained in that round; labels given since may have moved the champion
to a newer model, which is what the inference service serves. Asking it (Inference.ScoreCandids) scores the
queued alerts with that model; the app does not load models itself. Uncertainty is least confidence over the
model's top-level classes, as the trainer's ``uncertainty`` strategy scores the pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from skysift import errors
from skysift.config import Settings
from skysift.store import keys


@dataclass(frozen=True)
class ChampionScores:
    model_name: str
    model_version: str
    uncertainty: dict[int, float]  # candid -> 1 - max top-level class probability


def uncertainty(probabilities: dict[str, float], parents: dict[str, str]) -> float:
    """Least confidence over the top-level classes (a hierarchy's children repeat their parent's mass)."""
    from skysift.trainer.strategies import least_confident

    top = [p for label, p in probabilities.items() if not parents.get(label)]
    return float(least_confident(np.array([top]))[0])


def champion_scores(settings: Settings, candids: list[int], model_tag: str, timeout: float) -> ChampionScores:
    """Score ``candids`` with the champion of ``model_tag`` through the inference service at
    ``settings.inference_address``; Unavailable (with the address) when it does not answer."""
    from skysift.client import response_dicts
    from skysift.rpc.channels import channel
    from skysift.rpc.errors import call
    from skysift.v1 import inference_pb2, inference_pb2_grpc

    request = inference_pb2.ScoreCandidsRequest(candids=candids, model_tags=[model_tag], packed=True)
    with channel(settings.inference_address, settings) as ch:
        try:
            resp = call(inference_pb2_grpc.InferenceStub(ch).ScoreCandids, request, timeout)
        except errors.Unavailable as exc:
            raise errors.Unavailable(f"the inference service at {settings.inference_address} is unreachable ({exc});"
                                     " start it with `skysift serve inference` or set SKYSIFT_INFERENCE_ADDRESS"
                                     ) from None
    rows = [r for r in response_dicts(resp) if r["model_tag"] == model_tag]
    if not rows:
        raise errors.FailedPrecondition(f"the inference service scored none of the queue with {model_tag!r}"
                                        + (f": {resp.message}" if resp.message else ""))
    return ChampionScores(rows[0]["model_name"], rows[0]["model_version"],
                          {r["candid"]: uncertainty(r["probabilities"], r["parents"]) for r in rows})


def round_model(store, experiment: str, round_number: int) -> tuple[str, str]:
    """The model tag of a round and the registry version of the model it trained ("" when it fitted none, as in
    round 0), from the round's meta.json."""
    meta = json.loads(store.get_bytes(keys.round_prefix(experiment, round_number) + "meta.json"))
    return str(meta.get("model_tag", "")), str(meta.get("result", {}).get("model_version") or "")
