"""The champion model of each model tag, loaded from the MLflow registry and swapped when the alias moves.

Models stay in memory: a request never talks to MLflow once its model is loaded. A background thread asks the
registry every ``poll_seconds`` where the alias points; when it moved, the new version is downloaded and loaded
while the old one keeps serving, then swapped in one assignment. MLflow being down never stops scoring with the
model already loaded; it only delays a reload.

What a model needs to be served, all written by the trainer as model-version tags: ``feature_set_version``,
``model_tag`` and ``feature_columns`` (a JSON list, the column order of ``fit``); optionally ``taxonomy`` (nested
JSON, see :mod:`skysift.inference.taxonomy`) and ``classes`` (JSON list, predict_proba's column order) for a
hierarchical model. A binary model's classes are ``ModelTag.classes``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from skysift.errors import FailedPrecondition, SkysiftError, Unavailable
from skysift.inference import taxonomy as tx
from skysift.modeltags import DEFAULT_MODEL_PREFIX, get_tag
from skysift.redact import redact_uri

log = logging.getLogger(__name__)

NO_MODEL = "no model yet: run `skysift round`"


@dataclass(frozen=True)
class LoadedModel:
    """A model version in memory, with what scoring and reporting need to know about it."""

    tag: str
    name: str
    version: str
    feature_set_version: str
    feature_columns: tuple[str, ...]
    taxonomy: tx.Taxonomy
    estimator: Any
    run_id: str = ""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Leaf probabilities (n, n_leaves), in the taxonomy's leaf order.

        With one OpenMP thread (see :func:`one_openmp_thread`): concurrency comes from parallel requests and
        replicas, and a small batch spread over busy cores waits on the slowest (measured: single-alert p99
        ~200 ms with all cores, <1 ms with one).
        """
        one_openmp_thread()
        return self.estimator.predict_proba(X)


_PER_THREAD = threading.local()


def one_openmp_thread() -> None:
    """Cap the calling thread's OpenMP runtime at one thread, once per thread; the cap stays.

    The cap (``omp_set_num_threads``) belongs to the calling thread, and HistGradientBoosting's predict asks
    ``omp_get_max_threads()`` of the thread that calls it: set where a model loads (the poll thread), it would not
    reach the gRPC worker threads. Set per call and restored, it cost ~12 % of a 1,000-alert request; set once, a
    thread keeps it, which suits the threads that score (the trainer sets its own limit around its fits).
    threadpoolctl only sees runtimes already loaded, so scikit-learn's estimator modules are imported first.
    """
    if getattr(_PER_THREAD, "capped", False):
        return
    import sklearn.ensemble  # noqa: F401 - loads scikit-learn's OpenMP runtime, so that the cap reaches it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")  # not used as a context: left in place for this thread
    _PER_THREAD.capped = True


def _numpy_input(estimator, columns: tuple[str, ...], where: str):
    """Let the estimator take a bare numpy matrix: skysift passes columns in ``feature_columns`` order itself.

    A model fitted on a DataFrame checks names on every call (a DataFrame costs ~1 ms a call; numpy without
    names warns each time). The names are checked here once, against the tag, then dropped from the copy we serve.
    """
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return estimator
    if tuple(str(n) for n in names) != columns:
        raise FailedPrecondition(f"{where}: its feature_columns tag does not match the columns it was fitted on")
    served = copy.copy(estimator)  # shallow: the fitted trees are shared, only the names go
    del served.feature_names_in_
    return served


def model_from_version(tag: str, mv, estimator) -> LoadedModel:
    """Build a :class:`LoadedModel` from an MLflow ModelVersion's tags and the loaded estimator."""
    tags = dict(mv.tags or {})
    where = f"model {mv.name} v{mv.version}"
    fsv = tags.get("feature_set_version")
    if not fsv:
        raise FailedPrecondition(f"{where} has no feature_set_version tag: it cannot be matched to features")
    if "feature_columns" in tags:
        columns = tuple(json.loads(tags["feature_columns"]))
    elif getattr(estimator, "feature_names_in_", None) is not None:
        columns = tuple(str(c) for c in estimator.feature_names_in_)
    else:
        raise FailedPrecondition(f"{where} has no feature_columns tag and no feature names: column order unknown")
    estimator = _numpy_input(estimator, columns, where)
    classes = json.loads(tags["classes"]) if "classes" in tags else list(get_tag(tag).classes)
    taxonomy = tx.from_json(tags["taxonomy"], classes) if "taxonomy" in tags else tx.flat(classes)
    n_out = len(getattr(estimator, "classes_", classes))
    if n_out != len(taxonomy.leaves):
        raise FailedPrecondition(f"{where} predicts {n_out} classes but its taxonomy has {len(taxonomy.leaves)} leaves")
    return LoadedModel(tag, mv.name, str(mv.version), str(fsv), columns, taxonomy, estimator, mv.run_id or "")


