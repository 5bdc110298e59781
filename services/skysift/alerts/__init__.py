"""Survey formats (ZTF, Rubin), batch decoding and cleaning into the alerts table (see :mod:`.schema`)."""

from __future__ import annotations

import importlib

__all__ = ["DecodeResult", "Packet", "decode_packets"]


def __getattr__(name: str):
    """Re-export the decoder lazily: importing the schema alone must not load polars and the Avro readers."""
    if name in __all__:
        return getattr(importlib.import_module("skysift.alerts.decode"), name)
    raise AttributeError(name)
