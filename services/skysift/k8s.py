"""Start an active-learning round from inside the cluster, as `kubectl create job --from=cronjob/<round>` does.

The Streamlit rounds page calls :func:`trigger_round`. The Helm chart gives the app's ServiceAccount a Role that
allows exactly the two calls made here (get the round CronJob by name, create a Job) and sets
``SKYSIFT_K8S_NAMESPACE`` and ``SKYSIFT_K8S_ROUND_CRONJOB``; outside a cluster (``make dev``) they are unset,
:func:`available` is False, and the page's button calls Trainer.RunRound instead.

The Job is built the way kubectl builds it (``createJobFromCronJob``): the jobTemplate's spec, labels and
annotations, ``cronjob.kubernetes.io/instantiate: manual``, and a controller reference to the CronJob, so the
CronJob's history limits also clean up manual runs. A suspended CronJob can still be instantiated this way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pydantic_settings import BaseSettings, SettingsConfigDict

from skysift.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

REQUEST_TIMEOUT = 10.0  # seconds per API call: a button press must not hang the page
MAX_JOB_NAME = 63  # Job names become the `batch.kubernetes.io/job-name` label value


class K8sSettings(BaseSettings):
    """Where the round CronJob lives; both set by the chart on the app's pod."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_K8S_", extra="ignore")

    namespace: str | None = None
    round_cronjob: str | None = None


def available(settings: K8sSettings) -> bool:
    return bool(settings.namespace and settings.round_cronjob)


def default_job_name(cronjob: str, now: float) -> str:
    """``<cronjob>-<unix seconds>``, cut to fit the 63-character limit (the CronJob name is at most 52)."""
    suffix = f"-{int(now)}"
    return cronjob[: MAX_JOB_NAME - len(suffix)].rstrip("-") + suffix


def job_from_cronjob(cronjob, name: str, requested_by: str | None = None):
    """The Job kubectl would create from ``cronjob`` (a ``V1CronJob``), named ``name``."""
    from kubernetes import client

    template = cronjob.spec.job_template
    annotations = {"cronjob.kubernetes.io/instantiate": "manual", **(template.metadata.annotations or {})}
    if requested_by:
        annotations["skysift.io/requested-by"] = requested_by
    owner = client.V1OwnerReference(
        api_version="batch/v1", kind="CronJob", name=cronjob.metadata.name, uid=cronjob.metadata.uid, controller=True
    )
    return client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(
            name=name, annotations=annotations, labels=template.metadata.labels, owner_references=[owner]
        ),
        spec=template.spec,
    )


def in_cluster_client():
    """An API client with the pod's ServiceAccount token and the cluster CA."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as exc:
        raise FailedPrecondition(f"not running in a Kubernetes pod with a ServiceAccount token: {exc}") from None
    configuration.retries = 1
    return client.ApiClient(configuration)


def trigger_round(
    settings: K8sSettings,
    *,
    api_client=None,
    name: str | None = None,
    requested_by: str | None = None,
    now: Callable[[], float] = time.time,
) -> str:
    """Create a Job from the round CronJob and return its name.

    Raises NotFound (no such CronJob), FailedPrecondition (not in a cluster, forbidden, name taken),
    InvalidArgument (the API server rejected the Job) or Unavailable (the API server cannot be reached).
    """
    from kubernetes import client

    if not available(settings):
        raise FailedPrecondition(
            "running a round from the app needs Kubernetes: SKYSIFT_K8S_NAMESPACE and SKYSIFT_K8S_ROUND_CRONJOB "
            "are set by the Helm chart (app.runRound.enabled); elsewhere run `skysift round`"
        )
    namespace, cronjob_name = settings.namespace, settings.round_cronjob
    batch = client.BatchV1Api(api_client or in_cluster_client())
    where = f"CronJob {namespace}/{cronjob_name}"
    try:
        cronjob = batch.read_namespaced_cron_job(cronjob_name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - translated to a skysift error, or re-raised
        raise _translate(exc, f"reading {where}") from None
    job_name = name or default_job_name(cronjob_name, now())
    job = job_from_cronjob(cronjob, job_name, requested_by)
    try:
        created = batch.create_namespaced_job(namespace, job, _request_timeout=REQUEST_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"creating Job {namespace}/{job_name} from {where}") from None
    return created.metadata.name


def _translate(exc: Exception, doing: str) -> Exception:
    """Map an API failure to the skysift error a user can act on, keeping the API server's own message."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, HTTPError):
        return Unavailable(f"{doing}: Kubernetes API unreachable: {exc}")
    if not isinstance(exc, ApiException):
        return exc
    message = _status_message(exc)
    if exc.status == 404:
        return NotFound(f"{doing}: {message} (is round.enabled set in the chart's values?)")
    if exc.status in (401, 403):
        return FailedPrecondition(
            f"{doing}: {message} (the app's ServiceAccount needs the chart's round-trigger Role: app.runRound.enabled)"
        )
    if exc.status == 409:
        return FailedPrecondition(f"{doing}: {message}")
    if exc.status in (400, 422):
        return InvalidArgument(f"{doing}: {message}")
    return Unavailable(f"{doing}: Kubernetes API answered {exc.status}: {message}")


def _status_message(exc) -> str:
    """The ``message`` of the API server's Status object, or the HTTP reason when the body is not one."""
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"