class ChampionRegistry:
    """Champion models by tag; :meth:`get` is lock-free on the hot path (one dict read)."""

    def __init__(self, tracking_uri: str, tags: list[str], alias: str = "champion", retry_seconds: float = 5.0,
                 model_prefix: str = DEFAULT_MODEL_PREFIX):
        self.tracking_uri = tracking_uri
        self.model_prefix = model_prefix
        self.tags = list(tags)
        self.alias = alias
        self.retry_seconds = retry_seconds  # a request finding no model asks MLflow again at most this often
        self._models: dict[str, LoadedModel] = {}
        self._checked: dict[str, float] = {}
        self._errors: dict[str, Exception] = {}  # tag -> why its last refresh failed (cleared by a good one)
        self._refresh_lock = threading.RLock()
        self._stop = threading.Event()
        self._client = None

    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    def get(self, tag: str) -> LoadedModel:
        model = self._models.get(tag)
        if model is not None:
            return model
        with self._refresh_lock:  # a load under way (start-up) is waited for, not reported as "no model"
            model = self._models.get(tag)
            if model is None and time.monotonic() - self._checked.get(tag, -1e9) >= self.retry_seconds:
                try:
                    self.refresh_tag(tag)
                except Exception as exc:  # noqa: BLE001 - kept, then reported below with its own kind
                    self._errors[tag] = exc
                model = self._models.get(tag)
        if model is None:
            error = self._errors.get(tag)
            if error is not None:
                kind = type(error) if isinstance(error, SkysiftError) else Unavailable
                raise kind(f"no model loaded for {tag}: {error}")
            name = get_tag(tag).registered_name(self.model_prefix)
            raise FailedPrecondition(f"{NO_MODEL} (no '{self.alias}' alias on {name} in MLflow at {redact_uri(self.tracking_uri)})")
        return model

    def champion_versions(self) -> list[tuple[str, str]]:
        """(registered name, version) the alias points to, per tag that has one, without loading any model (what
        `skysift status` compares the stored predictions with)."""
        names = [get_tag(tag).registered_name(self.model_prefix) for tag in self.tags]
        return [(name, str(mv.version)) for name in names if (mv := self._aliased(name)) is not None]

    def _aliased(self, name: str):
        """The model version the alias points to, None when there is none; Unavailable when MLflow cannot say."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(name, self.alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise Unavailable(f"MLflow at {redact_uri(self.tracking_uri)}: {exc}") from None
        except OSError as exc:
            raise Unavailable(f"MLflow at {redact_uri(self.tracking_uri)} unreachable: {exc}") from None

    def refresh(self) -> dict[str, str]:
        """Check every tag; return tag → what happened (for logs and tests). Never raises."""
        out = {}
        for tag in self.tags:
            try:
                out[tag] = self.refresh_tag(tag)
            except Exception as exc:  # noqa: BLE001 - the poll reports and keeps the current model
                log.warning("model refresh failed", extra={"model_tag": tag, "error": str(exc)})
                self._errors[tag] = exc
                out[tag] = f"error: {exc}"
        return out

    def refresh_tag(self, tag: str) -> str:
        """Load the version the alias points to if it is not the one loaded; return a short status."""
        name = get_tag(tag).registered_name(self.model_prefix)
        with self._refresh_lock:
            self._checked[tag] = time.monotonic()
            mv = self._aliased(name)
            self._errors.pop(tag, None)
            if mv is None:
                return "no model"
            current = self._models.get(tag)
            if current is not None and current.version == str(mv.version):
                return f"unchanged v{mv.version}"
            model = model_from_version(tag, mv, self._load_estimator(name, str(mv.version)))
            self._models = {**self._models, tag: model}  # one assignment: readers see old or new, never half
        log.info("model loaded", extra={"model_tag": tag, "model_name": name, "model_version": model.version,
                                        "previous_version": current.version if current else None})
        return f"loaded v{model.version}"

    def _load_estimator(self, name: str, version: str):
        """Download through this registry's own client: a ``models:/`` URI would be resolved against MLflow's
        process-wide registry (``MLFLOW_TRACKING_URI``, or whatever ``mlflow.set_tracking_uri`` last set), which
        may be another server than ``tracking_uri``."""
        import mlflow.artifacts
        import mlflow.sklearn

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per load garbles JSON logs
        source = self.client().get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory(prefix="skysift-model-") as tmp:
            path = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=self.tracking_uri)
            return mlflow.sklearn.load_model(path)

    def start_polling(self, interval: float, also=None) -> threading.Thread:
        """Poll in a daemon thread until :meth:`close` or until this registry is garbage collected.

        ``also``, a bound method, is called after each poll (the stage refreshes its candid index there); it is
        held weakly too, so a dropped stage stops its thread.
        """
        ref = weakref.ref(self)
        also_ref = weakref.WeakMethod(also) if also is not None else None
        stop = self._stop
        weakref.finalize(self, stop.set)

        def loop() -> None:  # first pass at once: models load at start-up, not on the first request
            while True:
                registry = ref()
                if registry is None:
                    return
                registry.refresh()
                del registry
                fn = also_ref() if also_ref is not None else None
                if fn is not None:
                    try:
                        fn()
                    except Exception as exc:  # noqa: BLE001 - a background refresh reports and goes on
                        log.warning("background refresh failed", extra={"error": str(exc)})
                del fn
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=loop, name="skysift-model-poll", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
