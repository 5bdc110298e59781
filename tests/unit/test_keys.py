from datetime import datetime, timezone

import pytest

from skysift.errors import InvalidArgument
from skysift.store import keys


def test_batch_key_layout_and_sibling():
    b = keys.new_batch("alerts", "ztf", datetime(2025, 7, 1, 13, 5, 9, tzinfo=timezone.utc))
    assert str(b) == "alerts/survey=ztf/night=20250701/20250701_130509_alerts.parquet"
    assert str(b.sibling("features")) == "features/survey=ztf/night=20250701/20250701_130509_features.parquet"
    assert keys.parse_batch(str(b)) == b


def test_parse_rejects_non_batch_keys_with_the_expected_shape():
    with pytest.raises(InvalidArgument, match="expected e.g."):
        keys.parse_batch("alerts/whatever.parquet")
    with pytest.raises(InvalidArgument, match="expected a key under features/"):
        keys.parse_batch("alerts/survey=ztf/night=20250701/20250701_130509_alerts.parquet", stage="features")
