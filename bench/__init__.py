"""`skysift bench`: throughput, latency and memory of every stage on real alerts, beside its baselines. Not
installed with skysift: it runs from a checkout, whose tests/data it reads.

- :mod:`.data`: real packets from the repository, repeated to volume with distinct alert ids;
- :mod:`.baselines`: the prototype's way (per-message decode, pandas, per-row E(B-V), per-alert features),
  bare fastavro and the Rust batch-decode floor;
- :mod:`.runner`: the options and the run, pinned to one core, section after section;
- one module per section (:mod:`.ingest`, :mod:`.features`, :mod:`.al`, :mod:`.e2e`, :mod:`.inference`,
  :mod:`.scaling`), with :mod:`.measure` (rates, latencies, peak RSS) and :mod:`.stages` (the product's stages
  fed from memory);
- :mod:`.report`: the table, the targets (PASS/MISS) and ``bench/results.json``.
"""
