"""Ingest stage: poll a broker (or replay files) into clean alerts parquet, at least once, deduplicated."""
