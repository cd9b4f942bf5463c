"""A status client in its own process (so its CPU is not the engine's): ``GET /api/system/status`` every
``--poll`` s and a Prometheus-style scrape of ``/metrics`` every ``--scrape`` s, until SIGTERM; then prints one
JSON line ``{"polls", "scrapes", "errors", "poll_ms_p50", "scrape_ms_p50"}``.

``python -m bench.status_poller URL [--poll 1] [--scrape 5]``
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import httpx

__all__ = ["main"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--scrape", type=float, default=5.0)
    args = ap.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    polls: list[float] = []
    scrapes: list[float] = []
    errors = 0
    next_scrape = time.monotonic()
    print(json.dumps({"ready": True}), flush=True)
    with httpx.Client(base_url=args.url, timeout=10) as http:
        while not stop.is_set():
            now = time.monotonic()
            targets = [("/api/system/status", polls)]
            if now >= next_scrape:
                targets.append(("/metrics", scrapes))
                next_scrape = now + args.scrape
            for path, times in targets:
                t0 = time.perf_counter()
                try:
                    http.get(path).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                except httpx.HTTPError:
                    errors += 1
            stop.wait(args.poll)

    def p50(values: list[float]) -> float | None:
        return sorted(values)[len(values) // 2] if values else None

    out = {
        "polls": len(polls),
        "scrapes": len(scrapes),
        "errors": errors,
        "poll_ms_p50": p50(polls),
        "scrape_ms_p50": p50(scrapes),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
