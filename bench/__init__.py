"""cryptolink benchmarks (not part of the test suite).

Run everything with ``python -m bench.run_all`` (``--quick`` for a short smoke run); each benchmark module also
runs on its own (``python -m bench.bench_throughput``). Results are appended to ``bench/RESULTS.md``.
"""
