import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelEvent(_message.Message):
    __slots__ = ("candid", "object_id", "label", "model_tag", "user", "timestamp", "source", "event_id", "experiment", "round", "comment")
    CANDID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    candid: int
    object_id: str
    label: str
    model_tag: str
    user: str
    timestamp: _timestamp_pb2.Timestamp
    source: str
    event_id: str
    experiment: str
    round: int
    comment: str
    def __init__(self, candid: _Optional[int] = ..., object_id: _Optional[str] = ..., label: _Optional[str] = ..., model_tag: _Optional[str] = ..., user: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., event_id: _Optional[str] = ..., experiment: _Optional[str] = ..., round: _Optional[int] = ..., comment: _Optional[str] = ...) -> None: ...

class SubmitLabelsRequest(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelEvent]
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelEvent, _Mapping]]] = ...) -> None: ...

class SubmitLabelsResponse(_message.Message):
    __slots__ = ("event_ids",)
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetLabelsRequest(_message.Message):
    __slots__ = ("candids", "history", "user")
    CANDIDS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    candids: _containers.RepeatedScalarFieldContainer[int]
    history: bool
    user: str
    def __init__(self, candids: _Optional[_Iterable[int]] = ..., history: _Optional[bool] = ..., user: _Optional[str] = ...) -> None: ...

class GetLabelsResponse(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[LabelEvent]
    def __init__(self, labels: _Optional[_Iterable[_Union[LabelEvent, _Mapping]]] = ...) -> None: ...

class GetQueueRequest(_message.Message):
    __slots__ = ("experiment", "round")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    round: int
    def __init__(self, experiment: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class QueueItem(_message.Message):
    __slots__ = ("candid", "object_id", "rank", "score", "probability", "strategy", "reason", "alerts_key", "label")
    CANDID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ALERTS_KEY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    candid: int
    object_id: str
    rank: int
    score: float
    probability: float
    strategy: str
    reason: str
    alerts_key: str
    label: str
    def __init__(self, candid: _Optional[int] = ..., object_id: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[float] = ..., probability: _Optional[float] = ..., strategy: _Optional[str] = ..., reason: _Optional[str] = ..., alerts_key: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class GetQueueResponse(_message.Message):
    __slots__ = ("experiment", "round", "items")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    round: int
    items: _containers.RepeatedCompositeFieldContainer[QueueItem]
    def __init__(self, experiment: _Optional[str] = ..., round: _Optional[int] = ..., items: _Optional[_Iterable[_Union[QueueItem, _Mapping]]] = ...) -> None: ...

class RunRoundRequest(_message.Message):
    __slots__ = ("experiment", "model_tag", "strategy", "batch_size", "initial_batch_size", "seed", "params", "force", "dataset_id", "pool_survey", "pool_band", "pool_min_detections")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_SURVEY_FIELD_NUMBER: _ClassVar[int]
    POOL_BAND_FIELD_NUMBER: _ClassVar[int]
    POOL_MIN_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    model_tag: str
    strategy: str
    batch_size: int
    initial_batch_size: int
    seed: int
    params: _containers.ScalarMap[str, str]
    force: bool
    dataset_id: str
    pool_survey: str
    pool_band: str
    pool_min_detections: int
    def __init__(self, experiment: _Optional[str] = ..., model_tag: _Optional[str] = ..., strategy: _Optional[str] = ..., batch_size: _Optional[int] = ..., initial_batch_size: _Optional[int] = ..., seed: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., force: _Optional[bool] = ..., dataset_id: _Optional[str] = ..., pool_survey: _Optional[str] = ..., pool_band: _Optional[str] = ..., pool_min_detections: _Optional[int] = ...) -> None: ...

class RunRoundResponse(_message.Message):
    __slots__ = ("experiment", "round", "created", "mlflow_run_id", "model_version", "champion_moved", "metrics", "queue_size", "queue_key", "message", "n_train", "n_holdout", "n_pool", "quality_issues", "strategy", "timings")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TimingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_MOVED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    N_TRAIN_FIELD_NUMBER: _ClassVar[int]
    N_HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    N_POOL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_ISSUES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    round: int
    created: bool
    mlflow_run_id: str
    model_version: str
    champion_moved: bool
    metrics: _containers.ScalarMap[str, float]
    queue_size: int
    queue_key: str
    message: str
    n_train: int
    n_holdout: int
    n_pool: int
    quality_issues: _containers.RepeatedScalarFieldContainer[str]
    strategy: str
    timings: _containers.ScalarMap[str, float]
    def __init__(self, experiment: _Optional[str] = ..., round: _Optional[int] = ..., created: _Optional[bool] = ..., mlflow_run_id: _Optional[str] = ..., model_version: _Optional[str] = ..., champion_moved: _Optional[bool] = ..., metrics: _Optional[_Mapping[str, float]] = ..., queue_size: _Optional[int] = ..., queue_key: _Optional[str] = ..., message: _Optional[str] = ..., n_train: _Optional[int] = ..., n_holdout: _Optional[int] = ..., n_pool: _Optional[int] = ..., quality_issues: _Optional[_Iterable[str]] = ..., strategy: _Optional[str] = ..., timings: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CollectDatasetRequest(_message.Message):
    __slots__ = ("name", "survey", "start", "end", "score_threshold", "prefer_validated", "max_samples", "model_tag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PREFER_VALIDATED_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MODEL_TAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    survey: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    score_threshold: float
    prefer_validated: bool
    max_samples: int
    model_tag: str
    def __init__(self, name: _Optional[str] = ..., survey: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., score_threshold: _Optional[float] = ..., prefer_validated: _Optional[bool] = ..., max_samples: _Optional[int] = ..., model_tag: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("dataset_id", "name", "n_samples", "class_counts", "quality_score", "quality_issues", "samples_key", "manifest_json")
    class ClassCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CLASS_COUNTS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_ISSUES_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_KEY_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    name: str
    n_samples: int
    class_counts: _containers.ScalarMap[str, int]
    quality_score: float
    quality_issues: _containers.RepeatedScalarFieldContainer[str]
    samples_key: str
    manifest_json: str
    def __init__(self, dataset_id: _Optional[str] = ..., name: _Optional[str] = ..., n_samples: _Optional[int] = ..., class_counts: _Optional[_Mapping[str, int]] = ..., quality_score: _Optional[float] = ..., quality_issues: _Optional[_Iterable[str]] = ..., samples_key: _Optional[str] = ..., manifest_json: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...
