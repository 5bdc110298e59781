"""`skysift bench`: throughput, latency and memory of every stage on real alerts, beside its baselines.

- :mod:`.data`: real packets from the repository, repeated to volume with distinct alert ids;
- :mod:`.baselines`: the prototype's way (per-message decode, pandas, per-row E(B-V), per-alert features),
  bare fastavro and the Rust batch-decode floor;
- :mod:`.runner`: the measurements, pinned to one core;
- :mod:`.report`: the table, the targets (PASS/MISS) and ``bench/results.json``.
"""
