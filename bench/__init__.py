"""The bench stage: latency, peak memory, on-device accuracy and (on the emulated boards) executed instructions of a
bundle's files, on the host and on devices reached over SSH (harness.py), kept in the results store (store.py),
with the PyTorch reference row (reference.py) and fresh-process timing for benchmarks/ (host.py)."""
